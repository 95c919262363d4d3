"""A bounded LRU of what this process last saw stored per thread: count, token and (small) encoded log.

It lets a freshly built snapshot whose messages start with the stored ones
be saved as an append (its messages are compared with the remembered bytes),
and a stateless ``append`` skip reading the head. It is only a hint: every
store re-checks the prefix atomically, and a wrong hint costs one extra
round trip, never data. Memory is bounded by a count of threads and a
budget of bytes; a log larger than a quarter of the budget is remembered
without its bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional

from .planning import KnownPrefix
from .runtime import forking

__all__ = ["PrefixCache", "DEFAULT_PREFIX_CACHE_SIZE", "DEFAULT_PREFIX_CACHE_BYTES"]

DEFAULT_PREFIX_CACHE_SIZE = 4096
DEFAULT_PREFIX_CACHE_BYTES = 32 * 1024 * 1024


class PrefixCache:
    """Thread-safe, bounded to ``size`` threads and ``max_bytes`` of encoded logs (least recently used go first)."""

    def __init__(self, size: int = DEFAULT_PREFIX_CACHE_SIZE, max_bytes: int = DEFAULT_PREFIX_CACHE_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._entries: "OrderedDict[str, KnownPrefix]" = OrderedDict()
        self._bytes = 0
        self._mutex = threading.Lock()
        forking.register(self)

    def get(self, thread_id: str) -> Optional[KnownPrefix]:
        """What is remembered for ``thread_id``, if anything (``encoded`` is empty when not kept)."""
        with self._mutex:
            return self._entries.get(thread_id)

    def remember(self, thread_id: str, count: int, digest: bytes, encoded: Optional[bytes]) -> None:
        """Record what is stored for ``thread_id`` now; ``encoded`` None means its bytes are unknown here."""
        if encoded is not None and len(encoded) > self.max_bytes // 4:
            encoded = None
        entry = KnownPrefix(count, digest, encoded if encoded is not None else b"")
        with self._mutex:
            entries = self._entries
            old = entries.pop(thread_id, None)
            if old is not None:
                self._bytes -= len(old.encoded)
            entries[thread_id] = entry
            self._bytes += len(entry.encoded)
            while len(entries) > self.size or self._bytes > self.max_bytes:
                _, dropped = entries.popitem(last=False)
                self._bytes -= len(dropped.encoded)

    def forget(self, thread_id: str) -> None:
        """Drop what is remembered for ``thread_id``."""
        with self._mutex:
            old = self._entries.pop(thread_id, None)
            if old is not None:
                self._bytes -= len(old.encoded)

    def __len__(self) -> int:
        with self._mutex:
            return len(self._entries)

    @property
    def bytes_held(self) -> int:
        """Encoded bytes currently remembered."""
        with self._mutex:
            return self._bytes

    def _after_fork_in_child(self) -> None:
        # Another parent thread may have held the mutex at fork time; it would never be released here.
        self._mutex = threading.Lock()
