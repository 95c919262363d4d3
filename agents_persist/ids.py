"""Thread-ID rules, checked before any lock or socket is touched."""

from __future__ import annotations

import re

from .errors import InvalidThreadIdError

__all__ = ["MAX_THREAD_ID_BYTES", "validate_thread_id"]

MAX_THREAD_ID_BYTES = 512
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")


def validate_thread_id(thread_id: object) -> str:
    """Return ``thread_id`` if valid, else raise :class:`InvalidThreadIdError` (no I/O happens first).

    A valid ID is a non-empty ``str`` of at most 512 UTF-8 bytes without
    control characters. A ``str`` subclass (a ``StrEnum`` member) is
    accepted and returned as the plain ``str`` of the same characters.
    """
    if type(thread_id) is not str:
        if not isinstance(thread_id, str):
            raise InvalidThreadIdError(f"thread ID must be a str, not {type(thread_id).__name__}")
        thread_id = thread_id[:]  # slicing a str subclass gives a plain str, whatever its __str__ says
    if not thread_id:
        raise InvalidThreadIdError("thread ID must not be empty")
    try:
        size = len(thread_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidThreadIdError("thread ID is not valid Unicode (lone surrogate)") from None
    if size > MAX_THREAD_ID_BYTES:
        raise InvalidThreadIdError(f"thread ID is {size} UTF-8 bytes; at most {MAX_THREAD_ID_BYTES} are allowed")
    if _CONTROL_CHARS.search(thread_id):
        raise InvalidThreadIdError(f"thread ID {thread_id!r} contains a control character")
    return thread_id
