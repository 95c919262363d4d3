"""Dropped connections: a few hundred mixed operations through a fault-injecting proxy, per backend.

Each backend's checkpointer talks to its real server through a
:class:`~tests.faults.proxy.FaultProxy` that cuts, delays (some past the
timeout), black-holes and resets connections at random points, at accept or
on any chunk either way, from a fixed seed (``AGENTS_PERSIST_FAULT_SEED``
overrides it). :mod:`tests.faults.workload` runs the operations and checks
them; this module only builds the checkpointers with short timeouts, states
each backend's bound on one call, prints the summary line and asserts that
nothing went wrong:

* every call returned or raised an ``AgentsPersistError`` (no untyped error)
  within the bound (timeout plus what the backend documents), and none hung;
* every acknowledged save loaded back byte for byte, versions never went
  backwards or skipped;
* every failed write was classified by loading over a direct connection, and
  none that said ``maybe_applied=False`` (or ``ConflictError``) was applied;
* afterwards the same checkpointer, never rebuilt, served every thread again.

Redis Cluster is not covered: its clients connect to the addresses the nodes
announce (``CLUSTER SLOTS``), so a proxy per node would need each node to
announce its proxy's port (``cluster-announce-port``), i.e. a cluster of its
own started for this test.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest

from agents_persist import Checkpointer, from_url
from tests.faults.proxy import BLACKHOLE, CUT, DELAY, RESET, FaultProxy, FaultSchedule
from tests.faults.workload import Settings, run

SEED = int(os.environ.get("AGENTS_PERSIST_FAULT_SEED", "11"))
#: Seconds the client waits for each reply (and to connect) through the proxy.
TIMEOUT = 1.0
#: Extra seconds a call may take beyond its backend's documented bound (a loaded 2-core CI machine).
MARGIN = 1.5


def with_address(url: str, address: Tuple[str, int]) -> str:
    """``url`` with its host and port replaced (user info, path and query kept)."""
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@" if userinfo else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc}{address[0]}:{address[1]}"))


@dataclass
class Target:
    """How to reach one backend directly and through a proxy, and how long one call may take."""

    name: str
    server: Tuple[str, int]
    url: Callable[[Tuple[str, int]], str]
    options: Dict[str, Any]
    oracle_options: Dict[str, Any]
    #: The documented longest call at these options, before the margin.
    bound: float
    settings: Dict[str, Any] = field(default_factory=dict)
    #: Share of new connections that meet a fault (botocore opens one per request on moto: fewer there).
    connect_rate: float = 0.12


@pytest.fixture
def redis_target(redis_server: Any) -> Target:
    # Standalone Redis: redis-py retries off, so a call is at most a connect and its replies, each within TIMEOUT.
    return Target(
        "redis",
        (redis_server.host, redis_server.port),
        lambda address: with_address(redis_server.url, address),
        {"timeout": TIMEOUT},
        {"timeout": 10.0},
        bound=2 * TIMEOUT,
    )


@pytest.fixture
def postgres_target(postgres_server: Any) -> Iterator[Target]:
    from tests.fixtures.postgres import drop_schema, unique_schema

    schema = unique_schema("faults_")
    # A call ends by statement_timeout + 5 s (cancelled on the server a second before, else cut);
    # libpq waits at least 2 s to connect. Black-holed calls cost ~6 s, so more workers share the wait.
    options = {"schema": schema, "timeout": TIMEOUT, "connect_timeout": 2.0, "statement_timeout": TIMEOUT}
    try:
        yield Target(
            "postgres",
            (postgres_server.host, postgres_server.port),
            lambda address: with_address(postgres_server.url, address),
            options,
            {"schema": schema, "timeout": 10.0},
            bound=TIMEOUT + 5.0,
            settings={"workers": 8},
        )
    finally:
        drop_schema(postgres_server.url, schema)


@pytest.fixture
def dynamodb_target(dynamodb_server: Any) -> Target:
    from tests.fixtures.dynamodb import CREDENTIALS, REGION, unique_table

    table = unique_table("faults")

    def url(address: Tuple[str, int]) -> str:
        return f"dynamodb://{REGION}/{table}?endpoint_url=http://{address[0]}:{address[1]}"

    attempts = 2
    return Target(
        "dynamodb",
        (dynamodb_server.host, dynamodb_server.port),
        url,
        {"timeout": TIMEOUT, "max_attempts": attempts, **CREDENTIALS},
        {"timeout": 10.0, "create_table": True, **CREDENTIALS},
        # botocore: each attempt connects and waits for its reply; a call may take two requests (read, then write).
        bound=2 * attempts * 2 * TIMEOUT,
        connect_rate=0.03,
    )


def schedule(connect_rate: float) -> FaultSchedule:
    return FaultSchedule(
        SEED,
        chunk_rate=0.03,
        connect_rate=connect_rate,
        weights={CUT: 1.0, DELAY: 1.0, BLACKHOLE: 0.7, RESET: 1.0},
        delay=(0.05, 2.0 * TIMEOUT),
        enabled=False,
    )


@pytest.mark.parametrize("backend", ["redis", "postgres", "dynamodb"])
def test_dropped_connections(backend: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    target: Target = request.getfixturevalue(f"{backend}_target")
    oracle = from_url(target.url(target.server), **target.oracle_options)
    proxy = FaultProxy(target.server, schedule(target.connect_rate))
    cp: Checkpointer = from_url(target.url(proxy.address), **target.options)
    try:
        oracle.exists("faults:setup")  # creates the tables / table before any fault
        cp.exists("faults:setup")
        settings = Settings(seed=SEED, call_bound=target.bound + MARGIN, **target.settings)
        report = run(backend, cp, oracle, proxy, settings)
    finally:
        cp.close()
        oracle.close()
        proxy.close()
    with capsys.disabled():
        print("\n" + report.line())
    problems = report.problems()
    assert not problems, "\n".join(f"{name}: {items[:10]}" for name, items in problems.items())
    assert sum(report.operations.values()) >= 200, report.line()
    assert sum(report.faults.values()) >= 20, report.line()
