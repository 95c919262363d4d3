"""The backend's one error classifier: which library error a psycopg2 error becomes, and whether it may have applied.

``maybe_applied`` of :class:`~agents_persist.errors.BackendUnavailableError`
is True only for a call that changes data and whose outcome is unknown:
see :func:`outcome_unknown` and the cases of :func:`classify`.
"""

from __future__ import annotations

from typing import Optional

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool

from ...errors import AgentsPersistError, BackendUnavailableError, ConfigurationError

__all__ = ["MISSING_OBJECT_ERRORS", "classify", "first_line", "outcome_unknown"]

#: Errors meaning the tables or functions are gone (never created, or dropped behind our back).
MISSING_OBJECT_ERRORS = (
    psycopg2.errors.UndefinedTable,
    psycopg2.errors.UndefinedFunction,
    psycopg2.errors.InvalidSchemaName,
)


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (psycopg2's messages go on with context lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def outcome_unknown(exc: Exception) -> bool:
    """Whether a statement that failed with ``exc`` may have committed anyway.

    An error the server reported ended the statement and rolled its
    transaction back, with two exceptions: the connection failing (class 08)
    and the server process ending (57P01, 57P02) may happen during the
    commit. Without a SQLSTATE the connection broke (the reply was lost)
    unless psycopg2 itself refused before sending (``InterfaceError``).
    """
    code = getattr(exc, "pgcode", None)
    if code is None:
        return not isinstance(exc, psycopg2.InterfaceError)
    return code.startswith("08") or code in ("57P01", "57P02")


def classify(
    exc: Exception,
    *,
    label: str,
    what: str,
    statement_timeout: Optional[float],
    writes: bool = False,
    deadline: Optional[float] = None,
    cut: bool = False,
) -> Optional[AgentsPersistError]:
    """The library error for a psycopg2 error met while trying to ``what``; None for any other exception.

    The message names the server by ``label``, which never holds a password.
    ``deadline`` is set when the call overran the watchdog's deadline (it was
    cancelled on the server), ``cut`` when the watchdog then cut the socket.
    ``writes``: the call changes data, so an unknown outcome sets ``maybe_applied``.
    """
    if not isinstance(exc, psycopg2.Error):
        return None
    if cut:
        return BackendUnavailableError(
            f"PostgreSQL {label} did not answer within {deadline:g}s while trying to {what}", maybe_applied=writes
        )
    if isinstance(exc, psycopg2.pool.PoolError):
        return BackendUnavailableError(f"the caller's PostgreSQL pool has no free connection: {exc}")
    detail = f"PostgreSQL {label} failed to {what}: {first_line(exc)}"
    if isinstance(exc, psycopg2.extensions.QueryCanceledError):
        # Cancelled statements roll back: nothing of them was applied.
        if deadline is not None:
            return BackendUnavailableError(f"{detail} (it ran past the {deadline:g}s deadline and was cancelled)")
        return BackendUnavailableError(f"{detail} (statement_timeout is {statement_timeout}s)")
    if isinstance(exc, MISSING_OBJECT_ERRORS):
        return ConfigurationError(f"{detail}; the tables are missing: call setup()")
    if isinstance(exc, psycopg2.ProgrammingError):
        return ConfigurationError(detail)
    return BackendUnavailableError(detail, maybe_applied=writes and outcome_unknown(exc))
