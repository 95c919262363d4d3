"""PostgresCheckpointer: threads in PostgreSQL through psycopg2, a head row plus an append-only message log.

Layout of the package: this module declares the backend, its options and the
public class; :mod:`.store` holds :class:`~.store.PostgresStore` (the
primitives), :mod:`.connection` the pools, watchdog and error classifier,
:mod:`.classify` the error classifier, :mod:`.copy` the binary COPY
parsing, :mod:`.schema` the migrations, and ``sql/`` the SQL itself. Importing this module never imports psycopg2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Type
from urllib.parse import urlencode, urlsplit, urlunsplit

from ... import options
from ...checkpointer import Checkpointer, store_attribute
from ...errors import ConfigurationError
from ...registry import Backend
from ...urls import redact_url

if TYPE_CHECKING:
    from psycopg2.pool import AbstractConnectionPool

    from .store import PostgresStore

__all__ = ["PostgresCheckpointer", "OPTIONS"]

BACKEND = Backend(
    name="postgres",
    target="agents_persist.backends.postgres:PostgresCheckpointer",
    schemes=("postgresql", "postgres"),
    extra="postgres",
    summary="PostgreSQL: one round trip per save, binary COPY loads.",
)


def _optional_text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError
    return raw


OPTIONS = (
    *options.COMMON_OPTIONS,
    options.Option(
        "schema",
        options.Kind("a str or None", _optional_text, optional=True),
        None,
        "Schema of the tables, created if missing (default: the qualifier of table_name, else public).",
    ),
    options.Option("table_name", options.TEXT, "agents_persist", "Base name of the tables, optionally schema.table."),
    options.Option("min_connections", options.NON_NEGATIVE_INT, 1, "Connections opened by setup() up front."),
    options.Option("max_connections", options.POSITIVE_INT, 10, "Most connections (and operations in flight) at once."),
    options.Option("timeout", options.SECONDS, 10.0, "Seconds to wait for a free pooled connection."),
    options.Option("connect_timeout", options.SECONDS, 5.0, "Seconds libpq waits for a new connection, unless the DSN says."),
    options.Option(
        "statement_timeout", options.OPTIONAL_SECONDS, 30.0, "Seconds the server may spend on one statement (None: its own)."
    ),
)
_OWN_OPTIONS = OPTIONS[len(options.COMMON_OPTIONS) :]


def libpq_parameter(name: str) -> bool:
    """The ``passthrough`` of ``from_url``: query parameters libpq itself accepts go into the DSN."""
    from .connection import is_libpq_parameter

    return is_libpq_parameter(name)


def _store_class() -> "Type[PostgresStore]":
    """Import the store, which needs psycopg2, or say which extra brings it."""
    try:
        import psycopg2  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError("PostgresCheckpointer needs psycopg2: pip install agents_persist[postgres]") from exc
    from .store import PostgresStore

    return PostgresStore


class PostgresCheckpointer(Checkpointer):
    """Stores threads in PostgreSQL: every save is one atomic transaction in one round trip.

    Guarantees: a save checks the expected version and the stored message
    prefix, writes only the new messages (or replaces the log) and updates the
    head in one transaction, run by a server-side function so it costs one
    round trip. A load is one ``COPY ... TO STDOUT (FORMAT binary)`` statement,
    so head and log come from one committed version and the log travels as raw
    bytes. Concurrent first saves of a thread are safe (the head
    is created with ``INSERT ... ON CONFLICT``, then locked and re-checked).
    N threads use up to N pooled connections in parallel; no lock spans the
    process. A forked child opens its own connections and never touches the
    parent's. Connections closed by a server restart are noticed when
    borrowed and replaced, so the checkpointer recovers by itself.

    Layout, in ``schema`` (``public`` by default): ``<table_name>`` holds one
    head row per thread (version, message count, prefix digest, encoded head,
    ``updated_at`` and ``expires_at`` as epoch seconds, generation, the latest
    idempotency keys with the versions they produced); ``<table_name>_messages``
    holds the log, each row ``n`` encoded messages starting at position ``seq``,
    concatenated in a ``bytea`` (one row per save that appended, so an append
    inserts one row; every ``MERGE_ROWS`` appended rows are merged into one,
    tier by tier, so a long conversation keeps a few dozen rows);
    ``<table_name>_migrations`` records the applied schema versions.

    Limits:

    * The tables are created on first use or by :meth:`setup`, which needs the
      CREATE privilege on the schema (and on the database if the schema is
      missing); later runs only read the migrations table.
    * ``ttl`` expiry is evaluated against the clients' clocks (epoch seconds);
      expired rows stay until :meth:`~agents_persist.Checkpointer.purge_expired` runs.
    * With a caller's ``pool`` the statement timeout and keepalives are the
      caller's settings, and the checkpointer cannot be used in a forked child.
    * A log row holds at most about 1 MiB of encoded messages; a larger rewrite
      is split over several rows of one transaction.

    Failures: errors of the server or the network raise
    :class:`BackendUnavailableError`; its ``maybe_applied`` tells a save,
    delete or purge that failed whether it may have been applied:

    * ``False``: certainly not. Nothing was sent (no connection could be
      made, no pooled connection was free, the caller's pool had none), or
      the server reported an error, which rolled the statement back; so does
      a statement cancelled by ``statement_timeout`` or at the deadline.
    * ``True``: the request may have reached the server and its outcome is
      unknown: the connection broke or the server process ended while it
      ran (the reply was lost), or the client cut the socket at the
      deadline. Retry ``update()``/``append()`` with the same
      ``idempotency_key`` to apply it exactly once, or load to see.

    Loads, listings and version reads always say ``False``. The deadline is
    ``statement_timeout`` + 5 s (35 s when None) after a call started: one
    second before it the call is cancelled on the server
    (``pg_cancel_backend`` over a short-lived side connection, or one more
    connection of a caller's pool), so a save waiting on a lock rolls back
    instead of committing after the caller was told it failed. Only if the
    cancel cannot be sent, or the server does not act on it by the deadline
    (a frozen process, a dead host), is the socket cut. A connection whose
    call overran is closed, never reused.

    Args:
        dsn: ``postgresql://`` / ``postgres://`` URL or libpq ``key=value``
            string; every libpq parameter (``sslmode``, ``connect_timeout``,
            ``options``, ...) is passed through. Exactly one of ``dsn`` and
            ``pool`` is required.
        pool (Optional[psycopg2.pool.AbstractConnectionPool]): An existing psycopg2 pool (``ThreadedConnectionPool``) to borrow
            connections from instead; it is never closed by this class.
        schema: Schema of the tables (created if missing).
        table_name: Base name of the tables, optionally ``schema.table``.
            Letters, digits, ``_`` and ``-``; always quoted in SQL.
        min_connections: Connections opened by :meth:`setup` up front.
        max_connections: Most connections open (and operations in flight) at once.
        timeout: Seconds to wait for a free pooled connection.
        connect_timeout: Seconds libpq waits for a connection (whole seconds,
            at least 2, as libpq counts them) unless the DSN sets it.
        statement_timeout: Seconds the server may spend on one statement
            (``None``: the server's default). A call still running 5 s
            longer (35 s when None) is ended by the client: no call hangs
            (see *Failures*).
        ttl: Seconds a thread lives after its last save; None keeps threads.
        max_retries: Retries of ``update`` after a conflict.
        max_snapshot_bytes: Largest encoded snapshot a save may write; None: the backend's default.
    """

    store: "PostgresStore"

    def __init__(
        self,
        dsn: Optional[str] = None,
        *,
        pool: Optional["AbstractConnectionPool"] = None,
        schema: Optional[str] = None,
        table_name: str = "agents_persist",
        min_connections: int = 1,
        max_connections: int = 10,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        statement_timeout: Optional[float] = 30.0,
        ttl: Optional[float] = None,
        max_retries: int = 50,
        max_snapshot_bytes: Optional[int] = None,
    ) -> None:
        given = {
            "schema": schema,
            "table_name": table_name,
            "min_connections": min_connections,
            "max_connections": max_connections,
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "statement_timeout": statement_timeout,
        }
        values = options.check(_OWN_OPTIONS, given, backend="PostgreSQL")
        store = _store_class()(dsn, pool, **values)
        super().__init__(store, ttl=ttl, max_retries=max_retries, max_snapshot_bytes=max_snapshot_bytes)

    schema = store_attribute("schema", "Schema of the tables.")
    table_name = store_attribute("table_name", "Base name of the tables.")
    min_connections = store_attribute("min_connections", "Connections opened by setup() up front.")
    max_connections = store_attribute("max_connections", "Most connections open at once.")
    timeout = store_attribute("timeout", "Seconds to wait for a free pooled connection.")
    connect_timeout = store_attribute("connect_timeout", "Seconds libpq waits for a new connection.")
    statement_timeout = store_attribute("statement_timeout", "Seconds the server may spend on one statement (None: its own).")

    @classmethod
    def from_url(cls, url: str, **given: Any) -> "PostgresCheckpointer":
        """Build from ``postgresql://user:password@host:port/dbname?sslmode=require&...``.

        Query parameters named in :data:`~agents_persist.backends.postgres.OPTIONS` (``schema``, ``table_name``,
        ``min_connections``, ``max_connections``, ``timeout``,
        ``connect_timeout``, ``statement_timeout``, ``ttl``, ``max_retries``)
        configure the checkpointer (keyword arguments win); every parameter
        libpq accepts (``sslmode``, ``application_name``, ``options``, ...)
        goes to libpq unchanged; any other name raises ``ConfigurationError``.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() not in BACKEND.schemes:
            raise ConfigurationError(f"not a PostgreSQL URL: {redact_url(url)!r}")
        _store_class()
        values, libpq = options.resolve(OPTIONS, parts.query, given, backend="PostgreSQL", passthrough=libpq_parameter)
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(libpq), parts.fragment))
        return cls(dsn, **values)

    def setup(self) -> None:
        """Create or migrate the tables now (otherwise done on first use); idempotent.

        Safe when many processes start at once: migrations run in one
        transaction holding ``pg_advisory_xact_lock`` for this schema and
        table, and each applied version is recorded in
        ``<table_name>_migrations``, so a second run only reads that table.

        Raises:
            ConfigurationError: The database has a newer schema version than
                this library knows, or the user lacks privileges.
            BackendUnavailableError: The server could not be reached in time.
        """
        self._check_open()
        self.store.setup()
