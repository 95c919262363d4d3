"""InMemoryCheckpointer: the contract in one process's memory, for tests and prototypes."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

from .. import options, planning
from ..checkpointer import Checkpointer
from ..codec import EMPTY_DIGEST
from ..models import ThreadInfo
from ..paging import Position, thread_info
from ..planning import Applied, PlannedWrite, StoredHead, StoredThread, Written, enforce_precondition, is_expired, record_applied
from ..registry import Backend
from ..store import Store

__all__ = ["InMemoryCheckpointer", "InMemoryStore"]

BACKEND = Backend(
    name="memory",
    target="agents_persist.backends.memory:InMemoryCheckpointer",
    schemes=("memory",),
    summary="One process's memory: tests and prototypes; gone with the process.",
)
OPTIONS = options.COMMON_OPTIONS


class InMemoryStore(Store):
    """Encoded threads in a dict, each record replaced whole under a short mutex."""

    name = "memory"

    def __init__(self) -> None:
        self._threads: Dict[str, StoredThread] = {}
        self._mutex = threading.Lock()

    def _live(self, thread_id: str, now: Optional[float] = None) -> Optional[StoredThread]:
        stored = self._threads.get(thread_id)
        if stored is None or is_expired(stored.expires_at, now):
            return None
        return stored

    def read(self, thread_id: str) -> Optional[StoredThread]:
        with self._mutex:
            return self._live(thread_id)

    def read_head(self, thread_id: str) -> Optional[StoredHead]:
        with self._mutex:
            s = self._live(thread_id)
        if s is None:
            return None
        return StoredHead(s.version, s.message_count, s.digest, s.updated_at, s.expires_at, s.generation, s.applied)

    def read_messages(self, thread_id: str, start: Optional[int], stop: Optional[int]) -> Optional[planning.StoredSlice]:
        with self._mutex:
            s = self._live(thread_id)
        if s is None:
            return None
        assert isinstance(s.messages, list)
        first, end = planning.resolve_slice(start, stop, s.message_count)
        messages = s.messages[first:end]
        return planning.StoredSlice(s.version, s.message_count, first, end, first, messages, end - first, s.expires_at)

    def write(self, thread_id: str, write: PlannedWrite) -> Written:
        with self._mutex:
            current = self._live(thread_id, write.updated_at)
            if current is None:
                duplicate = enforce_precondition(thread_id, write, 0, 0, EMPTY_DIGEST)
                version, generation, head, previous = 0, write.new_generation, write.head, []
                applied: Applied = ()
            else:
                duplicate = enforce_precondition(
                    thread_id, write, current.version, current.message_count, current.digest, current.generation, current.applied
                )
                assert isinstance(current.messages, list)  # this store always keeps one blob per message
                version, generation, previous, applied = current.version, current.generation, current.messages, current.applied
                head = current.head if write.keep_head else write.head
            if duplicate is not None:
                return Written(duplicate, generation, duplicate=True)
            log = list(write.messages) if write.append_from is None else previous + write.messages
            self._threads[thread_id] = StoredThread(
                version=version + 1,
                head=head,
                messages=log,
                message_count=write.message_count,
                digest=write.digest,
                updated_at=write.updated_at,
                expires_at=write.expires_at,
                generation=generation,
                applied=record_applied(applied, write.idempotency_key, version + 1),
            )
            return Written(version + 1, generation)

    def delete(self, thread_id: str) -> bool:
        with self._mutex:
            live = self._live(thread_id) is not None
            self._threads.pop(thread_id, None)
            return live

    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        with self._mutex:
            rows = [
                (stored.updated_at, thread_id, stored)
                for thread_id, stored in self._threads.items()
                if not is_expired(stored.expires_at, now) and (prefix is None or thread_id.startswith(prefix))
            ]
        if after is not None:
            rows = [row for row in rows if (row[0], row[1]) < after]
        rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
        return [thread_info(tid, s.version, s.updated_at, s.message_count, s.expires_at) for _, tid, s in rows[:limit]]

    def scan(self, prefix: Optional[str], after: Optional[str], limit: int, now: float) -> List[ThreadInfo]:
        with self._mutex:
            ids = sorted(
                tid
                for tid, stored in self._threads.items()
                if not is_expired(stored.expires_at, now)
                and (prefix is None or tid.startswith(prefix))
                and (after is None or tid > after)
            )[:limit]
            rows = [(tid, self._threads[tid]) for tid in ids]
        return [thread_info(tid, s.version, s.updated_at, s.message_count, s.expires_at) for tid, s in rows]

    def purge(self, now: float) -> int:
        with self._mutex:
            expired = [tid for tid, s in self._threads.items() if is_expired(s.expires_at, now)]
            for thread_id in expired:
                del self._threads[thread_id]
            return len(expired)

    def close(self) -> None:
        with self._mutex:
            self._threads.clear()

    def _after_fork_in_child(self) -> None:
        self._mutex = threading.Lock()


class InMemoryCheckpointer(Checkpointer):
    """Keeps encoded snapshots in a dict: fast, thread-safe, gone with the process.

    Snapshots are stored as encoded bytes, exactly as the networked backends
    store them, so a caller's later changes to a saved snapshot never leak into
    the store and a load always returns fresh objects. Each thread's record is
    replaced as a whole under a short mutex, so readers never see a mix of two
    versions.

    Args:
        ttl: Seconds a thread lives after its last save; None keeps threads.
        max_retries: Retries of ``update`` after a conflict.
        max_snapshot_bytes: Largest encoded snapshot a save may write; None: the backend's default.
    """

    store: InMemoryStore

    def __init__(
        self, *, ttl: Optional[float] = None, max_retries: int = 50, max_snapshot_bytes: Optional[int] = None
    ) -> None:
        super().__init__(InMemoryStore(), ttl=ttl, max_retries=max_retries, max_snapshot_bytes=max_snapshot_bytes)

    @classmethod
    def from_url(cls, url: str, **given: Any) -> "InMemoryCheckpointer":
        """Build from ``memory://``; query options: ``ttl``, ``max_retries``."""
        values, _ = options.resolve(OPTIONS, urlsplit(url).query, given, backend="memory")
        return cls(**values)
