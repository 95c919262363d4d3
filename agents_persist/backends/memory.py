"""InMemoryCheckpointer: the contract in one process's memory, for tests and prototypes."""

from __future__ import annotations

import threading
from typing import Dict, List, Optional, Tuple

from ..base import Checkpointer, PlannedWrite, PrefixMismatch, StoredThread
from ..codec import EMPTY_DIGEST
from ..models import ThreadInfo

__all__ = ["InMemoryCheckpointer"]


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
    """

    url_schemes = ("memory",)

    def __init__(self, *, ttl: Optional[float] = None, max_retries: int = 50) -> None:
        super().__init__(ttl=ttl, max_retries=max_retries)
        self._threads: Dict[str, StoredThread] = {}
        self._mutex = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: object) -> "InMemoryCheckpointer":
        """Build from ``memory://`` (the URL carries no options)."""
        return cls(**options)  # type: ignore[arg-type]

    def _live(self, thread_id: str, now: Optional[float] = None) -> Optional[StoredThread]:
        stored = self._threads.get(thread_id)
        if stored is None or self._is_expired(stored.expires_at, now):
            return None
        return stored

    def _read(self, thread_id: str) -> Optional[StoredThread]:
        with self._mutex:
            return self._live(thread_id)

    def _read_version(self, thread_id: str) -> int:
        with self._mutex:
            stored = self._live(thread_id)
            return 0 if stored is None else stored.version

    def _write(self, thread_id: str, write: PlannedWrite) -> int:
        with self._mutex:
            current = self._live(thread_id, write.updated_at)
            version = 0 if current is None else current.version
            if write.expected_version is not None and write.expected_version != version:
                raise self._conflict(thread_id, write.expected_version, version)
            if write.append_from is None:
                log = list(write.messages)
            else:
                count, digest = (0, EMPTY_DIGEST) if current is None else (current.message_count, current.digest)
                if (count, digest) != (write.append_from, write.base_digest):
                    raise PrefixMismatch(thread_id)
                previous = current.messages if current is not None else []
                assert isinstance(previous, list)  # this backend always stores one blob per message
                log = previous + write.messages
            self._threads[thread_id] = StoredThread(
                version=version + 1,
                head=write.head,
                messages=log,
                message_count=write.message_count,
                digest=write.digest,
                updated_at=write.updated_at,
                expires_at=write.expires_at,
            )
            return version + 1

    def _delete(self, thread_id: str) -> bool:
        with self._mutex:
            live = self._live(thread_id) is not None
            self._threads.pop(thread_id, None)
            return live

    def _list_threads(
        self, prefix: Optional[str], limit: int, after: Optional[Tuple[float, str]], now: float
    ) -> List[ThreadInfo]:
        with self._mutex:
            rows = [
                (stored.updated_at, thread_id, stored)
                for thread_id, stored in self._threads.items()
                if not self._is_expired(stored.expires_at, now) and (prefix is None or thread_id.startswith(prefix))
            ]
        if after is not None:
            rows = [row for row in rows if (row[0], row[1]) < after]
        rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
        return [self._thread_info(tid, s.version, s.updated_at, s.message_count, s.expires_at) for _, tid, s in rows[:limit]]

    def _purge_expired(self, now: float) -> int:
        with self._mutex:
            expired = [tid for tid, s in self._threads.items() if self._is_expired(s.expires_at, now)]
            for thread_id in expired:
                del self._threads[thread_id]
            return len(expired)

    def _after_fork(self) -> None:
        self._mutex = threading.Lock()

    def _close(self) -> None:
        with self._mutex:
            self._threads.clear()
