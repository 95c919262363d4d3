"""Listing threads: page sizes, the opaque cursor codec, and :class:`ThreadInfo` built from stored scalars.

A cursor carries the exact stored ``updated_at`` float and the thread ID of
the last thread of a page; every store lists in ``(updated_at, thread_id)``
descending order and continues strictly after it.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Optional, Tuple

import msgspec

from .errors import InvalidArgumentError
from .ids import validate_thread_id
from .models import ThreadInfo

__all__ = ["DEFAULT_LIST_LIMIT", "MAX_LIST_LIMIT", "Position", "encode_cursor", "decode_cursor", "thread_info"]

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 10_000

#: Where a listing stands: ``(updated_at, thread_id)`` of the last thread returned.
Position = Tuple[float, str]


def encode_cursor(info: ThreadInfo) -> str:
    """The cursor that continues a listing after ``info``."""
    updated_at = info.updated_at.timestamp() if info.updated_timestamp is None else info.updated_timestamp
    raw = msgspec.msgpack.encode([updated_at, info.thread_id])
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor stands for; ``ValueError`` if it is not one of ours."""
    try:
        updated_at, thread_id = msgspec.msgpack.decode(base64.urlsafe_b64decode(cursor.encode("ascii")))
        return float(updated_at), validate_thread_id(thread_id)
    except Exception:
        raise InvalidArgumentError(f"invalid list_threads cursor {cursor!r}") from None


def _to_datetime(timestamp: Optional[float]) -> Optional[datetime]:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)


def thread_info(
    thread_id: str, version: int, updated_at: float, message_count: int, expires_at: Optional[float]
) -> ThreadInfo:
    """Build a :class:`ThreadInfo` from the scalars a store keeps."""
    return ThreadInfo(
        thread_id=thread_id,
        version=int(version),
        updated_at=datetime.fromtimestamp(updated_at, timezone.utc),
        message_count=int(message_count),
        expires_at=_to_datetime(expires_at),
        updated_timestamp=float(updated_at),
    )
