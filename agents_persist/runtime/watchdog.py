"""A deadline watchdog for drivers that block forever on a silent server.

psycopg2 has no client-side socket timeout: ``statement_timeout`` is enforced
by the server, TCP keepalives only probe idle sockets, and a frozen server
process still acknowledges TCP. A call on such a connection would block until
the server wakes up. The watchdog shuts the connection's socket down when a
call overruns its deadline, so the blocked call fails at once and the caller
can raise :class:`~agents_persist.errors.BackendUnavailableError` and discard
the connection.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator, Optional

from . import forking

__all__ = ["DeadlineWatchdog", "Guard"]


class Guard:
    """One guarded call; ``expired`` is set once the watchdog cut its socket."""

    __slots__ = ("deadline", "fileno", "expired")

    def __init__(self, deadline: float, fileno: int) -> None:
        self.deadline = deadline
        self.fileno = fileno
        self.expired = False


def _shutdown(fileno: int) -> None:
    try:
        sock = socket.socket(fileno=os.dup(fileno))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


class DeadlineWatchdog:
    """Cuts the socket of any guarded call still running ``seconds`` after it started.

    Every guard has the same duration, so guards expire in the order they
    started: an ordered dict is the queue, a guard leaving is an O(1) delete,
    and the one daemon thread never needs waking when a guard arrives (it
    sleeps at most ``seconds``). The cut happens under the lock a guard takes
    to leave, so a call that already finished is never cut afterwards.
    """

    def __init__(self, seconds: float, name: str = "watchdog") -> None:
        if not seconds > 0:
            raise ValueError("seconds must be positive")
        self.seconds = seconds
        self.name = name
        self._stopped = False
        self._after_fork_in_child()
        forking.register(self)

    def _after_fork_in_child(self) -> None:
        # A forked child has no watchdog thread, and must not share the parent's lock.
        self._lock = threading.Lock()
        self._active: "OrderedDict[int, Guard]" = OrderedDict()
        self._tokens = itertools.count()
        self._thread: Optional[threading.Thread] = None

    @contextmanager
    def guard(self, fileno: int) -> Iterator[Guard]:
        """Guard the block's use of the socket ``fileno``."""
        guard = Guard(time.monotonic() + self.seconds, fileno)
        token = next(self._tokens)
        with self._lock:
            self._active[token] = guard
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        try:
            yield guard
        finally:
            with self._lock:
                self._active.pop(token, None)

    def stop(self) -> None:
        """Let the thread end (within ``seconds``); guards taken later are not watched."""
        self._stopped = True

    def _run(self) -> None:
        while not self._stopped:
            with self._lock:
                now = time.monotonic()
                while self._active:
                    token, guard = next(iter(self._active.items()))
                    if guard.deadline > now:
                        break
                    del self._active[token]
                    guard.expired = True
                    _shutdown(guard.fileno)
                delay = next(iter(self._active.values())).deadline - now if self._active else self.seconds
            time.sleep(max(delay, 0.005))
