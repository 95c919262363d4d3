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


def test_a_cancel_that_ends_the_call_spares_the_socket() -> None:
    ours, peer = socket.socketpair()
    watchdog = DeadlineWatchdog(1.5, cancel=lambda guard: peer.sendall(b"cancelled") or True, grace=1.0)
    try:
        start = time.monotonic()
        with watchdog.guard(ours.fileno()) as guard:
            data = ours.recv(20)  # the "server" answers the cancel
        elapsed = time.monotonic() - start
        assert data == b"cancelled" and guard.expired and not guard.cut
        assert 0.45 <= elapsed < 1.4, elapsed
        while not guard.cancelled and time.monotonic() - start < 1.4:  # set once the cancel function returned
            time.sleep(0.01)
        assert guard.cancelled
        time.sleep(1.3)  # past the cut deadline: the finished call is never cut
        peer.sendall(b"open")
        assert ours.recv(10) == b"open"
    finally:
        watchdog.stop()
        ours.close()
        peer.close()


def test_a_failed_cancel_cuts_at_once_and_an_ignored_one_at_the_deadline() -> None:
    for delivered, low, high in ((False, 0.45, 1.3), (True, 1.45, 2.5)):
        ours, peer = socket.socketpair()
        watchdog = DeadlineWatchdog(1.5, cancel=lambda guard, answer=delivered: answer, grace=1.0)
        try:
            start = time.monotonic()
            with watchdog.guard(ours.fileno(), context="pid") as guard:
                data = ours.recv(10)
            elapsed = time.monotonic() - start
            assert data == b"" and guard.cut and guard.cancelled is delivered and guard.context == "pid"
            assert low <= elapsed < high, (delivered, elapsed)
        finally:
            watchdog.stop()
            ours.close()
            peer.close()
