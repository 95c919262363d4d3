"""The one error hierarchy of agents_persist.

Every error the library raises on purpose derives from :class:`AgentsPersistError`;
errors about one conversation carry its ``thread_id``. Where callers would
naturally reach for a builtin (``ValueError`` for bad input, ``TypeError`` for
unencodable values) the error derives from it too.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "AgentsPersistError",
    "InvalidArgumentError",
    "InvalidThreadIdError",
    "SerializationError",
    "SnapshotTooLargeError",
    "CorruptSnapshotError",
    "UnsupportedFormatError",
    "ConflictError",
    "BackendUnavailableError",
    "ConfigurationError",
    "CheckpointerClosedError",
]


class AgentsPersistError(Exception):
    """Base class of every error raised by agents_persist."""

    def __init__(self, message: str, *, thread_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.thread_id = thread_id


class InvalidArgumentError(AgentsPersistError, ValueError, TypeError):
    """An argument or a model value is of the wrong type or out of range (a role, a status, a limit, a cursor)."""


class InvalidThreadIdError(AgentsPersistError, ValueError):
    """A thread ID is not a non-empty str of at most 512 UTF-8 bytes without control characters."""


class SerializationError(AgentsPersistError, TypeError):
    """A snapshot holds a value that cannot be stored (not JSON-like); nothing was written."""


class SnapshotTooLargeError(AgentsPersistError, ValueError):
    """A snapshot or one of its parts exceeds a size limit of the library or the backend."""


class CorruptSnapshotError(AgentsPersistError):
    """Stored bytes of a thread cannot be decoded into a snapshot."""


class UnsupportedFormatError(CorruptSnapshotError):
    """Stored bytes were written by a newer, unknown format version of agents_persist."""


class ConflictError(AgentsPersistError):
    """A compare-and-set save found another version than the one expected."""

    def __init__(
        self,
        message: str,
        *,
        thread_id: Optional[str] = None,
        expected_version: Optional[int] = None,
        actual_version: Optional[int] = None,
    ) -> None:
        super().__init__(message, thread_id=thread_id)
        self.expected_version = expected_version
        self.actual_version = actual_version


class BackendUnavailableError(AgentsPersistError, ConnectionError):
    """The storage server could not be reached or did not answer within the timeout.

    ``maybe_applied`` is True when the request may have reached the server
    before the failure (a write whose reply was lost): the change may or may
    not be stored. Retry ``update()``/``append()`` with the same
    ``idempotency_key`` to apply it exactly once, or load to see.
    """

    def __init__(self, message: str, *, thread_id: Optional[str] = None, maybe_applied: bool = False) -> None:
        super().__init__(message, thread_id=thread_id)
        self.maybe_applied = maybe_applied


class ConfigurationError(AgentsPersistError, ValueError):
    """A checkpointer was given invalid options, an unknown URL, or lacks its optional driver."""


class CheckpointerClosedError(AgentsPersistError, RuntimeError):
    """A checkpointer was used after ``close()``."""
