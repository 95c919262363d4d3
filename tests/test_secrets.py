"""Secrets never show: passwords and keys in URLs, DSNs and options stay out of every output of every backend.

Each case builds a checkpointer whose URL, DSN or options carry secrets
(the password, ``sslpassword``, ``ssl_password``, the AWS secret key and
session token), uses it against a real throwaway server (PostgreSQL with a
password-auth role, Redis with ``requirepass``, moto with and without its
IAM checks) or against a closed port, and captures everything it can show:
``repr``/``str`` of the checkpointer, every log record at DEBUG on the root
logger (ours and the drivers': botocore, urllib3, psycopg2, redis-py),
stdout/stderr, and ``traceback.format_exception`` of each error raised
(chained causes included). No secret may appear in any of it. The CLI runs
as a subprocess with the URL in ``$AGENTS_PERSIST_URL``.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Union
from urllib.parse import quote

import psycopg2
import pytest

from agents_persist import AgentMessage, AgentsPersistError, AgentStateSnapshot, PostgresCheckpointer, from_url
from agents_persist.redaction import is_secret_name, redact_url, scrub
from tests.cli.helpers import clean_env, run_cli
from tests.servers import ExternalServer, MotoServer, PostgresServer, RedisServer, free_port, redis_command

PASSWORD = "pw-" + uuid.uuid4().hex[:12]
WRONG = "wrong-" + uuid.uuid4().hex[:12]
SSL_PASSWORD = "sslpw-" + uuid.uuid4().hex[:12]
AWS_SECRET = "awssecret-" + uuid.uuid4().hex[:12]
AWS_TOKEN = "awstoken-" + uuid.uuid4().hex[:12]
SECRETS = (PASSWORD, WRONG, SSL_PASSWORD, AWS_SECRET, AWS_TOKEN)
ROLE = "ap_secret_role"
HOST = "127.0.0.1"


class Capture:
    """Everything a case showed: reprs, error tracebacks, and (at the end) log records and printed output."""

    def __init__(self, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
        self.caplog = caplog
        self.capsys = capsys
        self.texts: List[str] = []
        self.errors: List[BaseException] = []
        caplog.set_level(logging.DEBUG)  # the root logger, so every library's records reach the capture

    def show(self, obj: Any) -> None:
        self.texts += [repr(obj), str(obj)]

    def error(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.texts += [repr(exc), str(exc), "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]

    def attempt(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Optional[BaseException]:
        """Run ``call(*args, **kwargs)``; keep what it raised (it must be a library error)."""
        try:
            call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every exception is captured and checked
            self.error(exc)
            assert isinstance(exc, AgentsPersistError), "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            return exc
        return None

    def everything(self) -> str:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        # At teardown ``caplog.records`` holds the teardown's records only: take the test's own.
        logged = [*self.caplog.get_records("setup"), *self.caplog.get_records("call")]
        records = [formatter.format(record) + repr(record.args) for record in logged]
        out, err = self.capsys.readouterr()
        return "\n".join([*self.texts, *records, out, err])

    def assert_no_secret(self) -> None:
        text = self.everything()
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked:\n" + "\n".join(line for line in text.splitlines() if secret in line)


@pytest.fixture
def capture(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Iterator[Capture]:
    seen = Capture(caplog, capsys)
    yield seen
    seen.assert_no_secret()


def exercise(capture: Capture, url: str, **options: Any) -> List[BaseException]:
    """Build a checkpointer from ``url`` and run every kind of call; return the errors (also captured)."""
    errors: List[BaseException] = []
    built: List[Any] = []

    def build() -> None:
        built.append(from_url(url, **options))

    if capture.attempt(build) is not None:
        return capture.errors[-1:]
    checkpointer = built[0]
    capture.show(checkpointer)
    thread = f"secret-{uuid.uuid4().hex[:8]}"
    state = AgentStateSnapshot(messages=[AgentMessage.user("hello")])
    for call in (
        lambda: checkpointer.save(thread, state, force=True),
        lambda: checkpointer.load(thread),
        lambda: checkpointer.append(thread, [AgentMessage.assistant("hi")]),
        lambda: checkpointer.exists(thread),
        lambda: checkpointer.list_threads(limit=5),
        lambda: checkpointer.delete(thread),
    ):
        error = capture.attempt(call)
        if error is not None:
            errors.append(error)
    capture.show(checkpointer)
    checkpointer.close()
    return errors


def cli_output(tmp_path: Path, url: str, *args: str) -> str:
    """stdout and stderr of ``agents-persist ARGS`` with ``url`` in the environment (not on the command line)."""
    result = run_cli(*args, cwd=tmp_path, env=clean_env(AGENTS_PERSIST_URL=url))
    return result.stdout + result.stderr


def assert_no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


# ---------------------------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def password_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL of its own whose role ``ap_secret_role`` logs in with a password over TCP (scram-sha-256)."""
    server = PostgresServer.start(tmp_path_factory.mktemp("pg-secrets"), max_connections=50)
    try:
        conn = psycopg2.connect(server.url, connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD %s", (PASSWORD,))
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text(f"local all all trust\nhost all postgres {HOST}/32 trust\nhost all all {HOST}/32 scram-sha-256\n")
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_reload_conf()")
        conn.close()
        yield server
    finally:
        server.stop()
        server.cleanup()


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of its own with ``requirepass`` (set after start, so it is not on the server's command line)."""
    server = RedisServer.start(tmp_path_factory.mktemp("redis-secrets"))
    try:
        redis_command(server.port, "CONFIG", "SET", "requirepass", PASSWORD)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def auth_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server that checks credentials (``INITIAL_NO_AUTH_ACTION_COUNT=0``): unknown keys are refused."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        server = MotoServer.start(tmp_path_factory.mktemp("moto-auth"))
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> int:
    return free_port()


def pg_url(server: PostgresServer, password: str, port: Optional[int] = None, query: str = "") -> str:
    return f"postgresql://{ROLE}:{quote(password)}@{HOST}:{port or server.port}/postgres?sslpassword={SSL_PASSWORD}{query}"


# ---------------------------------------------------------------------------------------------- PostgreSQL


def test_postgres_right_password_works_and_shows_no_secret(password_postgres: PostgresServer, capture: Capture) -> None:
    schema = f"ap_secret_{uuid.uuid4().hex[:8]}"
    errors = exercise(capture, pg_url(password_postgres, PASSWORD), schema=schema, connect_timeout=3)
    assert errors == []
    assert "sslpassword=***" in capture.texts[0] and ":***@" in capture.texts[0]


def test_postgres_wrong_password_fails_without_showing_it(password_postgres: PostgresServer, capture: Capture) -> None:
    errors = exercise(capture, pg_url(password_postgres, WRONG), connect_timeout=3)
    assert errors and all("password authentication failed" in str(e) for e in errors), errors


def test_postgres_wrong_host_fails_without_showing_secrets(capture: Capture) -> None:
    url = f"postgresql://{ROLE}:{PASSWORD}@{HOST}:{closed_port()}/postgres?sslpassword={SSL_PASSWORD}&password={PASSWORD}"
    errors = exercise(capture, url, connect_timeout=2)
    assert errors


def test_postgres_libpq_string_hides_every_credential_keyword(password_postgres: PostgresServer, capture: Capture) -> None:
    for port, password in ((password_postgres.port, WRONG), (closed_port(), PASSWORD)):
        dsn = f"host={HOST} port={port} user={ROLE} dbname=postgres password={password} sslpassword={SSL_PASSWORD}"
        checkpointer = PostgresCheckpointer(dsn, connect_timeout=2)
        capture.show(checkpointer)
        assert "sslpassword=***" in repr(checkpointer) and "password=***" in repr(checkpointer)
        assert capture.attempt(checkpointer.load, "t") is not None
        checkpointer.close()


def test_postgres_malformed_url_hides_the_password(capture: Capture) -> None:
    # A '/' in an unencoded password makes the rest of the URL a path: libpq then quotes pieces of it.
    exercise(capture, f"postgresql://{ROLE}:{PASSWORD}/x@{HOST}:{closed_port()}/postgres")
    exercise(capture, f"postgresql://{ROLE}:{PASSWORD}@{HOST}:notaport/postgres?sslpassword={SSL_PASSWORD}")


def test_postgres_cli_doctor_and_list_show_no_secret(password_postgres: PostgresServer, tmp_path: Path) -> None:
    good, bad = pg_url(password_postgres, PASSWORD), pg_url(password_postgres, WRONG)
    down = pg_url(password_postgres, PASSWORD, port=closed_port())
    outputs = [cli_output(tmp_path, url, command) for url in (good, bad, down) for command in ("doctor", "list")]
    assert "all checks passed" in outputs[0], outputs[0]
    assert "password authentication failed" in outputs[2], outputs[2]
    assert_no_secret_in("\n".join(outputs))


# ---------------------------------------------------------------------------------------------- Redis


def redis_url(
    server: Union[RedisServer, ExternalServer], password: str, port: Optional[int] = None, scheme: str = "redis"
) -> str:
    return f"{scheme}://default:{password}@{HOST}:{port or server.port}/0"


def test_redis_right_password_works_and_shows_no_secret(password_redis: RedisServer, capture: Capture) -> None:
    errors = exercise(capture, redis_url(password_redis, PASSWORD), timeout=3)
    assert errors == []


def test_redis_wrong_password_fails_without_showing_it(password_redis: RedisServer, capture: Capture) -> None:
    errors = exercise(capture, redis_url(password_redis, WRONG), timeout=3)
    assert errors and all("AuthenticationError" in str(e) or "WRONGPASS" in str(e) for e in errors), errors


def test_redis_tls_options_and_wrong_hosts_show_no_secret(password_redis: RedisServer, capture: Capture) -> None:
    port = closed_port()
    # rediss:// with a key passphrase (ssl_password) against a closed port, and against a plain-text server.
    for target in (port, password_redis.port):
        exercise(capture, redis_url(password_redis, PASSWORD, target, "rediss") + f"?ssl_password={SSL_PASSWORD}", timeout=2)
    exercise(capture, f"redis+cluster://:{PASSWORD}@{HOST}:{port}?ssl_password={SSL_PASSWORD}", timeout=2)
    exercise(capture, f"rediss+cluster://:{PASSWORD}@{HOST}:{port}?ssl_password={SSL_PASSWORD}", timeout=2)
    exercise(capture, redis_url(password_redis, PASSWORD, port), timeout=2)


def test_redis_tls_options_without_tls_are_a_configuration_error(capture: Capture) -> None:
    """Before, redis-py raised an untyped TypeError on first use (redis:// takes no ssl_* options)."""
    for url in (f"redis://:{PASSWORD}@{HOST}:1/0?ssl_password={SSL_PASSWORD}", f"redis+cluster://{HOST}:1?ssl_ca_certs=/x"):
        error = capture.attempt(from_url, url)
        assert error is not None and "need TLS: use rediss://" in str(error), error


def test_redis_cli_doctor_shows_no_secret(password_redis: RedisServer, tmp_path: Path) -> None:
    urls = [redis_url(password_redis, p) for p in (PASSWORD, WRONG)]
    urls.append(redis_url(password_redis, PASSWORD, scheme="rediss") + f"?ssl_password={SSL_PASSWORD}")
    outputs = [cli_output(tmp_path, url, "doctor") for url in urls]
    assert "all checks passed" in outputs[0], outputs[0]
    assert_no_secret_in("\n".join(outputs))


# ---------------------------------------------------------------------------------------------- DynamoDB


def dynamodb_url(endpoint: str, table: str) -> str:
    return f"dynamodb://AKIDSECRETTEST:{AWS_SECRET}@us-east-1/{table}?endpoint_url={endpoint}&aws_session_token={AWS_TOKEN}"


def test_dynamodb_debug_logs_of_botocore_hide_the_session_token(dynamodb_server: Any, capture: Capture) -> None:
    table = f"agents_persist_secret_{uuid.uuid4().hex[:8]}"
    errors = exercise(capture, dynamodb_url(dynamodb_server.endpoint_url, table), create_table=True, timeout=10)
    assert errors == []
    botocore = [r for r in capture.caplog.get_records("call") if r.name.startswith("botocore")]
    assert botocore, "botocore logged nothing at DEBUG: the test would not see a leak"
    assert any("x-amz-security-token" in r.getMessage().lower() for r in botocore), "no signed request was logged"


def test_dynamodb_token_from_the_environment_is_hidden_too(
    dynamodb_server: Any, capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENVTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", AWS_TOKEN)
    table = f"agents_persist_secret_{uuid.uuid4().hex[:8]}"
    url = f"dynamodb://us-east-1/{table}?endpoint_url={dynamodb_server.endpoint_url}&create_table=true"
    assert exercise(capture, url) == []


def test_dynamodb_refused_credentials_and_wrong_host_show_no_secret(auth_moto: MotoServer, capture: Capture) -> None:
    errors = exercise(capture, dynamodb_url(auth_moto.endpoint_url, "agents_persist_secret_t"), max_attempts=1)
    assert errors and all(type(e).__name__ == "ConfigurationError" for e in errors), errors
    errors = exercise(capture, dynamodb_url(f"http://{HOST}:{closed_port()}", "t_t_t"), max_attempts=1, timeout=2)
    assert errors and all(type(e).__name__ == "BackendUnavailableError" for e in errors), errors


def test_secret_options_of_the_wrong_type_are_refused_without_their_value(capture: Capture) -> None:
    for name in ("aws_secret_access_key", "aws_session_token"):
        error = capture.attempt(from_url, "dynamodb://us-east-1/tbl", **{name: [PASSWORD]})
        assert error is not None and "value hidden" in str(error), error


def test_dynamodb_cli_doctor_shows_no_secret(auth_moto: MotoServer, tmp_path: Path) -> None:
    urls = [
        dynamodb_url(auth_moto.endpoint_url, "agents_persist_secret_t"),
        dynamodb_url(f"http://{HOST}:{closed_port()}", "t_t_t"),
    ]
    assert_no_secret_in("\n".join(cli_output(tmp_path, url + "&max_attempts=1&timeout=2", "doctor") for url in urls))


# ---------------------------------------------------------------------------------------------- the one module


@pytest.mark.parametrize(
    "name", ["password", "sslpassword", "ssl_password", "aws_secret_access_key", "aws_session_token", "api_key", "client_secret"]
)
def test_credential_names(name: str) -> None:
    assert is_secret_name(name) and is_secret_name(name.upper())


@pytest.mark.parametrize(
    "name", ["aws_access_key_id", "key_prefix", "ssl_keyfile", "sslmode", "table_name", "user", "ssl_ca_certs"]
)
def test_names_that_are_not_credentials(name: str) -> None:
    assert not is_secret_name(name)


def test_redact_url_hides_credential_query_parameters_and_odd_passwords() -> None:
    assert (
        redact_url(f"postgresql://u@h/db?sslpassword={PASSWORD}&sslmode=require")
        == "postgresql://u@h/db?sslpassword=***&sslmode=require"
    )
    assert (
        redact_url(f"rediss://h:1/0?ssl_password={PASSWORD}&ssl_cert_reqs=none")
        == "rediss://h:1/0?ssl_password=***&ssl_cert_reqs=none"
    )
    for odd in (f"{PASSWORD}/x", f"{PASSWORD}?x", f"{PASSWORD}#x"):
        assert PASSWORD not in redact_url(f"redis://user:{odd}@host:1/0")


def test_scrub_hides_urls_keywords_and_aws_tokens_in_free_text() -> None:
    text = (
        f"failed: redis://:{PASSWORD}@h:1/0 and 'host=h password={PASSWORD} sslpassword=\\'{SSL_PASSWORD}\\'' "
        f"x-amz-security-token:{AWS_TOKEN}\n{{'X-Amz-Security-Token': b'{AWS_TOKEN}'}}"
    )
    assert_no_secret_in(scrub(text))
