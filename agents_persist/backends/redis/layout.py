"""The key layout of the Redis store, and reading the head hash it keeps per thread.

Every key of a thread carries the thread ID as hash tag, so a thread lives in
one cluster slot; the two index sets share a tag of their own::

    <prefix>{<id>}:head        hash: v (version), n (message count), d (digest),
                               h (todos/interrupt/metadata), u (updated_at), e (expires_at)
    <prefix>{<id>}:log         list of encoded messages, in order
    <prefix>{%index}:updated   sorted set: thread ID -> updated_at (for list_threads)
    <prefix>{%index}:expires   sorted set: thread ID -> expires_at (threads with a TTL)
"""

from __future__ import annotations

from typing import Optional, Tuple

from ...errors import CorruptSnapshotError

__all__ = ["INDEX_TAG", "escape_tag", "thread_keys", "index_keys", "optional_float", "corrupt_head"]

#: Hash tag of the two index sorted sets; no escaped thread ID can produce it
#: (an escaped ID has ``%`` only in ``%25``, ``%7B`` and ``%7D``).
INDEX_TAG = "{%index}"


def escape_tag(thread_id: str) -> str:
    """Make ``thread_id`` safe inside a hash tag: no ``{``/``}``, reversible (``%`` escapes)."""
    if "%" in thread_id or "{" in thread_id or "}" in thread_id:
        return thread_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return thread_id


def thread_keys(key_prefix: str, thread_id: str) -> Tuple[str, str]:
    """Head and log keys of ``thread_id``, hash-tagged by the (escaped) thread ID."""
    base = f"{key_prefix}{{{escape_tag(thread_id)}}}"
    return base + ":head", base + ":log"


def index_keys(key_prefix: str) -> Tuple[str, str]:
    """The index by update time and the index by expiry time."""
    return f"{key_prefix}{INDEX_TAG}:updated", f"{key_prefix}{INDEX_TAG}:expires"


def optional_float(raw: Optional[bytes]) -> Optional[float]:
    """A head field that may be absent (``e``), as a float."""
    return float(raw) if raw is not None else None


def corrupt_head(thread_id: str, exc: Exception) -> CorruptSnapshotError:
    """The error for a head hash whose fields do not parse."""
    return CorruptSnapshotError(f"thread {thread_id!r}: the stored head is corrupt: {exc}", thread_id=thread_id)
