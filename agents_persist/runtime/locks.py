"""Per-thread-ID locks: one reentrant lock per conversation, none global.

Operations on one thread ID are serialized inside the process; operations on
different thread IDs never wait on each other. A lock lives only while someone
holds or waits for it (weak values), so the table does not grow with the
number of threads ever seen. After ``fork`` the child starts with a fresh
table: locks held by the parent's other threads would otherwise never be
released in the child.
"""

from __future__ import annotations

import threading
import weakref

from . import forking

__all__ = ["LockRegistry"]


class LockRegistry:
    """Hands out one ``threading.RLock`` per key, kept only while in use."""

    def __init__(self) -> None:
        self._after_fork_in_child()
        forking.register(self)

    def get(self, key: str) -> "threading.RLock":
        """Return the lock for ``key``; the caller must keep a reference while using it."""
        with self._mutex:
            lock = self._locks.get(key)
            if lock is None:
                lock = threading.RLock()
                self._locks[key] = lock
            return lock

    def hold(self, key: str) -> "threading.RLock":
        """The lock of ``key``, to hold for a ``with`` block (reentrant); the block keeps it alive."""
        return self.get(key)

    def __len__(self) -> int:
        with self._mutex:
            return len(self._locks)

    def _after_fork_in_child(self) -> None:
        self._mutex = threading.Lock()
        self._locks: "weakref.WeakValueDictionary[str, threading.RLock]" = weakref.WeakValueDictionary()
