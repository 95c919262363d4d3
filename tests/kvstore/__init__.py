"""A throwaway, test-only backend: a flat key-value dict behind the ``Store`` protocol.

It exists to show (and keep showing) that a backend is one package plus one
test fixture: ``tests/fixtures/kvstore.py`` registers it and the whole
contract suite runs on it. Its layout mimics a key-value server: one key per
thread head and one key per message, all changed under one mutex (the
"atomic step" a real server would give).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import msgspec

from agents_persist import options
from agents_persist.checkpointer import Checkpointer
from agents_persist.codec import EMPTY_DIGEST
from agents_persist.models import ThreadInfo
from agents_persist.paging import Position, thread_info
from agents_persist.planning import (
    Applied,
    PlannedWrite,
    StoredHead,
    StoredThread,
    Written,
    enforce_precondition,
    is_expired,
    record_applied,
)
from agents_persist.registry import Backend
from agents_persist.store import Store

BACKEND = Backend(name="kvstore", target="tests.kvstore:KvCheckpointer", schemes=("kv",), summary="Test-only key-value store.")

#: version, count, digest, head, updated_at, expires_at, generation, applied keys
Head = Tuple[int, int, bytes, bytes, float, Optional[float], int, Applied]


class KvStore(Store):
    """Heads under ``("h", thread_id)``, messages under ``("m", thread_id, seq)``."""

    name = "kv"

    def __init__(self) -> None:
        self._data: Dict[Tuple[Any, ...], bytes] = {}
        self._mutex = threading.Lock()

    def _head(self, thread_id: str, now: Optional[float] = None) -> Optional[Head]:
        raw = self._data.get(("h", thread_id))
        if raw is None:
            return None
        v, n, d, h, u, e, g, applied = msgspec.msgpack.decode(raw)
        head: Head = (v, n, d, h, u, e, g, tuple((key, version) for key, version in applied))
        return None if is_expired(head[5], now) else head

    def _drop(self, thread_id: str) -> None:
        raw = self._data.pop(("h", thread_id), None)
        if raw is not None:
            for seq in range(msgspec.msgpack.decode(raw)[1]):
                self._data.pop(("m", thread_id, seq), None)

    def read(self, thread_id: str) -> Optional[StoredThread]:
        with self._mutex:
            head = self._head(thread_id)
            if head is None:
                return None
            messages = [self._data[("m", thread_id, seq)] for seq in range(head[1])]
        return StoredThread(head[0], head[3], messages, head[1], head[2], head[4], head[5], head[6], head[7])

    def read_head(self, thread_id: str) -> Optional[StoredHead]:
        with self._mutex:
            h = self._head(thread_id)
        return None if h is None else StoredHead(h[0], h[1], h[2], h[4], h[5], h[6], h[7])

    def write(self, thread_id: str, write: PlannedWrite) -> Written:
        with self._mutex:
            head = self._head(thread_id, write.updated_at)
            if head is None:
                duplicate = enforce_precondition(thread_id, write, 0, 0, EMPTY_DIGEST)
                version, generation, blob, applied = 0, write.new_generation, write.head, ()
            else:
                duplicate = enforce_precondition(thread_id, write, head[0], head[1], head[2], head[6], head[7])
                version, generation, applied = head[0], head[6], head[7]
                blob = head[3] if write.keep_head else write.head
            if duplicate is not None:
                return Written(duplicate, generation, duplicate=True)
            if write.append_from is None or head is None:
                self._drop(thread_id)
            for i, message in enumerate(write.messages):
                self._data[("m", thread_id, write.first_seq + i)] = message
            applied = record_applied(applied, write.idempotency_key, version + 1)
            record = [
                version + 1,
                write.message_count,
                write.digest,
                blob,
                write.updated_at,
                write.expires_at,
                generation,
                applied,
            ]
            self._data[("h", thread_id)] = msgspec.msgpack.encode(record)
            return Written(version + 1, generation)

    def delete(self, thread_id: str) -> bool:
        with self._mutex:
            live = self._head(thread_id) is not None
            self._drop(thread_id)
            return live

    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        with self._mutex:
            heads = [(key[1], self._head(key[1], now)) for key in self._data if key[0] == "h"]
        rows = sorted(
            ((h[4], tid, h) for tid, h in heads if h and (prefix is None or tid.startswith(prefix))),
            key=lambda row: (row[0], row[1]),
            reverse=True,
        )
        rows = [row for row in rows if after is None or (row[0], row[1]) < after]
        return [thread_info(tid, h[0], h[4], h[1], h[5]) for _, tid, h in rows[:limit]]

    def scan(self, prefix: Optional[str], after: Optional[str], limit: int, now: float) -> List[ThreadInfo]:
        return [
            info
            for info in sorted(self.list(prefix, 1 << 30, None, now), key=lambda i: i.thread_id)
            if after is None or info.thread_id > after
        ][:limit]

    def purge(self, now: float) -> int:
        with self._mutex:
            expired = [key[1] for key in list(self._data) if key[0] == "h" and self._head(key[1], now) is None]
            for thread_id in expired:
                self._drop(thread_id)
            return len(expired)

    def _after_fork_in_child(self) -> None:
        self._mutex = threading.Lock()


class KvCheckpointer(Checkpointer):
    """The public class of the test-only key-value backend (``kv://``)."""

    def __init__(self, *, ttl: Optional[float] = None, max_retries: int = 50, max_snapshot_bytes: Optional[int] = None) -> None:
        super().__init__(KvStore(), ttl=ttl, max_retries=max_retries, max_snapshot_bytes=max_snapshot_bytes)

    @classmethod
    def from_url(cls, url: str, **given: Any) -> "KvCheckpointer":
        """Build from ``kv://``; query options: ``ttl``, ``max_retries``."""
        values, _ = options.resolve(options.COMMON_OPTIONS, urlsplit(url).query, given, backend="kv")
        return cls(**values)
