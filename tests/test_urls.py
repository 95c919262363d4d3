"""from_url dispatch, URL options, the environment default, scheme registration, redaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents_persist import (
    ConfigurationError,
    InMemoryCheckpointer,
    SqliteCheckpointer,
    from_url,
    redact_url,
    register_scheme,
    registry,
    urls,
)

SECRET = "hunter2-S3cr3t"


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test runs in its own directory, without AGENTS_PERSIST_URL, on a private scheme registry."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(urls.ENV_URL, raising=False)
    monkeypatch.setattr(registry, "_backends", dict(zip(*_registered())))


def _registered() -> "tuple[list[str], list[registry.Backend]]":
    table = {backend.name: backend for backend in registry.backends()}
    return list(table), list(table.values())


# ---------------------------------------------------------------------------------------------- from_url


def test_memory_url() -> None:
    with from_url("memory://") as cp:
        assert type(cp) is InMemoryCheckpointer
        assert cp.ttl is None


def test_options_are_passed_to_the_backend() -> None:
    with from_url("memory://", ttl=30, max_retries=3) as cp:
        assert (cp.ttl, cp.max_retries) == (30.0, 3)
    with pytest.raises(ConfigurationError):
        from_url("memory://", ttl=-1)


def test_scheme_is_case_insensitive() -> None:
    with from_url("MEMORY://") as cp:
        assert type(cp) is InMemoryCheckpointer


def test_sqlite_relative_path_is_relative_to_the_working_directory(tmp_path: Path) -> None:
    with from_url("sqlite:///sub.db") as cp:
        assert type(cp) is SqliteCheckpointer
        assert cp.path == str(tmp_path / "sub.db")
        assert cp.store.synchronous == "FULL" and cp.store.timeout == 10.0
    assert (tmp_path / "sub.db").exists()


def test_sqlite_relative_path_with_directories(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with from_url("sqlite:///data/x.db") as cp:
        assert cp.path == str(tmp_path / "data" / "x.db")


def test_sqlite_absolute_path(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "store.db"
    target.parent.mkdir()
    os.chdir("/")  # the working directory must not matter (monkeypatch.chdir restores it)
    with from_url(f"sqlite:///{target}") as cp:  # target starts with "/": sqlite:////abs/...
        assert cp.path == str(target)
    assert target.exists()


def test_sqlite_percent_encoded_path(tmp_path: Path) -> None:
    with from_url("sqlite:///my%20store.db") as cp:
        assert cp.path == str(tmp_path / "my store.db")


def test_sqlite_query_options(tmp_path: Path) -> None:
    with from_url("sqlite:///q.db?synchronous=normal&timeout=2.5") as cp:
        assert isinstance(cp, SqliteCheckpointer)
        assert (cp.store.synchronous, cp.store.timeout) == ("NORMAL", 2.5)
    with from_url("sqlite:///q.db?synchronous=EXTRA") as cp:
        assert cp.store.synchronous == "EXTRA"


def test_sqlite_keyword_options_win_over_the_query() -> None:
    with from_url("sqlite:///k.db?synchronous=NORMAL", synchronous="FULL", ttl=5) as cp:
        assert cp.store.synchronous == "FULL" and cp.ttl == 5.0


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db?journal=off",
        "sqlite:///x.db?synchronous=OFF",
        "sqlite:///x.db?timeout=0",
        "sqlite:///x.db?timeout=abc",
        "sqlite://somehost/x.db",
        "sqlite:///",
        "sqlite:///:memory:",
    ],
)
def test_bad_sqlite_urls_are_configuration_errors(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        from_url(url)
    assert not (tmp_path / "x.db").exists()


def test_unknown_sqlite_option_is_named() -> None:
    with pytest.raises(ConfigurationError, match="journal"):
        from_url("sqlite:///x.db?journal=off")


def test_unknown_scheme_lists_known_schemes() -> None:
    with pytest.raises(ConfigurationError) as info:
        from_url("mongodb://localhost/db")
    message = str(info.value)
    assert "mongodb" in message
    for scheme in ("memory", "sqlite", "redis", "rediss", "postgresql", "dynamodb"):
        assert scheme in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("url", ["", "memory", "just text", "/tmp/x.db"])
def test_not_a_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError):
        from_url(url)


def test_non_str_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        from_url(123)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- environment default


def test_env_url_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTS_PERSIST_URL", "memory://")
    with from_url() as cp:
        assert type(cp) is InMemoryCheckpointer
    monkeypatch.setenv("AGENTS_PERSIST_URL", "sqlite:///from-env.db?synchronous=NORMAL")
    with from_url() as cp:
        assert isinstance(cp, SqliteCheckpointer)
        assert cp.path == str(tmp_path / "from-env.db") and cp.store.synchronous == "NORMAL"
    assert not (tmp_path / "agents_persist.db").exists()


def test_explicit_url_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_PERSIST_URL", "sqlite:///from-env.db")
    with from_url("memory://") as cp:
        assert type(cp) is InMemoryCheckpointer


def test_default_is_sqlite_agents_persist_db(tmp_path: Path) -> None:
    assert urls.DEFAULT_URL == "sqlite:///agents_persist.db"
    with from_url() as cp:
        assert isinstance(cp, SqliteCheckpointer)
        assert cp.path == str(tmp_path / "agents_persist.db")
    assert (tmp_path / "agents_persist.db").exists()


def test_empty_env_falls_back_to_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTS_PERSIST_URL", "")
    with from_url() as cp:
        assert isinstance(cp, SqliteCheckpointer) and cp.path == str(tmp_path / "agents_persist.db")


def test_bad_env_url_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_PERSIST_URL", "nosuch://x")
    with pytest.raises(ConfigurationError, match="nosuch"):
        from_url()


# ---------------------------------------------------------------------------------------------- register_scheme


MEMORY_TARGET = "agents_persist.backends.memory:InMemoryCheckpointer"
SQLITE_TARGET = "agents_persist.backends.sqlite:SqliteCheckpointer"


def test_register_new_scheme() -> None:
    register_scheme("scratch", MEMORY_TARGET)
    with from_url("scratch://") as cp:
        assert type(cp) is InMemoryCheckpointer
    with from_url("SCRATCH://") as cp:
        assert type(cp) is InMemoryCheckpointer


def test_register_scheme_is_case_insensitive() -> None:
    register_scheme("MiXeD", MEMORY_TARGET)
    with from_url("mixed://") as cp:
        assert type(cp) is InMemoryCheckpointer


def test_register_taken_scheme_conflicts_unless_overridden() -> None:
    with pytest.raises(ConfigurationError, match="memory"):
        register_scheme("memory", SQLITE_TARGET)
    with from_url("memory://") as cp:  # unchanged
        assert type(cp) is InMemoryCheckpointer
    register_scheme("memory", MEMORY_TARGET)  # the same target again is fine
    register_scheme("sqlite", MEMORY_TARGET, allow_override=True)
    with from_url("sqlite:///ignored.db") as cp:
        assert type(cp) is InMemoryCheckpointer


def test_register_scheme_needs_module_colon_class() -> None:
    with pytest.raises(ConfigurationError):
        register_scheme("broken", "agents_persist.backends.memory.InMemoryCheckpointer")
    with pytest.raises(ConfigurationError, match="unknown URL scheme"):
        from_url("broken://")


def test_registered_scheme_with_missing_module_is_a_configuration_error() -> None:
    register_scheme("ghost", "agents_persist_no_such_module:Ghost")
    with pytest.raises(ConfigurationError, match="agents_persist_no_such_module"):
        from_url("ghost://")


# ---------------------------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    "url,expected",
    [
        (f"redis://user:{SECRET}@localhost:6379/0", "redis://user:***@localhost:6379/0"),
        (f"redis://:{SECRET}@localhost:6379/0", "redis://:***@localhost:6379/0"),
        (
            f"rediss://default:{SECRET}@cache.example.com:6380/1?ssl_cert_reqs=none",
            "rediss://default:***@cache.example.com:6380/1?ssl_cert_reqs=none",
        ),
        (f"redis+cluster://:{SECRET}@h1:7000,h2:7001", "redis+cluster://:***@h1:7000,h2:7001"),
        (f"postgresql://app:{SECRET}@db:5432/agents?sslmode=require", "postgresql://app:***@db:5432/agents?sslmode=require"),
        (
            f"postgresql://app@db/agents?password={SECRET}&sslmode=require",
            "postgresql://app@db/agents?password=***&sslmode=require",
        ),
        (
            f"dynamodb://us-east-1/table?aws_access_key_id=AKIDEXAMPLE&aws_secret_access_key={SECRET}",
            "dynamodb://us-east-1/table?aws_access_key_id=AKIDEXAMPLE&aws_secret_access_key=***",
        ),
        (
            f"dynamodb:///t?AWS_SECRET_ACCESS_KEY={SECRET}&aws_session_token={SECRET}",
            "dynamodb:///t?AWS_SECRET_ACCESS_KEY=***&aws_session_token=***",
        ),
        (f"redis://user:p%40ss{SECRET}@host/0", "redis://user:***@host/0"),
        (f"redis://user:p@ss{SECRET}@host/0", "redis://user:***@host/0"),  # unencoded '@' in the password
    ],
)
def test_redact_url_hides_passwords(url: str, expected: str) -> None:
    redacted = redact_url(url)
    assert SECRET not in redacted
    assert redacted == expected


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db",
        "sqlite:////var/lib/agents/x.db",
        "sqlite:///x.db?synchronous=NORMAL",
        "memory://",
        "redis://localhost:6379/0",
        "redis://user@localhost:6379/0",
        "dynamodb://us-east-1/table?endpoint_url=http://127.0.0.1:5000",
    ],
)
def test_redact_url_leaves_urls_without_secrets_unchanged(url: str) -> None:
    assert redact_url(url) == url


def test_redact_url_of_an_unparseable_url_hides_everything() -> None:
    redacted = redact_url(f"redis://user:{SECRET}@[::1")
    assert SECRET not in redacted


def test_errors_from_urls_do_not_contain_passwords() -> None:
    for url in (
        f"nosuch://user:{SECRET}@host/0",
        f"sqlite:///x.db?password={SECRET}",
        f"sqlite://user:{SECRET}@host/x.db",
        f"user:{SECRET}@host",
    ):
        with pytest.raises(ConfigurationError) as info:
            from_url(url)
        assert SECRET not in str(info.value), url
        assert SECRET not in repr(info.value), url


def test_repr_of_checkpointers_has_no_password(tmp_path: Path) -> None:
    with from_url("memory://") as cp:
        assert SECRET not in repr(cp)
        assert repr(cp).startswith("InMemoryCheckpointer(")
    with from_url("sqlite:///r.db?synchronous=NORMAL") as cp:
        text = repr(cp)
        assert text.startswith("SqliteCheckpointer(") and "r.db" in text and "NORMAL" in text
        assert SECRET not in text


def test_memory_url_takes_the_common_options_like_every_backend() -> None:
    with from_url("memory://?ttl=5&max_retries=3") as cp:
        assert (cp.ttl, cp.max_retries) == (5.0, 3)
    with pytest.raises(ConfigurationError, match="unknown memory option 'bogus'"):
        from_url("memory://?bogus=1")
    with pytest.raises(ConfigurationError, match="memory option ttl must be a positive number of seconds"):
        from_url("memory://?ttl=-1")
