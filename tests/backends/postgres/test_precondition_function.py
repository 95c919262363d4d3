"""The server-side save function decides every case of the one precondition table as planning.precondition does.

Each case stores a head row (version, message count, digest) and that many log
messages with raw SQL under its own thread ID, then runs ``PostgresStore.write``
(one call of the save function) with the case's planned write. A case without a
live thread runs twice: with no row at all, and over a row that has expired.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Tuple

import pytest
from psycopg2 import sql

from agents_persist import ConflictError, PostgresCheckpointer
from agents_persist.backends.postgres import store as pg_store
from agents_persist.planning import Decision, PrefixMismatch
from tests.backends.postgres.helpers import admin, table
from tests.contract.precondition_cases import CASES, PreconditionCase

#: Messages the cases append or rewrite with (their contents do not matter to the save function).
NEW_MESSAGES = [b"\x01new one", b"\x01new two"]
#: A stored row that expired before the cases' writes (their updated_at is 1.7e9).
EXPIRED_ROW = (7, 2, bytes(range(3, 19)))
EXPIRED_AT = 1_600_000_000.0

VARIANTS = [(case, "live" if case.stored is not None else "missing") for case in CASES]
VARIANTS += [(case, "expired") for case in CASES if case.stored is None]


def store_thread(
    cp: PostgresCheckpointer, url: str, thread_id: str, stored: Tuple[int, int, bytes], expires_at: Optional[float]
) -> None:
    """A head row with ``stored`` = (version, count, digest) and ``count`` one-message log rows."""
    version, count, digest = stored
    threads = table(cp.schema, cp.table_name)
    messages = table(cp.schema, f"{cp.table_name}_messages")
    with admin(url) as cursor:
        cursor.execute(
            sql.SQL(
                "INSERT INTO {} (thread_id, version, message_count, digest, head, updated_at, expires_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            ).format(threads),
            (thread_id, version, count, digest, b"\x01\x80", 1_500_000_000.0, expires_at),
        )
        for seq in range(count):
            cursor.execute(
                sql.SQL("INSERT INTO {} (thread_id, seq, n, tier, data) VALUES (%s, %s, 1, %s, %s)").format(messages),
                (thread_id, seq, pg_store.SEALED_TIER, f"\x01old {seq}".encode()),
            )


def stored_state(cp: PostgresCheckpointer, url: str, thread_id: str) -> Tuple[Any, ...]:
    """(version, message_count, digest) of the head row and the log's message count; None for a missing head."""
    with admin(url) as cursor:
        cursor.execute(
            sql.SQL("SELECT version, message_count, digest FROM {} WHERE thread_id = %s").format(
                table(cp.schema, cp.table_name)
            ),
            (thread_id,),
        )
        head = cursor.fetchone()
        cursor.execute(
            sql.SQL("SELECT coalesce(sum(n), 0) FROM {} WHERE thread_id = %s").format(
                table(cp.schema, f"{cp.table_name}_messages")
            ),
            (thread_id,),
        )
        (logged,) = cursor.fetchone()
    return (None if head is None else (head[0], head[1], bytes(head[2])), int(logged))


@pytest.fixture
def thread_id(cp: PostgresCheckpointer, pg_url: str, prefix: str) -> Iterator[str]:
    """This case's own thread ID; its rows (and only they) are deleted afterwards."""
    tid = prefix + "precondition"
    cp.setup()
    try:
        yield tid
    finally:
        with admin(pg_url) as cursor:
            for name in (cp.table_name, f"{cp.table_name}_messages"):
                cursor.execute(sql.SQL("DELETE FROM {} WHERE thread_id = %s").format(table(cp.schema, name)), (tid,))


@pytest.mark.parametrize(("case", "variant"), VARIANTS, ids=[f"{c.name} ({v})" for c, v in VARIANTS])
def test_save_function_decides_like_the_precondition(
    cp: PostgresCheckpointer, pg_url: str, thread_id: str, case: PreconditionCase, variant: str
) -> None:
    if variant == "live":
        assert case.stored is not None
        store_thread(cp, pg_url, thread_id, case.stored, None)
    elif variant == "expired":
        store_thread(cp, pg_url, thread_id, EXPIRED_ROW, EXPIRED_AT)
    before = stored_state(cp, pg_url, thread_id)
    current_version = case.scalars()[0]
    write = case.write(list(NEW_MESSAGES))

    if case.decision is Decision.APPLY:
        assert cp.store.write(thread_id, write) == current_version + 1
        head, logged = stored_state(cp, pg_url, thread_id)
        assert head == (current_version + 1, write.message_count, write.digest)
        assert logged == write.message_count  # the kept prefix (appends only) plus the new messages
        return
    if case.decision is Decision.CONFLICT:
        with pytest.raises(ConflictError) as info:
            cp.store.write(thread_id, write)
        assert info.value.actual_version == current_version
        assert info.value.expected_version == case.expected_version
    else:
        with pytest.raises(PrefixMismatch):
            cp.store.write(thread_id, write)
    assert stored_state(cp, pg_url, thread_id) == before, "a refused write must change nothing"


def test_every_case_is_covered() -> None:
    decisions: List[Decision] = [case.decision for case, _ in VARIANTS]
    assert len({case.name for case, _ in VARIANTS}) == len(CASES)
    assert set(decisions) == set(Decision)
