"""The fault proxy itself, against a loopback echo server: each fault kind does what it says."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator, List

import pytest

from tests.faults.proxy import BLACKHOLE, CUT, DELAY, KINDS, RESET, Fault, FaultProxy, FaultSchedule


class EchoServer:
    """Echoes every byte back and keeps what each connection sent."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: List[bytearray] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            got = bytearray()
            with self.lock:
                self.received.append(got)
            threading.Thread(target=self._echo, args=(conn, got), daemon=True).start()

    def _echo(self, conn: socket.socket, got: bytearray) -> None:
        with conn:
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    with self.lock:
                        got += data
                    conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", echo.port), FaultSchedule(chunk_rate=0.0, connect_rate=0.0)) as proxy:
        yield proxy


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(proxy.address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket, want: int) -> bytes:
    """Read until ``want`` bytes or end of stream."""
    out = bytearray()
    while len(out) < want:
        data = sock.recv(65536)
        if not data:
            break
        out += data
    return bytes(out)


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()



def test_forwards_both_ways_unchanged(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * 1000
    with connect(proxy) as sock:
        sock.sendall(payload)
        assert read_all(sock, len(payload)) == payload
    assert sum(proxy.counts.values()) == 0
    assert wait_for(lambda: proxy.forwarded["up"] == proxy.forwarded["down"] == len(payload))


def test_cut_forwards_part_of_the_chunk_then_closes(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.schedule.force(Fault(CUT, after_bytes=3), "up")
    with connect(proxy) as sock:
        sock.sendall(b"hello world")
        assert read_all(sock, 11) == b""  # closed before the echo of what got through could come back
    assert wait_for(lambda: bytes(echo.received[0]) == b"hel")
    assert proxy.counts[CUT] == 1
    assert wait_for(lambda: proxy.live_connections() == 0)


def test_cut_never_forwards_a_whole_chunk(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.schedule.force(Fault(CUT, after_bytes=100), "down")
    with connect(proxy) as sock:
        sock.sendall(b"abcdef")
        assert read_all(sock, 6) == b"abcde"


def test_reset_sends_an_rst(proxy: FaultProxy) -> None:
    proxy.schedule.force(Fault(RESET), "down")
    with connect(proxy) as sock:
        sock.sendall(b"ping")
        with pytest.raises(ConnectionResetError):
            read_all(sock, 4)
    assert proxy.counts[RESET] == 1


def test_reset_at_accept(proxy: FaultProxy) -> None:
    proxy.schedule.force(Fault(RESET), "connect")
    with pytest.raises(ConnectionResetError):  # while connecting, sending or reading, as the race goes
        with connect(proxy) as sock:
            sock.sendall(b"ping")
            time.sleep(0.05)
            sock.sendall(b"ping")
            read_all(sock, 8)
    assert proxy.counts[RESET] == 1


def test_delay_holds_the_chunk_and_still_delivers_it_after_the_client_gave_up(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.schedule.force(Fault(DELAY, seconds=0.5), "up")
    sock = connect(proxy, timeout=0.1)
    started = time.monotonic()
    sock.sendall(b"late")
    with pytest.raises(socket.timeout):
        sock.recv(10)
    sock.close()  # the client gives up before the request reached the server
    assert proxy.pending_delays() == 1
    assert proxy.wait_settled(timeout=5)
    assert time.monotonic() - started >= 0.45
    assert wait_for(lambda: bytes(echo.received[0]) == b"late")
    assert proxy.counts[DELAY] == 1


def test_delay_of_a_reply_within_the_timeout(proxy: FaultProxy) -> None:
    proxy.schedule.force(Fault(DELAY, seconds=0.3), "down")
    with connect(proxy) as sock:
        started = time.monotonic()
        sock.sendall(b"x" * 10)
        assert read_all(sock, 10) == b"x" * 10
        assert time.monotonic() - started >= 0.25


def test_delay_at_accept_tracked_until_upstream_connects(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.schedule.force(Fault(DELAY, seconds=0.3), "connect")
    with connect(proxy) as sock:
        sock.sendall(b"queued")
        assert wait_for(lambda: proxy.pending_delays() == 1, 1.0)
        assert read_all(sock, 6) == b"queued"
    assert proxy.pending_delays() == 0


def test_blackhole_swallows_both_ways_and_stays_open(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.schedule.force(Fault(BLACKHOLE, after_bytes=2), "up")
    with connect(proxy, timeout=0.3) as sock:
        sock.sendall(b"abcdef")
        time.sleep(0.05)
        sock.sendall(b"more")
        with pytest.raises(socket.timeout):
            sock.recv(10)
        assert proxy.live_connections() == 1
    assert wait_for(lambda: bytes(echo.received[0]) == b"ab")
    assert wait_for(lambda: proxy.live_connections() == 0)
    assert proxy.counts[BLACKHOLE] == 1


def test_blackhole_at_accept_never_connects_upstream(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.schedule.force(Fault(BLACKHOLE), "connect")
    with connect(proxy, timeout=0.2) as sock:
        sock.sendall(b"anyone?")
        with pytest.raises(socket.timeout):
            sock.recv(10)
    assert echo.received == []


def test_forced_fault_waits_for_a_matching_chunk(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.schedule.force(Fault(CUT, after_bytes=2), "up", match=b"SELECT")
    with connect(proxy) as sock:
        sock.sendall(b"PING")
        assert read_all(sock, 4) == b"PING"
        sock.sendall(b"SELECT 1")
        assert read_all(sock, 8) in (b"", b"SE")
    assert wait_for(lambda: bytes(echo.received[0]) == b"PINGSE")


def test_cut_all_closes_live_connections(proxy: FaultProxy) -> None:
    socks = [connect(proxy) for _ in range(3)]
    for sock in socks:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
    assert proxy.cut_all() == 3
    for sock in socks:
        assert read_all(sock, 1) == b""
        sock.close()


def test_same_seed_same_decisions() -> None:
    def decisions(seed: int) -> List[object]:
        schedule = FaultSchedule(seed, chunk_rate=0.3, connect_rate=0.3)
        return [schedule.on_chunk("up", bytes(100)) if i % 3 else schedule.on_connect() for i in range(300)]

    first = decisions(7)
    assert first == decisions(7) != decisions(8)
    kinds = {fault.kind for fault in first if isinstance(fault, Fault)}
    assert kinds == set(KINDS)


def test_quiet_blocks_random_faults_and_counts_stay(echo: EchoServer) -> None:
    with FaultProxy(("127.0.0.1", echo.port), FaultSchedule(1, chunk_rate=1.0, weights={CUT: 1}, directions=("up",))) as proxy:
        with proxy.quiet():
            with connect(proxy) as sock:
                sock.sendall(b"safe")
                assert read_all(sock, 4) == b"safe"
        assert proxy.counts[CUT] == 0
        with connect(proxy) as sock:
            sock.sendall(b"doomed")
            assert len(read_all(sock, 6)) < 6
        assert proxy.counts[CUT] == 1
        assert proxy.summary() == "cut=1 delay=0 blackhole=0 reset=0"


def test_unknown_kind_refused() -> None:
    with pytest.raises(ValueError):
        Fault("drop")
    with pytest.raises(ValueError):
        FaultSchedule(weights={"drop": 1.0})
