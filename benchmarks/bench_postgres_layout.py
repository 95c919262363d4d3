"""PostgreSQL: which physical layout for the SQL interface (issue 12), and the library before/after it.

Run: ``python -m benchmarks.bench_postgres_layout candidates [--repeats N]``
and ``python -m benchmarks.bench_postgres_layout compare --before DIR --after DIR [--repeats N]``.
Both start a throwaway PostgreSQL 15 cluster (``fsync=off``) unless
``AGENTS_PERSIST_TEST_POSTGRES_URL`` names one; everything lives in a schema of
its own, dropped at the end.

``candidates`` times the same I/O with plain psycopg2 for each layout the
SQL views could sit on (one round trip per save, as the library's save
function): the message log as one ``bytea`` chunk per save (today), the same
plus the messages mirrored one row per message in ``jsonb`` columns, the same
plus a ``json`` array per chunk row, and the messages only as ``json`` text
or ``jsonb`` rows (no ``bytea``: a load must then decode JSON and encode
msgpack again for the core, which compares stored bytes exactly).

``compare`` runs the Performance v2 PostgreSQL rows against two checkouts of
agents_persist (``--before``: current main, ``--after``: this branch), each in
a worker subprocess of its own, alternating between them round by round so
that machine noise hits both alike; every ratio is against the raw client
measured in the same worker, and the table shows the medians of each side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence

ROUNDS_DEFAULT = 7


def _server() -> Any:
    from tests.servers import ENV_POSTGRES_URL, PostgresServer, postgres_url_or_start

    if os.environ.get(ENV_POSTGRES_URL):
        return postgres_url_or_start()
    return PostgresServer.start()


def _median_us(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1e6


def _timed(fn: Callable[[], Any], repeats: int) -> List[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


# ---------------------------------------------------------------------------------------------- candidates

CANDIDATE_SCHEMA = """
CREATE TABLE {s}.heads (thread_id text COLLATE "C" PRIMARY KEY, version bigint NOT NULL, n integer NOT NULL,
    head bytea NOT NULL, metadata jsonb, updated_at double precision NOT NULL);
CREATE TABLE {s}.log (thread_id text COLLATE "C", seq integer, n integer, data bytea NOT NULL, doc json,
    PRIMARY KEY (thread_id, seq));
ALTER TABLE {s}.log ALTER COLUMN data SET COMPRESSION lz4;
CREATE TABLE {s}.mirror (thread_id text COLLATE "C", seq integer, role text, content text, content_json jsonb,
    tool_calls jsonb, tool_call_id text, name text, metadata jsonb, PRIMARY KEY (thread_id, seq));
CREATE TABLE {s}.jrows (thread_id text COLLATE "C", seq integer, doc json NOT NULL, PRIMARY KEY (thread_id, seq));
CREATE TABLE {s}.jbrows (thread_id text COLLATE "C", seq integer, doc jsonb NOT NULL, PRIMARY KEY (thread_id, seq));
CREATE TABLE {s}.blobs (id text PRIMARY KEY, data bytea NOT NULL);
"""

HEAD_UPSERT = (
    "INSERT INTO {s}.heads VALUES (%(t)s, 1, %(n)s, %(h)s, %(m)s::jsonb, 0) ON CONFLICT (thread_id) DO UPDATE "
    "SET version = heads.version + 1, n = excluded.n, head = excluded.head, metadata = excluded.metadata;"
)
MIRROR_INSERT = (
    "INSERT INTO {s}.mirror SELECT %(t)s, %(first)s + o - 1, e->>'role',"
    " CASE WHEN json_typeof(e->'content') = 'string' THEN e->>'content' ELSE (e->'content')::text END,"
    " CASE WHEN json_typeof(e->'content') = 'string' THEN NULL ELSE (e->'content')::jsonb END,"
    " (e->'tool_calls')::jsonb, e->>'tool_call_id', e->>'name', (e->'metadata')::jsonb"
    " FROM json_array_elements(%(j)s::json) WITH ORDINALITY AS x(e, o);"
)
CANDIDATE_SAVES = {
    "bytea chunk (today)": "INSERT INTO {s}.log VALUES (%(t)s, %(first)s, %(n)s, %(b)s, NULL);",
    "bytea chunk + jsonb row per message": "INSERT INTO {s}.log VALUES (%(t)s, %(first)s, %(n)s, %(b)s, NULL);" + MIRROR_INSERT,
    "bytea chunk + json array per chunk": "INSERT INTO {s}.log VALUES (%(t)s, %(first)s, %(n)s, %(b)s, %(j)s::json);",
    "json text row per message only": "INSERT INTO {s}.jrows SELECT %(t)s, %(first)s + o - 1, e"
    " FROM json_array_elements(%(j)s::json) WITH ORDINALITY AS x(e, o);",
    "jsonb row per message only": "INSERT INTO {s}.jbrows SELECT %(t)s, %(first)s + o - 1, e"
    " FROM jsonb_array_elements(%(j)s::jsonb) WITH ORDINALITY AS x(e, o);",
}


def candidates(repeats: int) -> None:
    import msgspec
    import psycopg2

    from agents_persist.codec import decode_message_stream, encode_messages
    from benchmarks.harness import make_messages

    server = _server()
    schema = f"ap_bench_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(server.url)
    conn.autocommit = True
    cur = conn.cursor()
    try:
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(CANDIDATE_SCHEMA.format(s=schema))
        messages = make_messages(1150)
        blobs = encode_messages(messages)
        as_json = msgspec.json.encode(messages).decode()
        fifty_blobs, fifty_json = b"".join(blobs[:50]), msgspec.json.encode(messages[:50]).decode()
        two_blobs, two_json = b"".join(blobs[1000:1002]), msgspec.json.encode(messages[1000:1002]).decode()
        head = msgspec.msgpack.encode({"metadata": {"user": "bench"}})
        results: Dict[str, Dict[str, float]] = {}
        counter = [0]
        sqls = {label: (HEAD_UPSERT + text).format(s=schema) for label, text in CANDIDATE_SAVES.items()}
        for label, text in sqls.items():
            # the 1,150-message thread for the load, and a 1,000-message one to append to
            cur.execute(text, dict(t="load:" + label, first=0, n=1150, b=b"".join(blobs), j=as_json, h=head, m="{}"))
        samples: Dict[str, Dict[str, List[float]]] = {label: {"save50": [], "append2": []} for label in sqls}
        for _ in range(repeats):
            for label, text in sqls.items():
                counter[0] += 1
                tid = f"t{counter[0]}"
                for key, params in (
                    ("save50", dict(t=tid, first=0, n=50, b=fifty_blobs, j=fifty_json, h=head, m="{}")),
                    ("append2", dict(t=tid, first=50, n=2, b=two_blobs, j=two_json, h=head, m="{}")),
                ):
                    start = time.perf_counter()
                    cur.execute(text, params)
                    samples[label][key].append(time.perf_counter() - start)
        for label in sqls:
            results[label] = {k: _median_us(v) for k, v in samples[label].items()}
        # loads: bytea chunks as the library reads them (binary COPY) vs JSON rows decoded and re-encoded for the core
        import io

        from agents_persist.models import AgentMessage

        json_list = msgspec.json.Decoder(List[AgentMessage])
        encoder = msgspec.msgpack.Encoder()

        def load_bytea() -> None:
            out = io.BytesIO()
            cur.copy_expert(
                cur.mogrify(
                    f"COPY (SELECT data FROM {schema}.log WHERE thread_id = %s ORDER BY seq) TO STDOUT (FORMAT binary)",
                    ("load:bytea chunk (today)",),
                ).decode(),
                out,
            )
            raw = out.getvalue()
            decode_message_stream(raw[25:-2], 1150)

        def load_json(table: str, label: str) -> Callable[[], None]:
            query = f"SELECT '[' || string_agg(doc::text, ',' ORDER BY seq) || ']' FROM {schema}.{table} WHERE thread_id = %s"

            def run() -> None:
                cur.execute(query, ("load:" + label,))
                decoded = json_list.decode(cur.fetchone()[0])
                decode_message_stream(b"".join(b"\x01" + encoder.encode(m) for m in decoded), len(decoded))

            return run

        loads = {
            "bytea chunk (today)": load_bytea,
            "json text row per message only": load_json("jrows", "json text row per message only"),
            "jsonb row per message only": load_json("jbrows", "jsonb row per message only"),
        }
        load_samples: Dict[str, List[float]] = {label: [] for label in loads}
        for _ in range(repeats):
            for label, fn in loads.items():
                load_samples[label] += _timed(fn, 1)
        cur.execute(
            f"SELECT pg_total_relation_size('{schema}.log'), pg_total_relation_size('{schema}.mirror'),"
            f" pg_total_relation_size('{schema}.jrows'), pg_total_relation_size('{schema}.jbrows')"
        )
        sizes = cur.fetchone()
        print(f"layout candidates, PostgreSQL 15, {repeats} samples each (median µs)")
        print(f"{'layout':<40} {'save 50 new':>12} {'append +2':>10} {'load 1150':>10}")
        for label in sqls:
            load = f"{_median_us(load_samples[label]):10.0f}" if label in load_samples else f"{'(bytea)':>10}"
            print(f"{label:<40} {results[label]['save50']:12.0f} {results[label]['append2']:10.0f} {load}")
        print(f"table sizes (bytes): log {sizes[0]}, mirror {sizes[1]}, json rows {sizes[2]}, jsonb rows {sizes[3]}")
    finally:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()
        server.cleanup()


# ---------------------------------------------------------------------------------------------- before/after

MANY_THREADS, MANY_IDS = 2, 100  # per round: 2 worker threads x 100 thread IDs (save 50 new messages, then load)
LOAD_REPEATS, SAVE_REPEATS = 9, 9


def _worker(url: str) -> None:
    """One side of ``compare``: answers each line on stdin with one JSON line of samples (seconds)."""
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks.harness, after the checkout
    import threading

    import msgspec
    import psycopg2

    from agents_persist import AgentStateSnapshot, PostgresCheckpointer
    from agents_persist.codec import decode_messages, encode_messages
    from benchmarks.harness import make_messages, snapshot_of

    schema = f"ap_bench_{uuid.uuid4().hex[:10]}"
    cp = PostgresCheckpointer(url, schema=schema, max_connections=MANY_THREADS + 1, min_connections=MANY_THREADS + 1)
    cp.setup()
    raws = [psycopg2.connect(url) for _ in range(MANY_THREADS + 1)]
    for conn in raws:
        conn.autocommit = True
    cur = raws[0].cursor()
    cur.execute(f"CREATE TABLE {schema}.raw (id text PRIMARY KEY, data bytea NOT NULL)")
    upsert = f"INSERT INTO {schema}.raw VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET data = excluded.data"
    select = f"SELECT data FROM {schema}.raw WHERE id = %s"
    snapshot_decoder = msgspec.msgpack.Decoder(AgentStateSnapshot)
    blob_list = msgspec.msgpack.Decoder(List[bytes])
    fifty = snapshot_of(make_messages(50))
    big, small = snapshot_of(make_messages(1150)), make_messages(1000)
    cp.save("load-1150", big)
    cp.save("load-1000", snapshot_of(small))
    cur.execute(upsert, ("snapshot-1150", msgspec.msgpack.encode(big)))
    cur.execute(upsert, ("blob-1000", msgspec.msgpack.encode(encode_messages(small))))
    rounds = [0]

    def many(library: bool) -> float:
        rounds[0] += 1

        def work(n: int) -> None:
            raw = raws[n + 1].cursor()
            for i in range(MANY_IDS):
                tid = f"many-{rounds[0]}-{n}-{i}"
                if library:
                    cp.save(tid, snapshot_of(fifty.messages))
                    cp.load(tid)
                else:
                    raw.execute(upsert, (tid, msgspec.msgpack.encode(snapshot_of(fifty.messages))))
                    raw.execute(select, (tid,))
                    snapshot_decoder.decode(raw.fetchone()[0])

        threads = [threading.Thread(target=work, args=(n,)) for n in range(MANY_THREADS)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return MANY_THREADS * MANY_IDS / (time.perf_counter() - start)

    def raw_load(key: str, decode: Callable[[bytes], Any]) -> Callable[[], Any]:
        def run() -> Any:
            cur.execute(select, (key,))
            return decode(cur.fetchone()[0])

        return run

    def save_onto(size: int) -> float:
        rounds[0] += 1
        tid = f"grow-{size}-{rounds[0]}"
        state = snapshot_of(make_messages(size))
        cp.save(tid, state)
        state.messages.extend(make_messages(2, size))
        start = time.perf_counter()
        cp.save(tid, state)
        elapsed = time.perf_counter() - start
        cp.delete(tid)
        return elapsed

    try:
        for _ in sys.stdin:
            out: Dict[str, List[float]] = {
                "many_library": [many(True)],
                "many_raw": [many(False)],
                "load1150_library": _timed(lambda: cp.load("load-1150"), LOAD_REPEATS),
                "load1150_raw": _timed(raw_load("snapshot-1150", snapshot_decoder.decode), LOAD_REPEATS),
                "load1000_library": _timed(lambda: cp.load("load-1000"), LOAD_REPEATS),
                "load1000_raw": _timed(raw_load("blob-1000", lambda b: decode_messages(blob_list.decode(b))), LOAD_REPEATS),
                "save10": [save_onto(10) for _ in range(SAVE_REPEATS)],
                "save1000": [save_onto(1000) for _ in range(SAVE_REPEATS)],
            }
            print(json.dumps(out), flush=True)
    finally:
        cp.close()
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        for conn in raws:
            conn.close()


def compare(before: str, after: str, rounds: int) -> None:
    """Alternate the two checkouts round by round on one server; print medians and ratios per side."""
    server = _server()
    me = os.path.abspath(__file__)
    sides = {"before": before, "after": after}
    workers = {
        side: subprocess.Popen(
            [sys.executable, me, "worker", "--url", server.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.path.abspath(path)},
        )
        for side, path in sides.items()
    }
    samples: Dict[str, Dict[str, List[float]]] = {side: {} for side in sides}
    try:
        for round_ in range(rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(list(sides)))
            for side in order:
                worker = workers[side]
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write("round\n")
                worker.stdin.flush()
                for key, values in json.loads(worker.stdout.readline()).items():
                    samples[side].setdefault(key, []).extend(values)
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait(60)
        server.cleanup()

    def med(side: str, key: str) -> float:
        return statistics.median(samples[side][key])

    rows = [
        ("many threads: library / raw ops/s", "many_library", "many_raw", "≥ 0.8", True),
        ("load 1,150: library / raw snapshot SELECT + decode", "load1150_library", "load1150_raw", "≤ 1.0", False),
        ("load 1,000: library / raw one bytea + decode", "load1000_library", "load1000_raw", "≤ 0.75", False),
        ("save +2 at 1,000 / at 10 messages", "save1000", "save10", "≤ 1.3", False),
    ]
    print(f"PostgreSQL 15, before = {before}, after = {after}; {rounds} interleaved rounds")
    print(f"{'row':<52} {'goal':>7} {'before':>8} {'after':>8}   medians (before | after)")
    for label, top, bottom, goal, per_second in rows:
        unit = "ops/s" if per_second else "µs"
        scale = 1.0 if per_second else 1e6
        ratios = [med(side, top) / med(side, bottom) for side in sides]
        detail = " | ".join(f"{med(side, top) * scale:.0f} / {med(side, bottom) * scale:.0f} {unit}" for side in sides)
        print(f"{label:<52} {goal:>7} {ratios[0]:8.2f} {ratios[1]:8.2f}   {detail}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("mode", choices=["candidates", "compare", "worker"])
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--rounds", type=int, default=ROUNDS_DEFAULT)
    parser.add_argument("--before")
    parser.add_argument("--after")
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    if args.mode == "candidates":
        candidates(args.repeats)
    elif args.mode == "compare":
        if not (args.before and args.after):
            parser.error("compare needs --before DIR and --after DIR (checkouts of agents_persist)")
        compare(args.before, args.after, args.rounds)
    else:
        _worker(args.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
