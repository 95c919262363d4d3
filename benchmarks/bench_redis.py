"""Redis: the library against raw redis-py doing the same I/O, in one run.

Run: ``python -m benchmarks.bench_redis [--repeats N] [--turns N]`` (starts a
throwaway ``redis-server``; set ``AGENTS_PERSIST_TEST_REDIS_URL`` to use
another server, or ``BENCH_REDIS_CLUSTER=1`` to start and measure a 3-master
Redis Cluster instead).

The raw save sends what a library save of two new messages must send, without
the version check: ``RPUSH`` of the two encoded messages and a ``SET`` of the
encoded head, pipelined in one round trip (no ``EVALSHA``). The raw load
fetches the same bytes as the library (``HGETALL`` of a head hash and
``LRANGE`` of a 1,000-message list, pipelined) and decodes the messages with
:func:`agents_persist.codec.decode_messages`. Both sides use one client
configuration: ``decode_responses=False``, same pool, same server.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any, Callable, List

import redis
import redis.cluster

from agents_persist import RedisCheckpointer
from agents_persist.codec import decode_messages, encode_head, encode_messages
from benchmarks.harness import (
    SAVE_LABEL,
    Report,
    add_growing_conversation,
    make_messages,
    measure_appends,
    measure_load,
    parse_args,
    snapshot_of,
)
from tests.servers import ENV_REDIS_URL, RedisCluster, RedisServer

RAW_PREFIX = "bench-raw:"


def raw_append(client: Any, size: int, counter: List[int]) -> Callable[[], float]:
    """Store ``size`` messages raw under a new key pair, then time pushing 2 more plus the head.

    The untimed set-up builds and encodes its ``size`` messages on every step,
    as the library side does, so both sides start the timed part equally warm.
    """
    two = encode_messages(make_messages(2, size))
    head = encode_head(snapshot_of([]))

    def step() -> float:
        counter[0] += 1
        tag = f"{RAW_PREFIX}{{{size}-{counter[0]}}}"
        log_key, head_key = tag + ":log", tag + ":head"
        client.rpush(log_key, *encode_messages(make_messages(size)))
        client.set(head_key, head)
        start = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        pipe.rpush(log_key, *two)
        pipe.set(head_key, head)
        pipe.execute()
        elapsed = time.perf_counter() - start
        client.delete(log_key, head_key)
        return elapsed

    return step


def second_append(cp: RedisCheckpointer, size: int, counter: List[int]) -> Callable[[], float]:
    """Like ``append_samples``, but time the second append after the bulk write (steady state)."""

    def step() -> float:
        counter[0] += 1
        tid = f"bench-second-{size}-{counter[0]}"
        state = snapshot_of(make_messages(size))
        cp.save(tid, state)
        state.messages.extend(make_messages(2, size))
        cp.save(tid, state)
        state.messages.extend(make_messages(2, size + 2))
        start = time.perf_counter()
        cp.save(tid, state)
        elapsed = time.perf_counter() - start
        cp.delete(tid)
        return elapsed

    return step


RAW_SAVE = "raw RPUSH 2 + SET head onto 1000 (pipelined)"


def run(url: str, client: Any, args: Any, title: str) -> Report:
    """Measure the library next to ``client`` (raw redis-py on the same server)."""
    cp = RedisCheckpointer.from_url(url, key_prefix="bench:")
    report = Report(title)
    tag = f"{RAW_PREFIX}{{load}}"
    try:
        raw_steps = {
            RAW_SAVE: raw_append(client, 1000, [0]),
            "library save +2 msgs onto 1000, 2nd append": second_append(cp, 1000, [0]),
        }
        measure_appends(report, cp, raw_steps, args.repeats)
        report.ratio("library / raw save at 1000", SAVE_LABEL.format(size=1000), RAW_SAVE, 2.0)

        blobs = encode_messages(make_messages(1000))
        client.delete(tag + ":head", tag + ":log")
        client.hset(
            tag + ":head", mapping={"v": 1, "n": 1000, "d": b"\0" * 16, "h": encode_head(snapshot_of([])), "u": time.time()}
        )
        client.rpush(tag + ":log", *blobs)

        def raw_load() -> None:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(tag + ":head")
            pipe.lrange(tag + ":log", 0, -1)
            _, stored = pipe.execute()
            decode_messages(stored)

        measure_load(report, cp, "raw HGETALL + LRANGE 1000 + decode", raw_load, args.repeats)

        add_growing_conversation(report, cp, "bench-growing", args.turns)

    finally:
        for tid in ("bench-load", "bench-growing"):
            cp.delete(tid)
        client.delete(tag + ":head", tag + ":log")
        cp.close()
    return report


def main() -> int:
    args = parse_args(__doc__ or "")
    cluster_mode = os.environ.get("BENCH_REDIS_CLUSTER") == "1"
    with tempfile.TemporaryDirectory() as folder:
        server: Any = None
        try:
            if cluster_mode:
                server = RedisCluster.start(folder)
                url = server.url
                host, port = server.startup_nodes[0]
                client: Any = redis.cluster.RedisCluster(host=host, port=port)
                title = f"Redis Cluster (3 masters, loopback), {args.repeats} samples each"
            else:
                url = os.environ.get(ENV_REDIS_URL) or ""
                if not url:
                    server = RedisServer.start(folder)
                    url = server.url
                client = redis.Redis.from_url(url)
                title = f"Redis {client.info('server')['redis_version']} (standalone, loopback), {args.repeats} samples each"
            report = run(url, client, args, title)
            client.close()
        finally:
            if server is not None:
                server.stop()
    print(report.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
