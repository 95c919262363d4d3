"""DeadlineWatchdog: a blocked call on a silent peer is cut at its deadline; finished calls never are."""

from __future__ import annotations

import socket
import time

from agents_persist.runtime.watchdog import DeadlineWatchdog


def test_blocked_receive_is_cut_at_the_deadline() -> None:
    watchdog = DeadlineWatchdog(0.3)
    ours, peer = socket.socketpair()
    try:
        start = time.monotonic()
        with watchdog.guard(ours.fileno()) as guard:
            data = ours.recv(10)  # the peer never sends: without the watchdog this blocks forever
        elapsed = time.monotonic() - start
        assert data == b"" and guard.expired
        assert 0.25 <= elapsed < 2.0, elapsed
    finally:
        watchdog.stop()
        ours.close()
        peer.close()


def test_calls_that_finish_in_time_are_never_cut_later() -> None:
    watchdog = DeadlineWatchdog(0.2)
    ours, peer = socket.socketpair()
    try:
        for _ in range(3):
            with watchdog.guard(ours.fileno()) as guard:
                peer.sendall(b"x")
                assert ours.recv(1) == b"x"
            assert not guard.expired
        time.sleep(0.5)  # well past every deadline
        peer.sendall(b"still open")
        assert ours.recv(20) == b"still open"
    finally:
        watchdog.stop()
        ours.close()
        peer.close()
