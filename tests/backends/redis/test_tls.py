"""Redis over TLS (``rediss://``) with a self-signed test CA: the certificate is verified through URL options.

The contract suite runs over the same server (entry ``redis_tls`` of
tests/fixtures/deployments.py); these tests check that the transport is
TLS and that an unverifiable server is refused with a library error.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlencode

import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, BackendUnavailableError, from_url
from tests.backends.redis.support import FAST_TIMEOUT
from tests.servers.redis import TlsRedisServer


def _url(server: TlsRedisServer, **query: str) -> str:
    return f"rediss://{server.host}:{server.tls_port}/0" + (f"?{urlencode(query)}" if query else "")


def test_rediss_url_verifies_the_server_and_round_trips(redis_tls_server: TlsRedisServer) -> None:
    cp = from_url(redis_tls_server.url, timeout=FAST_TIMEOUT)
    tid = f"tls-{uuid.uuid4().hex}"
    try:
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("over TLS")]))
        assert [m.content for m in cp.load(tid).messages] == ["over TLS"]
        pool = cp.store.connection.client().connection_pool  # type: ignore[attr-defined]
        assert pool.connection_class.__name__ == "SSLConnection"
        assert pool.connection_kwargs["ssl_ca_certs"] == str(redis_tls_server.ca.cert)
        cp.delete(tid)
    finally:
        cp.close()


def test_localhost_matches_the_certificate_too(redis_tls_server: TlsRedisServer) -> None:
    url = _url(redis_tls_server, ssl_ca_certs=str(redis_tls_server.ca.cert)).replace("127.0.0.1", "localhost")
    cp = from_url(url, timeout=FAST_TIMEOUT)
    try:
        assert cp.load("absent") is None
    finally:
        cp.close()


@pytest.mark.parametrize("trust", ["other CA", "system CAs"])
def test_unverifiable_server_is_refused_within_the_timeout(redis_tls_server: TlsRedisServer, trust: str) -> None:
    query = {"ssl_ca_certs": str(redis_tls_server.ca.other_cert)} if trust == "other CA" else {}
    cp = from_url(_url(redis_tls_server, **query), timeout=FAST_TIMEOUT)
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailableError, match="certificate verify failed") as info:
            cp.load("t")
        assert info.value.maybe_applied is False
        with pytest.raises(BackendUnavailableError, match="certificate verify failed") as info:
            cp.save("t", AgentStateSnapshot())
        assert info.value.maybe_applied is False  # refused in the handshake: nothing was sent
    finally:
        cp.close()
    assert time.monotonic() - started < 4 * FAST_TIMEOUT


def test_plain_redis_url_on_the_tls_port_fails_typed(redis_tls_server: TlsRedisServer) -> None:
    cp = from_url(f"redis://{redis_tls_server.host}:{redis_tls_server.tls_port}/0", timeout=FAST_TIMEOUT)
    try:
        with pytest.raises(BackendUnavailableError):
            cp.load("t")
    finally:
        cp.close()
