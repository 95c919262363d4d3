"""agents_persist: save and restore AI agent conversation state per thread ID.

Backends: memory, SQLite (the embedded default), Redis, PostgreSQL and
DynamoDB, all behind one :class:`Checkpointer` contract. Networked backends
are imported lazily, so their drivers are needed only when used
(``pip install agents_persist[redis]`` and so on).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .aio import AsyncCheckpointer
from .base import MAX_THREAD_ID_BYTES, Checkpointer, validate_thread_id
from .errors import (
    AgentsPersistError,
    BackendUnavailableError,
    CheckpointerClosedError,
    ConfigurationError,
    ConflictError,
    CorruptSnapshotError,
    InvalidThreadIdError,
    SerializationError,
    SnapshotTooLargeError,
    UnsupportedFormatError,
)
from .mixin import AgentStateMixin
from .models import (
    AgentMessage,
    AgentStateSnapshot,
    HitlInterrupt,
    ThreadInfo,
    ThreadPage,
    TodoItem,
    ToolCall,
)
from .urls import from_url, redact_url, register_scheme

if TYPE_CHECKING:
    from .backends.dynamodb import DynamoDbCheckpointer
    from .backends.memory import InMemoryCheckpointer
    from .backends.postgres import PostgresCheckpointer
    from .backends.redis import RedisCheckpointer
    from .backends.sqlite import SqliteCheckpointer

__version__ = "0.1.0"

_LAZY_BACKENDS = {
    "InMemoryCheckpointer": "agents_persist.backends.memory",
    "SqliteCheckpointer": "agents_persist.backends.sqlite",
    "RedisCheckpointer": "agents_persist.backends.redis",
    "PostgresCheckpointer": "agents_persist.backends.postgres",
    "DynamoDbCheckpointer": "agents_persist.backends.dynamodb",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_BACKENDS.get(name)
    if module is None:
        raise AttributeError(f"module 'agents_persist' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "__version__",
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
    "DynamoDbCheckpointer",
    "HitlInterrupt",
    "InMemoryCheckpointer",
    "InvalidThreadIdError",
    "MAX_THREAD_ID_BYTES",
    "PostgresCheckpointer",
    "RedisCheckpointer",
    "SerializationError",
    "SnapshotTooLargeError",
    "SqliteCheckpointer",
    "ThreadInfo",
    "ThreadPage",
    "TodoItem",
    "ToolCall",
    "UnsupportedFormatError",
    "from_url",
    "redact_url",
    "register_scheme",
    "validate_thread_id",
]
