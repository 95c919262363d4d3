"""A bounded LRU of (message count, digest) per thread: what this process last saw stored.

It lets a freshly built snapshot whose messages start with the stored ones
be saved as an append. It is only a hint: every store re-checks the prefix
atomically, and a wrong hint costs one extra round trip, never data.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional, Tuple

from .runtime import forking

__all__ = ["PrefixCache", "DEFAULT_PREFIX_CACHE_SIZE"]

DEFAULT_PREFIX_CACHE_SIZE = 4096


class PrefixCache:
    """Thread-safe, bounded to ``size`` threads (least recently used go first)."""

    def __init__(self, size: int = DEFAULT_PREFIX_CACHE_SIZE) -> None:
        self.size = size
        self._entries: "OrderedDict[str, Tuple[int, bytes]]" = OrderedDict()
        self._mutex = threading.Lock()
        forking.register(self)

    def get(self, thread_id: str) -> Optional[Tuple[int, bytes]]:
        """The remembered (count, digest) of ``thread_id``, if any."""
        with self._mutex:
            return self._entries.get(thread_id)

    def remember(self, thread_id: str, count: int, digest: bytes) -> None:
        """Record what is stored for ``thread_id`` now."""
        with self._mutex:
            entries = self._entries
            entries[thread_id] = (count, digest)
            entries.move_to_end(thread_id)
            if len(entries) > self.size:
                entries.popitem(last=False)

    def forget(self, thread_id: str) -> None:
        """Drop what is remembered for ``thread_id``."""
        with self._mutex:
            self._entries.pop(thread_id, None)

    def __len__(self) -> int:
        with self._mutex:
            return len(self._entries)

    def _after_fork_in_child(self) -> None:
        # Another parent thread may have held the mutex at fork time; it would never be released here.
        self._mutex = threading.Lock()
