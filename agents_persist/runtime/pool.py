"""A small, bounded, fork-aware connection pool shared by the SQL backends.

Borrowing waits at most ``timeout`` seconds for a free slot and then raises
:class:`~agents_persist.errors.BackendUnavailableError` (never hangs, never
fails at once like psycopg2's own pool). A connection that saw an error its
backend calls fatal is closed instead of returned. In a forked child the
parent's connections are dropped without being touched: closing them would
close the parent's sockets too.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Generic, Iterator, List, Optional, TypeVar

from ..errors import BackendUnavailableError, CheckpointerClosedError
from . import forking

__all__ = ["ConnectionPool"]

C = TypeVar("C")


class ConnectionPool(Generic[C]):
    """Up to ``max_size`` connections made by ``connect``, handed out one borrower at a time.

    Args:
        connect: Opens a new connection (may raise; the backend maps errors).
        close: Closes a connection, ignoring errors.
        max_size: Most connections open at once.
        timeout: Seconds to wait for a free connection.
        is_broken: Given a connection and the exception that escaped while it
            was borrowed, whether to discard it. Default: discard on any error.
        name: Used in error messages.
    """

    def __init__(
        self,
        connect: Callable[[], C],
        close: Callable[[C], None],
        *,
        max_size: int,
        timeout: float,
        is_broken: Optional[Callable[[C, BaseException], bool]] = None,
        name: str = "database",
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._connect = connect
        self._close = close
        self._is_broken = is_broken or (lambda conn, exc: True)
        self.max_size = max_size
        self.timeout = timeout
        self.name = name
        self._closed = False
        self._after_fork_in_child()
        forking.register(self)

    def _after_fork_in_child(self) -> None:
        """Forget the parent's connections without touching them.

        Closing one would close the parent's socket (or, for SQLite, run
        close-time work on a database the parent still uses); they are kept
        referenced, never used, so that garbage collection never closes them either.
        """
        self._inherited: List[C] = [*getattr(self, "_inherited", []), *getattr(self, "_idle", [])]
        self._mutex = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.max_size)
        self._idle: List[C] = []

    @contextmanager
    def connection(self) -> Iterator[C]:
        """Borrow a connection for the block; it goes back (or is discarded) afterwards."""
        if self._closed:
            raise CheckpointerClosedError(f"the {self.name} connection pool is closed")
        slots = self._slots  # identifies this process's generation of the pool
        if not slots.acquire(timeout=self.timeout):
            raise BackendUnavailableError(
                f"no free {self.name} connection within {self.timeout:g}s (max_connections={self.max_size})"
            )
        try:
            with self._mutex:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            try:
                yield conn
            except BaseException as exc:
                if slots is self._slots and self._is_broken(conn, exc):
                    self._close(conn)
                else:
                    self._give_back(conn, slots)
                raise
            self._give_back(conn, slots)
        finally:
            if slots is self._slots:
                slots.release()

    def _give_back(self, conn: C, slots: threading.BoundedSemaphore) -> None:
        if slots is not self._slots:
            return  # borrowed before a fork: the parent's, never touched here
        if self._closed:
            self._close(conn)
            return
        with self._mutex:
            self._idle.append(conn)

    def discard_idle(self) -> None:
        """Close all idle connections (for example after the server restarted)."""
        with self._mutex:
            idle, self._idle = self._idle, []
        for conn in idle:
            self._close(conn)

    def close(self) -> None:
        """Close idle connections now and borrowed ones when they come back; idempotent."""
        self._closed = True
        self.discard_idle()
