"""Transitional: lets a backend still written as a ``Checkpointer`` subclass run over the new core.

Removed once every backend is a :class:`~agents_persist.store.Store` plus a thin public class.
"""

from __future__ import annotations

from typing import Any, List, Optional

from .checkpointer import Checkpointer as _Checkpointer
from .checkpointer import UpdateFn
from .errors import ConflictError
from .models import ThreadInfo
from .paging import Position, thread_info
from .planning import PlannedWrite, PrefixMismatch, StoredThread, conflict_error, is_expired
from .store import Store

__all__ = ["Checkpointer", "PlannedWrite", "PrefixMismatch", "StoredThread", "UpdateFn"]


class _SelfStore(Store):
    def __init__(self, owner: "Checkpointer") -> None:
        self._owner = owner

    def read(self, thread_id: str) -> Optional[StoredThread]:
        return self._owner._read(thread_id)

    def write(self, thread_id: str, write: PlannedWrite) -> int:
        return self._owner._write(thread_id, write)

    def delete(self, thread_id: str) -> bool:
        return self._owner._delete(thread_id)

    def read_version(self, thread_id: str) -> int:
        return self._owner._read_version(thread_id)

    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        return self._owner._list_threads(prefix, limit, after, now)

    def purge(self, now: float) -> int:
        return self._owner._purge_expired(now)

    def close(self) -> None:
        self._owner._close()

    def describe(self) -> str:
        return self._owner._describe()

    def _after_fork_in_child(self) -> None:
        self._owner._after_fork()


class Checkpointer(_Checkpointer):
    """A backend written the old way: storage primitives as ``_read``/``_write``/... methods."""

    url_schemes: Any = ()

    def __init__(self, *, ttl: Optional[float] = None, max_retries: int = 50) -> None:
        super().__init__(_SelfStore(self), ttl=ttl, max_retries=max_retries)

    def _conflict(self, thread_id: str, expected: Optional[int], actual: int) -> ConflictError:
        return conflict_error(thread_id, expected, actual)

    _thread_info = staticmethod(thread_info)
    _is_expired = staticmethod(is_expired)

    def _read(self, thread_id: str) -> Optional[StoredThread]:
        raise NotImplementedError

    def _write(self, thread_id: str, write: PlannedWrite) -> int:
        raise NotImplementedError

    def _delete(self, thread_id: str) -> bool:
        raise NotImplementedError

    def _read_version(self, thread_id: str) -> int:
        raise NotImplementedError

    def _list_threads(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        raise NotImplementedError

    def _purge_expired(self, now: float) -> int:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _after_fork(self) -> None:
        pass

    def _describe(self) -> str:
        return ""
