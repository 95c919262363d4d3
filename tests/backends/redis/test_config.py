"""Redis: construction, URLs (database, credentials, TLS, options), given clients, the missing driver."""

from __future__ import annotations

import subprocess
import sys
from typing import List, Optional

import pytest
import redis

from agents_persist import (
    AgentStateSnapshot,
    BackendUnavailableError,
    ConfigurationError,
    RedisCheckpointer,
    from_url,
)
from tests.backends.redis.support import FakeServer, like_redis_until
from tests.servers import RedisServer
from tests.spec import BackendSpec

# ---------------------------------------------------------------------- construction and URLs


def test_url_database_credentials_and_options(private_server: RedisServer) -> None:
    raw = redis.Redis.from_url(private_server.url)
    raw.acl_setuser("agent", enabled=True, passwords=["+s3cret-pw"], keys=["*"], commands=["+@all"])
    base = f"redis://agent:s3cret-pw@127.0.0.1:{private_server.port}/3"
    cp = from_url(base + "?key_prefix=app:&ttl=60&timeout=2&connect_timeout=0.5&max_connections=7")
    try:
        assert isinstance(cp, RedisCheckpointer)
        assert (cp.key_prefix, cp.ttl, cp.timeout, cp.connect_timeout, cp.max_connections) == ("app:", 60.0, 2.0, 0.5, 7)
        assert "s3cret-pw" not in repr(cp) and "***" in repr(cp)
        cp.save("db3", AgentStateSnapshot())
        raw_db3 = redis.Redis(port=private_server.port, db=3)
        assert raw_db3.exists("app:{db3}:head") and not raw.exists("app:{db3}:head")
        raw_db3.close()
        assert RedisCheckpointer.from_url(base + "?key_prefix=app:", key_prefix="win:").key_prefix == "win:"

        wrong = from_url(base.replace("s3cret-pw", "wrong-pw"))
        with pytest.raises(BackendUnavailableError) as info:
            wrong.load("db3")
        assert "wrong-pw" not in str(info.value) and "s3cret-pw" not in str(info.value)
        wrong.close()
    finally:
        cp.delete("db3")
        cp.close()
        raw.close()


def test_rediss_url_uses_tls() -> None:
    cp = RedisCheckpointer.from_url("rediss://user:pw@127.0.0.1:6380/0?ssl_cert_reqs=none")
    pool = cp.store.connection.client().connection_pool
    assert pool.connection_class is redis.SSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    assert "pw@" not in repr(cp)
    cp.close()


def test_bad_configuration_is_refused(redis_spec: BackendSpec) -> None:
    client = redis.Redis.from_url(redis_spec.url)
    with pytest.raises(ConfigurationError):
        RedisCheckpointer()
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(redis_spec.url, client=client)
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(redis_spec.url, key_prefix="a{b}:")
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(redis_spec.url + "?key_prefix=x:")  # query options need from_url
    with pytest.raises(ConfigurationError):
        RedisCheckpointer.from_url(redis_spec.url + "?ttl=soon")
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(client=redis.Redis.from_url(redis_spec.url, decode_responses=True))
    with pytest.raises(ConfigurationError):
        RedisCheckpointer(client=client, max_connections=3)
    with pytest.raises(ConfigurationError):
        RedisCheckpointer("redis+cluster://127.0.0.1:7000/2")
    client.close()


def test_a_database_that_is_not_a_number_is_refused_before_any_io(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError("no connection may be opened")

    monkeypatch.setattr(redis.Connection, "connect", no_io)
    for path in ("abc", "3/4", "-1", "%33x", "٣"):
        with pytest.raises(ConfigurationError) as info:
            RedisCheckpointer(f"redis://127.0.0.1:1/{path}")
        assert "database" in str(info.value)
        with pytest.raises(ConfigurationError):
            from_url(f"redis://127.0.0.1:1/{path}?ttl=5")
    RedisCheckpointer("redis://127.0.0.1:1/%33").close()  # "/3", quoted
    RedisCheckpointer("redis://127.0.0.1:1/").close()


@pytest.mark.parametrize("when", ["always", "after the handshake"])
def test_a_server_that_is_not_redis_is_reported_as_unavailable(when: str) -> None:
    """A redis:// URL that points at some other TCP server: typed errors, never redis-py's InvalidResponse."""
    garbage = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    handshake = like_redis_until(b"NO SUCH COMMAND")

    def answer(command: List[bytes]) -> Optional[bytes]:
        if when == "after the handshake" and command[0].upper() in (b"HELLO", b"CLIENT"):
            return handshake(command)
        return garbage

    server = FakeServer(answer)
    cp = from_url(server.url + "?timeout=2")
    try:
        for name, call in {
            "load": lambda: cp.load("t"),
            "save": lambda: cp.save("t", AgentStateSnapshot()),
            "list_threads": lambda: cp.list_threads(),
            "iter_threads": lambda: list(cp.iter_threads()),
            "delete": lambda: cp.delete("t"),
        }.items():
            with pytest.raises(BackendUnavailableError) as info:
                call()
            assert "not answer like a Redis server" in str(info.value), name
            changes = name in ("save", "delete")
            assert info.value.maybe_applied is (changes and when == "after the handshake"), name
    finally:
        cp.close()
        server.close()


def test_given_client_is_used_and_never_closed(redis_spec: BackendSpec, prefix: str) -> None:
    client = redis.Redis.from_url(redis_spec.url)
    client_id = client.client_id()
    cp = RedisCheckpointer(client=client, key_prefix="given:")
    cp.save(prefix + "c", AgentStateSnapshot())
    assert client.exists(f"given:{{{prefix}c}}:head")
    cp.delete(prefix + "c")
    cp.close()
    assert client.client_id() == client_id, "close() must not touch a client it did not create"
    client.close()


def test_module_imports_without_redis_and_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import agents_persist.backends.redis as m\n"
        "from agents_persist import ConfigurationError\n"
        "try:\n"
        "    m.RedisCheckpointer('redis://localhost')\n"
        "except ConfigurationError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install agents_persist[redis]" in out.stdout
