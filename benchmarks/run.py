"""Run every Performance v2 workload on every backend, print one table of ratios, write the plot and the tables.

Run (from the repository root)::

    python -m benchmarks.run --out docs/_static/benchmarks        # the full run, about 5 minutes
    python -m benchmarks.run --soak --out docs/_static/benchmarks # and the 100,000-thread memory soak (+5 minutes)
    python -m benchmarks.run --quick --backends memory,sqlite --out /tmp/b   # seconds; what the smoke test runs
    python -m benchmarks.run --render docs/_static/benchmarks       # redo the PNG and tables from results.json

Servers: a throwaway ``redis-server``, PostgreSQL 15 cluster (``fsync=off``)
and ``moto_server`` are started the way the tests start them
(:mod:`tests.servers`) and stopped at the end; the tests' environment
variables (``AGENTS_PERSIST_TEST_REDIS_URL``, ``AGENTS_PERSIST_TEST_POSTGRES_URL``,
``AGENTS_PERSIST_TEST_DYNAMODB_ENDPOINT``) name existing servers instead,
where only keys, a schema and tables of this run are created and removed.

Writes into ``--out``: ``results.json`` (every number), ``results.md`` and
``results.rst`` (the table, for the docs), and ``save-latency.png`` (save
latency against history length per backend: the library and its floors).
The exit status is 0 whether goals are met or not: nothing gates on a time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import agents_persist
from agents_persist import InMemoryCheckpointer, SqliteCheckpointer, from_url
from benchmarks import soak
from benchmarks.floors import RawDynamoDb, RawMemory, RawPostgres, RawRedis, RawSqlite
from benchmarks.goals import Results
from benchmarks.workloads import WORKLOADS, Settings, Target

__all__ = ["main", "BACKENDS", "render", "plot"]

BACKENDS = ("memory", "sqlite", "redis", "postgres", "dynamodb")
SQLITE_SYNCHRONOUS = "NORMAL"
FILES = ("results.json", "results.md", "results.rst", "save-latency.png")


# ---------------------------------------------------------------------- backends


# Each opens one backend's checkpointer and raw client (and server) and leaves their closing to ``stack``
# (last opened, first closed).


def memory_target(prefix: str, folder: str, stack: contextlib.ExitStack) -> Target:
    cp = stack.enter_context(InMemoryCheckpointer())
    return Target("memory", cp, RawMemory(), prefix)


def sqlite_target(prefix: str, folder: str, stack: contextlib.ExitStack) -> Target:
    path = os.path.join(folder, "bench.db")
    # synchronous=NORMAL on both sides: with FULL every commit waits for an fsync (milliseconds
    # here), which hides the CPU per operation this benchmark is about.
    cp = stack.enter_context(SqliteCheckpointer(path, synchronous=SQLITE_SYNCHRONOUS))
    raw = RawSqlite(path, SQLITE_SYNCHRONOUS)
    stack.callback(raw.close)
    return Target("sqlite", cp, raw, prefix)


def redis_target(prefix: str, folder: str, stack: contextlib.ExitStack) -> Target:
    import redis

    from agents_persist import RedisCheckpointer
    from tests.servers import redis_url_or_start

    server = redis_url_or_start(folder)
    stack.callback(server.stop)
    cp = stack.enter_context(RedisCheckpointer(server.url, key_prefix=f"bench:{prefix}"))
    raw = RawRedis(redis.Redis.from_url(server.url), prefix=f"bench-raw:{prefix}")
    stack.callback(raw.close)

    def scrub() -> None:  # whatever a failed step left behind, and only ours
        for pattern in (f"bench:{prefix}*", f"bench-raw:{prefix}*", f"bench-raw:{{{prefix}*"):
            for key in raw.client.scan_iter(match=pattern, count=1000):
                raw.client.delete(key)

    stack.callback(scrub)
    return Target("redis", cp, raw, prefix)


def postgres_target(prefix: str, folder: str, stack: contextlib.ExitStack) -> Target:
    import psycopg2
    from psycopg2 import sql

    from agents_persist import PostgresCheckpointer
    from tests.servers import postgres_url_or_start

    server = postgres_url_or_start()
    stack.callback(server.cleanup)
    stack.callback(server.stop)
    schema = f"ap_bench_{uuid.uuid4().hex[:10]}"

    def drop_schema() -> None:
        conn = psycopg2.connect(server.url)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.close()

    stack.callback(drop_schema)
    cp = stack.enter_context(PostgresCheckpointer(server.url, schema=schema))
    cp.setup()
    raw = RawPostgres(server.url, schema)
    stack.callback(raw.close)
    return Target("postgres", cp, raw, prefix)


def dynamodb_target(prefix: str, folder: str, stack: contextlib.ExitStack) -> Target:
    import boto3

    from tests.servers import dynamodb_endpoint_or_start

    server = dynamodb_endpoint_or_start(folder)
    stack.callback(server.stop)
    region, credentials = "us-east-1", {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
    table = f"agents_persist_bench_{secrets.token_hex(6)}"
    client = boto3.client("dynamodb", endpoint_url=server.endpoint_url, region_name=region, **credentials)
    url = f"dynamodb://{region}/{table}?endpoint_url={server.endpoint_url}"
    cp = stack.enter_context(from_url(url, create_table=True, **credentials))
    stack.callback(client.delete_table, TableName=table)  # after the checkpointer is closed
    raw = RawDynamoDb(client, table + "_raw")
    stack.callback(raw.close)
    return Target("dynamodb", cp, raw, prefix)


TARGETS: Dict[str, Callable[[str, str, contextlib.ExitStack], Target]] = {
    "memory": memory_target,
    "sqlite": sqlite_target,
    "redis": redis_target,
    "postgres": postgres_target,
    "dynamodb": dynamodb_target,
}


# ---------------------------------------------------------------------- outputs


def plot(results: Results, path: Path) -> None:
    """Save latency (µs, log scale) against history length: one panel per backend, library solid, floors dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [b for b in BACKENDS if any(s.backend == b for s in results.series)]
    columns = min(3, max(1, len(backends)))
    rows = max(1, -(-len(backends) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False)
    for index, backend in enumerate(backends):
        axis = axes[index // columns][index % columns]
        for series in results.series:
            if series.backend != backend or not series.points:
                continue
            xs, ys = zip(*series.points)
            style = "-" if series.kind == "library" else "--"
            axis.plot(xs, ys, style, marker="." if len(xs) < 40 else None, label=series.label)
        axis.set_title(backend)
        axis.set_yscale("log")
        axis.set_xlabel("messages in the thread")
        axis.set_ylabel("save latency, median µs")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize="small")
    for index in range(len(backends), rows * columns):
        axes[index // columns][index % columns].set_visible(False)
    figure.suptitle("Save latency of a growing conversation (turns of 2-3 messages)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def render(results: Results, out: Path) -> List[Path]:
    """Write every file of a run into ``out`` from ``results``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(results.to_json(), encoding="utf-8")
    (out / "results.md").write_text(results.render_markdown(), encoding="utf-8")
    (out / "results.rst").write_text(results.render_rst(), encoding="utf-8")
    plot(results, out / "save-latency.png")
    return [out / name for name in FILES]


# ---------------------------------------------------------------------- the run


def run(backends: Sequence[str], settings: Settings, log: Callable[[str], None]) -> Results:
    """Measure every workload on ``backends``; servers live for their backend's part of the run only."""
    started = time.time()
    results = Results(
        title=(
            f"agents_persist {agents_persist.__version__}, Python {platform.python_version()}, "
            f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d', time.gmtime(started))}: medians, library / floor"
        ),
        settings={"backends": list(backends), **settings.__dict__},
    )
    prefix = f"b{uuid.uuid4().hex[:8]}-"
    with tempfile.TemporaryDirectory(prefix="agents-persist-bench-") as folder:
        for backend in backends:
            begun = time.perf_counter()
            with contextlib.ExitStack() as stack:
                target = TARGETS[backend](prefix, folder, stack)
                for name, workload, where in WORKLOADS:
                    if backend in where:
                        log(f"{backend}: {name}")
                        workload(target, settings, results)
            log(f"{backend}: {time.perf_counter() - begun:.0f} s")
    results.rows.sort(key=lambda row: (row.workload[:3], BACKENDS.index(row.backend)))
    results.notes.append(f"Run took {time.time() - started:.0f} s; settings: {_describe(settings)}.")
    return results


def _describe(settings: Settings) -> str:
    return (
        f"{settings.repeats} samples per latency ({settings.repeats_for('dynamodb')} on DynamoDB), "
        f"{settings.rounds} many-threads rounds, {settings.conversations} growing conversations of {settings.turns} turns"
    )


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--out", type=Path, default=Path("docs/_static/benchmarks"), help="where the files go")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, of {', '.join(BACKENDS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes and few samples (a smoke run, not a measurement)")
    parser.add_argument("--repeats", type=int, help="samples per latency measurement")
    parser.add_argument(
        "--soak", type=int, nargs="?", const=100_000, default=0, metavar="THREADS",
        help="also run the memory soak (benchmarks.soak) on memory and SQLite, 100,000 threads unless given",
    )
    parser.add_argument("--render", type=Path, metavar="DIR", help="only rewrite DIR's files from its results.json")
    args = parser.parse_args(argv)
    args.backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backends: {', '.join(unknown)}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        results = Results.from_json((args.render / "results.json").read_text(encoding="utf-8"))
        out = args.render
    else:
        settings = Settings.quick() if args.quick else Settings()
        if args.repeats:
            settings.repeats = args.repeats
        log = lambda line: print(f"[bench] {line}", file=sys.stderr, flush=True)  # noqa: E731
        results = run(args.backends, settings, log)
        if args.soak:
            for report in soak.run_soaks(soak.DEFAULT_BACKENDS, args.soak, log=log):
                results.notes.append(
                    f"Memory soak, {report.backend}: {report.threads:,} threads of {report.messages} messages saved, "
                    f"loaded and deleted through one checkpointer in {report.seconds:.0f} s: RSS {report.start_mb:.0f} MB "
                    f"at the start, {report.peak_mb:.0f} MB at the peak, {report.end_mb:.0f} MB at the end "
                    f"({report.growth_mb:+.1f} MB; bound {soak.LIMIT_MB:.0f} MB)."
                )
        out = args.out
    paths = render(results, out)
    print(results.render_text())
    print("\nwrote " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
