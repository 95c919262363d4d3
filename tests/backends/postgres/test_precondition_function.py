"""The server-side save function decides every case of the one precondition table as planning.precondition does.

Each case stores a head row (version, message count, digest, generation
``STORED_GENERATION``, applied key ``APPLIED_KEY``) and that many log messages
with raw SQL under its own thread ID, then runs ``PostgresStore.write`` (one
call of the save function) with the case's planned write. A case without a
live thread runs twice: with no row at all, and over a row that has expired
(which has a generation and that key too, both of which must then not count).
"""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Tuple

import msgspec
import pytest
from psycopg2 import sql

from agents_persist import ConflictError, PostgresCheckpointer
from agents_persist.backends.postgres import store as pg_store
from agents_persist.planning import MAX_APPLIED_KEYS, Applied, Decision, PrefixMismatch, Written, record_applied
from tests.backends.postgres.helpers import admin, table
from tests.contract.precondition_cases import (
    APPLIED_KEY,
    APPLIED_VERSION,
    CASES,
    LIVE,
    NEW_GENERATION,
    STORED_GENERATION,
    PreconditionCase,
)

#: Messages the cases append or rewrite with (their contents do not matter to the save function).
NEW_MESSAGES = [b"\x01new one", b"\x01new two"]
#: A stored row that expired before the cases' writes (their updated_at is 1.7e9).
EXPIRED_ROW = (7, 2, bytes(range(3, 19)))
EXPIRED_AT = 1_600_000_000.0

VARIANTS = [(case, "live" if case.stored is not None else "missing") for case in CASES]
VARIANTS += [(case, "expired") for case in CASES if case.stored is None]


#: The head blob of the stored rows (the cases write ``b"\x01\x80"``).
STORED_HEAD = b"\x01\x81stored"
STORED_APPLIED: Applied = ((APPLIED_KEY, APPLIED_VERSION),)


def store_thread(
    cp: PostgresCheckpointer,
    url: str,
    thread_id: str,
    stored: Tuple[int, int, bytes],
    expires_at: Optional[float],
    applied: Applied = STORED_APPLIED,
) -> None:
    """A head row with ``stored`` = (version, count, digest), generation and ``applied``, and ``count`` one-message log rows."""
    version, count, digest = stored
    threads = table(cp.schema, cp.table_name)
    messages = table(cp.schema, f"{cp.table_name}_log")
    with admin(url) as cursor:
        cursor.execute(
            sql.SQL(
                "INSERT INTO {} (thread_id, version, message_count, digest, head, updated_at, expires_at,"
                " generation, applied_keys, applied_versions)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::bytea[], %s::bigint[])"
            ).format(threads),
            (
                thread_id,
                version,
                count,
                digest,
                STORED_HEAD,
                1_500_000_000.0,
                expires_at,
                STORED_GENERATION,
                [key.encode() for key, _ in applied],
                [v for _, v in applied],
            ),
        )
        for seq in range(count):
            cursor.execute(
                sql.SQL("INSERT INTO {} (thread_id, seq, n, tier, data) VALUES (%s, %s, 1, %s, %s)").format(messages),
                (thread_id, seq, pg_store.SEALED_TIER, f"\x01old {seq}".encode()),
            )


def stored_state(cp: PostgresCheckpointer, url: str, thread_id: str) -> Tuple[Any, ...]:
    """(version, message_count, digest, head, generation, applied) of the head row and the log's message count.

    The head is None for a missing row.
    """
    with admin(url) as cursor:
        cursor.execute(
            sql.SQL(
                "SELECT version, message_count, digest, head, generation, applied_keys, applied_versions"
                " FROM {} WHERE thread_id = %s"
            ).format(table(cp.schema, cp.table_name)),
            (thread_id,),
        )
        row = cursor.fetchone()
        head = None
        if row is not None:
            version, count, digest, blob, generation, keys, versions = row
            applied = tuple((bytes(key).decode(), v) for key, v in zip(keys, versions))
            head = (version, count, bytes(digest), bytes(blob), generation, applied)
        cursor.execute(
            sql.SQL("SELECT coalesce(sum(n), 0) FROM {} WHERE thread_id = %s").format(
                table(cp.schema, f"{cp.table_name}_log")
            ),
            (thread_id,),
        )
        (logged,) = cursor.fetchone()
    return (head, int(logged))


@pytest.fixture
def thread_id(cp: PostgresCheckpointer, pg_url: str, prefix: str) -> Iterator[str]:
    """This case's own thread ID; its rows (and only they) are deleted afterwards."""
    tid = prefix + "precondition"
    cp.setup()
    try:
        yield tid
    finally:
        with admin(pg_url) as cursor:
            for name in (cp.table_name, f"{cp.table_name}_log"):
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
    current_version, _, _, generation, applied = case.scalars()
    if case.stored is None:
        generation = NEW_GENERATION  # a thread that is created gets the write's generation
    write = case.write(list(NEW_MESSAGES))

    if case.decision is Decision.APPLY:
        assert cp.store.write(thread_id, write) == Written(current_version + 1, generation)
        head, logged = stored_state(cp, pg_url, thread_id)
        new_applied = record_applied(applied, write.idempotency_key, current_version + 1)
        assert head == (current_version + 1, write.message_count, write.digest, write.head, generation, new_applied)
        assert logged == write.message_count  # the kept prefix (appends only) plus the new messages
        return
    if case.decision is Decision.DUPLICATE:
        assert cp.store.write(thread_id, write) == Written(APPLIED_VERSION, STORED_GENERATION, duplicate=True)
    elif case.decision is Decision.CONFLICT:
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


def case_named(name: str) -> PreconditionCase:
    return next(case for case in CASES if case.name == name)


@pytest.mark.parametrize("variant", ["live", "missing", "expired"])
def test_keep_head_keeps_the_head_blob_of_a_live_thread_only(
    cp: PostgresCheckpointer, pg_url: str, thread_id: str, variant: str
) -> None:
    if variant == "live":
        case = case_named("append unchecked on the stored prefix")
        store_thread(cp, pg_url, thread_id, LIVE, None)
    else:
        case = case_named("append from 0 onto nothing")
        if variant == "expired":
            store_thread(cp, pg_url, thread_id, EXPIRED_ROW, EXPIRED_AT)
    write = msgspec.structs.replace(case.write(list(NEW_MESSAGES)), keep_head=True)
    cp.store.write(thread_id, write)
    head, _ = stored_state(cp, pg_url, thread_id)
    assert head[3] == (STORED_HEAD if variant == "live" else write.head)


def test_applied_keys_are_bounded_and_the_oldest_is_dropped(cp: PostgresCheckpointer, pg_url: str, thread_id: str) -> None:
    full: Applied = tuple((f"key-{i}", i + 1) for i in range(MAX_APPLIED_KEYS))
    store_thread(cp, pg_url, thread_id, LIVE, None, applied=full)
    write = msgspec.structs.replace(case_named("rewrite unchecked over a live thread").write([]), idempotency_key="newest")
    assert cp.store.write(thread_id, write) == Written(LIVE[0] + 1, STORED_GENERATION)
    expected = (*full[1:], ("newest", LIVE[0] + 1))
    head, _ = stored_state(cp, pg_url, thread_id)
    assert head[5] == expected
    read = cp.store.read_head(thread_id)
    assert read is not None and read.applied == expected and read.generation == STORED_GENERATION
    loaded = cp.store.read(thread_id)
    assert loaded is not None and loaded.applied == expected and loaded.generation == STORED_GENERATION
    # A key still recorded is a duplicate; the one dropped applies again.
    assert cp.store.write(thread_id, msgspec.structs.replace(write, idempotency_key="key-1")) == Written(
        2, STORED_GENERATION, duplicate=True
    )
    assert cp.store.write(thread_id, msgspec.structs.replace(write, idempotency_key="key-0")) == Written(
        LIVE[0] + 2, STORED_GENERATION
    )
