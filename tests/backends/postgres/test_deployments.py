"""PostgreSQL deployment shapes: ``sslmode=verify-full`` against a test CA, and PgBouncer in transaction mode.

The contract suite runs over both (entries ``postgres_verify_full`` and
``postgres_pgbouncer`` of tests/fixtures/deployments.py); these tests check
what the suite cannot see: that TLS is really used and verified, and that
nothing the backend relies on lives in a session a pooler shares out.
"""

from __future__ import annotations

import threading
import time
import uuid
from urllib.parse import urlencode

import psycopg2
import pytest
from psycopg2 import sql

from agents_persist import BackendUnavailableError, from_url
from tests.backends.postgres.helpers import admin, snapshot, with_app_name
from tests.fixtures.deployments import verify_full_url
from tests.fixtures.postgres import POSTGRES_TEST_OPTIONS
from tests.servers import PostgresServer
from tests.servers.pgbouncer import PgBouncer
from tests.servers.tls import TestCA
from tests.spec import BackendSpec

# -- sslmode=verify-full ------------------------------------------------------------


def test_verify_full_connections_are_tls_and_verified(
    postgres_verify_full_spec: BackendSpec, postgres_tls_server: PostgresServer, test_ca: TestCA
) -> None:
    app = f"ap_tls_{uuid.uuid4().hex[:8]}"
    cp = from_url(with_app_name(postgres_verify_full_spec.url, app), **postgres_verify_full_spec.options)
    try:
        tid = f"tls-{uuid.uuid4().hex}"
        cp.save(tid, snapshot("over TLS"))
        assert [m.content for m in cp.load(tid).messages] == ["over TLS"]
        with admin(verify_full_url(postgres_tls_server, test_ca)) as cursor:
            cursor.execute(
                "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = %s",
                (app,),
            )
            rows = cursor.fetchall()
        assert rows and all(ssl for ssl, _ in rows), rows
        cp.delete(tid)
    finally:
        cp.close()


def test_verify_full_via_localhost_name_also_matches_the_certificate(
    postgres_verify_full_spec: BackendSpec, test_ca: TestCA
) -> None:
    cp = from_url(postgres_verify_full_spec.url.replace("@127.0.0.1:", "@localhost:"), **postgres_verify_full_spec.options)
    try:
        assert cp.load(f"absent-{uuid.uuid4().hex}") is None
    finally:
        cp.close()


@pytest.mark.parametrize("trust", ["other CA", "no CA"])
def test_verify_full_refuses_a_server_it_cannot_verify(
    postgres_verify_full_spec: BackendSpec, postgres_tls_server: PostgresServer, test_ca: TestCA, trust: str
) -> None:
    root = test_ca.other_cert if trust == "other CA" else test_ca.dir / "missing.crt"
    url = f"{postgres_tls_server.url}?{urlencode({'sslmode': 'verify-full', 'sslrootcert': str(root)})}"
    cp = from_url(url, **postgres_verify_full_spec.options)
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailableError) as info:
            cp.load("t")
        assert info.value.maybe_applied is False
        assert "certificate" in str(info.value) or "root certificate file" in str(info.value), str(info.value)
    finally:
        cp.close()
    assert time.monotonic() - started < 10


def test_tls_server_refuses_plain_connections(postgres_tls_server: PostgresServer) -> None:
    with pytest.raises(psycopg2.OperationalError, match="no encryption|SSL off"):
        psycopg2.connect(postgres_tls_server.url + "?sslmode=disable", connect_timeout=5).close()


# -- PgBouncer, transaction mode ----------------------------------------------------


def test_statement_timeout_holds_through_pgbouncer(
    postgres_pgbouncer_spec: BackendSpec, postgres_server: PostgresServer, pgbouncer: PgBouncer
) -> None:
    """A save blocked on a lock ends at statement_timeout, is not applied, and says so.

    Before the fix the timeout travelled as the startup parameter ``options``,
    which PgBouncer (``ignore_startup_parameters = options``) drops: the save
    waited for the client's deadline (6 s), the cancel by process ID missed
    (PgBouncer's made-up ID), the socket was cut (``maybe_applied=True``) and
    the save committed anyway once the lock was released.
    """
    schema = postgres_pgbouncer_spec.options["schema"]
    options = {**postgres_pgbouncer_spec.options, "statement_timeout": 1.0}
    cp = from_url(postgres_pgbouncer_spec.url, **options)
    tid = f"locked-{uuid.uuid4().hex}"
    try:
        version = cp.save(tid, snapshot("first"))
        locker = psycopg2.connect(postgres_server.url, connect_timeout=5)
        try:
            with locker.cursor() as cursor:  # not autocommit: the row lock lasts until the rollback
                heads = sql.Identifier(schema, "agents_persist")
                query = sql.SQL("SELECT 1 FROM {} WHERE thread_id = %s FOR UPDATE").format(heads)
                cursor.execute(query, (tid,))
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError) as info:
                cp.save(tid, snapshot("second"), force=True)
            elapsed = time.monotonic() - started
        finally:
            locker.rollback()
            locker.close()
        assert elapsed < 4.0, f"the save waited {elapsed:.1f}s: the statement timeout did not reach the server"
        assert info.value.maybe_applied is False
        time.sleep(0.3)  # a save still running on the server would commit now
        loaded = cp.load(tid)
        assert loaded is not None and loaded.version == version and [m.content for m in loaded.messages] == ["first"]
        cp.delete(tid)
    finally:
        cp.close()


def test_pooled_connections_are_never_cancelled_by_process_id(
    postgres_pgbouncer_spec: BackendSpec, postgres_spec: BackendSpec
) -> None:
    """PgBouncer hands out made-up process IDs: ``pg_cancel_backend`` of one would miss or hit a stranger."""
    through, direct = postgres_pgbouncer_spec.build(), postgres_spec.build()
    try:
        through.load("t")
        direct.load("t")
        assert len(through.store._connections._pooled) == 1  # type: ignore[attr-defined]
        assert len(direct.store._connections._pooled) == 0  # type: ignore[attr-defined]
    finally:
        through.close()
        direct.close()


def test_no_session_state_is_left_on_pooled_server_connections(
    postgres_pgbouncer_spec: BackendSpec, postgres_server: PostgresServer, pgbouncer: PgBouncer
) -> None:
    """After many calls from many threads, every server connection is as a fresh one: no SET, prepared statement,
    advisory lock, temp table or LISTEN outlives a transaction."""
    cp = postgres_pgbouncer_spec.build(max_connections=8)
    base = f"state-{uuid.uuid4().hex[:8]}-"
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            tid = f"{base}{n % 4}"
            for i in range(15):
                cp.update(tid, lambda s, i=i: s.messages.append(snapshot(str(i)).messages[0]))
                cp.load(tid)
                cp.list_threads(prefix=base)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert sum(cp.load(f"{base}{k}").version for k in range(4)) == 8 * 15
    finally:
        for info in list(cp.iter_threads(base)):
            cp.delete(info.thread_id)
        cp.close()
    probe = psycopg2.connect(pgbouncer.url(), connect_timeout=5)
    probe.autocommit = True
    try:
        with probe.cursor() as cursor:
            for _ in range(3 * pgbouncer.pool_size):  # each statement may land on any server connection
                cursor.execute(
                    "SELECT current_setting('statement_timeout'), (SELECT count(*) FROM pg_prepared_statements),"
                    " (SELECT count(*) FROM pg_listening_channels()), (SELECT count(*) FROM pg_class WHERE relpersistence = 't')"
                )
                assert cursor.fetchone() == ("0", 0, 0, 0)
    finally:
        probe.close()
    with admin(postgres_server.url) as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert cursor.fetchone()[0] == 0


def test_pgbouncer_session_options_are_plain(postgres_pgbouncer_spec: BackendSpec) -> None:
    """The DSN the pooler receives carries no startup ``options`` (PgBouncer refuses those unless told to ignore them)."""
    cp = from_url(postgres_pgbouncer_spec.url, **{**POSTGRES_TEST_OPTIONS, "schema": postgres_pgbouncer_spec.options["schema"]})
    try:
        assert "options" not in cp.store._connections._params  # type: ignore[attr-defined]
    finally:
        cp.close()
