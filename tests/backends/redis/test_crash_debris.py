"""Redis: a writer that dies mid-save leaves nothing that lives forever, and every committed snapshot whole.

A staged save (a whole log of at least ``STAGE_MIN_BYTES``) pushes the log
to a staging list before the save script renames it into place. Two tests
kill the writer part-way: one replays the bytes a staged save sends, cut at
every command boundary and inside each command (as if the process died
there); the other SIGKILLs writer processes in the middle of large saves.
Afterwards no staging list may be left without a TTL, and the committed
snapshot must load whole.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, List

import redis

from agents_persist import AgentStateSnapshot, RedisCheckpointer
from agents_persist.backends.redis.client import WRITE
from agents_persist.backends.redis.store import STAGE_MIN_BYTES
from tests.backends.redis.proxy import HoldingProxy
from tests.backends.redis.support import _parse_commands, messages
from tests.servers import RedisServer

KILLS = 60
BIG = 2000


def keys_without_ttl(raw: Any, pattern: str) -> List[bytes]:
    return [key for key in raw.scan_iter(match=pattern, count=1000) if raw.pttl(key) == -1]


def _command_ends(stream: bytes) -> List[int]:
    """Byte offsets just after each complete command in ``stream``."""
    ends, offset = [], 0
    while offset < len(stream):
        commands, rest = _parse_commands(stream[offset:])
        if not commands:
            break
        # _parse_commands takes all complete commands: measure the first one alone.
        one = stream[offset:]
        for cut in range(1, len(one) + 1):
            parsed, _ = _parse_commands(one[:cut])
            if parsed:
                offset += cut
                ends.append(offset)
                break
    return ends


def test_a_staged_save_cut_anywhere_leaves_no_key_without_ttl(private_server: RedisServer) -> None:
    raw = redis.Redis.from_url(private_server.url)
    raw.script_load(WRITE.source)
    proxy = HoldingProxy(private_server.port)
    cp = RedisCheckpointer.from_url(f"redis://127.0.0.1:{proxy.port}/0")
    try:
        state = AgentStateSnapshot(messages=messages(STAGE_MIN_BYTES // 100))
        assert cp.save("cut", state) == 1
        stream = bytes(max(proxy.sent, key=len))
        raw.flushall()
        raw.script_load(WRITE.source)
        ends = _command_ends(stream)
        cuts = sorted({*ends, *(end - 3 for end in ends), *(end + 7 for end in ends[:-1])})
        assert len(ends) >= 3, "a staged save sends the staging list, its expiry and the script"
        for cut in cuts:
            if cut >= len(stream):
                continue
            with socket.create_connection(("127.0.0.1", private_server.port)) as sock:
                sock.sendall(stream[:cut])
            time.sleep(0.01)
            assert keys_without_ttl(raw, "*:stage:*") == [], f"cut after {cut} of {len(stream)} bytes"
            assert raw.exists(cp.store._keys("cut")[0]) == 0
            raw.flushall()
    finally:
        cp.close()
        proxy.close()
        raw.close()


#: Imports once, then forks one writer per line read, printing its PID; the test SIGKILLs it.
_SPAWNER = textwrap.dedent(
    """
    import os, sys
    import redis, redis.cluster  # what a checkpointer imports when built: not once per child
    from agents_persist import AgentMessage, AgentStateSnapshot, RedisCheckpointer
    url, n = sys.argv[1], int(sys.argv[2])
    body = "x" * 200
    for line in sys.stdin:
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break
        pid = os.fork()
        if pid:
            print(pid, flush=True)
            continue
        cp = RedisCheckpointer.from_url(url)
        round = int(line)
        while True:
            round += 1
            for thread in ("a", "b"):
                msgs = [AgentMessage.user(f"{thread} {round} {i} {body}") for i in range(n)]
                cp.save(thread, AgentStateSnapshot(messages=msgs, metadata={"round": round}), force=True)
    """
)


def test_writers_killed_mid_save_leave_no_debris_without_ttl(private_server: RedisServer, tmp_path: Path) -> None:
    raw = redis.Redis.from_url(private_server.url)
    script = tmp_path / "spawner.py"
    script.write_text(_SPAWNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rng = random.Random(11)
    spawner = subprocess.Popen(
        [sys.executable, str(script), private_server.url, str(BIG)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert spawner.stdin is not None and spawner.stdout is not None
    try:
        for kill in range(KILLS):
            spawner.stdin.write(b"%d\n" % (kill * 1000))
            spawner.stdin.flush()
            pid = int(spawner.stdout.readline())
            time.sleep(rng.uniform(0.05, 0.5))
            os.kill(pid, signal.SIGKILL)
    finally:
        spawner.stdin.close()
        spawner.wait(30)
    debris = keys_without_ttl(raw, "*:stage:*")
    cp = RedisCheckpointer.from_url(private_server.url)
    try:
        assert debris == [], f"{len(debris)} staging lists without TTL after {KILLS} kills"
        for thread in ("a", "b"):
            state = cp.load(thread)
            assert state is not None, "no save committed: the writers were killed too early to test anything"
            n = state.metadata["round"]
            assert [m.content for m in state.messages] == [f"{thread} {n} {i} {'x' * 200}" for i in range(BIG)]
    finally:
        cp.close()
        raw.close()
