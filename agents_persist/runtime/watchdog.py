"""A deadline watchdog for drivers that block forever on a silent server.

psycopg2 has no client-side socket timeout: ``statement_timeout`` is enforced
by the server, TCP keepalives only probe idle sockets, and a frozen server
process still acknowledges TCP. A call on such a connection would block until
the server wakes up. The watchdog shuts the connection's socket down when a
call overruns its deadline, so the blocked call fails at once and the caller
can raise :class:`~agents_persist.errors.BackendUnavailableError` and discard
the connection.

Cutting the socket leaves the server's side of the call running: a save
waiting on a lock may still commit after the caller was told it failed. A
watchdog given a ``cancel`` function therefore first asks the server to
cancel the call, ``grace`` seconds before the deadline, and cuts the socket
only if that request fails or the call is still running at the deadline.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Tuple

from . import forking

__all__ = ["DeadlineWatchdog", "Guard"]


class Guard:
    """One guarded call and what the watchdog did to it.

    ``expired``: the call overran (it was asked to cancel, or cut);
    ``cancelled``: the cancel request was delivered; ``cut``: the socket was
    shut down (set before the shutdown, so the failing call sees it).
    ``context`` is the caller's, for the cancel function.
    """

    __slots__ = ("deadline", "fileno", "context", "expired", "cancelled", "cut")

    def __init__(self, deadline: float, fileno: int, context: Any = None) -> None:
        self.deadline = deadline
        self.fileno = fileno
        self.context = context
        self.expired = False
        self.cancelled = False
        self.cut = False


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
    started: an ordered dict is the queue (one for each stage), a guard
    leaving is an O(1) delete, and the one daemon thread never needs waking
    when a guard arrives. The cut happens under the lock a guard takes to
    leave, so a call that already finished is never cut afterwards.

    Args:
        seconds: Time from a guard's start to the cut.
        name: Name of the watchdog's thread.
        cancel: Asks the server to cancel a guard's call; returns whether the
            request was delivered (it may block: a thread of its own runs it).
        grace: With ``cancel``: it runs this many seconds before the cut.
    """

    def __init__(
        self,
        seconds: float,
        name: str = "watchdog",
        *,
        cancel: Optional[Callable[[Guard], bool]] = None,
        grace: float = 0.0,
    ) -> None:
        if not seconds > 0:
            raise ValueError("seconds must be positive")
        if not 0 <= grace < seconds:
            raise ValueError("grace must be at least 0 and less than seconds")
        self.seconds = seconds
        self.name = name
        self._cancel = cancel
        self._grace = grace if cancel is not None else 0.0
        self._stopped = False
        self._after_fork_in_child()
        forking.register(self)

    def _after_fork_in_child(self) -> None:
        # A forked child has no watchdog thread, and must not share the parent's lock.
        self._lock = threading.Lock()
        self._active: "OrderedDict[int, Guard]" = OrderedDict()
        self._cancelling: "OrderedDict[int, Guard]" = OrderedDict()
        self._tokens = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._wake = threading.Event()

    @contextmanager
    def guard(self, fileno: int, context: Any = None) -> Iterator[Guard]:
        """Guard the block's use of the socket ``fileno``; ``context`` is for the cancel function."""
        guard = Guard(time.monotonic() + self.seconds, fileno, context)
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
                self._cancelling.pop(token, None)

    def stop(self, timeout: float = 1.0) -> None:
        """End the thread now (waiting up to ``timeout`` for it); guards taken later are not watched."""
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _cut(self, guard: Guard) -> None:
        """Shut the guard's socket down; the caller holds the lock and has removed the guard."""
        guard.expired = guard.cut = True
        _shutdown(guard.fileno)

    def _try_cancel(self, token: int, guard: Guard) -> None:
        """Run the cancel function; if it failed, cut the call now (unless it finished meanwhile)."""
        assert self._cancel is not None
        try:
            delivered = bool(self._cancel(guard))
        except Exception:  # noqa: BLE001 - whatever went wrong, cutting the socket still ends the call
            delivered = False
        with self._lock:
            guard.cancelled = delivered
            if not delivered and self._cancelling.pop(token, None) is not None:
                self._cut(guard)

    def _expire(self, now: float) -> Tuple[List[Tuple[int, Guard]], float]:
        """Move or cut the guards due at ``now`` (lock held); return those to cancel and the next wake-up."""
        to_cancel: List[Tuple[int, Guard]] = []
        while self._active:
            token, guard = next(iter(self._active.items()))
            if guard.deadline - self._grace > now:
                break
            del self._active[token]
            if self._cancel is None:
                self._cut(guard)
            else:
                guard.expired = True
                self._cancelling[token] = guard
                to_cancel.append((token, guard))
        while self._cancelling:
            token, guard = next(iter(self._cancelling.items()))
            if guard.deadline > now:
                break
            del self._cancelling[token]
            self._cut(guard)
        wake = [g.deadline - self._grace for g in itertools.islice(self._active.values(), 1)]
        wake += [g.deadline for g in itertools.islice(self._cancelling.values(), 1)]
        return to_cancel, min(wake) - now if wake else self.seconds - self._grace

    def _run(self) -> None:
        while not self._stopped:
            with self._lock:
                to_cancel, delay = self._expire(time.monotonic())
            for token, guard in to_cancel:
                threading.Thread(target=self._try_cancel, args=(token, guard), name=f"{self.name}-cancel", daemon=True).start()
            self._wake.wait(max(delay, 0.005))  # set by stop(): a closed checkpointer leaves no thread behind
