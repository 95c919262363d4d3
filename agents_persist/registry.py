"""The one registration point of backends: URL schemes, classes, extras.

Every package under :mod:`agents_persist.backends` declares itself with a
module-level ``BACKEND = Backend(...)``; :func:`backends` finds them (once,
on first use) and :func:`register` adds others (third-party or test stores).
``from_url``, the lazy exports of :mod:`agents_persist`, the docs' backend
table and the test suite's parametrisation all read this one table.
Importing a backend module never imports its driver (redis, psycopg2,
boto3): that happens when a checkpointer is built.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .errors import ConfigurationError

__all__ = ["Backend", "backends", "register", "resolve_scheme", "checkpointer_classes"]


@dataclass(frozen=True)
class Backend:
    """What a backend declares about itself.

    Attributes:
        name: Short name (``"redis"``), also its docs page ``backends/<name>``.
        target: ``"package.module:Class"`` of the public checkpointer class.
        schemes: URL schemes ``from_url`` builds it for.
        extra: The ``pip install agents_persist[<extra>]`` that brings its driver, if any.
        summary: One line for the docs' backend table.
    """

    name: str
    target: str
    schemes: Tuple[str, ...]
    extra: Optional[str] = None
    summary: str = ""

    @property
    def class_name(self) -> str:
        """Name of the public checkpointer class."""
        return self.target.partition(":")[2]

    def load(self) -> Any:
        """Import and return the public checkpointer class."""
        module_name, _, class_name = self.target.partition(":")
        return getattr(importlib.import_module(module_name), class_name)


_mutex = threading.RLock()
_backends: Dict[str, Backend] = {}
_discovered = False


def _discover() -> None:
    global _discovered
    package = importlib.import_module(__name__.rpartition(".")[0] + ".backends")

    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        declared = getattr(module, "BACKEND", None)
        if isinstance(declared, Backend):
            _add(declared, allow_override=False)
    _discovered = True


def _add(backend: Backend, *, allow_override: bool) -> None:
    if ":" not in backend.target:
        raise ConfigurationError(f"target must look like 'package.module:Class', not {backend.target!r}")
    for other in _backends.values():
        taken = set(other.schemes) & {s.lower() for s in backend.schemes}
        if taken and other.name != backend.name and not allow_override:
            raise ConfigurationError(f"URL scheme {sorted(taken)[0]!r} is already registered to {other.target}")
    if allow_override:
        for name, other in list(_backends.items()):
            schemes = tuple(s for s in other.schemes if s not in backend.schemes)
            if schemes != other.schemes:
                _backends[name] = Backend(other.name, other.target, schemes, other.extra, other.summary)
    _backends[backend.name] = Backend(
        backend.name, backend.target, tuple(s.lower() for s in backend.schemes), backend.extra, backend.summary
    )


def backends() -> List[Backend]:
    """Every registered backend: the built-in ones first, in a stable order."""
    with _mutex:
        if not _discovered:
            _discover()
        return list(_backends.values())


def register(backend: Backend, *, allow_override: bool = False) -> None:
    """Add ``backend`` to the table (its schemes must be free unless ``allow_override``)."""
    with _mutex:
        if not _discovered:
            _discover()
        _add(backend, allow_override=allow_override)


def resolve_scheme(scheme: str) -> Backend:
    """The backend registered for ``scheme``; :class:`ConfigurationError` naming the known ones if none."""
    scheme = scheme.lower()
    for backend in backends():
        if scheme in backend.schemes:
            return backend
    known = ", ".join(sorted(s for b in backends() for s in b.schemes))
    raise ConfigurationError(f"unknown URL scheme {scheme!r}; known schemes: {known}")


def checkpointer_classes() -> Dict[str, Backend]:
    """Public class name -> backend, for lazy exports."""
    return {backend.class_name: backend for backend in backends()}
