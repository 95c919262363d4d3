"""What the tests that serve an example over HTTP share: a store (SQLite and Redis) and a free port."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import pytest

from tests.cli.helpers import spec_url
from tests.integrations.support import free_port
from tests.spec import BackendSpec


@dataclass
class Served:
    """Where an example server will listen, and the environment that points it at the test's store."""

    spec: BackendSpec
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> Dict[str, str]:
        return {"AGENTS_PERSIST_URL": spec_url(self.spec)}  # as a user configures the examples


@pytest.fixture(params=["sqlite", "redis"])
def served(request: pytest.FixtureRequest) -> Served:
    """An example server's store (each of SQLite and Redis) and a free port on 127.0.0.1."""
    return Served(request.getfixturevalue(f"{request.param}_spec"), free_port())
