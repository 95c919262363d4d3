"""LangGraph: ``agents_persist.langgraph.Checkpointer`` against LangGraph's own SqliteSaver and PostgresSaver, in one run.

Run: ``python -m benchmarks.bench_langgraph [--turns N]``. It starts a
throwaway PostgreSQL 15 cluster (``fsync=off``; or set
``AGENTS_PERSIST_TEST_POSTGRES_URL``: the benchmark then works only in a
schema and a database of its own, both dropped at the end) and SQLite files
in a temporary directory.

The candidates: this saver on SQLite (also with ``reuse_loaded_values=True``)
and on PostgreSQL, LangGraph's ``SqliteSaver`` and ``PostgresSaver``.

Workload: one LangGraph thread, a ``StateGraph`` over ``MessagesState`` whose
node is a fake model answering every user message, invoked once per turn
with one new user message: each turn adds 2 messages (500 turns: 1,000
messages). The savers run the same conversation turn by turn, in
turn, so machine noise hits them alike.

Reported:

* ``turn``: the whole ``graph.invoke`` of one turn (loading the latest
  checkpoint, running the node, storing the checkpoints and writes), median
  over the turns around 10 and around 1,000 messages;
* ``get_tuple``: the saver reading the latest checkpoint when the run
  starts; ``put``: the saver storing the turn's two checkpoints (LangGraph
  calls ``put`` from a background thread while the graph goes on);
* ``get_state``: ``graph.get_state`` at 1,000 messages, with a new saver
  (nothing cached in the process) and with the saver that wrote the thread;
* ``bytes``: what the store holds at the end (SQLite: the database file after
  a WAL checkpoint; PostgreSQL: ``pg_total_relation_size`` of the saver's
  tables, indexes and TOAST included).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import psycopg
import psycopg2
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, MessagesState, StateGraph

from agents_persist import PostgresCheckpointer, SqliteCheckpointer
from agents_persist.langgraph import Checkpointer
from tests.servers import ENV_POSTGRES_URL, ExternalServer, PostgresServer, postgres_url_or_start

THREAD = {"configurable": {"thread_id": "bench-thread"}}
#: Turns whose message counts (before the turn) fall in these windows make the "at 10" and "at 1,000" medians.
WINDOWS = {10: (6, 14), 1000: (950, 1000)}
#: The saver methods timed: reading the latest checkpoint (synchronous, when a run starts) and storing one.
SAVER_METHODS = ("get_tuple", "put")
Saver = BaseCheckpointSaver[Any]


def fake_model(state: MessagesState) -> Dict[str, Any]:
    question = state["messages"][-1].content
    return {"messages": [AIMessage(content=f"Here is a considered answer to {question!s}, with a few details. " * 2)]}


def build(saver: Saver) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("model", fake_model)
    builder.add_edge(START, "model")
    return builder.compile(checkpointer=saver)


class Timed:
    """Wraps a saver's methods to add up the seconds spent in each (they run in LangGraph's background threads too)."""

    def __init__(self, saver: Saver) -> None:
        self.saver = saver
        self.seconds: Dict[str, float] = {}
        self._mutex = threading.Lock()
        for name in SAVER_METHODS:
            setattr(saver, name, self._timed(name, getattr(saver, name)))

    def _timed(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                with self._mutex:
                    self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed


class Candidate:
    """One saver under test: how to open it (again), and how many bytes its store holds."""

    def __init__(self, name: str, open_saver: Callable[[ExitStack], Saver], size: Callable[[], int]) -> None:
        self.name, self.open_saver, self.size = name, open_saver, size
        #: (messages before the turn, seconds of the turn, of its get_tuple, of its puts)
        self.turns: List[Tuple[int, float, float, float]] = []


def sqlite_file_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)
    finally:
        conn.close()


def postgres_size(url: str, schema: str) -> int:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                (schema,),
            )
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def median_ms(values: List[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def run(candidates: List[Candidate], turns: int, repeats: int) -> List[List[str]]:
    with ExitStack() as stack:
        graphs = []
        timers = []
        for candidate in candidates:
            timer = Timed(candidate.open_saver(stack))
            timers.append(timer)
            graphs.append(build(timer.saver))
        for turn in range(turns):
            for candidate, graph, timer in zip(candidates, graphs, timers):
                timer.seconds = {}
                start = time.perf_counter()
                graph.invoke({"messages": [HumanMessage(f"question {turn}: what should I do about item {turn}?")]}, THREAD)
                elapsed = time.perf_counter() - start
                candidate.turns.append((2 * turn, elapsed, timer.seconds.get("get_tuple", 0.0), timer.seconds.get("put", 0.0)))
        assert all(len(g.get_state(THREAD).values["messages"]) == 2 * turns for g in graphs)
        warm = {c.name: _get_state_samples(partial(_itself, g), repeats) for c, g in zip(candidates, graphs)}
    rows = []
    for candidate in candidates:
        with ExitStack() as stack:
            cold = _get_state_samples(partial(_new_graph, candidate, stack), repeats)
        row = [candidate.name]
        for low, high in WINDOWS.values():
            picked = [times for n, *times in candidate.turns if low <= n <= high]
            row += [f"{median_ms([times[i] for times in picked]):.1f}" for i in range(3)]
        row += [f"{median_ms(cold):.1f}", f"{median_ms(warm[candidate.name]):.1f}", f"{candidate.size() / 1e6:.2f}"]
        rows.append(row)
    return rows


def _itself(graph: Any) -> Any:
    return graph


def _new_graph(candidate: Candidate, stack: ExitStack) -> Any:
    return build(candidate.open_saver(stack))


def _get_state_samples(graph: Callable[[], Any], repeats: int) -> List[float]:
    """``get_state`` times of the graphs ``graph()`` returns (made before each timing starts)."""
    samples = []
    for _ in range(repeats):
        target = graph()
        start = time.perf_counter()
        state = target.get_state(THREAD)
        samples.append(time.perf_counter() - start)
        assert state.values["messages"]
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20, help="get_state samples per saver")
    args = parser.parse_args()
    schema = f"ap_bench_{uuid.uuid4().hex[:10]}"
    database = f"lg_bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as cleanup:
        server = postgres_url_or_start() if os.environ.get(ENV_POSTGRES_URL) else PostgresServer.start()
        cleanup.callback(server.cleanup)
        admin = psycopg.connect(server.url, autocommit=True)
        cleanup.callback(admin.close)
        admin.execute(f'CREATE DATABASE "{database}"')
        cleanup.callback(lambda: admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        lg_url = server.url.rsplit("/", 1)[0] + f"/{database}"
        cleanup.callback(lambda: _drop_schema(server.url, schema))
        ours_sqlite, theirs_sqlite = Path(tmp) / "agents_persist.db", Path(tmp) / "langgraph.db"
        ours_sqlite_reuse = Path(tmp) / "agents_persist_reuse.db"

        def ours_on_sqlite(stack: ExitStack) -> Saver:
            backend = stack.enter_context(SqliteCheckpointer(str(ours_sqlite)))
            return Checkpointer(backend)

        def ours_on_sqlite_reusing(stack: ExitStack) -> Saver:
            backend = stack.enter_context(SqliteCheckpointer(str(ours_sqlite_reuse)))
            return Checkpointer(backend, reuse_loaded_values=True)

        def ours_on_postgres(stack: ExitStack) -> Saver:
            backend = stack.enter_context(PostgresCheckpointer(server.url, schema=schema))
            return Checkpointer(backend)

        def sqlite_saver(stack: ExitStack) -> Saver:
            saver = stack.enter_context(SqliteSaver.from_conn_string(str(theirs_sqlite)))
            saver.setup()
            return saver

        def postgres_saver(stack: ExitStack) -> Saver:
            saver = stack.enter_context(PostgresSaver.from_conn_string(lg_url))
            saver.setup()
            return saver

        candidates = [
            Candidate("agents_persist on SQLite", ours_on_sqlite, lambda: sqlite_file_size(ours_sqlite)),
            Candidate(
                "agents_persist on SQLite, reuse_loaded_values",
                ours_on_sqlite_reusing,
                lambda: sqlite_file_size(ours_sqlite_reuse),
            ),
            Candidate("LangGraph SqliteSaver", sqlite_saver, lambda: sqlite_file_size(theirs_sqlite)),
            Candidate("agents_persist on PostgreSQL", ours_on_postgres, lambda: postgres_size(server.url, schema)),
            Candidate("LangGraph PostgresSaver", postgres_saver, lambda: postgres_size(lg_url, "public")),
        ]
        rows = run(candidates, args.turns, args.repeats)
        kind = "external PostgreSQL" if isinstance(server, ExternalServer) else "PostgreSQL 15 (throwaway, fsync=off)"
        print(f"{args.turns} turns (2 messages each), {kind}; times in ms (medians), bytes in MB")
        header = ["saver"]
        for at in WINDOWS:
            header += [f"turn @{at}", f"get_tuple @{at}", f"put @{at}"]
        header += ["get_state cold", "get_state warm", "MB stored"]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, ["-" * w for w in widths], *rows]:
            print("| " + " | ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) + " |")
    return 0


def _drop_schema(url: str, schema: str) -> None:
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
