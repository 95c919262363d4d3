"""Hypothesis fuzz of stored SQLite rows: random and flipped bytes, truncations, wrong types, extreme values, extra and
missing rows, deep nesting. Every read path must give the snapshot or CorruptSnapshotError, never another exception or
a hang, and a forced save and a delete must repair; the outcome classes of the loads are counted and printed."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path
from typing import Any, Counter, List, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_persist import SqliteCheckpointer

from . import corruption
from .corruption import LOG_COLUMNS, THREAD_COLUMNS, VICTIM

Statement = Tuple[str, Sequence[Any]]
THREADS = "agents_persist_threads"
LOG = "agents_persist_messages"
LOG_ROW = f"thread_id = ? AND seq = (SELECT seq FROM {LOG} WHERE thread_id = ? ORDER BY seq LIMIT 1 OFFSET ?)"
EXAMPLES = 200

sqlite_values = st.one_of(
    st.none(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.sampled_from([0, 1, -1, 2, 12, 13, (1 << 31), (1 << 32), (1 << 63) - 1]),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
)


def _where(table: str, row: int) -> Tuple[str, List[Any]]:
    return ("thread_id = ?", [VICTIM]) if table == THREADS else (LOG_ROW, [VICTIM, VICTIM, row])


@st.composite
def mutation(draw: st.DrawFn) -> List[Statement]:
    kind = draw(st.sampled_from(["value", "flip", "truncate", "append", "delete row", "extra row", "deep"]))
    row = draw(st.integers(0, 5))
    if kind == "value":
        table, column = draw(st.sampled_from([(THREADS, c) for c in THREAD_COLUMNS] + [(LOG, c) for c in LOG_COLUMNS]))
        where, params = _where(table, row)
        return [(f"UPDATE {table} SET {column} = ? WHERE {where}", [draw(sqlite_values), *params])]
    table, column = draw(st.sampled_from([(THREADS, "head"), (THREADS, "digest"), (THREADS, "applied"), (LOG, "data")]))
    where, params = _where(table, row)
    if kind == "flip":
        # Overwrite 1-4 bytes at a position (SQLite keeps the rest): random and flipped bytes alike.
        at = draw(st.integers(1, 300))
        patch = draw(st.binary(min_size=1, max_size=4))
        sql = f"UPDATE {table} SET {column} = substr({column}, 1, ?) || ? || substr({column}, ? + 1) WHERE {where}"
        return [(sql, [at - 1, patch, at - 1 + len(patch), *params])]
    if kind == "truncate":
        return [(f"UPDATE {table} SET {column} = substr({column}, 1, ?) WHERE {where}", [draw(st.integers(0, 300)), *params])]
    if kind == "append":
        return [
            (f"UPDATE {table} SET {column} = {column} || ? WHERE {where}", [draw(st.binary(min_size=1, max_size=20)), *params])
        ]
    if kind == "delete row":
        return [(f"DELETE FROM {LOG} WHERE {LOG_ROW}", [VICTIM, VICTIM, row])]
    if kind == "extra row":
        values = [draw(st.integers(-3, 20)), draw(sqlite_values), draw(st.one_of(sqlite_values, st.just(b"\x01\x80")))]
        return [(f"INSERT OR REPLACE INTO {LOG} (thread_id, seq, n, data) VALUES (?, ?, ?, ?)", [VICTIM, *values])]
    depth = draw(st.sampled_from([70, 1000, 100_000]))
    deep = b"\x01\x81\xa8metadata\x81\xa1a" + b"\x91" * depth + b"\xc0"
    table, column = draw(st.sampled_from([(THREADS, "head"), (LOG, "data")]))
    where, params = _where(table, row)
    return [(f"UPDATE {table} SET {column} = ? WHERE {where}", [deep, *params])]


def test_mutated_rows_give_the_snapshot_or_corrupt_snapshot_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = tmp_path / "template.db"
    cp, original = corruption.build(template)
    cp.close()
    outcomes: Counter[str] = collections.Counter()
    counter = [0]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(mutation(), min_size=1, max_size=3))
    def run(mutations: List[List[Statement]]) -> None:
        counter[0] += 1
        path = tmp_path / f"case-{counter[0]}.db"
        shutil.copyfile(template, path)
        with SqliteCheckpointer(path, synchronous="NORMAL", max_connections=2) as cp:
            statements = [statement for m in mutations for statement in m]
            if not corruption.damage(cp, statements):
                outcomes["refused by SQLite (constraint)"] += 1
                return
            outcomes[corruption.exercise(cp, original)] += 1
            corruption.damage(cp, statements)
            corruption.exercise_delete(cp)
        path.unlink()

    run()
    with capsys.disabled():
        print(f"\nSQLite mutated-rows fuzz, {sum(outcomes.values())} cases: {dict(outcomes.most_common())}")
    assert outcomes["corrupt"] > 0 and outcomes["loaded correctly"] > 0
