"""Checks of scalars read back from a store, shared by the SQL backends (SQLite, PostgreSQL).

Every value read is checked for its type and range before use; what is wrong
is reported as :class:`~agents_persist.errors.CorruptSnapshotError` naming the
thread and the part. :func:`summary` lists a thread whose scalars are bad
with placeholder values and a logged warning, so that one corrupt thread
never breaks a listing.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import Any, Optional, Sequence

from ..errors import CorruptSnapshotError
from ..models import ThreadInfo
from ..paging import thread_info

__all__ = ["MAX_INT", "what", "corrupt", "integer", "number", "optional_number", "summary"]

logger = logging.getLogger(__name__)

#: Largest value of a 64-bit SQL integer; a version must stay below it so that version + 1 fits.
MAX_INT = (1 << 63) - 1


def what(value: Any) -> str:
    """A short description of a stored value for an error message (never the whole value)."""
    if isinstance(value, (bytes, str)):
        return f"a {type(value).__name__} of {len(value)} bytes" if isinstance(value, bytes) else f"a str of {len(value)} chars"
    return f"{type(value).__name__} {value!r}"


def corrupt(thread_id: Optional[str], part: str, detail: str) -> CorruptSnapshotError:
    """The error for a bad stored ``part`` of ``thread_id``."""
    return CorruptSnapshotError(
        f"thread {thread_id!r}: the stored {part} is corrupt: {detail} (save(..., force=True) or delete() replaces it)",
        thread_id=thread_id,
    )


def integer(value: Any, thread_id: Optional[str], part: str, low: int = 0, high: int = MAX_INT) -> int:
    """``value`` if it is an int in ``[low, high]``."""
    if type(value) is not int or not low <= value <= high:
        raise corrupt(thread_id, part, f"{what(value)}, expected an integer from {low} to {high}")
    return value


def number(value: Any, thread_id: Optional[str], part: str) -> float:
    """``value`` as a float if it is a number (not NaN)."""
    if type(value) not in (int, float) or value != value:
        raise corrupt(thread_id, part, f"{what(value)}, expected a number")
    return float(value)


def optional_number(value: Any, thread_id: Optional[str], part: str) -> Optional[float]:
    """None, or ``value`` as a float if it is a number (not NaN)."""
    return None if value is None else number(value, thread_id, part)


_LATEST = datetime.max.replace(tzinfo=timezone.utc)
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


def _clamped_datetime(timestamp: float) -> datetime:
    try:
        return datetime.fromtimestamp(timestamp, timezone.utc)
    except (OverflowError, ValueError, OSError):
        return _LATEST if timestamp > 0 else _EARLIEST


def summary(row: Sequence[Any]) -> ThreadInfo:
    """A :class:`ThreadInfo` of a listing row ``(thread_id, version, updated_at, message_count, expires_at)``.

    A row with a bad value is still listed, so that one corrupt thread never
    breaks a listing (and can be found, loaded to see the error, and
    repaired): an unreadable version or count shows as 0, an unreadable or
    out-of-range time as the nearest representable one (an update time
    that is not a number sorts first, as SQLite orders it, so its cursor
    continues from +inf), flagged ``corrupt``. A warning names the thread and the part.
    """
    thread_id, version, updated_at, count, expires_at = row
    try:
        return thread_info(
            thread_id,
            integer(version, thread_id, "version", 1),
            number(updated_at, thread_id, "update time"),
            integer(count, thread_id, "message count"),
            optional_number(expires_at, thread_id, "expiry time"),
        )
    except CorruptSnapshotError as exc:
        logger.warning("listing %s; listed with placeholder values", exc)
    except (OverflowError, ValueError, OSError) as exc:
        logger.warning("listing thread %r: a stored time is out of range (%s); listed with placeholder values", thread_id, exc)
    stamp = float(updated_at) if type(updated_at) in (int, float) and updated_at == updated_at else math.inf
    ends = float(expires_at) if type(expires_at) in (int, float) and expires_at == expires_at else None
    return ThreadInfo(
        thread_id=thread_id,
        version=version if type(version) is int and 0 <= version <= MAX_INT else 0,
        updated_at=_clamped_datetime(stamp),
        message_count=count if type(count) is int and 0 <= count <= MAX_INT else 0,
        expires_at=None if ends is None else _clamped_datetime(ends),
        updated_timestamp=stamp,
        corrupt=True,
    )
