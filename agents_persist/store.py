"""The ``Store`` protocol: the storage primitives a backend provides, each one atomic step of its store.

A :class:`Store` knows nothing of snapshots, retries, TTL arithmetic or
paging: :class:`~agents_persist.checkpointer.Checkpointer` does all of that
once, over any store. A store keeps encoded bytes and a few scalars per
thread and applies a :class:`~agents_persist.planning.PlannedWrite` after
checking :func:`~agents_persist.planning.precondition` atomically.

Fork safety: the checkpointer registers its store with
:mod:`agents_persist.runtime.forking`; a store that holds connections,
clients or mutexes implements ``_after_fork_in_child`` (and, if it must,
``_before_fork``/``_after_fork_in_parent``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import List, Optional, Union

from .models import ThreadInfo
from .paging import Position
from .planning import PlannedWrite, StoredHead, StoredSlice, StoredThread, Written, is_expired, resolve_slice

__all__ = ["Store"]


class Store(ABC):
    """Storage primitives for one backend; every method is one atomic step of the store."""

    #: Name used in error messages and ``repr`` ("SQLite", "Redis", ...).
    name: str = "store"

    #: The default ``max_snapshot_bytes`` of checkpointers over this store: what it holds comfortably.
    default_max_snapshot_bytes: int = 32 * 1024 * 1024

    @abstractmethod
    def read(self, thread_id: str) -> Optional[StoredThread]:
        """Head and messages of one committed version, or None if missing (an expired one may be returned)."""

    @abstractmethod
    def read_head(self, thread_id: str) -> Optional[StoredHead]:
        """The head's scalars without messages or head blob, or None if missing (an expired one may be returned)."""

    @abstractmethod
    def write(self, thread_id: str, write: PlannedWrite) -> Written:
        """Check the precondition and apply ``write`` atomically (see :class:`~agents_persist.planning.PlannedWrite`).

        Returns:
            The new version and the thread's generation; for a write whose
            idempotency key was already applied, the version it produced then
            and ``duplicate=True`` (nothing written).

        Raises:
            ConflictError: The stored version (or generation) is not the expected one.
            PrefixMismatch: An append's base prefix is not what is stored.
        """

    @abstractmethod
    def delete(self, thread_id: str) -> bool:
        """Remove all of the thread; True if it existed and had not expired."""

    def read_messages(self, thread_id: str, start: Optional[int], stop: Optional[int]) -> Optional[StoredSlice]:
        """Messages ``[start:stop]`` (Python slice bounds, resolved against the stored count) of one committed version.

        None if the thread is missing (an expired one may be returned).
        Stores whose log is chunked or indexed read only the chunks that
        cover the slice; this default reads the whole thread.
        """
        stored = self.read(thread_id)
        if stored is None:
            return None
        first, end = resolve_slice(start, stop, stored.message_count)
        covered: Union[bytes, List[bytes]]
        if isinstance(stored.messages, bytes):  # one stream: hand it all over, the checkpointer cuts the slice
            covered, offset, count = stored.messages, 0, stored.message_count
        else:
            covered, offset, count = stored.messages[first:end], first, end - first
        return StoredSlice(stored.version, stored.message_count, first, end, offset, covered, count, stored.expires_at)

    def read_version(self, thread_id: str) -> int:
        """The stored version, 0 if missing or expired (stores may answer it more cheaply)."""
        head = self.read_head(thread_id)
        return 0 if head is None or is_expired(head.expires_at) else head.version

    @abstractmethod
    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        """Up to ``limit`` unexpired threads ordered by ``(updated_at, thread_id)`` descending,
        strictly after ``after`` in that order, whose IDs start with ``prefix``."""

    @abstractmethod
    def scan(self, prefix: Optional[str], after: Optional[str], limit: int, now: float) -> List[ThreadInfo]:
        """Up to ``limit`` unexpired threads whose IDs start with ``prefix``, in the store's *stable* order,
        strictly after the thread ``after`` in that order (which may have been deleted meanwhile).

        Stable means saves never move a thread in it, so paging through it
        sees every thread that exists for the whole walk exactly once.
        Thread-ID order (ascending by UTF-8 bytes) on every store but
        DynamoDB, which uses its table's Scan order (a hash of the thread ID).
        """

    @abstractmethod
    def purge(self, now: float) -> int:
        """Delete threads with ``expires_at <= now``; return how many."""

    def delete_inactive(self, before: float, now: float, batch_size: int) -> int:
        """Delete the unexpired threads last saved before ``before``, ``batch_size`` at a time; return how many.

        This default walks :meth:`scan` page by page and deletes each old
        thread with :meth:`delete`, so a save landing between a page's read
        and that delete is deleted with it; stores override it with a delete
        that checks ``updated_at`` in the same atomic step.
        """
        removed = 0
        after: Optional[str] = None
        while True:
            page = self.scan(None, after, batch_size, now)
            for info in page:
                stamp = info.updated_at.timestamp() if info.updated_timestamp is None else info.updated_timestamp
                if stamp < before and self.delete(info.thread_id):
                    removed += 1
            if len(page) < batch_size:
                return removed
            after = page[-1].thread_id

    def close(self) -> None:
        """Release what the store created (connections, clients, threads); never what it was given."""

    def describe(self) -> str:
        """Constructor-like description for ``repr``, without secrets."""
        return ""

    def _after_fork_in_child(self) -> None:
        """Drop what must not be shared with the parent (called by the fork registry)."""
