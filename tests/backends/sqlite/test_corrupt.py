"""Stored rows the library did not write: every read path gives the snapshot or CorruptSnapshotError, and repairs work.

Each case damages one thread with plain SQL (wrong types and extreme values in
every column, rows missing, extra, shifted, truncated), then
:func:`corruption.exercise` runs load, exists, get_version, list_threads,
iter_threads, purge_expired and the CLI over it, checks that the other threads
list and load unchanged, and repairs the thread with ``save(force=True)``;
``delete`` is checked the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Sequence, Tuple

import pytest

from agents_persist import CorruptSnapshotError

from . import corruption
from .corruption import LOG_COLUMNS, THREAD_COLUMNS, VICTIM

Statements = List[Tuple[str, Sequence[Any]]]

#: Values SQLite accepts in any column whatever its declared type.
VALUES: List[Tuple[str, Any]] = [
    ("text", "garbage"),
    ("utf8-less text", None),  # CAST(x'ff80' AS TEXT), set below
    ("blob", b"\x00\xff\x01"),
    ("empty blob", b""),
    ("null", None),
    ("negative", -1),
    ("zero", 0),
    ("max int", (1 << 63) - 1),
    ("min int", -(1 << 63)),
    ("huge real", 1e308),
    ("+inf", float("inf")),
    ("-inf", float("-inf")),
    ("fraction", 2.5),
    ("long text", "x" * 100_000),
]


def _set(table: str, column: str, label: str, value: Any) -> Statements:
    where = (
        "thread_id = ?"
        if table == "agents_persist_threads"
        else "thread_id = ? AND seq = (SELECT max(seq) FROM agents_persist_messages WHERE thread_id = ?)"
    )
    params: List[Any] = [VICTIM] if table == "agents_persist_threads" else [VICTIM, VICTIM]
    expression = "CAST(x'ff80' AS TEXT)" if label == "utf8-less text" else "?"
    values = [] if expression != "?" else [value]
    return [(f"UPDATE {table} SET {column} = {expression} WHERE {where}", [*values, *params])]


COLUMN_CASES = [
    pytest.param(_set(table, column, label, value), id=f"{column}={label}")
    for table, columns in (("agents_persist_threads", THREAD_COLUMNS), ("agents_persist_messages", LOG_COLUMNS))
    for column in columns
    for label, value in VALUES
]

LOG = "agents_persist_messages"
ROW_CASES = [
    pytest.param([(f"DELETE FROM {LOG} WHERE thread_id = ? AND seq = 0", [VICTIM])], id="first row missing"),
    pytest.param([(f"DELETE FROM {LOG} WHERE thread_id = ?", [VICTIM])], id="all rows missing"),
    pytest.param([(f"INSERT INTO {LOG} VALUES (?, 12, x'0181a0', 1)", [VICTIM])], id="extra row at the end"),
    pytest.param([(f"INSERT INTO {LOG} VALUES (?, 1000000, x'01', 1)", [VICTIM])], id="extra row far away"),
    pytest.param([(f"INSERT INTO {LOG} VALUES (?, -5, x'0181a0', 1)", [VICTIM])], id="extra row before"),
    pytest.param([(f"UPDATE {LOG} SET seq = seq + 1 WHERE thread_id = ? AND seq = 0", [VICTIM])], id="row shifted"),
    pytest.param(
        [(f"UPDATE {LOG} SET data = substr(data, 1, length(data) - 3) WHERE thread_id = ?", [VICTIM])], id="rows truncated"
    ),
    pytest.param([(f"UPDATE {LOG} SET data = data || x'c0' WHERE thread_id = ?", [VICTIM])], id="trailing byte"),
    pytest.param(
        [(f"UPDATE {LOG} SET data = zeroblob(20000000) WHERE thread_id = ? AND seq = 0", [VICTIM])], id="20 MB of zeros"
    ),
    pytest.param([(f"UPDATE {LOG} SET data = x'02' || substr(data, 2) WHERE thread_id = ?", [VICTIM])], id="newer format byte"),
    pytest.param([(f"UPDATE {LOG} SET n = 1000000 WHERE thread_id = ?", [VICTIM])], id="counts huge"),
    pytest.param(
        [("UPDATE agents_persist_threads SET message_count = 4000000000 WHERE thread_id = ?", [VICTIM])], id="count > 2**32"
    ),
    pytest.param(
        [("UPDATE agents_persist_threads SET head = x'01dd7fffffff' WHERE thread_id = ?", [VICTIM])], id="head claims 2**31 items"
    ),
    pytest.param(
        [("UPDATE agents_persist_threads SET applied = x'dd7fffffff' WHERE thread_id = ?", [VICTIM])], id="keys claim 2**31 items"
    ),
    pytest.param(
        [("UPDATE agents_persist_threads SET thread_id = CAST(x'ff80' AS TEXT) WHERE thread_id = ?", [VICTIM])], id="id not utf-8"
    ),
    pytest.param([("UPDATE agents_persist_threads SET thread_id = x'01' WHERE thread_id = ?", [VICTIM])], id="id a blob"),
    pytest.param([("UPDATE agents_persist_threads SET thread_id = 42 WHERE thread_id = ?", [VICTIM])], id="id an int"),
    pytest.param([("DELETE FROM agents_persist_threads WHERE thread_id = ?", [VICTIM])], id="head row missing"),
    pytest.param(
        [("UPDATE agents_persist_threads SET tail_seq = 3, tail_rows = 7 WHERE thread_id = ?", [VICTIM])], id="tail lies"
    ),
]


def _run(tmp_path: Path, statements: Statements, *, cli: bool = False) -> str:
    cp, original = corruption.build(tmp_path / "c.db")
    try:
        if not corruption.damage(cp, statements):
            pytest.skip("SQLite itself refuses this value here (NOT NULL / key constraint)")
        outcome = corruption.exercise(cp, original, cli=cli)
        corruption.damage(cp, statements)
        corruption.exercise_delete(cp)
        return outcome
    finally:
        cp.close()


@pytest.mark.parametrize("statements", COLUMN_CASES)
def test_a_wrong_value_in_any_column_gives_the_snapshot_or_corrupt_snapshot_error(tmp_path: Path, statements: Statements) -> None:
    _run(tmp_path, statements)


@pytest.mark.parametrize("statements", ROW_CASES)
def test_missing_extra_and_damaged_rows_give_the_snapshot_or_corrupt_snapshot_error(
    tmp_path: Path, statements: Statements
) -> None:
    _run(tmp_path, statements, cli=True)


def test_the_error_names_the_thread_and_the_part(tmp_path: Path) -> None:
    cp, _ = corruption.build(tmp_path / "n.db")
    try:
        corruption.damage(cp, _set("agents_persist_threads", "version", "text", "garbage"))
        with pytest.raises(CorruptSnapshotError, match=r"thread 'victim': the stored version is corrupt") as info:
            cp.load(VICTIM)
        assert info.value.thread_id == VICTIM and "force=True" in str(info.value)
        with pytest.raises(CorruptSnapshotError, match="version"):
            cp.get_version(VICTIM)
        corruption.damage(cp, [("UPDATE agents_persist_threads SET version = 3 WHERE thread_id = ?", [VICTIM])])
        corruption.damage(cp, [(f"DELETE FROM {LOG} WHERE thread_id = ? AND seq = 0", [VICTIM])])
        with pytest.raises(CorruptSnapshotError, match=r"stored message log is corrupt: a row at int 3 where position 0 belongs"):
            cp.load(VICTIM)
    finally:
        cp.close()


def test_a_checked_save_or_append_over_a_corrupt_head_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    cp, original = corruption.build(tmp_path / "s.db")
    try:
        corruption.damage(cp, _set("agents_persist_threads", "digest", "text", "garbage"))
        with pytest.raises(CorruptSnapshotError, match="digest"):
            cp.save(VICTIM, original)  # loaded at version 4: a compare-and-set needs the stored head
        with pytest.raises(CorruptSnapshotError, match="digest"):
            cp.append(VICTIM, original.messages[:1])
        with corruption.raw(cp) as conn:
            assert conn.execute("SELECT digest FROM agents_persist_threads WHERE thread_id = ?", (VICTIM,)).fetchone() == (
                "garbage",
            )
    finally:
        cp.close()


def test_deep_nesting_is_corrupt_not_a_recursion_error(tmp_path: Path) -> None:
    """The codec turns nesting beyond the decoder's budget into CorruptSnapshotError."""
    deep_head = b"\x01\x81\xa8metadata\x81\xa1a" + b"\x91" * 100_000 + b"\xc0"
    cp, _ = corruption.build(tmp_path / "d.db")
    try:
        corruption.damage(cp, [("UPDATE agents_persist_threads SET head = ? WHERE thread_id = ?", [deep_head, VICTIM])])
        with pytest.raises(CorruptSnapshotError):
            cp.load(VICTIM)
    finally:
        cp.close()


def test_a_thread_listed_with_placeholder_values_is_flagged_corrupt(tmp_path: Path) -> None:
    cp, _ = corruption.build(tmp_path / "flag.db")
    try:
        corruption.damage(cp, [("UPDATE agents_persist_threads SET version = 'x' WHERE thread_id = ?", [VICTIM])])
        listed = {info.thread_id: info for info in cp.list_threads()}
        assert listed[VICTIM].corrupt and listed[VICTIM].version == 0
        assert not any(info.corrupt for tid, info in listed.items() if tid != VICTIM)
    finally:
        cp.close()
