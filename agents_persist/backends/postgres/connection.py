"""Connections to PostgreSQL: libpq parameters, the two kinds of pool, the deadline watchdog and its cancels.

:class:`Connections` hands out live autocommit connections, from a pool of
its own (built from a DSN) or from a caller's psycopg2 pool
(:class:`CallerPool`). Idle connections the server closed meanwhile are
noticed without a round trip and replaced; a call that overruns its
deadline is cancelled on the server, and cut by the watchdog if that fails;
every psycopg2 error becomes a library error through
:func:`~.classify.classify`, the backend's one classifier.

Nothing relies on session state, so the connections may go through a
pooler in transaction mode (PgBouncer): the statement timeout is set per
transaction (``SET LOCAL`` in front of each statement, not a startup
``options`` parameter, which poolers refuse or drop), the only explicit
transaction (migrations) takes a transaction-scoped advisory lock, no
statement is prepared server-side, and the cancel by server process ID is
sent only when that ID is the server's own (a pooler hands out made-up
ones; see :meth:`Connections._connect`).
"""

from __future__ import annotations

import logging
import math
import select
import threading
import weakref
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, Union
from urllib.parse import urlencode

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from ...errors import AgentsPersistError, BackendUnavailableError, CheckpointerClosedError, ConfigurationError
from ...redaction import forget, is_secret_name, redact_params, redact_url, remember, url_secrets
from ...runtime import forking
from ...runtime.pool import ConnectionPool
from ...runtime.watchdog import DeadlineWatchdog, Guard
from ...translate import Classifier, translated
from .classify import MISSING_OBJECT_ERRORS, classify, first_line

__all__ = ["Connections", "CallerPool", "is_libpq_parameter", "libpq_params"]

logger = logging.getLogger(__name__)

#: Seconds past the statement timeout after which the client gives up on a
#: server that stopped answering (frozen process, dead host, partition).
UNRESPONSIVE_GRACE = 5.0
#: The statement time the watchdog allows when ``statement_timeout`` is None (the server's own setting).
UNBOUNDED_STATEMENT_SECONDS = 30.0
#: Seconds before the cut at which an overrunning call is cancelled on the server (``pg_cancel_backend``
#: over a side connection); a server that acts on the cancel ends the call within milliseconds.
CANCEL_GRACE = 1.0
#: libpq's connect_timeout of the side connection that sends the cancel (whole seconds, 2 at least).
CANCEL_CONNECT_TIMEOUT = "2"
#: libpq TCP keepalive settings added unless the DSN sets them: a peer that
#: vanished silently is noticed within about idle + interval * count seconds.
DEFAULT_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3"}


@lru_cache(maxsize=256)
def is_libpq_parameter(name: str) -> bool:
    """Whether libpq accepts ``name`` as a URL query parameter (``sslmode``, ``application_name``, ...).

    libpq itself is asked, so the set is exactly the installed libpq's.
    """
    try:
        psycopg2.extensions.parse_dsn("postgresql:///?" + urlencode({name: "true"}))
    except psycopg2.ProgrammingError:
        return False
    return True


def libpq_params(dsn: str, connect_timeout: float) -> Tuple[Dict[str, str], str]:
    """libpq keywords from ``dsn`` plus our defaults, and a password-free label for messages.

    The statement timeout is not among them: a startup ``options`` parameter
    is refused by PgBouncer (or dropped, with ``ignore_startup_parameters``);
    :func:`timed_cursor_class` sets it per transaction instead.
    """
    label = redact_url(dsn) if "://" in dsn else "<libpq connection string>"
    try:
        params: Dict[str, str] = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        # libpq's message quotes the offending token, which may be (part of) the password.
        raise ConfigurationError(f"invalid PostgreSQL DSN {label!r}: check its syntax and percent-encoding") from None
    if "://" not in dsn:
        label = " ".join(f"{k}={v}" for k, v in redact_params(params).items())
    params.setdefault("connect_timeout", str(max(2, math.ceil(connect_timeout))))
    params.setdefault("application_name", "agents_persist")
    params.setdefault("client_encoding", "UTF8")
    for key, value in DEFAULT_KEEPALIVES.items():
        params.setdefault(key, value)
    try:
        float(params["connect_timeout"])
    except ValueError:
        raise ConfigurationError("connect_timeout in the DSN must be a number of seconds") from None
    return params, label


def timed_cursor_class(statement_timeout: float) -> Any:
    """A cursor class that runs every statement under ``SET LOCAL statement_timeout`` (same query, same round trip).

    A query string of several statements is one (implicit) transaction, so
    the setting holds for exactly that statement, or for the explicit
    transaction a ``BEGIN`` opens, and never outlives it: nothing is left in
    the session for the next user of a pooled server connection.
    """
    prefix = f"SET LOCAL statement_timeout = {max(1, int(statement_timeout * 1000))}; "

    def prefixed(query: Any) -> Any:
        if isinstance(query, bytes):
            return prefix.encode() + query
        if isinstance(query, sql.Composable):
            return sql.SQL(prefix) + query
        return prefix + query

    class TimedCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
        def execute(self, query: Any, vars: Any = None) -> Any:
            return super().execute(prefixed(query), vars)

        def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> Any:
            return super().copy_expert(prefixed(sql), file, size)

    return TimedCursor


class _StaleConnection(Exception):
    """An idle pooled connection turned out to be closed by the server; it is discarded."""


def _has_pending_input(fd: int) -> bool:
    """True if the socket has something to read (an idle connection's server closed it)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - platforms without poll


def _is_stale(conn: Any) -> bool:
    if conn.closed:
        return True
    try:
        return _has_pending_input(conn.fileno())
    except (OSError, ValueError, psycopg2.Error):
        return True


def is_broken(conn: Any, exc: BaseException) -> bool:
    """Whether a connection that saw ``exc`` must be discarded instead of reused."""
    if conn.closed or not isinstance(exc, Exception) or isinstance(exc, _StaleConnection):
        return True
    cause = exc.__cause__ if isinstance(exc, AgentsPersistError) else exc
    if isinstance(cause, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return True
    try:
        return bool(conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE)
    except Exception:  # noqa: BLE001
        return True


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail; it is gone either way
        pass


class CallerPool:
    """Borrows connections from a caller's psycopg2 pool, one per operation, bounded and with a timeout.

    Connections go back to the caller's pool after each operation (closed there
    if broken); closing the store never closes the caller's pool. In a forked
    child it refuses to work: the caller's pool holds the parent's sockets.
    """

    def __init__(self, pool: Any, max_size: int, timeout: float, classifier: Classifier) -> None:
        self._pool = pool
        self.max_size = max_size
        self.timeout = timeout
        self._classifier = classifier
        self._closed = False
        self._slots = threading.BoundedSemaphore(self.max_size)
        self._forked = False
        forking.register(self)

    def _after_fork_in_child(self) -> None:
        """Reset the bound; the caller's pool itself belongs to the parent and is not used any more."""
        self._slots = threading.BoundedSemaphore(self.max_size)
        self._forked = True

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """Borrow a connection from the caller's pool (autocommit) for the block."""
        if self._forked:
            raise ConfigurationError(
                "a PostgresCheckpointer built on a caller's pool cannot be used in a forked child: its connections "
                "belong to the parent. Build the checkpointer from a DSN (it reconnects after fork) or in the child."
            )
        if self._closed:
            raise CheckpointerClosedError("the PostgreSQL connection pool is closed")
        slots = self._slots
        if not slots.acquire(timeout=self.timeout):
            raise BackendUnavailableError(
                f"no free PostgreSQL connection within {self.timeout:g}s (max_connections={self.max_size})"
            )
        try:
            with translated(self._classifier):
                conn = self._pool.getconn()
            was_autocommit = conn.autocommit
            broken = False
            try:
                if not was_autocommit:
                    conn.autocommit = True
                yield conn
            except BaseException as exc:
                broken = is_broken(conn, exc)
                raise
            finally:
                if not broken and not conn.closed and not was_autocommit:
                    conn.autocommit = False
                self._pool.putconn(conn, close=broken or bool(conn.closed))
        finally:
            if slots is self._slots:
                slots.release()

    @contextmanager
    def side_connection(self) -> Iterator[Any]:
        """One more autocommit connection from the caller's pool, outside the bound (to send a cancel)."""
        conn = self._pool.getconn()
        was_autocommit = conn.autocommit
        try:
            conn.autocommit = True
            yield conn
        finally:
            if not conn.closed and not was_autocommit:
                conn.autocommit = False
            self._pool.putconn(conn, close=bool(conn.closed))

    def close(self) -> None:
        """Stop borrowing; the caller's pool stays open."""
        self._closed = True


class Connections:
    """Live autocommit connections for one store, from its own pool (``dsn``) or a caller's (``pool``).

    Args:
        dsn: URL or libpq string; exactly one of ``dsn`` and ``pool``.
        pool: A caller's psycopg2 pool, borrowed from and never closed.
        max_connections: Most connections (and operations in flight) at once.
        timeout: Seconds to wait for a free connection.
        connect_timeout: Seconds libpq waits for a new connection, unless the DSN says.
        statement_timeout: Seconds the server may spend on a statement (None: its setting).
        on_missing: Called when a statement finds the tables missing.
    """

    def __init__(
        self,
        dsn: Optional[str],
        pool: Any,
        *,
        max_connections: int,
        timeout: float,
        connect_timeout: float,
        statement_timeout: Optional[float],
        on_missing: Callable[[], None],
    ) -> None:
        self.max_connections = max_connections
        self.statement_timeout = statement_timeout
        self._secrets: Tuple[str, ...] = ()
        self._on_missing = on_missing
        self._cursor_class = None if statement_timeout is None else timed_cursor_class(statement_timeout)
        #: Connections whose reported server process ID is not the server's (a pooler's): never cancelled by ID.
        self._pooled: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._pool: Union[ConnectionPool[Any], CallerPool]
        if pool is not None:
            self.label = f"<{type(pool).__name__}>"
            self.connect_timeout = float(connect_timeout)
            self._pool = CallerPool(pool, max_connections, timeout, self._classifier("connect"))
        else:
            assert dsn is not None
            self._params, self.label = libpq_params(dsn, connect_timeout)
            # The URL's own reading too: libpq may take an unencoded password for a port, and then quote it.
            in_url = url_secrets(dsn) if "://" in dsn else []
            self._secrets = remember([*(value for key, value in self._params.items() if is_secret_name(key)), *in_url])
            self.connect_timeout = float(self._params["connect_timeout"])
            self._pool = ConnectionPool(
                self._connect, _close_quietly, max_size=max_connections, timeout=timeout, is_broken=is_broken, name="PostgreSQL"
            )
        self._watchdog = DeadlineWatchdog(
            (statement_timeout or UNBOUNDED_STATEMENT_SECONDS) + UNRESPONSIVE_GRACE,
            "agents_persist-postgres-deadline",
            cancel=self._cancel_on_server,
            grace=CANCEL_GRACE,
        )

    def _classifier(self, what: str, guard: Optional[Guard] = None, writes: bool = False) -> Classifier:
        """:func:`classify` for one operation, told what the watchdog did to its guard."""

        def classify_here(exc: Exception) -> Optional[AgentsPersistError]:
            overran = guard is not None and guard.expired
            if not overran and isinstance(exc, MISSING_OBJECT_ERRORS):
                self._on_missing()
            deadline = self._watchdog.seconds if overran else None
            cut = guard is not None and guard.cut
            label, timeout = self.label, self.statement_timeout
            return classify(exc, label=label, what=what, statement_timeout=timeout, writes=writes, deadline=deadline, cut=cut)

        return classify_here

    @contextmanager
    def _side_connection(self) -> Iterator[Any]:
        """A short-lived connection beside the pool's: a new one (own pool), or one more of the caller's pool."""
        if isinstance(self._pool, CallerPool):
            with self._pool.side_connection() as conn:
                yield conn
            return
        conn = psycopg2.connect(**{**self._params, "connect_timeout": CANCEL_CONNECT_TIMEOUT})
        try:
            conn.autocommit = True
            yield conn
        finally:
            _close_quietly(conn)

    def _cancel_on_server(self, guard: Guard) -> bool:
        """The watchdog's cancel: ``pg_cancel_backend`` of the guarded call's server process; True if delivered.

        Runs in a thread of its own. A side connection (not psycopg2's
        ``cancel()``, which holds the GIL while libpq waits for the server and
        would freeze the whole process on a frozen server) is bounded by its
        connect timeout; its query runs on a fresh server process. The
        connection of a call that overran is never reused (see
        :meth:`connection`), so a cancel arriving late hits nobody else.
        """
        if guard.context is None:
            return False  # a pooler's connection: its process ID names no server process; cut at the deadline
        try:
            with self._side_connection() as side, side.cursor() as cursor:
                cursor.execute("SELECT pg_cancel_backend(%s)", (guard.context,))
                return bool(cursor.fetchone()[0])
        except Exception as exc:  # noqa: BLE001 - the watchdog cuts the socket instead
            logger.info("could not cancel a PostgreSQL call that overran its deadline (%s): %s", self.label, first_line(exc))
            return False

    def _connect(self) -> Any:
        """A new autocommit connection; one behind a pooler is noted so that it is never cancelled by process ID.

        libpq reports the process ID of the BackendKeyData message; PgBouncer
        sends a made-up one (the server connection changes with every
        transaction), so ``pg_cancel_backend`` of it would miss, or hit an
        unrelated session. One query on connect compares it with
        ``pg_backend_pid()``.
        """
        with translated(self._classifier("connect")):
            conn = psycopg2.connect(**self._params)
            try:
                conn.autocommit = True
                if self._cursor_class is not None:
                    conn.cursor_factory = self._cursor_class
                # Under the deadline too: a connection that never answers this query must not block the
                # call forever. No cancel by process ID (maybe a pooler's made-up one): cut at the deadline.
                with self._watchdog.guard(conn.fileno()), conn.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    (server_pid,) = cursor.fetchone()
            except BaseException:
                _close_quietly(conn)
                raise
        if server_pid != conn.info.backend_pid:
            self._pooled.add(conn)
        return conn

    @contextmanager
    def connection(self, what: str, *, writes: bool = False) -> Iterator[Any]:
        """Borrow a live autocommit connection to ``what`` (named in errors); psycopg2 errors become typed errors.

        Idle connections the server closed meanwhile (a restart) are noticed
        here without a round trip and replaced. ``writes``: the block changes
        data, so a failure whose outcome is unknown raises
        ``BackendUnavailableError(maybe_applied=True)``. A call that overran
        its deadline closes its connection afterwards, however it ended.
        """
        for _ in range(self.max_connections + 1):
            try:
                with self._pool.connection() as conn:
                    if _is_stale(conn):
                        raise _StaleConnection()
                    with self._guarded(conn, what, writes):
                        yield conn
                    return
            except _StaleConnection:
                logger.info("discarding a PostgreSQL connection closed by the server (%s)", self.label)
        raise BackendUnavailableError(f"PostgreSQL {self.label} keeps closing new connections")

    @contextmanager
    def _guarded(self, conn: Any, what: str, writes: bool) -> Iterator[None]:
        """One call on ``conn`` under the watchdog and the classifier; if it overran, ``conn`` is closed afterwards."""
        guard: Optional[Guard] = None
        try:
            pid = None if conn in self._pooled else conn.info.backend_pid
            with self._watchdog.guard(conn.fileno(), pid) as guard:
                with translated(self._classifier(what, guard, writes)):
                    yield
        finally:
            if guard is not None and guard.expired:
                # Only now, with the guard gone, may the socket close (the watchdog cuts by descriptor number).
                _close_quietly(conn)

    def prefill(self, count: int) -> None:
        """Open ``count`` connections up front (own pool only; one is open already)."""
        if not isinstance(self._pool, ConnectionPool) or count <= 1:
            return
        with ExitStack() as stack:
            for _ in range(count):
                stack.enter_context(self.connection("open its pool"))

    def close(self) -> None:
        """Stop the watchdog and close the own pool's connections (a caller's pool stays open)."""
        self._watchdog.stop()
        self._pool.close()
        forget(self._secrets)
        self._secrets = ()
