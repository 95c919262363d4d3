"""A TCP proxy that injects network faults between a client and a real server, for fault tests.

``FaultProxy((host, port))`` listens on a free loopback port and forwards
every connection it accepts to the target, one thread per direction. Faults
strike at random points, chosen by a seeded :class:`FaultSchedule`, when a
connection is accepted or when a chunk of bytes (one ``recv``) passes in
either direction (``"up"``: client to server, ``"down"``: server to client):

``cut``
    Forward the first ``after_bytes`` bytes of the chunk (always fewer than
    all of it, so a message in flight is torn), then close both sides with a
    FIN. At accept: close the client at once.
``reset``
    The same, but both sides get an RST (``SO_LINGER`` 0) instead of a FIN.
``delay``
    Hold the chunk, and so everything behind it in that direction, for
    ``seconds`` (some delays outlast the client's timeout), then forward it:
    a request held this way still reaches the server after the client gave
    up, as packets queued in a real network do. At accept: connect upstream
    only after ``seconds``.
``blackhole``
    Forward the first ``after_bytes`` bytes of the chunk, then swallow
    everything in both directions: the connection stays open and silent
    until the client closes it. At accept: never connect upstream at all.

Faults strike only while the schedule is enabled (:meth:`FaultProxy.quiet`,
:meth:`FaultSchedule.pause`); :meth:`FaultSchedule.force` queues particular
faults for targeted tests. ``FaultProxy.counts`` counts injected faults by
kind and ``FaultProxy.events`` records each one. One seed always gives the
same sequence of decisions; which request a decision meets depends on the
timing of the client's threads.

Delayed chunks still in flight are tracked: :meth:`FaultProxy.wait_settled`
returns once every chunk the proxy received before a moment has been
delivered or dropped, so a test can tell what a failed call did in the end.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import socket
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, Iterator, List, Mapping, Optional, Set, Tuple

__all__ = ["KINDS", "CUT", "RESET", "DELAY", "BLACKHOLE", "Fault", "FaultEvent", "FaultSchedule", "FaultProxy"]

CUT = "cut"
RESET = "reset"
DELAY = "delay"
BLACKHOLE = "blackhole"
#: Every fault kind, in report order.
KINDS = (CUT, DELAY, BLACKHOLE, RESET)

UP = "up"
DOWN = "down"
CONNECT = "connect"

_CHUNK = 65536


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, the bytes of the chunk forwarded first (cut, reset, blackhole), the hold (delay).

    ``after_bytes`` is capped below the chunk's length when the fault strikes.
    """

    kind: str
    after_bytes: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {KINDS}")


@dataclass(frozen=True)
class FaultEvent:
    """A fault that struck: when (monotonic), on which connection, where (connect, up, down), what."""

    at: float
    connection: int
    where: str
    fault: Fault
    chunk_bytes: int = 0


class FaultSchedule:
    """Seeded random decisions: whether a new connection or a passing chunk meets a fault, and which.

    Args:
        seed: Seed of the private random generator (reproducible decisions).
        chunk_rate: Probability that a chunk meets a fault.
        connect_rate: Probability that an accepted connection meets a fault.
        weights: Relative frequency of each kind (missing kinds never strike).
        delay: (shortest, longest) hold of a delay, in seconds, uniform.
        directions: Directions whose chunks may meet faults (``"up"``, ``"down"``).
        enabled: Start with faults striking (see :meth:`pause`).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        chunk_rate: float = 0.03,
        connect_rate: float = 0.03,
        weights: Optional[Mapping[str, float]] = None,
        delay: Tuple[float, float] = (0.05, 2.0),
        directions: Tuple[str, ...] = (UP, DOWN),
        enabled: bool = True,
    ) -> None:
        chosen = dict(weights) if weights is not None else {kind: 1.0 for kind in KINDS}
        unknown = set(chosen) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.seed = seed
        self.chunk_rate = chunk_rate
        self.connect_rate = connect_rate
        self.kinds = [kind for kind in KINDS if chosen.get(kind, 0) > 0]
        self.weights = [chosen[kind] for kind in self.kinds]
        self.delay = delay
        self.directions = frozenset(directions)
        self.enabled = enabled
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._forced: Dict[str, Deque[Tuple[Fault, bytes, Optional[int]]]] = {w: collections.deque() for w in (CONNECT, UP, DOWN)}

    def pause(self) -> None:
        """Stop injecting faults (queued forced faults stay queued)."""
        self.enabled = False

    def resume(self) -> None:
        self.enabled = True

    def force(self, fault: Fault, where: str = UP, *, match: bytes = b"", offset: Optional[int] = None) -> None:
        """Give ``fault`` to the next connection (``where="connect"``) or chunk in direction ``where``, enabled or not.

        With ``match``, to the next chunk containing those bytes (a command
        name, a query, a header), earlier chunks passing untouched; with
        ``offset`` too, the fault's ``after_bytes`` counts from where the
        match starts (``len(match)``: right after it). Forced faults strike in
        the order they were queued.
        """
        with self._lock:
            self._forced[where].append((fault, match, offset))

    def on_connect(self) -> Optional[Fault]:
        """The fault a newly accepted connection meets, if any."""
        return self._decide(CONNECT, b"", self.connect_rate)

    def on_chunk(self, direction: str, data: bytes) -> Optional[Fault]:
        """The fault the chunk ``data`` passing in ``direction`` meets, if any."""
        return self._decide(direction, data, self.chunk_rate if direction in self.directions else 0.0)

    def _decide(self, where: str, data: bytes, rate: float) -> Optional[Fault]:
        size = len(data)
        with self._lock:
            forced = self._forced[where]
            if forced and forced[0][1] in data:
                fault, match, offset = forced.popleft()
                if offset is None:
                    return fault
                return dataclasses.replace(fault, after_bytes=data.index(match) + offset)
            if not self.enabled or not self.kinds or self._random.random() >= rate:
                return None
            kind = self._random.choices(self.kinds, self.weights)[0]
            after = self._random.randrange(size) if size > 1 else 0
            seconds = self._random.uniform(*self.delay) if kind == DELAY else 0.0
            return Fault(kind, after_bytes=after, seconds=seconds)


def _close(sock: Optional[socket.socket], *, reset: bool = False) -> None:
    """Close ``sock`` with a FIN (or an RST), waking any thread blocked reading it."""
    if sock is None:
        return
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD)  # wakes readers; sends nothing, so close() sends the RST
        else:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Connection:
    """One proxied connection: the client's socket, the upstream one (None when black-holed at accept)."""

    def __init__(self, number: int, client: socket.socket, forget: Callable[[int], None]) -> None:
        self.number = number
        self.client = client
        self.upstream: Optional[socket.socket] = None
        self.blackholed = False
        self.aborted = threading.Event()  # cut, reset or proxy closed: pending delays are dropped
        self.lock = threading.Lock()
        self.done: Set[str] = set()
        self.closed = False
        self._forget = forget

    def abort(self, *, reset: bool = False) -> None:
        """Close both sides now (FIN, or RST with ``reset``)."""
        self.aborted.set()
        with self.lock:
            if self.closed:
                return
            self.closed = True
        _close(self.client, reset=reset)
        _close(self.upstream, reset=reset)
        self._forget(self.number)

    def finished(self, direction: str) -> None:
        """One direction ended; close both sockets once both have.

        A black-holed connection stays silent towards the client: it closes
        when the client does, never because the server did.
        """
        with self.lock:
            self.done.add(direction)
            if self.blackholed and direction == DOWN:
                last = False
            else:
                last = self.done >= {UP, DOWN} or self.blackholed
        if last:
            self.abort()
        elif self.blackholed:
            _close(self.upstream)

    @staticmethod
    def half_close(sock: Optional[socket.socket]) -> None:
        """Pass an end of stream on: no more bytes will be written to ``sock``."""
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@dataclass
class _Pending:
    """Arrival times of the delayed chunks not yet delivered or dropped."""

    times: Dict[int, float] = field(default_factory=dict)
    next_token: int = 0


class FaultProxy:
    """Forwards loopback connections to ``target``, injecting the faults of ``schedule`` (see the module docs).

    Args:
        target: ``(host, port)`` of the real server.
        schedule: Where faults strike; default: a schedule that never injects one.
        host: Interface to listen on (a free port is chosen).
        connect_timeout: Seconds to connect upstream (a failure closes the client).
    """

    def __init__(
        self,
        target: Tuple[str, int],
        schedule: Optional[FaultSchedule] = None,
        *,
        host: str = "127.0.0.1",
        connect_timeout: float = 5.0,
    ) -> None:
        self.target = target
        self.schedule = schedule if schedule is not None else FaultSchedule(chunk_rate=0.0, connect_rate=0.0)
        self.connect_timeout = connect_timeout
        self._listener = socket.create_server((host, 0))
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._pending = _Pending()
        self._connections: Dict[int, _Connection] = {}
        self._threads: List[threading.Thread] = []
        self._closed = False
        #: Faults injected so far, by kind.
        self.counts: collections.Counter[str] = collections.Counter()
        #: Every fault injected, in order.
        self.events: List[FaultEvent] = []
        #: Connections accepted so far.
        self.accepted = 0
        #: Bytes forwarded per direction.
        self.forwarded: collections.Counter[str] = collections.Counter()
        self._spawn(self._accept_loop, "fault-proxy-accept")

    # ------------------------------------------------------------------ public

    @property
    def address(self) -> Tuple[str, int]:
        return (self.host, self.port)

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """No new faults inside the block (connections already black-holed or held stay so)."""
        was = self.schedule.enabled
        self.schedule.pause()
        try:
            yield
        finally:
            self.schedule.enabled = was

    def live_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def pending_delays(self) -> int:
        with self._lock:
            return len(self._pending.times)

    def wait_settled(self, before: Optional[float] = None, timeout: float = 30.0) -> bool:
        """Wait until no chunk received before ``before`` (monotonic; default now) is still held; True if so."""
        cutoff = time.monotonic() if before is None else before
        deadline = time.monotonic() + timeout
        with self._settled:
            while any(arrived <= cutoff for arrived in self._pending.times.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._settled.wait(left)
        return True

    def cut_all(self, *, reset: bool = False) -> int:
        """Close every live connection now (not counted as faults); return how many."""
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.abort(reset=reset)
        return len(connections)

    def summary(self) -> str:
        """``cut=3 delay=5 blackhole=2 reset=1`` (every kind, zeros included)."""
        return " ".join(f"{kind}={self.counts[kind]}" for kind in KINDS)

    def close(self) -> None:
        """Stop listening, close every connection and wait briefly for the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _close(self._listener)
        self.cut_all()
        for thread in list(self._threads):
            thread.join(timeout=2.0)

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.host}:{self.port} -> {self.target[0]}:{self.target[1]}, {self.summary()})"

    # ------------------------------------------------------------------ internals

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _record(self, connection: _Connection, where: str, fault: Fault, size: int = 0) -> None:
        with self._lock:
            self.counts[fault.kind] += 1
            self.events.append(FaultEvent(time.monotonic(), connection.number, where, fault, size))

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    _close(client)
                    return
                self.accepted += 1
                connection = _Connection(self.accepted, client, self._forget)
                self._connections[connection.number] = connection
            self._spawn(self._open, f"fault-proxy-{connection.number}", connection)

    def _forget(self, number: int) -> None:
        with self._lock:
            self._connections.pop(number, None)

    def _open(self, connection: _Connection) -> None:
        fault = self.schedule.on_connect()
        if fault is not None:
            self._record(connection, CONNECT, fault)
            if fault.kind in (CUT, RESET):
                connection.abort(reset=fault.kind == RESET)
                return
            if fault.kind == BLACKHOLE:
                connection.blackholed = True
                self._swallow(connection)
                return
            with self._held():  # the client's first bytes wait in the kernel meanwhile
                if connection.aborted.wait(fault.seconds):
                    return
        try:
            upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
            upstream.settimeout(None)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            connection.abort()
            return
        connection.upstream = upstream
        if connection.aborted.is_set():
            _close(upstream)  # aborted while connecting
            return
        connection.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._spawn(self._pump, f"fault-proxy-{connection.number}-down", connection, DOWN)
        self._pump(connection, UP)

    def _swallow(self, connection: _Connection) -> None:
        """Read and drop the client's bytes until it closes (a connection black-holed at accept)."""
        try:
            while connection.client.recv(_CHUNK):
                pass
        except OSError:
            pass
        connection.abort()

    def _pump(self, connection: _Connection, direction: str) -> None:
        source, sink = (connection.client, connection.upstream) if direction == UP else (connection.upstream, connection.client)
        assert source is not None and sink is not None
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                if connection.blackholed:
                    continue
                if connection.aborted.is_set() or not self._forward(connection, direction, data, sink):
                    return
        except OSError:
            pass
        finally:
            if not connection.blackholed:
                connection.half_close(sink)
            connection.finished(direction)

    def _forward(self, connection: _Connection, direction: str, data: bytes, sink: socket.socket) -> bool:
        """Pass one chunk on through whatever fault it meets; False once this direction is over."""
        fault = self.schedule.on_chunk(direction, data)
        if fault is not None:
            self._record(connection, direction, fault, len(data))
            if fault.kind == DELAY:
                with self._held():
                    return not connection.aborted.wait(fault.seconds) and self._send(sink, data, direction)
            # Stop the other direction first, so that nothing more passes once the fault struck.
            if fault.kind == BLACKHOLE:
                connection.blackholed = True
            else:
                connection.aborted.set()
            head = data[: min(fault.after_bytes, len(data) - 1)]
            if head:
                self._send(sink, head, direction)
            if fault.kind == BLACKHOLE:
                return True
            connection.abort(reset=fault.kind == RESET)
            return False
        return self._send(sink, data, direction)

    @contextmanager
    def _held(self) -> Iterator[None]:
        """Track a delayed chunk as pending from its arrival until it was delivered or dropped."""
        with self._lock:
            token = self._pending.next_token
            self._pending.next_token += 1
            self._pending.times[token] = time.monotonic()
        try:
            yield
        finally:
            with self._settled:
                del self._pending.times[token]
                self._settled.notify_all()

    def _send(self, sink: socket.socket, data: bytes, direction: str) -> bool:
        try:
            sink.sendall(data)
        except OSError:
            return False
        with self._lock:
            self.forwarded[direction] += len(data)
        return True
