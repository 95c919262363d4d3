"""Helpers shared by the Redis test modules."""

from __future__ import annotations

import socket
import threading
from typing import Callable, Iterator, List, Optional, Tuple

from agents_persist import AgentMessage, AgentStateSnapshot, RedisCheckpointer
from tests.spec import BackendSpec

FAST_TIMEOUT = 1.0
#: A failing call may spend one connect and one reply timeout, plus scheduling slack.
DEADLINE = 2 * FAST_TIMEOUT + 0.75


def messages(count: int, start: int = 0) -> List[AgentMessage]:
    return [AgentMessage.user(f"message {i}: " + "x" * 100) for i in range(start, start + count)]


def increment(state: AgentStateSnapshot) -> None:
    state.metadata["n"] = state.metadata.get("n", 0) + 1
    state.messages.append(AgentMessage.user(f"+1 #{state.metadata['n']}"))


def checkpointer_on(spec: BackendSpec, prefix: str) -> Iterator[RedisCheckpointer]:
    """A checkpointer on ``spec``'s server; afterwards the threads under ``prefix`` are deleted and it is closed."""
    checkpointer = RedisCheckpointer.from_url(spec.url)
    yield checkpointer
    for info in list(checkpointer.iter_threads(prefix)):
        checkpointer.delete(info.thread_id)
    checkpointer.close()


def accept_forever(listener: socket.socket, serve: Callable[[socket.socket], None]) -> None:
    """In a daemon thread, hand every connection ``listener`` accepts to ``serve`` in a thread of its own (until it is closed)."""

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


#: What a :class:`FakeServer` does with one command: the reply bytes to send, or None to hang up.
Answer = Callable[[List[bytes]], Optional[bytes]]


class FakeServer:
    """A TCP server on loopback that reads RESP commands and answers each as ``answer`` says.

    For what a real server cannot be made to do on cue: hang up right after
    receiving a command, or answer like something that is not Redis.
    """

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.received: List[List[bytes]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        accept_forever(self._listener, self._serve)

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                commands, buffer = _parse_commands(buffer)
                for command in commands:
                    self.received.append(command)
                    reply = self.answer(command)
                    if reply is None:
                        return
                    conn.sendall(reply)

    def close(self) -> None:
        self._listener.close()


def _parse_commands(buffer: bytes) -> Tuple[List[List[bytes]], bytes]:
    """The complete RESP arrays at the start of ``buffer``, and the rest (anything else counts as one command)."""
    commands: List[List[bytes]] = []
    while buffer:
        if not buffer.startswith(b"*"):
            return [*commands, [buffer]], b""
        pos = buffer.find(b"\r\n")
        if pos < 0:
            break
        count, pos = int(buffer[1:pos]), pos + 2
        args: List[bytes] = []
        for _ in range(count):
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                return commands, buffer
            size, start = int(buffer[pos + 1 : end]), end + 2
            if len(buffer) < start + size + 2:
                return commands, buffer
            args.append(buffer[start : start + size])
            pos = start + size + 2
        commands.append(args)
        buffer = buffer[pos:]
    return commands, buffer


def like_redis_until(name: bytes) -> Answer:
    """Answer the connection handshake (``HELLO 3``, then ``+OK``) until a command called ``name``, then hang up."""

    def answer(command: List[bytes]) -> Optional[bytes]:
        verb = command[0].upper()
        if verb == name:
            return None
        return b"%1\r\n+proto\r\n:3\r\n" if verb == b"HELLO" else b"+OK\r\n"

    return answer
