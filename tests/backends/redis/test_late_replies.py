"""Replies that arrive after the timeout: every outcome reported truthfully, nothing applied twice.

A :class:`~tests.backends.redis.proxy.HoldingProxy` sits between the
checkpointer and the server (the session server, or every node of the session
cluster through redis-py's ``address_remap``) and holds the reply to one save
command past the client's timeout: the server ran the command, the client did
not hear back. redis-py may then re-send it (its cluster pipeline always
re-sends commands that timed out; clients built by users retry by default).
Each call must either return normally or raise ``BackendUnavailableError``
with ``maybe_applied`` set, and the stored result must show every call
applied exactly once: saves (staged whole logs and appends), ``update()``
(rewriting and appending) and ``append()``. The scripts are loaded on every
node first, and each call starts from a fresh load, so that every held
command is one that applies (not a ``NOSCRIPT`` or a stale prefix).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
import redis
import redis.cluster

import agents_persist.backends.redis.client as redis_client
from agents_persist import AgentMessage, AgentStateSnapshot, BackendUnavailableError, RedisCheckpointer
from agents_persist.backends.redis.client import WRITE
from agents_persist.backends.redis.store import STAGE_MIN_BYTES
from tests.backends.redis.proxy import HoldingProxy
from tests.backends.redis.support import messages
from tests.servers import RedisCluster, RedisServer

TIMEOUT = 0.4
HOLD = 1.0
#: A call may spend a timeout, a re-send by the driver and scheduling slack.
DEADLINE = 2 * HOLD + 3 * TIMEOUT + 1.0
ROUNDS = 3
#: Messages of about 120 bytes enough for a whole log to be staged.
STAGED = STAGE_MIN_BYTES // 100


class Setup:
    """A checkpointer through proxies, and a way to arm the proxy of a thread's node."""

    def __init__(self, cp: RedisCheckpointer, proxies: Dict[int, HoldingProxy], node_of: Callable[[str], int]) -> None:
        self.cp = cp
        self.proxies = proxies
        self.node_of = node_of

    def hold_next_save(self, thread_id: str) -> HoldingProxy:
        proxy = self.proxies[self.node_of(self.cp.store._keys(thread_id)[0])]
        proxy.hold_next(b"EVALSHA", HOLD)
        return proxy


def _standalone(server: RedisServer, given: bool) -> Tuple[RedisCheckpointer, Dict[int, HoldingProxy], Callable[[str], int]]:
    proxy = HoldingProxy(server.port)
    url = f"redis://127.0.0.1:{proxy.port}/0"
    redis.Redis(port=server.port).script_load(WRITE.source)
    if given:  # a user's client, with redis-py's default retries
        cp = RedisCheckpointer(client=redis.Redis.from_url(url, socket_timeout=TIMEOUT))
    else:
        cp = RedisCheckpointer.from_url(url, timeout=TIMEOUT)
    return cp, {server.port: proxy}, lambda key: server.port


def _cluster(
    cluster: RedisCluster, given: bool, monkeypatch: pytest.MonkeyPatch
) -> Tuple[RedisCheckpointer, Dict[int, HoldingProxy], Callable[[str], int]]:
    proxies = {port: HoldingProxy(port) for port in cluster.ports}

    def remap(address: Tuple[str, int]) -> Tuple[str, int]:
        host, port = address
        return ("127.0.0.1", proxies[port].port) if port in proxies else (host, port)

    first = proxies[cluster.ports[0]].port
    if given:  # a user's client, with redis-py's default retries
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=first, address_remap=remap, socket_timeout=TIMEOUT)
        cp = RedisCheckpointer(client=client)
    else:
        original = redis_client._cluster_url_kwargs
        monkeypatch.setattr(redis_client, "_cluster_url_kwargs", lambda r, url: {**original(r, url), "address_remap": remap})
        cp = RedisCheckpointer.from_url(f"redis+cluster://127.0.0.1:{first}", timeout=TIMEOUT)
    raw = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    raw.script_load(WRITE.source)  # on every primary

    def node_of(key: str) -> int:
        return int(raw.get_node_from_key(key).port)

    return cp, proxies, node_of


@pytest.fixture(params=["standalone", "standalone-given-client", "cluster", "cluster-given-client"])
def setup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, prefix: str) -> Iterator[Setup]:
    given = request.param.endswith("given-client")
    if request.param.startswith("cluster"):
        cp, proxies, node_of = _cluster(request.getfixturevalue("redis_cluster"), given, monkeypatch)
    else:
        cp, proxies, node_of = _standalone(request.getfixturevalue("redis_server"), given)
    try:
        yield Setup(cp, proxies, node_of)
    finally:
        for proxy in proxies.values():
            proxy.disarm()
        for info in list(cp.iter_threads(prefix)):
            cp.delete(info.thread_id)
        cp.close()
        for proxy in proxies.values():
            proxy.close()


def held(setup: Setup, thread_id: str, call: Callable[[], Any], outcomes: List[str]) -> None:
    """Run ``call`` with the reply to its save held; record how it ended (it must end truthfully, in time)."""
    proxy = setup.hold_next_save(thread_id)
    before = proxy.held
    start = time.monotonic()
    try:
        call()
        outcomes.append("returned")
    except BackendUnavailableError as exc:
        assert exc.maybe_applied, f"the save reached the server, so the error must say it may be applied: {exc}"
        outcomes.append("maybe applied")
    finally:
        proxy.disarm()
    assert time.monotonic() - start < DEADLINE
    assert proxy.held == before + 1, "the proxy did not see the save"


def test_staged_saves_are_applied_once(setup: Setup, prefix: str) -> None:
    cp, outcomes = setup.cp, []
    for i in range(ROUNDS):
        thread_id = f"{prefix}new-{i}"
        held(setup, thread_id, lambda t=thread_id: cp.save(t, AgentStateSnapshot(messages=messages(STAGED))), outcomes)
        state = cp.load(thread_id)
        assert state is not None and (state.version, len(state.messages)) == (1, STAGED), outcomes
    thread_id = f"{prefix}forced"
    cp.save(thread_id, AgentStateSnapshot(messages=messages(STAGED)))
    for i in range(ROUNDS):
        snapshot = AgentStateSnapshot(messages=messages(STAGED, start=i + 1), metadata={"round": i})
        held(setup, thread_id, lambda s=snapshot: cp.save(thread_id, s, force=True), outcomes)
        state = cp.load(thread_id)
        assert state is not None and state.version == i + 2, f"a forced save landed twice: {outcomes}"
        assert state.metadata == {"round": i} and state.messages == snapshot.messages


def _bump(rewrite: bool) -> Callable[[AgentStateSnapshot], None]:
    def fn(state: AgentStateSnapshot) -> None:
        n = state.metadata.get("n", 0) + 1
        state.metadata["n"] = n
        if rewrite:  # an edit of the first message: the whole log is rewritten (staged)
            state.messages[0] = AgentMessage.user(f"edited {n}")
        state.messages.append(AgentMessage.user(f"+1 #{n}"))

    return fn


@pytest.mark.parametrize("rewrite", [False, True], ids=["appending", "rewriting"])
def test_updates_are_applied_once(setup: Setup, prefix: str, rewrite: bool) -> None:
    cp, outcomes = setup.cp, []
    thread_id = f"{prefix}counter"
    cp.save(thread_id, AgentStateSnapshot(messages=messages(STAGED)))
    for _ in range(ROUNDS):
        held(setup, thread_id, lambda: cp.update(thread_id, _bump(rewrite)), outcomes)
        cp.load(thread_id)
    state = cp.load(thread_id)
    assert state is not None
    assert state.metadata["n"] == ROUNDS, f"update() applied {state.metadata['n']} times for {ROUNDS} calls: {outcomes}"
    assert len(state.messages) == STAGED + ROUNDS and state.version == 1 + ROUNDS


def test_appends_are_applied_once(setup: Setup, prefix: str) -> None:
    cp, outcomes = setup.cp, []
    thread_id = f"{prefix}appended"
    cp.save(thread_id, AgentStateSnapshot(messages=messages(3)))
    for i in range(ROUNDS):
        cp.load(thread_id)  # after a reply that did not come, the caller looks
        held(setup, thread_id, lambda i=i: cp.append(thread_id, [AgentMessage.user(f"appended {i}")]), outcomes)
    state = cp.load(thread_id)
    assert state is not None
    assert [m.content for m in state.messages[3:]] == [f"appended {i}" for i in range(ROUNDS)], outcomes
    assert state.version == 1 + ROUNDS
