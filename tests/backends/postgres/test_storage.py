"""The stored layout: head and log rows, chunks and merge tiers, binary COPY loads, listing, purging."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, List

import pytest
from psycopg2 import sql

from agents_persist import AgentMessage, AgentStateSnapshot, CorruptSnapshotError, PostgresCheckpointer, codec
from agents_persist.backends.postgres import copy as pg_copy
from agents_persist.backends.postgres import store as pg_store
from tests.backends.postgres.helpers import admin, assert_contiguous, load_while_writing, log_rows, scalar, snapshot, table
from tests.spec import BackendSpec


def test_append_inserts_one_log_row_and_rewrite_replaces_the_log(cp: PostgresCheckpointer, pg_url: str, prefix: str) -> None:
    tid = prefix + "layout"
    state = snapshot("a", "b", "c")
    cp.save(tid, state)
    state.messages += [AgentMessage.assistant("d"), AgentMessage.user("e")]
    cp.save(tid, state)
    log = sql.SQL("SELECT seq, n FROM {} WHERE thread_id = %s ORDER BY seq").format(table(cp.schema, "agents_persist_log"))
    with admin(pg_url) as cursor:
        cursor.execute(log, (tid,))
        assert cursor.fetchall() == [(0, 3), (3, 2)]
        cursor.execute(
            sql.SQL("SELECT version, message_count FROM {} WHERE thread_id = %s").format(table(cp.schema, "agents_persist")),
            (tid,),
        )
        assert cursor.fetchone() == (2, 5)
    state.messages[0] = AgentMessage.user("A (edited)")
    cp.save(tid, state)
    with admin(pg_url) as cursor:
        cursor.execute(log, (tid,))
        assert cursor.fetchall() == [(0, 5)]
    loaded = cp.load(tid)
    assert loaded is not None
    assert [m.content for m in loaded.messages] == ["A (edited)", "b", "c", "d", "e"]


def test_log_column_uses_lz4_where_the_server_has_it(cp: PostgresCheckpointer, pg_url: str) -> None:
    cp.setup()
    has_lz4 = scalar(
        pg_url, "SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    )
    compression = scalar(
        pg_url,
        "SELECT attcompression FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'data'",
        (f'"{cp.schema}"."agents_persist_log"',),
    )
    assert compression == ("l" if has_lz4 else "")


def test_binary_unfriendly_content_round_trips(cp: PostgresCheckpointer, prefix: str) -> None:
    texts = ["nul\x00byte", "é ☃ 𝄞 中文", "\\x00 'quoted' \"dq\" %s %(x)s", "\u0100 stand-in char", "x" * 300_000]
    cp.save(prefix + "bin", snapshot(*texts))
    loaded = cp.load(prefix + "bin")
    assert loaded is not None and [m.content for m in loaded.messages] == texts


def test_large_rewrite_is_split_into_bounded_log_rows(
    cp: PostgresCheckpointer, pg_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_store, "CHUNK_BYTES", 1000)
    tid = prefix + "chunks"
    texts = [f"message {i} " + "y" * 300 for i in range(20)]
    cp.save(tid, snapshot(*texts))
    with admin(pg_url) as cursor:
        cursor.execute(
            sql.SQL("SELECT seq, n FROM {} WHERE thread_id = %s ORDER BY seq").format(
                table(cp.schema, "agents_persist_log")
            ),
            (tid,),
        )
        rows = cursor.fetchall()
    assert len(rows) > 1 and sum(n for _, n in rows) == 20
    assert all(seq == sum(n for _, n in rows[:i]) for i, (seq, _) in enumerate(rows))
    loaded = cp.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == texts



def test_log_rows_are_bytea_holding_the_encoded_messages_concatenated(
    cp: PostgresCheckpointer, pg_url: str, prefix: str
) -> None:
    tid = prefix + "raw"
    state = snapshot("one", "two\x00", "three")
    cp.save(tid, state)
    with admin(pg_url) as cursor:
        cursor.execute(
            sql.SQL("SELECT pg_typeof(data)::text, data FROM {} WHERE thread_id = %s").format(
                table(cp.schema, "agents_persist_log")
            ),
            (tid,),
        )
        kind, data = cursor.fetchone()
    assert kind == "bytea"
    assert bytes(data) == b"".join(codec.encode_messages(state.messages))


def test_appends_are_merged_into_tiers_and_every_load_is_intact(
    cp: PostgresCheckpointer, pg_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_store, "MERGE_ROWS", 4)
    tid = prefix + "tiers"
    state = snapshot("m0")
    cp.save(tid, state)
    for i in range(1, 65):
        state.messages.append(AgentMessage.user(f"m{i}"))
        cp.save(tid, state)
        rows = log_rows(pg_url, cp.schema, tid)
        assert_contiguous(rows, i + 1)
        # A rewrite row, then at most 3 rows per tier (tiers 0..3 for 64 appends of one row each).
        assert len(rows) <= 1 + 3 * 4, rows
        if i == 16:  # 16 = 4 x 4: four tier-1 rows were just merged into one tier-2 row
            assert rows == [(0, 1, pg_store.SEALED_TIER), (1, 16, 2)]
    assert log_rows(pg_url, cp.schema, tid) == [(0, 1, pg_store.SEALED_TIER), (1, 64, 3)]
    loaded = cp.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == [f"m{i}" for i in range(65)]
    # A rewrite seals the whole log again.
    state.messages[0] = AgentMessage.user("m0 (edited)")
    cp.save(tid, state)
    assert [tier for _, _, tier in log_rows(pg_url, cp.schema, tid)] == [pg_store.SEALED_TIER]


def test_a_merge_that_would_exceed_chunk_bytes_seals_the_rows_instead(
    cp: PostgresCheckpointer, pg_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_store, "MERGE_ROWS", 4)
    monkeypatch.setattr(pg_store, "CHUNK_BYTES", 1000)
    tid = prefix + "seal"
    texts = [f"message {i} " + "z" * 300 for i in range(9)]
    state = snapshot(texts[0])
    cp.save(tid, state)
    for text in texts[1:]:
        state.messages.append(AgentMessage.user(text))
        cp.save(tid, state)
    rows = log_rows(pg_url, cp.schema, tid)
    assert_contiguous(rows, 9)
    assert [tier for _, _, tier in rows] == [pg_store.SEALED_TIER] * 9  # 4 x 300 bytes > 1000: never merged
    loaded = cp.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == texts


def test_loads_never_mix_two_versions_while_appends_merge_log_rows(
    postgres_spec: BackendSpec, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_store, "MERGE_ROWS", 3)
    tid = prefix + "merging"
    writer, reader = postgres_spec.build(), postgres_spec.build()
    expected = [AgentMessage.user(f"m{i}") for i in range(400)]
    loads: List[int] = []

    def append(stop: threading.Event) -> None:
        state = AgentStateSnapshot(messages=expected[:1], metadata={"n": 1})
        writer.save(tid, state)
        while not stop.is_set() and len(state.messages) < len(expected):
            state.messages.append(expected[len(state.messages)])
            state.metadata["n"] = len(state.messages)
            writer.save(tid, state)

    def load() -> None:
        state = reader.load(tid)
        if state is not None:
            count = state.metadata["n"]
            assert state.messages == expected[:count], "head and log must come from one committed version"
            loads.append(count)

    try:
        load_while_writing(append, load)
    finally:
        writer.delete(tid)
        writer.close()
        reader.close()
    assert len(loads) > 10 and len(set(loads)) > 5


def test_a_load_is_one_copy_statement(cp: PostgresCheckpointer, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tid = prefix + "onetrip"
    cp.save(tid, snapshot("a", "b"))
    calls: List[str] = []
    original = cp.store._cursor

    class Recording:
        def __init__(self, cursor: Any) -> None:
            self._cursor = cursor

        def __getattr__(self, name: str) -> Any:
            attribute = getattr(self._cursor, name)
            if name in ("execute", "executemany", "callproc", "copy_expert", "copy_to", "copy_from"):
                calls.append(name)
            return attribute

    @contextmanager
    def recording_cursor(what: str) -> Iterator[Any]:
        with original(what) as cursor:
            yield Recording(cursor)

    monkeypatch.setattr(cp.store, "_cursor", recording_cursor)
    loaded = cp.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == ["a", "b"]
    assert calls == ["copy_expert"]
    assert cp.load(prefix + "missing") is None
    assert calls == ["copy_expert"] * 2


def test_corrupt_log_raises_corrupt_snapshot_naming_the_thread(cp: PostgresCheckpointer, pg_url: str, prefix: str) -> None:
    tid = prefix + "corrupt"
    cp.save(tid, snapshot("fine", "also fine"))
    with admin(pg_url) as cursor:
        cursor.execute(
            sql.SQL("UPDATE {} SET data = substring(data FROM 1 FOR 5) WHERE thread_id = %s").format(
                table(cp.schema, "agents_persist_log")
            ),
            (tid,),
        )
    with pytest.raises(CorruptSnapshotError) as info:
        cp.load(tid)
    assert info.value.thread_id == tid
    with pytest.raises(CorruptSnapshotError, match="COPY"):
        pg_copy.parse_load(b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\x00\x07\x00", tid)




def test_list_threads_prefix_treats_like_wildcards_literally(cp: PostgresCheckpointer, prefix: str) -> None:
    for name in ("50%_off\\x", "50xyoff\\x", "50%_offer", "5"):
        cp.save(prefix + name, snapshot(name))
    found = [info.thread_id for info in cp.list_threads(prefix + "50%_off").threads]
    assert sorted(found) == [prefix + "50%_off\\x", prefix + "50%_offer"]
    assert [info.thread_id for info in cp.list_threads(prefix + "50%_off\\").threads] == [prefix + "50%_off\\x"]



def test_purge_expired_deletes_heads_and_logs_in_batches(
    cp: PostgresCheckpointer, postgres_spec: BackendSpec, pg_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_store, "PURGE_BATCH", 4)
    short = postgres_spec.build(ttl=0.2)
    try:
        for i in range(11):
            short.save(f"{prefix}old{i}", snapshot("bye", "now"))
        cp.save(prefix + "keep", snapshot("stay"))
        time.sleep(0.3)
        assert short.purge_expired() >= 11
        with admin(pg_url) as cursor:
            for name in ("agents_persist", "agents_persist_log"):
                cursor.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE thread_id LIKE %s").format(table(cp.schema, name)),
                    (f"{prefix}old%",),
                )
                assert cursor.fetchone() == (0,)
        assert cp.exists(prefix + "keep")
        assert short.purge_expired() == 0
    finally:
        short.close()
