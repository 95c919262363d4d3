"""Hypothesis fuzz of stored PostgreSQL rows: random and flipped bytes, truncations, wrong values of every column's
type (NaN, infinities, extreme integers, NULLs, arrays of other shapes), extra and missing rows, deep nesting. Every
read path must give the snapshot or CorruptSnapshotError, never another exception or a hang, and a forced save and a
delete must repair; the outcome classes of the loads are counted and printed in one line."""

from __future__ import annotations

import collections
import time
from typing import Counter, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents_persist import PostgresCheckpointer
from tests.backends.postgres import corruption
from tests.backends.postgres.corruption import LOG_COLUMNS, THREAD_COLUMNS, Statement
from tests.contract import corruption as shared
from tests.spec import BackendSpec

EXAMPLES = 120
#: Seconds the whole fuzz may take; hypothesis stops drawing cases after this.
BUDGET = 25.0
LOG_ROW = "thread_id = %s AND seq = (SELECT seq FROM {log} WHERE thread_id = %s ORDER BY seq LIMIT 1 OFFSET %s)"

_ints = st.one_of(
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.sampled_from([0, 1, -1, 2, 3, 12, 13, 32767, (1 << 31) - 1, -(1 << 31), (1 << 63) - 1, -(1 << 63)]),
)
values = st.one_of(
    st.none(),
    _ints,
    st.floats(),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 1e308, -1e308, 5e-324]),
    st.binary(max_size=40),
    st.text(max_size=20),
    st.lists(st.one_of(st.none(), st.binary(max_size=12)), max_size=4),
    st.lists(st.one_of(st.none(), _ints), max_size=4),
    st.lists(st.lists(_ints, min_size=2, max_size=2), min_size=1, max_size=2),
    st.lists(st.lists(st.binary(max_size=4), min_size=1, max_size=1), min_size=1, max_size=2),
)


def _where(table: str, row: int, victim: str) -> tuple:  # type: ignore[type-arg]
    return ("thread_id = %s", [victim]) if table == "threads" else (LOG_ROW, [victim, victim, row])


@st.composite
def mutation(draw: st.DrawFn, victim: str) -> List[Statement]:
    kind = draw(st.sampled_from(["value", "value", "flip", "truncate", "append", "delete row", "extra row", "shift", "deep"]))
    row = draw(st.integers(0, 5))
    if kind == "value":
        table, column, kind_of = draw(
            st.sampled_from(
                [("threads", c, t) for c, t in THREAD_COLUMNS.items()] + [("log", c, t) for c, t in LOG_COLUMNS.items()]
            )
        )
        where, params = _where(table, row, victim)
        return [(f"UPDATE {{{table}}} SET {column} = %s::{kind_of} WHERE {where}", [draw(values), *params])]
    if kind == "delete row":
        return [(f"DELETE FROM {{log}} WHERE {LOG_ROW}", [victim, victim, row])]
    if kind == "extra row":
        seq, n, tier = draw(st.integers(-3, 20)), draw(_ints), draw(st.integers(-5, 32767))
        data = draw(st.one_of(st.binary(max_size=20), st.just(b"\x01\x80")))
        return [
            (
                "INSERT INTO {log} (thread_id, seq, n, tier, data) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (thread_id, seq) DO UPDATE SET n = excluded.n, tier = excluded.tier, data = excluded.data",
                [victim, seq, n, tier, data],
            )
        ]
    if kind == "shift":
        where, params = _where("log", row, victim)
        return [(f"UPDATE {{log}} SET seq = seq + %s WHERE {where}", [draw(st.integers(-3, 3)), *params])]
    if kind == "deep":
        depth = draw(st.sampled_from([70, 1000, 100_000]))
        deep = b"\x01\x81\xa8metadata\x81\xa1a" + b"\x91" * depth + b"\xc0"
        table, column = draw(st.sampled_from([("threads", "head"), ("log", "data")]))
        where, params = _where(table, row, victim)
        return [(f"UPDATE {{{table}}} SET {column} = %s WHERE {where}", [deep, *params])]
    table, column = draw(st.sampled_from([("threads", "head"), ("threads", "digest"), ("log", "data")]))
    where, params = _where(table, row, victim)
    if kind == "flip":
        patch = draw(st.binary(min_size=1, max_size=4))
        sql = f"UPDATE {{{table}}} SET {column} = overlay({column} placing %s from %s) WHERE {where}"
        return [(sql, [patch, draw(st.integers(1, 300)), *params])]
    if kind == "truncate":
        sql = f"UPDATE {{{table}}} SET {column} = substring({column} from 1 for %s) WHERE {where}"
        return [(sql, [draw(st.integers(0, 300)), *params])]
    return [
        (f"UPDATE {{{table}}} SET {column} = {column} || %s WHERE {where}", [draw(st.binary(min_size=1, max_size=20)), *params])
    ]


def test_mutated_rows_give_the_snapshot_or_corrupt_snapshot_error(
    cp: PostgresCheckpointer,
    postgres_spec: BackendSpec,
    pg_url: str,
    schema: str,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = shared.Names(prefix)
    original = shared.build(cp, names)
    backup = corruption.Backup(pg_url, schema, names.victim)
    outcomes: Counter[str] = collections.Counter()
    deadline = time.monotonic() + BUDGET

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(mutation(names.victim), min_size=1, max_size=3))
    def run(mutations: List[List[Statement]]) -> None:
        if time.monotonic() > deadline:
            outcomes["not run (time budget)"] += 1
            return
        backup.restore()
        statements = [statement for m in mutations for statement in m]
        if not corruption.damage(pg_url, schema, statements):
            outcomes["refused by the server (types, constraints)"] += 1
            return
        outcomes[shared.exercise(cp, original, names)] += 1
        backup.restore()
        if corruption.damage(pg_url, schema, statements):
            shared.exercise_delete(cp, names, lambda: corruption.rows_left(pg_url, schema, names.victim))

    try:
        run()
    finally:
        backup.drop()
    with capsys.disabled():
        print(f"\nPostgreSQL mutated-rows fuzz, {sum(outcomes.values())} cases: {dict(outcomes.most_common())}")
    assert outcomes["corrupt"] > 0 and outcomes["loaded correctly"] > 0
