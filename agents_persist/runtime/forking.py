"""The one at-fork registry of agents_persist: every fork-sensitive object registers here.

Pools, lock tables, watchdogs, clients and gates each hold state that must
not be shared between a parent and its forked child (sockets, mutexes a
parent thread may hold at fork time, threads that do not exist in the
child). They register with :func:`register` and implement any of three
hooks, which run in registration order around ``os.fork()``:

* ``_before_fork()`` in the parent, just before the fork;
* ``_after_fork_in_parent()`` in the parent, right after it;
* ``_after_fork_in_child()`` in the child, before any other code runs.

Objects are held weakly, so registering never keeps one alive. This module
is also the only place that compares process IDs: :func:`pid` is the
current process, kept up to date here.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any, List

__all__ = ["register", "pid", "registered"]

logger = logging.getLogger(__name__)

_objects: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()
_order = iter(range(1 << 62))
_mutex = threading.Lock()
_pid = os.getpid()


def register(obj: Any) -> None:
    """Run ``obj``'s fork hooks (``_before_fork``, ``_after_fork_in_parent``, ``_after_fork_in_child``) from now on."""
    with _mutex:
        _objects[next(_order)] = obj


def pid() -> int:
    """The current process ID, as of the last fork this module saw."""
    return _pid


def registered() -> List[Any]:
    """The live registered objects, in registration order."""
    with _mutex:
        return [obj for _, obj in sorted(_objects.items(), key=lambda item: item[0])]


def _call(hook: str, objects: List[Any]) -> None:
    for obj in objects:
        method = getattr(obj, hook, None)
        if method is None:
            continue
        try:
            method()
        except Exception:  # pragma: no cover - one object must never break a fork
            logger.exception("%s of %r failed", hook, obj)


_pending: List[Any] = []


def _before() -> None:
    global _pending
    _pending = registered()
    _call("_before_fork", _pending)


def _after_in_parent() -> None:
    global _pending
    objects, _pending = _pending, []
    _call("_after_fork_in_parent", list(reversed(objects)))


def _after_in_child() -> None:
    global _pid, _mutex, _pending
    _pid = os.getpid()
    _mutex = threading.Lock()  # a parent thread may have held it
    _pending = []
    # Everything registered, also objects another parent thread made after ``_before`` ran:
    # a child hook must therefore not rely on its ``_before_fork`` having run.
    _call("_after_fork_in_child", registered())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child)
