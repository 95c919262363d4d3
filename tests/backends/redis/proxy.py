"""A TCP proxy in front of a Redis server that can hold a reply past the client's timeout.

``HoldingProxy(port)`` listens on a free loopback port and forwards every
connection to ``127.0.0.1:port``. :meth:`HoldingProxy.hold_next` arms it:
the next client data in which a command starts with the trigger (a command
name, such as ``b"EVALSHA"``; not an argument, as in ``COMMAND GETKEYS
EVALSHA``) is forwarded at once, so the server runs the command, but the
server's answer on that connection is delivered only after ``seconds``
(usually after the client gave up waiting). Every byte still reaches the
server: a held reply delays the outcome, it never loses the request.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import List, Optional

from tests.backends.redis.support import accept_forever

__all__ = ["HoldingProxy"]


class _Pair:
    """One proxied connection: the client's socket and the upstream one."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.hold_until: Optional[float] = None
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class HoldingProxy:
    """Forwards loopback connections to a Redis port; holds armed replies (see the module docs)."""

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed = 0
        self._trigger = re.compile(b"^$")
        self._seconds = 0.0
        self.held = 0  # replies held so far
        self._pairs: List[_Pair] = []
        #: Everything clients sent, per connection, in order (for replaying).
        self.sent: List[bytearray] = []
        accept_forever(self._listener, self._serve)

    def hold_next(self, trigger: bytes, seconds: float, times: int = 1) -> None:
        """Hold the reply to the next ``times`` client writes that send command ``trigger`` for ``seconds``."""
        pattern = re.compile(rb"\*\d+\r\n\$%d\r\n%s\r\n" % (len(trigger), re.escape(trigger)), re.IGNORECASE)
        with self._lock:
            self._trigger, self._seconds, self._armed = pattern, seconds, times

    def disarm(self) -> None:
        with self._lock:
            self._armed = 0

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        pair = _Pair(client, upstream)
        with self._lock:
            self._pairs.append(pair)
        threading.Thread(target=self._client_to_server, args=(pair,), daemon=True).start()
        self._server_to_client(pair)

    def _client_to_server(self, pair: _Pair) -> None:
        tail = b""
        sent = bytearray()
        with self._lock:
            self.sent.append(sent)
        try:
            while True:
                data = pair.client.recv(65536)
                if not data:
                    break
                with self._lock:
                    if self._armed and self._trigger.search(tail + data):
                        self._armed -= 1
                        self.held += 1
                        pair.hold_until = time.monotonic() + self._seconds
                tail = data[-32:]
                sent += data
                pair.upstream.sendall(data)
        except OSError:
            pass
        pair.close()

    def _server_to_client(self, pair: _Pair) -> None:
        try:
            while True:
                data = pair.upstream.recv(65536)
                if not data:
                    break
                hold_until = pair.hold_until
                if hold_until is not None:
                    pair.hold_until = None
                    pair.closed.wait(max(0.0, hold_until - time.monotonic()))
                pair.client.sendall(data)
        except OSError:
            pass
        pair.close()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.close()
