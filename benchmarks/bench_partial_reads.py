"""Partial reads: ``tail(20)`` of a 10,000-message thread against ``load_messages`` of a 20-message thread.

Run: ``python -m benchmarks.bench_partial_reads [--repeats N] [--backends memory,sqlite,redis,postgres,dynamodb]``.
Starts its own ``redis-server``, PostgreSQL cluster and ``moto_server`` on
free loopback ports (or uses the ``$AGENTS_PERSIST_TEST_*`` URLs), and
removes what it created afterwards.

The long thread is saved whole (10,000 messages) and then grown by 50
appends of 2 messages, as a conversation is; the short one is one save of
20. Reported: medians in microseconds of ``tail(long, 20)``,
``load_messages(short)`` and, for scale, ``load(long)``; the ratio of the
first two is the point (reading 20 of 10,000 should cost about what reading
20 of 20 does).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from contextlib import ExitStack
from typing import Callable, Dict, List, Tuple

from agents_persist import AgentStateSnapshot, Checkpointer, from_url
from benchmarks.harness import interleave, make_messages, median_us

BACKENDS = ("memory", "sqlite", "redis", "postgres", "dynamodb")
LONG, SHORT, TAIL = 10_000, 20, 20
CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}


def _checkpointer(name: str, folder: str, stack: ExitStack) -> Checkpointer:
    """A checkpointer of backend ``name`` on a server of this run (closed and stopped by ``stack``)."""
    from tests.servers import dynamodb_endpoint_or_start, postgres_url_or_start, redis_url_or_start

    if name == "memory":
        cp = from_url("memory://")
    elif name == "sqlite":
        cp = from_url(f"sqlite:///{folder}/bench.db")
    elif name == "redis":
        server = redis_url_or_start(folder)
        stack.callback(server.stop)
        cp = from_url(server.url, key_prefix=f"bench-{secrets.token_hex(4)}:")
    elif name == "postgres":
        pg = postgres_url_or_start(folder)
        stack.callback(pg.stop)
        cp = from_url(pg.url)
    else:
        moto = dynamodb_endpoint_or_start(folder)
        stack.callback(moto.stop)
        table = f"agents_persist_bench_{secrets.token_hex(6)}"
        cp = from_url(f"dynamodb://us-east-1/{table}?endpoint_url={moto.endpoint_url}", create_table=True, **CREDENTIALS)
        stack.callback(lambda: cp.store.client.call("delete_table", TableName=table))  # type: ignore[attr-defined]
    stack.callback(cp.close)
    return cp


def measure(cp: Checkpointer, repeats: int) -> Tuple[float, float, float]:
    """Medians (us) of tail(20) of the long thread, load_messages of the short one, load of the long one."""
    tid = f"bench-{secrets.token_hex(4)}"
    long_tid, short_tid = tid + "-long", tid + "-short"
    cp.save(long_tid, AgentStateSnapshot(messages=make_messages(LONG - 100)))
    for i in range(LONG - 100, LONG, 2):
        cp.append(long_tid, make_messages(2, i))
    cp.save(short_tid, AgentStateSnapshot(messages=make_messages(SHORT)))
    assert len(cp.tail(long_tid, TAIL)) == TAIL and len(cp.load_messages(short_tid)) == SHORT
    fns: Dict[str, Callable[[], object]] = {
        "tail": lambda: cp.tail(long_tid, TAIL),
        "short": lambda: cp.load_messages(short_tid),
    }
    samples = interleave(fns, repeats)
    whole = interleave({"load": lambda: cp.load(long_tid)}, max(3, repeats // 8), warmup=1)
    cp.delete(long_tid)
    cp.delete(short_tid)
    return median_us(samples["tail"]), median_us(samples["short"]), median_us(whole["load"])


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=60, help="samples per measurement (default 60)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default: all five)")
    args = parser.parse_args(argv)
    rows = []
    for name in args.backends.split(","):
        with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
            cp = _checkpointer(name, folder, stack)
            rows.append((name, *measure(cp, args.repeats)))
            print(f"{name}: done", file=sys.stderr)
    print(f"| backend | tail(20) of {LONG:,} (us) | load_messages of {SHORT} (us) | ratio | load of {LONG:,} (us) |")
    print("|---|---:|---:|---:|---:|")
    for name, tail, short, whole in rows:
        print(f"| {name} | {tail:,.0f} | {short:,.0f} | {tail / short:.2f} | {whole:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
