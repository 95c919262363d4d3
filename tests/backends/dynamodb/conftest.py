"""Fixtures of the DynamoDB tests (the server, spec and client fixtures are in ``tests/fixtures/dynamodb.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.backends.dynamodb.helpers import table_name
from tests.fixtures.dynamodb import CREDENTIALS, AnyMotoServer, SerializedMotoServer, dynamodb_url, unique_table
from tests.servers import MotoServer
from tests.spec import BackendSpec


@pytest.fixture
def table(dynamodb_spec: BackendSpec) -> str:
    """The session table's name; building a checkpointer first makes sure it exists (create_table=True)."""
    dynamodb_spec.build().close()
    return table_name(dynamodb_spec)


@pytest.fixture
def isolated_spec(dynamodb_server: AnyMotoServer) -> BackendSpec:
    """A spec on a table of its own, for tests that scan or purge the whole table."""
    options = {"create_table": True, "timeout": 10.0, **CREDENTIALS}
    return BackendSpec("dynamodb", dynamodb_url(dynamodb_server, unique_table("iso")), options)


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[MotoServer]:
    server = SerializedMotoServer.start(tmp_path)
    try:
        yield server
    finally:
        server.stop()
