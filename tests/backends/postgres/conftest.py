"""Fixtures of the PostgreSQL backend tests (the server and the session schema come from tests/fixtures/postgres.py)."""

from __future__ import annotations

from typing import Iterator

import pytest

from agents_persist import PostgresCheckpointer
from tests.backends.postgres.helpers import Server
from tests.conftest import _built
from tests.fixtures.postgres import drop_schema, unique_schema
from tests.servers import PostgresServer
from tests.spec import BackendSpec


@pytest.fixture
def pg_url(postgres_server: Server) -> str:
    return postgres_server.url


@pytest.fixture
def schema(postgres_spec: BackendSpec) -> str:
    return str(postgres_spec.options["schema"])


@pytest.fixture
def cp(postgres_spec: BackendSpec, prefix: str) -> Iterator[PostgresCheckpointer]:
    for checkpointer in _built(postgres_spec, prefix):  # threads under ``prefix`` are deleted afterwards
        assert isinstance(checkpointer, PostgresCheckpointer)
        yield checkpointer


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
