"""A fork gate for SQLite: no thread is inside libsqlite3 while the process forks.

A child forked while another thread of the parent is inside libsqlite3 can
inherit one of SQLite's own mutexes locked, and block forever on its first
SQLite call. The gate counts the calls in flight; just before a fork it stops
new calls from starting and waits for those in flight to finish, and it
opens again right after the fork, in the parent and (fresh) in the child.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from ...runtime import forking

__all__ = ["ForkGate"]


class ForkGate:
    """Many SQLite calls at once, or one fork; never both."""

    def __init__(self) -> None:
        self._after_fork_in_child()
        forking.register(self)

    def _after_fork_in_child(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._forking = False
        self._local = threading.local()

    @contextmanager
    def passage(self) -> Iterator[None]:
        """Hold the gate open for one SQLite call (reentrant within a thread)."""
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._forking:
                    self._cond.wait()
                self._in_flight += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._in_flight -= 1
                    if self._in_flight == 0:
                        self._cond.notify_all()

    def _before_fork(self) -> None:
        with self._cond:
            self._forking = True
            # Calls the forking thread itself is inside cannot finish first; all others can.
            own = getattr(self._local, "depth", 0) > 0
            while self._in_flight > (1 if own else 0):
                self._cond.wait()

    def _after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()
