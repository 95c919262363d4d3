"""Shared fixtures: one ``checkpointer`` fixture parametrised over every backend.

Each backend contributes, in ``tests/fixtures/<backend>.py`` (a pytest plugin
listed below), a session-scoped ``<name>_spec`` fixture returning a
:class:`BackendSpec`. The contract suite only ever asks for ``backend_spec`` or
``checkpointer``; adding a backend means adding its fixture module and its name
to the lists here, never copying tests.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from agents_persist import Checkpointer
from tests.spec import BackendSpec

pytest_plugins = [
    "tests.fixtures.local",
    "tests.fixtures.redis",
    "tests.fixtures.postgres",
    "tests.fixtures.dynamodb",
]

#: Backends the whole contract suite runs against.
CONTRACT_BACKENDS = ["memory", "sqlite", "redis", "redis_cluster", "postgres", "dynamodb"]
#: Backends whose instances (and processes) built from one spec share storage.
SHARED_BACKENDS = [name for name in CONTRACT_BACKENDS if name != "memory"]


@pytest.fixture(params=CONTRACT_BACKENDS)
def backend_spec(request: pytest.FixtureRequest) -> BackendSpec:
    """The spec of each contract backend in turn."""
    return request.getfixturevalue(f"{request.param}_spec")  # type: ignore[no-any-return]


@pytest.fixture(params=SHARED_BACKENDS)
def shared_backend_spec(request: pytest.FixtureRequest) -> BackendSpec:
    """The spec of each backend whose storage outlives one instance and one process."""
    return request.getfixturevalue(f"{request.param}_spec")  # type: ignore[no-any-return]


@pytest.fixture
def prefix() -> str:
    """A thread-ID prefix no other test uses; tests create threads only under it."""
    return f"t{uuid.uuid4().hex[:10]}:"


def _built(spec: BackendSpec, prefix: str) -> Iterator[Checkpointer]:
    """Build a checkpointer from ``spec``; afterwards delete the threads under ``prefix`` and close it."""
    cp = spec.build()
    try:
        yield cp
    finally:
        try:
            if not cp.closed:
                for info in list(cp.iter_threads(prefix)):
                    cp.delete(info.thread_id)
        finally:
            cp.close()


@pytest.fixture
def checkpointer(backend_spec: BackendSpec, prefix: str) -> Iterator[Checkpointer]:
    """A fresh checkpointer of each backend; threads under ``prefix`` are deleted afterwards."""
    yield from _built(backend_spec, prefix)


@pytest.fixture
def shared_checkpointer(shared_backend_spec: BackendSpec, prefix: str) -> Iterator[Checkpointer]:
    """Like ``checkpointer``, for backends shared across instances and processes."""
    yield from _built(shared_backend_spec, prefix)
