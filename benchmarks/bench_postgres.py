"""PostgreSQL: the library against raw psycopg2 doing the same I/O, in one run.

Run: ``python -m benchmarks.bench_postgres [--repeats N] [--turns N]``. It
starts a throwaway PostgreSQL 15 cluster with ``fsync=off`` for the latency
measurements (``BENCH_POSTGRES_DURABLE=1``: durable settings there too), and a
second one with the production defaults ``fsync=on``, ``synchronous_commit=on``
and ``full_page_writes=on`` for the parallelism measurement, where commits
wait for the disk. Set ``AGENTS_PERSIST_TEST_POSTGRES_URL`` to measure another
server instead (used for everything; its settings are printed). Everything
lives in a schema of its own, dropped at the end.

Raw sides, all on one psycopg2 connection in the same database, with bytes
already encoded by :mod:`agents_persist.codec`:

* save: what a plain psycopg2 user writes for "append two messages with a
  version check": a transaction (psycopg2's implicit ``BEGIN``) that reads the
  head ``FOR UPDATE``, inserts the two message rows with ``execute_values``,
  updates the head and commits.
* load, same bytes: ``SELECT`` of the head and of the 1,000 message rows
  (``bytea``, one per message, in order), decoded with ``decode_messages``.
* load, one ``bytea``: the same 1,000 encoded messages stored as one
  msgpack-framed ``bytea`` value (what the log would be as a single blob),
  fetched with a ``SELECT``, split and decoded the same way. For reference,
  the strongest raw variant: the encoded messages concatenated in one
  ``bytea`` and decoded with one ``decode_message_stream`` call, exactly as the
  library decodes; and the whole snapshot as one msgpack ``bytea`` decoded in
  a single msgspec call.

Loads of the 1,000 normal messages and of the 1,000 large ones are interleaved
in two separate groups, so that the 2.4 MB loads do not evict caches right
before whichever 140 KB load happens to follow them.

Parallelism: 8 threads each appending to their own thread ID, against the same
saves done one after another on one thread, on the durable server (the
headline: commits overlap their waits for the disk) and on the ``fsync=off``
one (CPU-bound: bounded by the free cores).
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import msgspec
import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from agents_persist import AgentMessage, AgentStateSnapshot, PostgresCheckpointer
from agents_persist.codec import decode_message_stream, decode_messages, encode_head, encode_messages
from benchmarks.harness import (
    Report,
    add_growing_conversation,
    interleave,
    make_messages,
    measure_appends,
    parse_args,
    snapshot_of,
)
from tests.servers import ENV_POSTGRES_URL, ExternalServer, PostgresServer, postgres_url_or_start

PARALLEL_THREADS = 8
LARGE_MESSAGE_WORDS = 300  # about 2 KB of text per message in the large-message load
PARALLEL_SAVES = 200  # appends per thread, after a first save of 10 messages; then a delete
DURABLE_OPTIONS = ["-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on"]
RAW_SCHEMA = (
    """CREATE TABLE {raw_threads} (thread_id text COLLATE "C" PRIMARY KEY, version bigint NOT NULL,
        message_count integer NOT NULL, head bytea NOT NULL, updated_at double precision NOT NULL)""",
    """CREATE TABLE {raw_messages} (thread_id text COLLATE "C", seq integer, data bytea NOT NULL,
        PRIMARY KEY (thread_id, seq))""",
    "CREATE TABLE {raw_blobs} (id text PRIMARY KEY, data bytea NOT NULL)",
)
_blob_list = msgspec.msgpack.Decoder(List[bytes])
_snapshot_decoder = msgspec.msgpack.Decoder(AgentStateSnapshot)


class RawClient:
    """Plain psycopg2 on one connection, doing what the library's saves and loads do."""

    def __init__(self, url: str, schema: str) -> None:
        self.conn = psycopg2.connect(url)
        names = {name: sql.Identifier(schema, name) for name in ("raw_threads", "raw_messages", "raw_blobs")}
        self.q: Dict[str, str] = {}

        def render(template: str) -> str:
            return str(sql.SQL(template).format(**names).as_string(self.conn))

        with self.conn.cursor() as cursor:
            for statement in RAW_SCHEMA:
                cursor.execute(render(statement))
        self.conn.commit()
        self.q = {
            "head": render("SELECT version, message_count FROM {raw_threads} WHERE thread_id = %s FOR UPDATE"),
            "insert": render("INSERT INTO {raw_messages} (thread_id, seq, data) VALUES %s"),
            "create": render("INSERT INTO {raw_threads} VALUES (%s, 1, %s, %s, %s)"),
            "update": render(
                "UPDATE {raw_threads} SET version = version + 1, message_count = %s, head = %s, updated_at = %s"
                " WHERE thread_id = %s"
            ),
            "load_head": render("SELECT version, message_count, head FROM {raw_threads} WHERE thread_id = %s"),
            "load_log": render("SELECT data FROM {raw_messages} WHERE thread_id = %s ORDER BY seq"),
            "blob_put": render("INSERT INTO {raw_blobs} VALUES (%s, %s)"),
            "blob_get": render("SELECT data FROM {raw_blobs} WHERE id = %s"),
            "drop_log": render("DELETE FROM {raw_messages} WHERE thread_id = %s"),
            "drop_head": render("DELETE FROM {raw_threads} WHERE thread_id = %s"),
        }

    def create(self, tid: str, blobs: List[bytes], head: bytes) -> None:
        with self.conn.cursor() as cursor:
            execute_values(cursor, self.q["insert"], [(tid, i, b) for i, b in enumerate(blobs)], page_size=1000)
            cursor.execute(self.q["create"], (tid, len(blobs), head, time.time()))
        self.conn.commit()

    def append(self, tid: str, blobs: List[bytes], head: bytes) -> None:
        """One transaction: lock and read the head, insert the rows, update the head."""
        with self.conn.cursor() as cursor:
            cursor.execute(self.q["head"], (tid,))
            _, count = cursor.fetchone()
            execute_values(cursor, self.q["insert"], [(tid, count + i, b) for i, b in enumerate(blobs)])
            cursor.execute(self.q["update"], (count + len(blobs), head, time.time(), tid))
        self.conn.commit()

    def drop(self, tid: str) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute(self.q["drop_log"], (tid,))
            cursor.execute(self.q["drop_head"], (tid,))
        self.conn.commit()

    def load_rows(self, tid: str) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute(self.q["load_head"], (tid,))
            cursor.fetchone()
            cursor.execute(self.q["load_log"], (tid,))
            rows = cursor.fetchall()
        self.conn.commit()
        decode_messages(bytes(row[0]) for row in rows)

    def put_blob(self, key: str, data: bytes) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute(self.q["blob_put"], (key, data))
        self.conn.commit()

    def get_blob(self, key: str) -> Any:
        with self.conn.cursor() as cursor:
            cursor.execute(self.q["blob_get"], (key,))
            (data,) = cursor.fetchone()
        self.conn.commit()
        return data


def raw_append_step(raw: RawClient, size: int, counter: List[int]) -> Callable[[], float]:
    """Store ``size`` messages raw under a new thread, then time the two-message append transaction."""
    blobs = encode_messages(make_messages(size))
    two = encode_messages(make_messages(2, size))
    head = encode_head(snapshot_of([]))

    def step() -> float:
        counter[0] += 1
        tid = f"raw-{size}-{counter[0]}"
        raw.create(tid, blobs, head)
        start = time.perf_counter()
        raw.append(tid, two, head)
        elapsed = time.perf_counter() - start
        raw.drop(tid)
        return elapsed

    return step


def make_large_messages(count: int) -> List[AgentMessage]:
    """Tool results of about 2 KB each (search results, documents), varied so they compress like prose."""
    words = ["forecast", "sunny", "humidity", "pressure", "wind", "north", "cloud", "rain", "café", "Zürich", "42.5"]
    return [
        AgentMessage.tool(
            {"doc": i, "text": " ".join(words[(i * 7 + j * j) % len(words)] + str(j % 13) for j in range(LARGE_MESSAGE_WORDS))},
            tool_call_id=f"call_{i}",
        )
        for i in range(count)
    ]


def build_by_appends(cp: PostgresCheckpointer, tid: str, total: int) -> int:
    """Grow a thread to ``total`` messages in turns of 2-3 messages, one save per turn; return the saves."""
    state = AgentStateSnapshot()
    saves = 0
    while len(state.messages) < total:
        state.messages.extend(make_messages(min(2 + saves % 2, total - len(state.messages)), len(state.messages)))
        cp.save(tid, state)
        saves += 1
    return saves


def parallel_speedup(cp: PostgresCheckpointer, rounds: int = 5) -> Dict[str, float]:
    """Wall time of 8 threads x N appends to 8 thread IDs, in parallel and one after another."""

    def work(tid: str) -> None:
        state = snapshot_of(make_messages(10))
        cp.save(tid, state)
        for i in range(PARALLEL_SAVES):
            state.messages.extend(make_messages(2, 10 + 2 * i))
            cp.save(tid, state)
        cp.delete(tid)

    sequential: List[float] = []
    parallel: List[float] = []
    for round_ in range(rounds):
        tids = [f"bench-par-{round_}-{i}" for i in range(PARALLEL_THREADS)]
        start = time.perf_counter()
        for tid in tids:
            work(tid + "-seq")
        sequential.append(time.perf_counter() - start)
        threads = [threading.Thread(target=work, args=(tid,)) for tid in tids]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        parallel.append(time.perf_counter() - start)
    return {"sequential": statistics.median(sequential), "parallel": statistics.median(parallel)}


SAVE_1000 = "library save +2 msgs onto 1000"
RAW_SAVE_1000 = "raw psycopg2 +2 msgs onto 1000"
LOAD_ONE_SAVE = "library load 1000 (one save)"
LOAD_APPENDED = "library load 1000 (built by appends)"
RAW_LOAD_ROWS = "raw psycopg2 load 1000 rows + decode"
RAW_LOAD_BLOB = "raw psycopg2 one bytea + split + decode"
RAW_LOAD_STREAM = "(ref) raw one bytea concatenated, 1 decode"
RAW_LOAD_SNAPSHOT = "(ref) raw one bytea snapshot, 1 decode"
LOAD_LARGE = "library load 1000 large msgs"
RAW_LOAD_LARGE_ROWS = "raw psycopg2 1000 large rows + decode"
RAW_LOAD_LARGE_BLOB = "raw psycopg2 large one bytea + split + decode"


def serial_label(fsync: str) -> str:
    return f"{PARALLEL_THREADS} x {PARALLEL_SAVES + 2} ops, 1 thread, fsync={fsync} (per op)"


def parallel_label(fsync: str) -> str:
    return f"{PARALLEL_THREADS} x {PARALLEL_SAVES + 2} ops, {PARALLEL_THREADS} threads, fsync={fsync} (per op)"


def measure_saves(cp: PostgresCheckpointer, raw: RawClient, report: Report, repeats: int) -> None:
    measure_appends(report, cp, {RAW_SAVE_1000: raw_append_step(raw, 1000, [0])}, repeats)


def measure_loads(cp: PostgresCheckpointer, raw: RawClient, report: Report, repeats: int) -> str:
    """Library and raw loads of the same messages; returns a note on the data sizes."""
    head = encode_head(snapshot_of([]))
    messages, large = make_messages(1000), make_large_messages(1000)
    blobs, large_blobs = encode_messages(messages), encode_messages(large)
    cp.save("bench-load", snapshot_of(messages))
    saves = build_by_appends(cp, "bench-load-appended", 1000)
    cp.save("bench-load-large", snapshot_of(large))
    raw.create("raw-load", blobs, head)
    raw.create("raw-load-large", large_blobs, head)
    raw.put_blob("log", msgspec.msgpack.encode(blobs))
    raw.put_blob("log-concatenated", b"".join(blobs))
    raw.put_blob("log-large", msgspec.msgpack.encode(large_blobs))
    raw.put_blob("snapshot", msgspec.msgpack.encode(snapshot_of(messages)))

    def library(tid: str) -> Callable[[], None]:
        return lambda: None if cp.load(tid) is None else None

    def raw_blob(key: str) -> Callable[[], None]:
        return lambda: None if decode_messages(_blob_list.decode(raw.get_blob(key))) is None else None

    def raw_stream() -> None:
        return None if decode_message_stream(raw.get_blob("log-concatenated"), len(blobs)) is None else None

    groups: List[Dict[str, Callable[[], Optional[float]]]] = [
        {
            LOAD_ONE_SAVE: library("bench-load"),
            LOAD_APPENDED: library("bench-load-appended"),
            RAW_LOAD_ROWS: lambda: raw.load_rows("raw-load"),
            RAW_LOAD_BLOB: raw_blob("log"),
            RAW_LOAD_STREAM: raw_stream,
            RAW_LOAD_SNAPSHOT: lambda: None if _snapshot_decoder.decode(raw.get_blob("snapshot")) is None else None,
        },
        {
            LOAD_LARGE: library("bench-load-large"),
            RAW_LOAD_LARGE_ROWS: lambda: raw.load_rows("raw-load-large"),
            RAW_LOAD_LARGE_BLOB: raw_blob("log-large"),
        },
    ]
    for fns in groups:
        for label, samples in interleave(fns, repeats).items():
            report.add(label, samples)
    return (
        f"1000 messages = {sum(map(len, blobs)) // 1024} KB encoded; built by appends = {saves} saves; "
        f"large = {sum(map(len, large_blobs)) // 1024} KB"
    )


def server_settings(url: str) -> Dict[str, str]:
    """The durability settings of the server at ``url``."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cursor:
            settings = {}
            for name in ("fsync", "synchronous_commit", "full_page_writes"):
                cursor.execute(sql.SQL("SHOW {}").format(sql.Identifier(name)))
                settings[name] = str(cursor.fetchone()[0])
        return settings
    finally:
        conn.close()


def describe(settings: Dict[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in settings.items())


def measure_parallel(url: str, schema: str, report: Report) -> Tuple[str, float]:
    """8 threads against 1 on the server at ``url``; returns its fsync setting and the speedup."""
    fsync = server_settings(url)["fsync"]
    cp = PostgresCheckpointer(url, schema=schema, max_connections=PARALLEL_THREADS, min_connections=PARALLEL_THREADS)
    try:
        cp.setup()
        timings = parallel_speedup(cp)
    finally:
        cp.close()
    total = PARALLEL_THREADS * (PARALLEL_SAVES + 2)
    report.add_median(serial_label(fsync), timings["sequential"] / total * 1e6, total)
    report.add_median(parallel_label(fsync), timings["parallel"] / total * 1e6, total)
    report.ratio(f"8 threads / 1 thread, wall time, fsync={fsync}", parallel_label(fsync), serial_label(fsync), 1 / 1.5)
    return fsync, timings["sequential"] / timings["parallel"]


def drop_bench_schema(url: str, schema: str) -> None:
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    finally:
        conn.close()


def main() -> int:
    args = parse_args(__doc__ or "")
    durable_main = os.environ.get("BENCH_POSTGRES_DURABLE") == "1"
    servers: List[Union[PostgresServer, ExternalServer]] = []
    urls: List[str] = []  # every server measured: the latency one first, then the durable one if separate
    schema = f"ap_bench_{uuid.uuid4().hex[:10]}"
    cp: Optional[PostgresCheckpointer] = None
    raw: Optional[RawClient] = None
    try:
        if os.environ.get(ENV_POSTGRES_URL):
            servers.append(postgres_url_or_start())
        else:
            options = DURABLE_OPTIONS if durable_main else []
            servers.append(PostgresServer.start(extra_options=options))
            if not durable_main:
                servers.append(PostgresServer.start(extra_options=DURABLE_OPTIONS))
        urls = [server.url for server in servers]
        cp = PostgresCheckpointer(urls[0], schema=schema)
        cp.setup()
        raw = RawClient(urls[0], schema)
        title = f"PostgreSQL 15, {describe(server_settings(urls[0]))} (psycopg2 {psycopg2.__version__.split()[0]})"
        report = Report(f"{title}, {args.repeats} samples each")
        measure_saves(cp, raw, report, args.repeats)
        note = measure_loads(cp, raw, report, args.repeats)

        samples = add_growing_conversation(report, cp, "bench-growing", args.turns)
        slowest = max(seconds for _, seconds in samples) * 1e6
        cp.close()

        report.ratio("library / raw save at 1000", SAVE_1000, RAW_SAVE_1000, 2.0)
        for label in (LOAD_ONE_SAVE, LOAD_APPENDED):
            report.ratio(f"{label} / raw rows", label, RAW_LOAD_ROWS, 1.5)
            report.ratio(f"{label} / raw one bytea", label, RAW_LOAD_BLOB, 1 / 1.5)
            report.ratio(f"(ref) {label} / raw one bytea, 1 decode", label, RAW_LOAD_STREAM, 1 / 1.5)
        report.ratio("large: library / raw rows", LOAD_LARGE, RAW_LOAD_LARGE_ROWS, 1.5)
        report.ratio("large: library / raw one bytea", LOAD_LARGE, RAW_LOAD_LARGE_BLOB, 1 / 1.5)

        # The durable server first: its ratio is the headline.
        speedups = [measure_parallel(url, schema, report) for url in reversed(urls)]
        print(report.render())
        print(f"\n{note}; slowest growing-conversation save {slowest:.0f} µs")
        for url in reversed(urls):
            print(f"parallel measured on: {describe(server_settings(url))}")
        print("; ".join(f"fsync={fsync}: 8 threads finish {speedup:.2f}x faster than 1" for fsync, speedup in speedups))
    finally:
        if cp is not None:
            cp.close()
        if raw is not None:
            raw.conn.rollback()
            raw.conn.close()
        for url in urls:
            drop_bench_schema(url, schema)
        for server in servers:
            server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
