"""Shared fixtures: one ``checkpointer`` fixture parametrised over every backend.

Each backend contributes one module ``tests/fixtures/<backend>.py`` (found and
loaded as a pytest plugin) with a session-scoped ``<name>_spec`` fixture
returning a :class:`BackendSpec`, declared in its ``CONTRACT_SPECS``. The
contract suite only ever asks for ``backend_spec`` or ``checkpointer``; adding
a backend means adding its fixture module, never editing a list or copying tests.
"""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from types import ModuleType
from typing import Iterator, List

import pytest

from agents_persist import Checkpointer

pytest.register_assert_rewrite("tests.fixtures")
from tests import fixtures  # noqa: E402  (after the rewrite hook, so its asserts are rewritten)
from tests.spec import BackendSpec, ContractSpec  # noqa: E402


def _fixture_modules() -> List[ModuleType]:
    return [importlib.import_module(f"{fixtures.__name__}.{info.name}") for info in pkgutil.iter_modules(fixtures.__path__)]


#: Every module in tests/fixtures is a plugin; each declares its contract entries in ``CONTRACT_SPECS``.
pytest_plugins = [module.__name__ for module in _fixture_modules()]
CONTRACT_SPECS: List[ContractSpec] = [spec for module in _fixture_modules() for spec in getattr(module, "CONTRACT_SPECS", [])]
#: Backends the whole contract suite runs against.
CONTRACT_BACKENDS = [spec.name for spec in CONTRACT_SPECS]
#: Backends whose instances (and processes) built from one spec share storage.
SHARED_BACKENDS = [spec.name for spec in CONTRACT_SPECS if spec.shared]


def contract_spec(name: str) -> ContractSpec:
    """The declared contract entry called ``name``."""
    return next(spec for spec in CONTRACT_SPECS if spec.name == name)


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    """Deselect the contract tests of entries that declare a subset (``ContractSpec.modules``) outside it."""
    keep: List[pytest.Item] = []
    dropped: List[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        name = params.get("backend_spec") or params.get("shared_backend_spec")
        modules = contract_spec(name).modules if name in CONTRACT_BACKENDS else None
        module = item.module.__name__.rpartition(".")[2] if isinstance(item, pytest.Function) else ""
        (keep if modules is None or module in modules else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


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
