"""``checkpointers``: the process's checkpointers by alias, built lazily like Django's ``caches``."""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterator, List

from django.core.signals import setting_changed

from ..checkpointer import Checkpointer
from ..runtime import forking
from ..urls import from_url
from . import conf

__all__ = ["CheckpointerHandler", "checkpointers"]


class CheckpointerHandler:
    """``checkpointers[alias]``: the checkpointer of an ``AGENTS_PERSIST`` alias, built on first use in a process.

    Unlike ``caches`` (one connection per thread), one checkpointer per alias
    is shared by every thread of the process: it is a thread-safe connection
    pool, so it is never closed per request. Nothing is built at import or
    app loading, so a process that forks workers (gunicorn ``--preload``,
    Celery prefork) forks without open connections; and a checkpointer used
    before a fork reopens its connections in the child anyway.
    ``override_settings(AGENTS_PERSIST=...)`` closes and drops the built
    ones, so the next use builds from the new setting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: Dict[str, Checkpointer] = {}
        forking.register(self)

    def _after_fork_in_child(self) -> None:
        # A parent thread may have held the lock (building a checkpointer) at the fork; that thread is not here.
        self._lock = threading.Lock()

    def __getitem__(self, alias: str) -> Checkpointer:
        """The checkpointer of ``alias``; a closed one is replaced.

        Raises:
            ConfigurationError: ``alias`` is not configured, or its URL or options are invalid.
        """
        with self._lock:
            built = self._built.get(alias)
            if built is None or built.closed:
                config = conf.alias_config(alias)
                built = self._built[alias] = from_url(config.url, **config.options)
            return built

    def __contains__(self, alias: object) -> bool:
        """True if ``alias`` is configured (built or not)."""
        return alias in conf.read()

    def __iter__(self) -> Iterator[str]:
        return iter(conf.read())

    def all(self, initialized_only: bool = False) -> List[Checkpointer]:
        """The checkpointers of every alias (only the already built ones if ``initialized_only``)."""
        if initialized_only:
            with self._lock:
                return list(self._built.values())
        return [self[alias] for alias in conf.read()]

    def close_all(self) -> None:
        """Close and drop every built checkpointer; the next use builds a new one. Idempotent."""
        with self._lock:
            built, self._built = list(self._built.values()), {}
        for checkpointer in built:
            checkpointer.close()


#: The process's handler.
checkpointers = CheckpointerHandler()


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``override_settings(AGENTS_PERSIST=...)`` (entering or leaving): drop the checkpointers of the old setting."""
    if setting == conf.SETTING:
        checkpointers.close_all()


setting_changed.connect(_setting_changed, dispatch_uid="agents_persist.django.setting_changed")
