"""SQLite against the raw whole-snapshot floor: many threads, loads of a long thread, growing saves.

Run: ``python -m benchmarks.sqlite_floors [--rounds N] [--synchronous FULL|NORMAL]``.

The floor is a raw ``sqlite3`` client on the same file and pragmas that stores
each snapshot as one msgspec-encoded value: one upsert per save, one SELECT
and one decode per load. Library and floor alternate round by round, so noise
hits both; the figures are medians over the rounds.

* many threads: 2 worker threads x 200 thread IDs, each saving a new
  50-message thread and then loading it; ops/s (saves + loads).
* load 1,150: a thread grown by 460 saves of 2-3 messages, loaded; against
  the floor loading the same snapshot.
* save +2 onto 1,000 against save +2 onto 10 (loaded snapshots).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List

import msgspec

from agents_persist import AgentStateSnapshot, SqliteCheckpointer
from benchmarks.harness import make_messages, snapshot_of

WORKERS = 2
THREADS_PER_WORKER = 200
MESSAGES = 50

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(AgentStateSnapshot)


class Raw:
    """The whole-snapshot floor: one row per thread holding the encoded snapshot."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.path, self.synchronous = path, synchronous
        with self.connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS raw_snapshots (thread_id TEXT PRIMARY KEY, data BLOB NOT NULL)")

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn

    @staticmethod
    def save(conn: sqlite3.Connection, thread_id: str, state: AgentStateSnapshot) -> None:
        conn.execute(
            "INSERT INTO raw_snapshots (thread_id, data) VALUES (?, ?)"
            " ON CONFLICT (thread_id) DO UPDATE SET data = excluded.data",
            (thread_id, _encoder.encode(state)),
        )

    @staticmethod
    def load(conn: sqlite3.Connection, thread_id: str) -> AgentStateSnapshot:
        (data,) = conn.execute("SELECT data FROM raw_snapshots WHERE thread_id = ?", (thread_id,)).fetchone()
        return _decoder.decode(data)


def many_threads(run_worker: Callable[[int, str], None], tag: str) -> float:
    """Ops/s of WORKERS threads each saving then loading THREADS_PER_WORKER new threads."""
    barrier = threading.Barrier(WORKERS + 1)

    def body(worker: int) -> None:
        barrier.wait()
        run_worker(worker, tag)
        barrier.wait()

    workers = [threading.Thread(target=body, args=(w,)) for w in range(WORKERS)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    barrier.wait()
    elapsed = time.perf_counter() - start
    for w in workers:
        w.join()
    return 2 * WORKERS * THREADS_PER_WORKER / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--synchronous", default="FULL")
    args = parser.parse_args()
    messages = make_messages(MESSAGES)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.db")
        cp = SqliteCheckpointer(path, synchronous=args.synchronous)
        raw = Raw(path, args.synchronous)
        raw_conns = [raw.connect() for _ in range(WORKERS)]

        def lib_worker(worker: int, tag: str) -> None:
            for i in range(THREADS_PER_WORKER):
                tid = f"{tag}-{worker}-{i}"
                cp.save(tid, snapshot_of(messages))
                cp.load(tid)

        def raw_worker(worker: int, tag: str) -> None:
            conn = raw_conns[worker]
            for i in range(THREADS_PER_WORKER):
                tid = f"{tag}-{worker}-{i}"
                raw.save(conn, tid, snapshot_of(messages))
                raw.load(conn, tid)

        results: Dict[str, List[float]] = {"library": [], "raw": []}
        for r in range(args.rounds + 1):
            lib = many_threads(lib_worker, f"lib{r}")
            flo = many_threads(raw_worker, f"raw{r}")
            if r:  # the first round warms up
                results["library"].append(lib)
                results["raw"].append(flo)
        lib_ops, raw_ops = (statistics.median(results[k]) for k in ("library", "raw"))
        print(f"SQLite synchronous={args.synchronous}, {args.rounds} rounds (medians)")
        print(f"many threads: library {lib_ops:,.0f} ops/s, raw {raw_ops:,.0f} ops/s, ", end="")
        print(f"ratio {lib_ops / raw_ops:.2f} (goal >= 0.8)")

        # A long thread grown turn by turn.
        state = AgentStateSnapshot()
        grown = make_messages(1150)
        i = 0
        while i < len(grown):
            step = 2 + (i // 2) % 2
            state.messages.extend(grown[i : i + step])
            i += step
            cp.save("long", state)
        raw.save(raw_conns[0], "long", snapshot_of(grown))
        loads: Dict[str, List[float]] = {"library": [], "raw": []}
        steps: Dict[str, Callable[[], object]] = {
            "library": lambda: cp.load("long"),
            "raw": lambda: raw.load(raw_conns[0], "long"),
        }
        for _ in range(30 * args.rounds):
            for name, fn in steps.items():
                start = time.perf_counter()
                fn()
                loads[name].append(time.perf_counter() - start)
        lib_us, raw_us = (statistics.median(loads[k]) * 1e6 for k in ("library", "raw"))
        print(f"load 1150 (grown by {len(grown) * 2 // 5} saves): library {lib_us:.0f} us, raw {raw_us:.0f} us, ", end="")
        print(f"ratio {lib_us / raw_us:.2f} (goal <= 1.2)")

        # Save +2 onto 10 and onto 1,000 (a snapshot as saved), interleaved, a fresh thread per sample.
        saves: Dict[int, List[float]] = {10: [], 1000: []}
        bases = {size: make_messages(size) for size in saves}
        for r in range(10 * args.rounds):
            for size, base in bases.items():
                tid = f"grow-{size}-{r}"
                st = snapshot_of(base)
                cp.save(tid, st)
                st.messages.extend(make_messages(2, size))
                start = time.perf_counter()
                cp.save(tid, st)
                saves[size].append(time.perf_counter() - start)
                cp.delete(tid)
        s10, s1000 = (statistics.median(saves[k]) * 1e6 for k in (10, 1000))
        print(f"save +2: onto 10 {s10:.0f} us, onto 1000 {s1000:.0f} us, ratio {s1000 / s10:.2f} (goal <= 1.3)")
        for conn in raw_conns:
            conn.close()
        cp.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
