"""What only the PostgreSQL backend has: layout, identifiers, migrations, pool, fork safety, outages."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Tuple, Union

import psycopg2
import psycopg2.pool
import pytest
from psycopg2 import sql

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    CorruptSnapshotError,
    PostgresCheckpointer,
    codec,
    from_url,
)
from agents_persist.backends import postgres as pg_backend
from tests.fixtures.postgres import POSTGRES_TEST_OPTIONS, drop_schema, unique_schema
from tests.servers import ExternalServer, PostgresServer, free_port
from tests.spec import BackendSpec

Server = Union[PostgresServer, ExternalServer]
#: Generous bound for "raised quickly, did not hang" (connect_timeout is 3 s in these tests).
NO_HANG_SECONDS = 8.0


@contextmanager
def admin(url: str) -> Iterator[Any]:
    """An autocommit psycopg2 cursor of the test itself (not the library's)."""
    conn = psycopg2.connect(url, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


def scalar(url: str, query: Any, params: Tuple[Any, ...] = ()) -> Any:
    with admin(url) as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
    return None if row is None else row[0]


def table(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def snapshot(*texts: str) -> AgentStateSnapshot:
    return AgentStateSnapshot(messages=[AgentMessage.user(t) for t in texts])


def with_app_name(url: str, app: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={app}"


def backend_pids(url: str, app: str) -> List[int]:
    with admin(url) as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid", (app,))
        return [row[0] for row in cursor.fetchall()]


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def pg_url(postgres_server: Server) -> str:
    return postgres_server.url


@pytest.fixture
def schema(postgres_spec: BackendSpec) -> str:
    return str(postgres_spec.options["schema"])


@pytest.fixture
def cp(postgres_spec: BackendSpec, prefix: str) -> Iterator[PostgresCheckpointer]:
    checkpointer = postgres_spec.build()
    assert isinstance(checkpointer, PostgresCheckpointer)
    try:
        yield checkpointer
    finally:
        if not checkpointer.closed:
            for info in list(checkpointer.iter_threads(prefix)):
                checkpointer.delete(info.thread_id)
            checkpointer.close()


@pytest.fixture
def fresh_schema(pg_url: str) -> Iterator[str]:
    """A schema name that does not exist yet; dropped afterwards."""
    name = unique_schema("fresh_")
    try:
        yield name
    finally:
        drop_schema(pg_url, name)


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL cluster only this module stops and restarts (never an external one)."""
    server = PostgresServer.start(tmp_path_factory.mktemp("pg-restart"))
    try:
        yield server
    finally:
        server.cleanup()


# ---------------------------------------------------------------------- identifiers and URLs


@pytest.mark.parametrize(
    "options",
    [
        {"table_name": "x; drop table y"},
        {"table_name": 'agents"; --'},
        {"table_name": "a.b.c"},
        {"table_name": ""},
        {"table_name": "9lives"},
        {"table_name": "x$body$"},
        {"table_name": "t" * (pg_backend.MAX_TABLE_NAME_BYTES + 1)},
        {"schema": "public; drop schema public"},
        {"schema": "pg_agents"},
        {"schema": "a", "table_name": "b.agents"},
    ],
)
def test_unsafe_names_are_refused_before_any_sql(options: Dict[str, str]) -> None:
    # Nothing listens on that port: a connection attempt would raise BackendUnavailableError instead.
    with pytest.raises(ConfigurationError):
        PostgresCheckpointer(f"postgresql://nobody@127.0.0.1:{free_port()}/db", **options)


def test_hyphenated_and_schema_qualified_names_work_quoted(pg_url: str, schema: str, fresh_schema: str, prefix: str) -> None:
    with PostgresCheckpointer(pg_url, schema=schema, table_name="x-y") as hyphen:
        hyphen.save(prefix + "a", snapshot("one"))
        loaded = hyphen.load(prefix + "a")
        assert loaded is not None and loaded.messages[0].content == "one"
        hyphen.delete(prefix + "a")
    with PostgresCheckpointer(pg_url, table_name=f"{fresh_schema}.agents") as qualified:
        assert (qualified.schema, qualified.table_name) == (fresh_schema, "agents")
        qualified.save(prefix + "b", snapshot("two"))
        assert qualified.load(prefix + "b") is not None
    with admin(pg_url) as cursor:
        cursor.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN (%s, %s) AND tablename LIKE ANY (%s)",
            (schema, fresh_schema, ["x-y%", "agents%"]),
        )
        tables = set(cursor.fetchall())
    assert {(schema, "x-y"), (schema, "x-y_messages"), (schema, "x-y_migrations")} <= tables
    assert {(fresh_schema, "agents"), (fresh_schema, "agents_messages"), (fresh_schema, "agents_migrations")} <= tables


def test_from_url_splits_library_options_from_libpq_parameters(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-url-{uuid.uuid4().hex[:8]}"
    url = pg_url.replace("postgresql://", "postgres://") + (
        f"?sslmode=disable&application_name={app}&schema={schema}&table_name=viaurl&max_connections=3&timeout=2.5"
    )
    checkpointer = from_url(url)
    try:
        assert isinstance(checkpointer, PostgresCheckpointer)
        assert (checkpointer.schema, checkpointer.table_name) == (schema, "viaurl")
        assert (checkpointer.max_connections, checkpointer.timeout) == (3, 2.5)
        checkpointer.save(prefix + "u", snapshot("x"))
        assert backend_pids(pg_url, app), "libpq parameters (application_name) must reach the server"
        checkpointer.delete(prefix + "u")
    finally:
        checkpointer.close()


def test_passwords_never_appear_in_repr_or_errors() -> None:
    port = free_port()  # nothing listens there
    for dsn in (
        f"postgresql://agent:s3cr3t-pw@127.0.0.1:{port}/db?connect_timeout=2",
        f"host=127.0.0.1 port={port} user=agent password=s3cr3t-pw dbname=db connect_timeout=2",
    ):
        checkpointer = PostgresCheckpointer(dsn)
        assert "s3cr3t-pw" not in repr(checkpointer)
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            checkpointer.load("t")
        assert time.monotonic() - started < NO_HANG_SECONDS
        assert "s3cr3t-pw" not in str(info.value)
        assert "s3cr3t-pw" not in str(info.value.__cause__)
        checkpointer.close()


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://bob:hunter%zz2@127.0.0.1/db", "host=127.0.0.1 user=bob password=hunter2 secret dbname=db"],
)
def test_malformed_dsn_errors_do_not_quote_the_password(dsn: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresCheckpointer(dsn)
    assert "hunter" not in str(info.value) and "secret" not in str(info.value)


def test_module_imports_without_psycopg2_and_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg2'] = None\n"
        "from agents_persist import ConfigurationError, from_url\n"
        "try:\n"
        "    from_url('postgresql://agent:pw@127.0.0.1/db')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install agents_persist[postgres]" in result.stdout


def test_exactly_one_of_dsn_and_pool_is_required() -> None:
    with pytest.raises(ConfigurationError):
        PostgresCheckpointer()
    with pytest.raises(ConfigurationError):
        PostgresCheckpointer(max_connections=0, dsn="postgresql://h/db")


# ---------------------------------------------------------------------- layout and migrations


def test_append_inserts_one_log_row_and_rewrite_replaces_the_log(cp: PostgresCheckpointer, pg_url: str, prefix: str) -> None:
    tid = prefix + "layout"
    state = snapshot("a", "b", "c")
    cp.save(tid, state)
    state.messages += [AgentMessage.assistant("d"), AgentMessage.user("e")]
    cp.save(tid, state)
    log = sql.SQL("SELECT seq, n FROM {} WHERE thread_id = %s ORDER BY seq").format(table(cp.schema, "agents_persist_messages"))
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
        (f'"{cp.schema}"."agents_persist_messages"',),
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
    monkeypatch.setattr(pg_backend, "CHUNK_BYTES", 1000)
    tid = prefix + "chunks"
    texts = [f"message {i} " + "y" * 300 for i in range(20)]
    cp.save(tid, snapshot(*texts))
    with admin(pg_url) as cursor:
        cursor.execute(
            sql.SQL("SELECT seq, n FROM {} WHERE thread_id = %s ORDER BY seq").format(
                table(cp.schema, "agents_persist_messages")
            ),
            (tid,),
        )
        rows = cursor.fetchall()
    assert len(rows) > 1 and sum(n for _, n in rows) == 20
    assert all(seq == sum(n for _, n in rows[:i]) for i, (seq, _) in enumerate(rows))
    loaded = cp.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == texts


def log_rows(url: str, schema: str, thread_id: str) -> List[Tuple[int, int, int]]:
    """(seq, n, tier) of every log row of ``thread_id``, in order."""
    with admin(url) as cursor:
        cursor.execute(
            sql.SQL("SELECT seq, n, tier FROM {} WHERE thread_id = %s ORDER BY seq").format(
                table(schema, "agents_persist_messages")
            ),
            (thread_id,),
        )
        return [tuple(row) for row in cursor.fetchall()]


def assert_contiguous(rows: List[Tuple[int, int, int]], count: int) -> None:
    assert all(seq == sum(n for _, n, _ in rows[:i]) for i, (seq, _, _) in enumerate(rows)), rows
    assert sum(n for _, n, _ in rows) == count, rows


def test_log_rows_are_bytea_holding_the_encoded_messages_concatenated(
    cp: PostgresCheckpointer, pg_url: str, prefix: str
) -> None:
    tid = prefix + "raw"
    state = snapshot("one", "two\x00", "three")
    cp.save(tid, state)
    with admin(pg_url) as cursor:
        cursor.execute(
            sql.SQL("SELECT pg_typeof(data)::text, data FROM {} WHERE thread_id = %s").format(
                table(cp.schema, "agents_persist_messages")
            ),
            (tid,),
        )
        kind, data = cursor.fetchone()
    assert kind == "bytea"
    assert bytes(data) == b"".join(codec.encode_messages(state.messages))


def test_appends_are_merged_into_tiers_and_every_load_is_intact(
    cp: PostgresCheckpointer, pg_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_backend, "MERGE_ROWS", 4)
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
            assert rows == [(0, 1, pg_backend.SEALED_TIER), (1, 16, 2)]
    assert log_rows(pg_url, cp.schema, tid) == [(0, 1, pg_backend.SEALED_TIER), (1, 64, 3)]
    loaded = cp.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == [f"m{i}" for i in range(65)]
    # A rewrite seals the whole log again.
    state.messages[0] = AgentMessage.user("m0 (edited)")
    cp.save(tid, state)
    assert [tier for _, _, tier in log_rows(pg_url, cp.schema, tid)] == [pg_backend.SEALED_TIER]


def test_a_merge_that_would_exceed_chunk_bytes_seals_the_rows_instead(
    cp: PostgresCheckpointer, pg_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_backend, "MERGE_ROWS", 4)
    monkeypatch.setattr(pg_backend, "CHUNK_BYTES", 1000)
    tid = prefix + "seal"
    texts = [f"message {i} " + "z" * 300 for i in range(9)]
    state = snapshot(texts[0])
    cp.save(tid, state)
    for text in texts[1:]:
        state.messages.append(AgentMessage.user(text))
        cp.save(tid, state)
    rows = log_rows(pg_url, cp.schema, tid)
    assert_contiguous(rows, 9)
    assert [tier for _, _, tier in rows] == [pg_backend.SEALED_TIER] * 9  # 4 x 300 bytes > 1000: never merged
    loaded = cp.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == texts


def test_loads_never_mix_two_versions_while_appends_merge_log_rows(
    postgres_spec: BackendSpec, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_backend, "MERGE_ROWS", 3)
    tid = prefix + "merging"
    writer, reader = postgres_spec.build(), postgres_spec.build()
    expected = [AgentMessage.user(f"m{i}") for i in range(400)]
    stop = threading.Event()
    loads: List[int] = []

    def append() -> None:
        state = AgentStateSnapshot(messages=expected[:1], metadata={"n": 1})
        writer.save(tid, state)
        while not stop.is_set() and len(state.messages) < len(expected):
            state.messages.append(expected[len(state.messages)])
            state.metadata["n"] = len(state.messages)
            writer.save(tid, state)

    thread = threading.Thread(target=append)
    thread.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and thread.is_alive():
            state = reader.load(tid)
            if state is None:
                continue
            count = state.metadata["n"]
            assert state.messages == expected[:count], "head and log must come from one committed version"
            loads.append(count)
    finally:
        stop.set()
        thread.join(30)
        writer.delete(tid)
        writer.close()
        reader.close()
    assert len(loads) > 10 and len(set(loads)) > 5


def test_a_load_is_one_copy_statement(cp: PostgresCheckpointer, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tid = prefix + "onetrip"
    cp.save(tid, snapshot("a", "b"))
    calls: List[str] = []
    original = cp._cursor

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

    monkeypatch.setattr(cp, "_cursor", recording_cursor)
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
                table(cp.schema, "agents_persist_messages")
            ),
            (tid,),
        )
    with pytest.raises(CorruptSnapshotError) as info:
        cp.load(tid)
    assert info.value.thread_id == tid
    with pytest.raises(CorruptSnapshotError, match="COPY"):
        pg_backend._parse_load(b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\x00\x07\x00", tid)


def test_statement_timeout_applies_to_loads_then_loads_work_again(pg_url: str, schema: str, prefix: str) -> None:
    checkpointer = from_url(pg_url, schema=schema, statement_timeout=0.5, max_connections=1)
    tid = prefix + "slowload"
    checkpointer.save(tid, snapshot("x"))
    conn = psycopg2.connect(pg_url, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table(schema, "agents_persist_messages")))
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="statement_timeout"):
                checkpointer.load(tid)
            assert time.monotonic() - started < NO_HANG_SECONDS
    finally:
        conn.rollback()
        conn.close()
    try:
        for _ in range(3):
            loaded = checkpointer.load(tid)
            assert loaded is not None and loaded.messages[0].content == "x"
    finally:
        checkpointer.delete(tid)
        checkpointer.close()


def test_setup_records_migrations_and_rerunning_is_a_no_op(pg_url: str, fresh_schema: str) -> None:
    migrations = table(fresh_schema, "agents_persist_migrations")
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as first:
        first.setup()
    with admin(pg_url) as cursor:
        cursor.execute(sql.SQL("SELECT version, applied_at FROM {}").format(migrations))
        recorded = cursor.fetchall()
    assert [version for version, _ in recorded] == [pg_backend.SCHEMA_VERSION]
    for _ in range(2):
        with PostgresCheckpointer(pg_url, schema=fresh_schema) as again:
            again.setup()
            again.setup()
    with admin(pg_url) as cursor:
        cursor.execute(sql.SQL("SELECT version, applied_at FROM {}").format(migrations))
        assert cursor.fetchall() == recorded


def _setup_in_child(url: str, schema: str, barrier: Any, results: Any) -> None:
    try:
        checkpointer = PostgresCheckpointer(url, schema=schema, statement_timeout=60)
        barrier.wait(30)
        checkpointer.setup()
        checkpointer.save("probe", snapshot(str(os.getpid())))
        checkpointer.close()
        results.put("ok")
    except BaseException as exc:  # pragma: no cover - reported by the parent
        results.put(f"{type(exc).__name__}: {exc}")


def test_eight_processes_setting_up_a_fresh_schema_at_once_agree(pg_url: str, fresh_schema: str) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    results = ctx.Queue()
    processes = [ctx.Process(target=_setup_in_child, args=(pg_url, fresh_schema, barrier, results)) for _ in range(8)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    assert outcomes == ["ok"] * 8
    assert scalar(pg_url, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (fresh_schema,)) == 1
    with admin(pg_url) as cursor:
        cursor.execute(sql.SQL("SELECT version FROM {}").format(table(fresh_schema, "agents_persist_migrations")))
        assert cursor.fetchall() == [(pg_backend.SCHEMA_VERSION,)]
        cursor.execute(sql.SQL("SELECT version FROM {} WHERE thread_id = 'probe'").format(table(fresh_schema, "agents_persist")))
        assert cursor.fetchone() == (8,)


def test_database_with_newer_schema_version_is_refused(pg_url: str, fresh_schema: str) -> None:
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as checkpointer:
        checkpointer.setup()
    with admin(pg_url) as cursor:
        cursor.execute(
            sql.SQL("INSERT INTO {} (version, description) VALUES (%s, 'from the future')").format(
                table(fresh_schema, "agents_persist_migrations")
            ),
            (pg_backend.SCHEMA_VERSION + 1,),
        )
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as newer:
        with pytest.raises(ConfigurationError, match="newer"):
            newer.load("t")


def test_tables_dropped_behind_its_back_are_recreated_on_the_next_call(pg_url: str, fresh_schema: str) -> None:
    with PostgresCheckpointer(pg_url, schema=fresh_schema) as checkpointer:
        checkpointer.save("t", snapshot("before"))
        drop_schema(pg_url, fresh_schema)
        with pytest.raises(ConfigurationError, match="setup"):
            checkpointer.load("t")
        assert checkpointer.load("t") is None
        checkpointer.save("t", snapshot("after"))
        loaded = checkpointer.load("t")
        assert loaded is not None and loaded.messages[0].content == "after"


# ---------------------------------------------------------------------- concurrency and consistency


def test_concurrent_first_saves_with_expected_version_zero_let_exactly_one_win(
    postgres_spec: BackendSpec, prefix: str
) -> None:
    tid = prefix + "first"
    instances = [postgres_spec.build() for _ in range(8)]  # separate instances: no shared in-process lock
    barrier = threading.Barrier(8)
    outcomes: List[str] = []

    def attempt(index: int) -> None:
        barrier.wait()
        try:
            instances[index].save(tid, snapshot(f"writer {index}"), expected_version=0)
            outcomes.append("saved")
        except ConflictError as exc:
            assert exc.actual_version == 1
            outcomes.append("conflict")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert sorted(outcomes) == ["conflict"] * 7 + ["saved"]
        loaded = instances[0].load(tid)
        assert loaded is not None and loaded.version == 1 and len(loaded.messages) == 1
    finally:
        instances[0].delete(tid)
        for instance in instances:
            instance.close()


def test_loads_never_mix_two_versions_under_concurrent_rewrites(postgres_spec: BackendSpec, prefix: str) -> None:
    tid = prefix + "mix"
    writer, reader = postgres_spec.build(), postgres_spec.build()
    histories = {"a": [AgentMessage.user(f"a{i}") for i in range(40)], "b": [AgentMessage.user(f"b{i}") for i in range(70)]}
    writer.save(tid, AgentStateSnapshot(messages=histories["a"], metadata={"kind": "a"}))
    stop = threading.Event()
    seen = {"a": 0, "b": 0}

    def rewrite() -> None:
        i = 0
        while not stop.is_set():
            kind = "ab"[i % 2]
            writer.save(tid, AgentStateSnapshot(messages=list(histories[kind]), metadata={"kind": kind}), force=True)
            i += 1

    thread = threading.Thread(target=rewrite)
    thread.start()
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            state = reader.load(tid)
            assert state is not None
            kind = state.metadata["kind"]
            assert state.messages == histories[kind], "head and log must come from one committed version"
            seen[kind] += 1
    finally:
        stop.set()
        thread.join(30)
        writer.delete(tid)
        writer.close()
        reader.close()
    assert seen["a"] > 0 and seen["b"] > 0


@contextmanager
def row_locks(url: str, schema: str, thread_ids: List[str]) -> Iterator[Any]:
    """Hold FOR UPDATE locks on the head rows of ``thread_ids`` from an outside session."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                sql.SQL("SELECT thread_id FROM {} WHERE thread_id = ANY (%s) FOR UPDATE").format(table(schema, "agents_persist")),
                (thread_ids,),
            )
            assert cursor.rowcount == len(thread_ids)
            yield conn
    finally:
        conn.rollback()
        conn.close()


def test_eight_threads_hold_eight_connections_at_once(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-par-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema, max_connections=8)
    tids = [f"{prefix}par{i}" for i in range(8)]
    for tid in tids:
        checkpointer.save(tid, snapshot("start"))
    versions: List[int] = []
    try:
        with row_locks(pg_url, schema, tids):

            def save_next(tid: str) -> None:
                versions.append(checkpointer.save(tid, snapshot("next")))

            threads = [threading.Thread(target=save_next, args=(tid,)) for tid in tids]
            for thread in threads:
                thread.start()
            query = (
                "SELECT count(DISTINCT pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND wait_event_type = 'Lock' AND state = 'active'"
            )
            # All eight saves wait inside the server at the same time, each on its own connection.
            wait_for(lambda: scalar(pg_url, query, (app,)) == 8, what="8 concurrently waiting connections")
        for thread in threads:
            thread.join(30)
        assert sorted(versions) == [2] * 8
        assert len(backend_pids(pg_url, app)) == 8
    finally:
        for tid in tids:
            checkpointer.delete(tid)
        checkpointer.close()


def test_pool_exhaustion_raises_unavailable_after_timeout(pg_url: str, schema: str, prefix: str) -> None:
    checkpointer = from_url(pg_url, schema=schema, max_connections=2, timeout=0.5)
    tids = [f"{prefix}busy{i}" for i in range(2)]
    for tid in tids:
        checkpointer.save(tid, snapshot("x"))
    try:
        with row_locks(pg_url, schema, tids):
            blocked = [threading.Thread(target=checkpointer.save, args=(tid, snapshot("y"))) for tid in tids]
            for thread in blocked:
                thread.start()
            time.sleep(0.3)
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="max_connections=2"):
                checkpointer.load(prefix + "other")
            assert 0.4 < time.monotonic() - started < NO_HANG_SECONDS
        for thread in blocked:
            thread.join(30)
        assert [checkpointer.get_version(tid) for tid in tids] == [2, 2]
    finally:
        for tid in tids:
            checkpointer.delete(tid)
        checkpointer.close()


def test_statement_timeout_raises_unavailable_and_connection_is_reusable(pg_url: str, schema: str, prefix: str) -> None:
    checkpointer = from_url(pg_url, schema=schema, statement_timeout=0.5, max_connections=1)
    tid = prefix + "slow"
    checkpointer.save(tid, snapshot("x"))
    try:
        with row_locks(pg_url, schema, [tid]):
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="statement_timeout"):
                checkpointer.save(tid, snapshot("y"))
            assert time.monotonic() - started < NO_HANG_SECONDS
        assert checkpointer.save(tid, snapshot("z")) == 2
    finally:
        checkpointer.delete(tid)
        checkpointer.close()


def test_connection_killed_by_the_server_is_replaced_without_an_error(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-kill-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema, max_connections=1)
    try:
        checkpointer.save(prefix + "k", snapshot("x"))
        (old_pid,) = backend_pids(pg_url, app)
        assert scalar(pg_url, "SELECT pg_terminate_backend(%s)", (old_pid,)) is True
        wait_for(lambda: old_pid not in backend_pids(pg_url, app), what="terminated backend to exit")
        loaded = checkpointer.load(prefix + "k")  # the idle connection is stale: replaced, no error
        assert loaded is not None and loaded.messages[0].content == "x"
        assert backend_pids(pg_url, app) not in ([], [old_pid])
    finally:
        checkpointer.delete(prefix + "k")
        checkpointer.close()


def test_connection_killed_mid_statement_raises_unavailable_then_recovers(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-mid-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema, max_connections=1)
    tid = prefix + "mid"
    checkpointer.save(tid, snapshot("x"))
    errors: List[BaseException] = []

    def blocked_save() -> None:
        try:
            checkpointer.save(tid, snapshot("y"))
        except BaseException as exc:
            errors.append(exc)

    try:
        with row_locks(pg_url, schema, [tid]):
            thread = threading.Thread(target=blocked_save)
            thread.start()
            query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
            victim = wait_for(lambda: scalar(pg_url, query, (app,)), what="the save to wait on the row lock")
            scalar(pg_url, "SELECT pg_terminate_backend(%s)", (victim,))
            thread.join(NO_HANG_SECONDS)
            assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], BackendUnavailableError)
        assert isinstance(errors[0].__cause__, psycopg2.OperationalError)
        assert checkpointer.save(tid, snapshot("z")) == 2
        assert victim not in backend_pids(pg_url, app)
    finally:
        checkpointer.delete(tid)
        checkpointer.close()


def test_list_threads_prefix_treats_like_wildcards_literally(cp: PostgresCheckpointer, prefix: str) -> None:
    for name in ("50%_off\\x", "50xyoff\\x", "50%_offer", "5"):
        cp.save(prefix + name, snapshot(name))
    found = [info.thread_id for info in cp.list_threads(prefix + "50%_off").threads]
    assert sorted(found) == [prefix + "50%_off\\x", prefix + "50%_offer"]
    assert [info.thread_id for info in cp.list_threads(prefix + "50%_off\\").threads] == [prefix + "50%_off\\x"]


def test_min_connections_are_opened_by_setup(pg_url: str, schema: str) -> None:
    app = f"ap-min-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema, min_connections=3, max_connections=5)
    try:
        assert backend_pids(pg_url, app) == []  # construction connects nothing
        checkpointer.setup()
        assert len(backend_pids(pg_url, app)) == 3
    finally:
        checkpointer.close()
    wait_for(lambda: backend_pids(pg_url, app) == [], what="close() to end the sessions")


# ---------------------------------------------------------------------- TTL and purge


def test_purge_expired_deletes_heads_and_logs_in_batches(
    cp: PostgresCheckpointer, postgres_spec: BackendSpec, pg_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_backend, "PURGE_BATCH", 4)
    short = postgres_spec.build(ttl=0.2)
    try:
        for i in range(11):
            short.save(f"{prefix}old{i}", snapshot("bye", "now"))
        cp.save(prefix + "keep", snapshot("stay"))
        time.sleep(0.3)
        assert short.purge_expired() >= 11
        with admin(pg_url) as cursor:
            for name in ("agents_persist", "agents_persist_messages"):
                cursor.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE thread_id LIKE %s").format(table(cp.schema, name)),
                    (f"{prefix}old%",),
                )
                assert cursor.fetchone() == (0,)
        assert cp.exists(prefix + "keep")
        assert short.purge_expired() == 0
    finally:
        short.close()


# ---------------------------------------------------------------------- caller's pool and fork safety


def test_callers_pool_is_borrowed_from_and_left_open(pg_url: str, schema: str, prefix: str) -> None:
    pool = psycopg2.pool.ThreadedConnectionPool(1, 4, pg_url)
    try:
        with PostgresCheckpointer(pool=pool, schema=schema) as checkpointer:
            checkpointer.save(prefix + "p", snapshot("pooled"))
            loaded = checkpointer.load(prefix + "p")
            assert loaded is not None and loaded.messages[0].content == "pooled"
            assert "<ThreadedConnectionPool>" in repr(checkpointer)
            checkpointer.delete(prefix + "p")
        conn = pool.getconn()  # still open, and its connections keep their own settings
        assert conn.autocommit is False and not conn.closed
        pool.putconn(conn)
    finally:
        pool.closeall()


def test_exhausted_callers_pool_raises_unavailable(pg_url: str, schema: str) -> None:
    pool = psycopg2.pool.ThreadedConnectionPool(1, 1, pg_url)
    try:
        checkpointer = PostgresCheckpointer(pool=pool, schema=schema)
        checkpointer.setup()
        held = pool.getconn()
        with pytest.raises(BackendUnavailableError, match="no free connection"):
            checkpointer.load("anything")
        pool.putconn(held)
        assert checkpointer.load("anything") is None
        checkpointer.close()
    finally:
        pool.closeall()


def test_forked_child_never_touches_the_parents_connections(pg_url: str, schema: str, prefix: str) -> None:
    app = f"ap-fork-{uuid.uuid4().hex[:8]}"
    checkpointer = from_url(with_app_name(pg_url, app), schema=schema)
    tid = prefix + "fork"
    try:
        checkpointer.save(tid, snapshot("parent"))
        parent_pids = backend_pids(pg_url, app)
        assert len(parent_pids) == 1
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                os.close(read)
                state = checkpointer.load(tid)
                assert state is not None
                state.messages.append(AgentMessage.assistant("child"))
                checkpointer.save(tid, state)
                checkpointer.close()
                os.write(write, str(backend_pids(pg_url, app)).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        child_report = os.read(read, 1000).decode()
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert str(parent_pids[0]) in child_report, "the parent's session must survive the child's start"
        # The parent's pooled connection is the very same session, untouched by the child.
        state = checkpointer.load(tid)
        assert state is not None and [m.content for m in state.messages] == ["parent", "child"]
        assert backend_pids(pg_url, app) == parent_pids
    finally:
        checkpointer.delete(tid)
        checkpointer.close()


def _use_pool_checkpointer_in_child(checkpointer: PostgresCheckpointer, results: Any) -> None:
    try:
        checkpointer.load("anything")
        results.put("no error")
    except ConfigurationError as exc:
        results.put(f"ConfigurationError: {exc}")


def test_callers_pool_is_refused_in_a_forked_child(pg_url: str, schema: str) -> None:
    pool = psycopg2.pool.ThreadedConnectionPool(1, 2, pg_url)
    try:
        checkpointer = PostgresCheckpointer(pool=pool, schema=schema)
        checkpointer.setup()
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        process = ctx.Process(target=_use_pool_checkpointer_in_child, args=(checkpointer, results))
        process.start()
        outcome = results.get(timeout=60)
        process.join(30)
        assert outcome.startswith("ConfigurationError") and "forked child" in outcome
        assert checkpointer.load("anything") is None  # still fine in the parent
        checkpointer.close()
    finally:
        pool.closeall()


# ---------------------------------------------------------------------- server down and restarted


def test_server_restart_mid_run_gives_typed_errors_then_recovers_with_data_intact(own_server: PostgresServer) -> None:
    checkpointer = PostgresCheckpointer(own_server.url, **POSTGRES_TEST_OPTIONS)
    big = AgentStateSnapshot(messages=[AgentMessage.user(f"message {i}") for i in range(200)], metadata={"k": "v"})
    checkpointer.save("big", big)
    outcomes: Dict[str, int] = {"ok": 0, "unavailable": 0}
    unexpected: List[BaseException] = []
    slowest = [0.0]
    lock = threading.Lock()
    stop = threading.Event()
    restarted = threading.Event()
    ok_after_restart = [0]

    def increment(state: AgentStateSnapshot) -> None:
        state.metadata["n"] = state.metadata.get("n", 0) + 1

    def worker() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                checkpointer.update("counter", increment)
                outcome = "ok"
            except BackendUnavailableError:
                outcome = "unavailable"
                time.sleep(0.05)
            except BaseException as exc:  # pragma: no cover - reported below
                with lock:
                    unexpected.append(exc)
                return
            with lock:
                outcomes[outcome] += 1
                slowest[0] = max(slowest[0], time.monotonic() - started)
                if outcome == "ok" and restarted.is_set():
                    ok_after_restart[0] += 1

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for thread in workers:
        thread.start()
    try:
        wait_for(lambda: outcomes["ok"] >= 20, what="updates before the restart")
        own_server.stop(mode="immediate")
        wait_for(lambda: outcomes["unavailable"] >= 4, what="typed errors while the server is down")
        own_server.start_again()
        restarted.set()
        wait_for(lambda: ok_after_restart[0] >= 20, what="updates after the restart")
    finally:
        stop.set()
        for thread in workers:
            thread.join(60)
    assert not any(thread.is_alive() for thread in workers), "a worker hung"
    assert not unexpected, unexpected
    assert slowest[0] < NO_HANG_SECONDS
    counter = checkpointer.load("counter")
    assert counter is not None
    # Updates that failed may or may not have committed (the reply was lost); none was lost or doubled.
    assert outcomes["ok"] <= counter.metadata["n"] <= outcomes["ok"] + outcomes["unavailable"]
    assert counter.version == counter.metadata["n"]
    loaded_big = checkpointer.load("big")
    assert loaded_big is not None and loaded_big.messages == big.messages and loaded_big.metadata == {"k": "v"}
    checkpointer.close()


def test_server_down_raises_unavailable_quickly_and_first_use_waits_for_nothing(own_server: PostgresServer) -> None:
    checkpointer = PostgresCheckpointer(own_server.url, **POSTGRES_TEST_OPTIONS)
    checkpointer.save("down", snapshot("kept"))
    own_server.stop(mode="fast")
    try:
        for call in (lambda: checkpointer.load("down"), lambda: checkpointer.save("down", snapshot("lost"))):
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                call()
            assert time.monotonic() - started < NO_HANG_SECONDS
    finally:
        own_server.start_again()
    loaded = checkpointer.load("down")
    assert loaded is not None and loaded.messages[0].content == "kept"
    checkpointer.delete("down")
    checkpointer.close()


def test_frozen_server_raises_unavailable_within_the_deadline_then_recovers(own_server: PostgresServer) -> None:
    """A server process that stops answering (SIGSTOP) must not hang the caller: TCP stays up, so only a
    client-side deadline helps."""
    import signal

    schema = unique_schema()
    cp = PostgresCheckpointer(own_server.url, schema=schema, statement_timeout=1.0, max_connections=1, timeout=2.0)
    try:
        cp.save("t", AgentStateSnapshot(messages=[AgentMessage.user("kept")]))
        with cp._cursor("find the server process") as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (backend_pid,) = cursor.fetchone()
        os.kill(backend_pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="did not answer within 6s"):
                cp.load("t")
            elapsed = time.monotonic() - start
            assert 5.0 <= elapsed < 9.0, elapsed
        finally:
            os.kill(backend_pid, signal.SIGCONT)
        state = cp.load("t")  # a fresh connection; the frozen one was discarded
        assert state is not None and [m.content for m in state.messages] == ["kept"]
    finally:
        cp.close()
        drop_schema(own_server.url, schema)
