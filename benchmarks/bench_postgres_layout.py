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
import os
import statistics
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
