"""SqliteCheckpointer: the embedded, durable default store for scripts, notebooks and small servers."""

from __future__ import annotations

import os
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

from ... import options
from ...checkpointer import Checkpointer
from ...errors import ConfigurationError
from ...registry import Backend
from ...urls import redact_url
from .store import SCHEMA_VERSION, SqliteStore

__all__ = ["SqliteCheckpointer", "SqliteStore", "SCHEMA_VERSION", "OPTIONS"]

BACKEND = Backend(
    name="sqlite",
    target="agents_persist.backends.sqlite:SqliteCheckpointer",
    schemes=("sqlite",),
    summary="One local file: the durable default for scripts, notebooks and small servers.",
)
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")
OPTIONS = (
    *options.COMMON_OPTIONS,
    options.Option("timeout", options.SECONDS, 10.0, "Seconds to wait for another writer's lock or a free connection."),
    options.Option("max_connections", options.POSITIVE_INT, 8, "Most connections open at once."),
    options.Option("synchronous", options.choice(*SYNCHRONOUS_MODES, upper=True), "FULL", "SQLite's synchronous pragma."),
)


class SqliteCheckpointer(Checkpointer):
    """Stores threads in one SQLite file; safe for many threads and processes on that file.

    Durable by default: WAL journal with ``synchronous=FULL``, so a save that
    returned survives a power cut. ``synchronous="NORMAL"`` is faster and
    still never corrupts the file, but the last saves before a power cut (not
    a process crash) may be lost.

    Each save is one ``BEGIN IMMEDIATE`` transaction: the version check, the
    new messages (or a rewritten log) and the head commit together. Connections
    come from a small bounded pool; a forked child opens its own.

    Layout (``schema.sql``): ``agents_persist_threads`` (one row per thread:
    version, counts, head blob, timestamps) and ``agents_persist_messages``
    keyed by ``(thread_id, seq)``, one row per encoded message.

    Args:
        path: Database file (created if missing). ``":memory:"`` is refused:
            each connection would see its own empty database.
        timeout: Seconds to wait for another writer's lock before raising
            :class:`BackendUnavailableError`.
        max_connections: Most connections open at once; callers beyond
            that wait up to ``timeout``.
        synchronous: ``"FULL"`` (default), ``"NORMAL"`` or ``"EXTRA"``.
        ttl: Seconds a thread lives after its last save; None keeps threads.
        max_retries: Retries of ``update`` after a conflict.
        max_snapshot_bytes: Largest encoded snapshot a save may write; None: the backend's default.
    """

    store: SqliteStore

    def __init__(
        self,
        path: "str | os.PathLike[str]",
        *,
        timeout: float = 10.0,
        max_connections: int = 8,
        synchronous: str = "FULL",
        ttl: Optional[float] = None,
        max_retries: int = 50,
        max_snapshot_bytes: Optional[int] = None,
    ) -> None:
        path = os.fspath(path)
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            raise ConfigurationError("SqliteCheckpointer needs a file path; use InMemoryCheckpointer for memory")
        given = {"timeout": timeout, "max_connections": max_connections, "synchronous": synchronous}
        values = options.check(OPTIONS[len(options.COMMON_OPTIONS) :], given, backend="SQLite")
        store = SqliteStore(os.path.abspath(path), **values)
        super().__init__(store, ttl=ttl, max_retries=max_retries, max_snapshot_bytes=max_snapshot_bytes)

    @property
    def path(self) -> str:
        """Absolute path of the database file."""
        return self.store.path

    @classmethod
    def from_url(cls, url: str, **given: Any) -> "SqliteCheckpointer":
        """Build from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``; query: the options above."""
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(f"sqlite URLs have no host: use sqlite:///path, not {redact_url(url)!r}")
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        values, _ = options.resolve(OPTIONS, parts.query, given, backend="SQLite")
        return cls(path, **values)
