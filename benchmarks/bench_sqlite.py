"""SQLite: the library against raw ``sqlite3`` doing the same I/O, in one run.

Run: ``python -m benchmarks.bench_sqlite [--repeats N] [--turns N] [--synchronous FULL|NORMAL]``.

The raw side uses a twin pair of tables in the same database file, the same
pragmas, and already-encoded bytes, and does what a library save of two new
messages does: ``BEGIN IMMEDIATE``, read the head row, insert two message rows,
upsert the head, ``COMMIT``. Raw load reads head and messages in one
transaction and decodes the messages.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time

from agents_persist import SqliteCheckpointer
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

RAW_SCHEMA = (
    "CREATE TABLE raw_threads (thread_id TEXT PRIMARY KEY, version INTEGER, message_count INTEGER, head BLOB, updated_at REAL)",
    "CREATE TABLE raw_messages (thread_id TEXT, seq INTEGER, data BLOB, PRIMARY KEY (thread_id, seq)) WITHOUT ROWID",
)


def main() -> int:
    args = parse_args(__doc__ or "")
    synchronous = os.environ.get("BENCH_SQLITE_SYNCHRONOUS", "FULL")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.db")
        cp = SqliteCheckpointer(path, synchronous=synchronous)
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute(f"PRAGMA synchronous = {synchronous}")
        for statement in RAW_SCHEMA:
            raw.execute(statement)
        report = Report(f"SQLite (synchronous={synchronous}), {args.repeats} samples each")

        two = encode_messages(make_messages(2, 1000))
        head = encode_head(snapshot_of([]))
        raw_counter = [0]

        def raw_append(size: int) -> float:
            raw_counter[0] += 1
            tid = f"raw-{size}-{raw_counter[0]}"
            blobs = encode_messages(make_messages(size))
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany("INSERT INTO raw_messages VALUES (?, ?, ?)", [(tid, i, b) for i, b in enumerate(blobs)])
            raw.execute("INSERT INTO raw_threads VALUES (?, 1, ?, ?, ?)", (tid, size, head, time.time()))
            raw.execute("COMMIT")
            start = time.perf_counter()
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("SELECT version, message_count FROM raw_threads WHERE thread_id = ?", (tid,)).fetchone()
            raw.executemany("INSERT INTO raw_messages VALUES (?, ?, ?)", [(tid, size + i, b) for i, b in enumerate(two)])
            raw.execute(
                "UPDATE raw_threads SET version = version + 1, message_count = ?, head = ?, updated_at = ? WHERE thread_id = ?",
                (size + 2, head, time.time(), tid),
            )
            raw.execute("COMMIT")
            return time.perf_counter() - start

        measure_appends(report, cp, {"raw sqlite3 +2 msgs onto 1000": lambda: raw_append(1000)}, args.repeats)
        report.ratio("library / raw save at 1000", SAVE_LABEL.format(size=1000), "raw sqlite3 +2 msgs onto 1000", 2.0)

        raw_blobs = encode_messages(make_messages(1000))
        raw.execute("BEGIN")
        raw.executemany("INSERT INTO raw_messages VALUES ('raw-load', ?, ?)", list(enumerate(raw_blobs)))
        raw.execute("INSERT INTO raw_threads VALUES ('raw-load', 1, 1000, ?, 0)", (head,))
        raw.execute("COMMIT")

        def raw_load() -> None:
            raw.execute("BEGIN")
            raw.execute("SELECT version, message_count, head FROM raw_threads WHERE thread_id = 'raw-load'").fetchone()
            rows = raw.execute("SELECT data FROM raw_messages WHERE thread_id = 'raw-load' ORDER BY seq").fetchall()
            raw.execute("COMMIT")
            decode_messages([row[0] for row in rows])

        measure_load(report, cp, "raw sqlite3 load 1000 + decode", raw_load, args.repeats)

        add_growing_conversation(report, cp, "bench-growing", args.turns)

        print(report.render())
        cp.close()
        raw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
