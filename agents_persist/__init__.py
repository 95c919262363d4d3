"""agents_persist: save and restore AI agent conversation state per thread ID.

Backends: memory, SQLite (the embedded default), Redis, PostgreSQL and
DynamoDB, all behind one :class:`Checkpointer` contract. Networked backends
are imported lazily, so their drivers are needed only when used
(``pip install agents_persist[redis]`` and so on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List

from . import registry
from .aio import AsyncCheckpointer
from .checkpointer import Checkpointer
from .errors import (
    AgentsPersistError,
    BackendUnavailableError,
    CheckpointerClosedError,
    ConfigurationError,
    ConflictError,
    CorruptSnapshotError,
    InvalidArgumentError,
    InvalidThreadIdError,
    SerializationError,
    SnapshotTooLargeError,
    UnsupportedFormatError,
)
from .formats.anthropic import from_anthropic, to_anthropic
from .formats.openai_chat import from_openai, to_openai
from .formats.openai_responses import from_responses, to_responses
from .ids import MAX_THREAD_ID_BYTES, validate_thread_id
from .mixin import AgentStateMixin
from .models import (
    AgentMessage,
    AgentStateSnapshot,
    HitlInterrupt,
    Provenance,
    ThreadInfo,
    ThreadPage,
    TodoItem,
    ToolCall,
)
from .store import Store
from .urls import from_url, redact_url, register_scheme

__version__ = "0.1.0"

__all__ = [
    "AgentMessage",
    "AgentStateMixin",
    "AgentStateSnapshot",
    "AgentsPersistError",
    "AsyncCheckpointer",
    "BackendUnavailableError",
    "Checkpointer",
    "CheckpointerClosedError",
    "ConfigurationError",
    "ConflictError",
    "CorruptSnapshotError",
    "HitlInterrupt",
    "InvalidArgumentError",
    "InvalidThreadIdError",
    "MAX_THREAD_ID_BYTES",
    "Provenance",
    "SerializationError",
    "SnapshotTooLargeError",
    "Store",
    "ThreadInfo",
    "ThreadPage",
    "TodoItem",
    "ToolCall",
    "UnsupportedFormatError",
    "__version__",
    "from_anthropic",
    "from_openai",
    "from_responses",
    "from_url",
    "redact_url",
    "register_scheme",
    "to_anthropic",
    "to_openai",
    "to_responses",
    "validate_thread_id",
]

if TYPE_CHECKING:
    # For type checkers: at run time the backend classes come from the registry
    # (tests/test_api.py checks that this block names the same classes).
    from .backends.dynamodb import DynamoDbCheckpointer
    from .backends.memory import InMemoryCheckpointer
    from .backends.postgres import PostgresCheckpointer
    from .backends.redis import RedisCheckpointer
    from .backends.sqlite import SqliteCheckpointer

    __all__ += ["DynamoDbCheckpointer", "InMemoryCheckpointer", "PostgresCheckpointer", "RedisCheckpointer", "SqliteCheckpointer"]
else:
    __all__ += [b.class_name for b in registry.backends() if b.target.startswith(__name__ + ".")]


def __getattr__(name: str) -> Any:
    # Backend classes come from the registry, imported on first use (their drivers later still).
    backend = registry.checkpointer_classes().get(name) if name.endswith("Checkpointer") else None
    if backend is None:
        raise AttributeError(f"module 'agents_persist' has no attribute {name!r}")
    value = backend.load()
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
