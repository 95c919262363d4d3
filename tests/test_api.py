"""The public surface: every exported name imports, and the async API mirrors the sync one."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import pytest

import agents_persist
from agents_persist import AgentsPersistError, AsyncCheckpointer, Checkpointer, errors, registry

#: Public methods of Checkpointer; each needs a twin on AsyncCheckpointer.
PUBLIC_METHODS = [
    "save",
    "append",
    "load",
    "load_messages",
    "tail",
    "message_count",
    "delete",
    "exists",
    "get_version",
    "list_threads",
    "iter_threads",
    "transaction",
    "update",
    "purge_expired",
    "delete_inactive",
    "close",
]


@pytest.mark.parametrize("name", agents_persist.__all__)
def test_every_exported_name_is_importable(name: str) -> None:
    value = getattr(agents_persist, name)
    assert value is not None
    namespace: dict = {}
    exec(f"from agents_persist import {name} as imported", namespace)  # the way users import it
    assert namespace["imported"] is value


def test_star_import_works() -> None:
    namespace: dict = {}
    exec("from agents_persist import *", namespace)
    assert set(agents_persist.__all__) <= set(namespace)


def test_all_has_no_duplicates_and_unknown_names_raise() -> None:
    assert len(agents_persist.__all__) == len(set(agents_persist.__all__))
    with pytest.raises(AttributeError):
        agents_persist.NoSuchCheckpointer  # noqa: B018


def test_every_backend_package_declares_itself_once() -> None:
    names = [backend.name for backend in registry.backends()]
    assert {"memory", "sqlite", "redis", "postgres", "dynamodb"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    "backend", [b for b in registry.backends() if b.target.startswith("agents_persist.")], ids=lambda b: b.name
)
def test_backends_are_checkpointers_reachable_by_url_scheme(backend: registry.Backend) -> None:
    cls = getattr(agents_persist, backend.class_name)
    assert backend.class_name in agents_persist.__all__
    assert inspect.isclass(cls) and issubclass(cls, Checkpointer)
    assert not inspect.isabstract(cls)
    assert backend.schemes, f"{backend.name} answers to no URL scheme"
    assert callable(getattr(cls, "from_url", None))
    for scheme in backend.schemes:
        assert registry.resolve_scheme(scheme).load() is cls


def test_every_error_derives_from_the_base() -> None:
    for name in errors.__all__:
        error = getattr(errors, name)
        assert issubclass(error, AgentsPersistError)
        assert getattr(agents_persist, name) is error


def test_version_string() -> None:
    assert isinstance(agents_persist.__version__, str) and agents_persist.__version__.count(".") >= 1


# ---------------------------------------------------------------------------------------------- sync/async uniformity


def public_methods_of(cls: type) -> set:
    return {
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and callable(value) and not isinstance(value, (staticmethod, classmethod))
    }


def test_the_method_list_is_complete() -> None:
    """If Checkpointer grows a public method, this list (and AsyncCheckpointer) must follow."""
    assert public_methods_of(Checkpointer) == set(PUBLIC_METHODS)


def _unwrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    return inspect.unwrap(fn)


def _parameters(fn: Callable[..., Any]) -> list:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", PUBLIC_METHODS)
def test_async_twin_exists_with_the_same_parameters(name: str) -> None:
    sync = getattr(Checkpointer, name)
    twin = getattr(AsyncCheckpointer, name, None)
    assert twin is not None, f"AsyncCheckpointer has no {name}()"
    assert _parameters(twin) == _parameters(sync), f"AsyncCheckpointer.{name} takes other parameters than Checkpointer.{name}"
    inner = _unwrap(twin)
    if name == "transaction":
        # an async context manager: ``async with acp.transaction(tid) as state``
        assert inspect.isasyncgenfunction(inner)
        assert inspect.isgeneratorfunction(_unwrap(sync))
    elif name == "iter_threads":
        # an async iterator: ``async for info in acp.iter_threads(prefix)``
        assert inspect.isasyncgenfunction(inner), "iter_threads must be an async generator"
    else:
        assert inspect.iscoroutinefunction(twin), f"AsyncCheckpointer.{name} is not a coroutine function"


def test_async_transaction_is_an_async_context_manager() -> None:
    from agents_persist import InMemoryCheckpointer

    acp = AsyncCheckpointer(InMemoryCheckpointer())
    cm = acp.transaction("t")
    assert hasattr(cm, "__aenter__") and hasattr(cm, "__aexit__")
    assert not hasattr(cm, "__enter__")


def test_async_checkpointer_is_an_async_context_manager() -> None:
    assert inspect.iscoroutinefunction(AsyncCheckpointer.__aenter__)
    assert inspect.iscoroutinefunction(AsyncCheckpointer.__aexit__)


def test_every_built_in_backend_runs_the_contract_suite() -> None:
    from tests.conftest import CONTRACT_SPECS

    built_in = {b.name for b in registry.backends() if b.target.startswith("agents_persist.backends.")}
    assert built_in <= {spec.backend for spec in CONTRACT_SPECS}


def test_the_type_checking_exports_name_the_registered_classes() -> None:
    source = inspect.getsource(agents_persist)
    block = source[source.index("if TYPE_CHECKING:") : source.index("else:")]
    built_in = [b.class_name for b in registry.backends() if b.target.startswith("agents_persist.backends.")]
    for name in built_in:
        assert f"import {name}\n" in block and f'"{name}"' in block, f"add {name} to the TYPE_CHECKING block"
