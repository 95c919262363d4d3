"""Fixtures of the LangGraph tests: a saver over each main backend, under a prefix no other test uses."""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

pytest.importorskip("langgraph.checkpoint.base", reason="needs the langgraph extra")

from agents_persist import Checkpointer as Backend  # noqa: E402
from agents_persist.langgraph import Checkpointer  # noqa: E402
from tests.conftest import CONTRACT_BACKENDS  # noqa: E402
from tests.spec import BackendSpec  # noqa: E402

#: The backends the LangGraph saver is tested on (the conformance suite runs on each).
LANGGRAPH_BACKENDS = [
    name for name in ("memory", "sqlite", "redis", "redis_cluster", "postgres", "dynamodb") if name in CONTRACT_BACKENDS
]
SHARED_LANGGRAPH_BACKENDS = [name for name in LANGGRAPH_BACKENDS if name != "memory"]


@pytest.fixture(params=LANGGRAPH_BACKENDS)
def lg_spec(request: pytest.FixtureRequest) -> BackendSpec:
    """The spec of each backend the saver is tested on."""
    return request.getfixturevalue(f"{request.param}_spec")  # type: ignore[no-any-return]


def cleanup(backend: Backend, prefix: str) -> None:
    """Delete every thread of the store under ``prefix``."""
    for info in list(backend.iter_threads(prefix)):
        backend.delete(info.thread_id)


@pytest.fixture
def make_saver(lg_spec: BackendSpec, prefix: str) -> Iterator[Callable[..., Checkpointer]]:
    """Build savers (``make_saver(**options)``) over ``lg_spec`` sharing one prefix and store; cleaned up and closed after."""
    backends: List[Backend] = []
    shared: List[Backend] = []

    def make(**options: Any) -> Checkpointer:
        if lg_spec.factory is not None and shared:  # memory: every saver of the test shares the one instance
            return Checkpointer(shared[0], prefix=prefix, **options)
        backend = lg_spec.build()
        backends.append(backend)
        shared.append(backend)
        return Checkpointer(backend, prefix=prefix, **options)

    yield make
    for backend in backends:
        try:
            cleanup(backend, prefix)
        finally:
            backend.close()
