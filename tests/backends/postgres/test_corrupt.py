"""Stored PostgreSQL rows the library did not write: every read path gives the snapshot or CorruptSnapshotError,
one corrupt thread never breaks a listing, and ``save(force=True)`` and ``delete()`` repair.

Each case damages one thread with plain SQL (extreme values of every column's
type, NULLs where allowed, arrays of other shapes, rows missing, extra,
shifted, truncated), then :func:`tests.contract.corruption.exercise` runs
load, exists, get_version, the partial reads, list_threads, iter_threads,
purge_expired and the CLI over it, checks that the other threads list and load
unchanged, and repairs the thread with a forced save; ``delete`` is checked
the same way.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, List, Sequence, Tuple

import pytest

from agents_persist import AgentStateSnapshot, CorruptSnapshotError, PostgresCheckpointer
from agents_persist.backends.postgres.store import SEALED_TIER
from tests.backends.postgres import corruption, helpers
from tests.backends.postgres.corruption import LOG_COLUMNS, THREAD_COLUMNS
from tests.cli.helpers import spec_url
from tests.contract import corruption as shared
from tests.spec import BackendSpec

Statements = List[Tuple[str, Sequence[Any]]]
LAST_ROW = "thread_id = %s AND seq = (SELECT max(seq) FROM {log} WHERE thread_id = %s)"

_INTEGERS = {"bigint": 63, "integer": 31, "smallint": 15}
#: Values of each declared type that the library never writes.
VALUES = {
    **{
        kind: [
            ("negative", -1),
            ("zero", 0),
            ("max", (1 << bits) - 1),
            ("min", -(1 << bits)),
            ("2**31 - 2", min((1 << 31) - 2, (1 << bits) - 1)),
        ]
        for kind, bits in _INTEGERS.items()
    },
    "double precision": [
        ("nan", float("nan")),
        ("+inf", float("inf")),
        ("-inf", float("-inf")),
        ("huge", 1e308),
        ("-huge", -1e308),
        ("negative", -1.0),
    ],
    "bytea": [("empty", b""), ("garbage", b"\x00\xff\x01"), ("long", b"x" * 100_000)],
    "bytea[]": [("null element", [None]), ("2-D", [[b"a"], [b"b"]]), ("one more key", [b"key-1", b"key-2"]), ("empty", [])],
    "bigint[]": [("null element", [None]), ("2-D", [[1, 2], [3, 4]]), ("one more", [4, 5]), ("empty", []), ("negative", [-7])],
}


def _set(table: str, column: str, kind: str, value: Any) -> Statements:
    where, params = ("thread_id = %s", ["@"]) if table == "threads" else (LAST_ROW, ["@", "@"])
    return [(f"UPDATE {{{table}}} SET {column} = %s::{kind} WHERE {where}", [value, *params])]


COLUMN_CASES = [
    pytest.param(_set(table, column, kind, value), id=f"{column}={label}")
    for table, columns in (("threads", THREAD_COLUMNS), ("log", LOG_COLUMNS))
    for column, kind in columns.items()
    for label, value in VALUES[kind] + ([("null", None)] if column == "expires_at" else [])
]

ROW_CASES = [
    pytest.param([("DELETE FROM {log} WHERE thread_id = %s AND seq = 0", ["@"])], id="first row missing"),
    pytest.param([("DELETE FROM {log} WHERE thread_id = %s", ["@"])], id="all rows missing"),
    pytest.param([("INSERT INTO {log} VALUES (%s, 12, 1, 0, '\\x0181a0'::bytea)", ["@"])], id="extra row at the end"),
    pytest.param([("INSERT INTO {log} VALUES (%s, 1000000, 1, 0, '\\x01'::bytea)", ["@"])], id="extra row far away"),
    pytest.param([("INSERT INTO {log} VALUES (%s, -5, 1, 0, '\\x0181a0'::bytea)", ["@"])], id="extra row before"),
    pytest.param([("UPDATE {log} SET seq = seq + 1 WHERE thread_id = %s AND seq = 0", ["@"])], id="row shifted"),
    pytest.param(
        [("UPDATE {log} SET data = substring(data from 1 for length(data) - 3) WHERE thread_id = %s", ["@"])], id="rows truncated"
    ),
    pytest.param([("UPDATE {log} SET data = data || '\\xc0'::bytea WHERE thread_id = %s", ["@"])], id="trailing byte"),
    pytest.param(
        [("UPDATE {log} SET data = decode(repeat('00', 20000000), 'hex') WHERE thread_id = %s AND seq = 0", ["@"])],
        id="20 MB of zeros",
    ),
    pytest.param(
        [("UPDATE {log} SET data = '\\x02'::bytea || substring(data from 2) WHERE thread_id = %s", ["@"])], id="newer format byte"
    ),
    pytest.param([("UPDATE {log} SET n = 1000000 WHERE thread_id = %s", ["@"])], id="counts huge"),
    pytest.param([("UPDATE {log} SET tier = 0, n = 2147483647 WHERE thread_id = %s", ["@"])], id="counts overflow a merge"),
    pytest.param(
        [("UPDATE {threads} SET head = '\\x01dd7fffffff'::bytea WHERE thread_id = %s", ["@"])], id="head claims 2**31 items"
    ),
    pytest.param(
        [("UPDATE {threads} SET applied_versions = applied_versions || 9::bigint WHERE thread_id = %s", ["@"])],
        id="keys and versions differ",
    ),
    pytest.param(
        [("UPDATE {threads} SET applied_keys = ARRAY['\\xff80'::bytea] WHERE thread_id = %s", ["@"])], id="key not utf-8"
    ),
    pytest.param(
        [("UPDATE {threads} SET version = 9223372036854775807, tail_rows = -5 WHERE thread_id = %s", ["@"])],
        id="version max, tail negative",
    ),
    pytest.param([("DELETE FROM {threads} WHERE thread_id = %s", ["@"])], id="head row missing"),
]


def _bound(statements: Statements, victim: str) -> Statements:
    return [(text, [victim if p == "@" else p for p in params]) for text, params in statements]


@pytest.fixture
def damaged(cp: PostgresCheckpointer, pg_url: str, schema: str, prefix: str) -> Iterator[Any]:
    names = shared.Names(prefix)
    original = shared.build(cp, names)

    def apply(statements: Statements) -> Tuple[shared.Names, AgentStateSnapshot]:
        if not corruption.damage(pg_url, schema, _bound(statements, names.victim)):
            pytest.skip("the server refuses this value here (type, range or key constraint)")
        return names, original

    yield apply


def _run(cp: PostgresCheckpointer, damaged: Any, pg_url: str, schema: str, statements: Statements, cli: str = "") -> str:
    names, original = damaged(statements)
    outcome = shared.exercise(cp, original, names, cli_url=cli or None)
    damaged(statements)
    shared.exercise_delete(cp, names, lambda: corruption.rows_left(pg_url, schema, names.victim))
    return outcome


@pytest.mark.parametrize("statements", COLUMN_CASES)
def test_a_wrong_value_in_any_column_gives_the_snapshot_or_corrupt_snapshot_error(
    cp: PostgresCheckpointer, damaged: Any, pg_url: str, schema: str, statements: Statements
) -> None:
    _run(cp, damaged, pg_url, schema, statements)


@pytest.mark.parametrize("statements", ROW_CASES)
def test_missing_extra_and_damaged_rows_give_the_snapshot_or_corrupt_snapshot_error(
    cp: PostgresCheckpointer, damaged: Any, pg_url: str, schema: str, postgres_spec: BackendSpec, statements: Statements
) -> None:
    _run(cp, damaged, pg_url, schema, statements, cli=spec_url(postgres_spec))


def test_a_corrupt_thread_is_listed_with_placeholder_values_and_a_warning(
    cp: PostgresCheckpointer, damaged: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """As on SQLite: a listing never raises for one bad row (it once raised OverflowError/ValueError)."""
    names, _ = damaged(_set("threads", "updated_at", "double precision", 1e308) + _set("threads", "version", "bigint", -1))
    with caplog.at_level(logging.WARNING):
        page = cp.list_threads(prefix=names.prefix)
    listed = {info.thread_id: info for info in page.threads}
    assert set(listed) == {names.victim, *names.healthy}
    assert listed[names.victim].version == 0 and listed[names.victim].updated_at.year == 9999
    assert any(names.victim in record.getMessage() for record in caplog.records)


def test_the_error_names_the_thread_and_the_part_and_a_checked_save_writes_nothing(
    cp: PostgresCheckpointer, damaged: Any, pg_url: str, schema: str
) -> None:
    names, original = damaged(_set("threads", "applied_versions", "bigint[]", [[1, 2], [3, 4]]))
    with pytest.raises(
        CorruptSnapshotError, match=r"thread '.*victim': .*the versions of the idempotency keys are not a one-dimensional array"
    ) as info:
        cp.load(names.victim)
    assert info.value.thread_id == names.victim and "force=True" in str(info.value)
    for call in (lambda: cp.save(names.victim, original), lambda: cp.append(names.victim, original.messages[:1])):
        with pytest.raises(CorruptSnapshotError, match="head row"):
            call()
    assert corruption.rows_left(pg_url, schema, names.victim) > 1
    with pytest.raises(CorruptSnapshotError, match="idempotency keys"):
        cp.load(names.victim)


def test_an_append_that_merges_over_damaged_log_rows_seals_them_instead(
    cp: PostgresCheckpointer, damaged: Any, pg_url: str, schema: str
) -> None:
    """A merge once summed the rows' counts into an integer (out of range) or joined rows that are no run."""
    names, original = damaged(
        [
            ("UPDATE {log} SET tier = 0, n = 2147483647 WHERE thread_id = %s", ["@"]),
            ("UPDATE {threads} SET tail_rows = 15 WHERE thread_id = %s", ["@"]),
        ]
    )
    cp.append(names.victim, original.messages[:1])
    *old, new = helpers.log_rows(pg_url, schema, names.victim)
    assert {tier for _, _, tier in old} == {SEALED_TIER} and new[2] == 0
    loaded = cp.load(names.victim)  # a full load reads only the rows' bytes, which are intact
    assert loaded is not None and loaded.messages == original.messages + original.messages[:1]
    with pytest.raises(CorruptSnapshotError, match="claims"):
        cp.load_messages(names.victim, 0, 3)  # a partial read follows the counts
