"""The key layout of the Redis store, and reading the head hash it keeps per thread.

Every key of a thread carries the thread ID as hash tag, so a thread lives in
one cluster slot; the three index sets share a tag of their own::

    <prefix>{<id>}:head        hash: v (version), n (message count), d (digest),
                               h (todos/interrupt/metadata), u (updated_at), e (expires_at),
                               g (generation; absent: 0), a (applied idempotency keys),
                               t (tokens of the last saves, so a re-sent save is not applied twice)
    <prefix>{<id>}:log         list of entries, each one or more encoded messages
                               concatenated, in order; k in the head counts them
                               (absent: one per message, the layout before packing)
    <prefix>{<id>}:pos         string: where each message ends, in bytes from the start of
                               the log (4-byte big-endian each); with the head's field s
                               ("<version>;" and each entry's first position, 4-byte
                               big-endian each) the position index of partial reads,
                               valid while s names the head's version (absent: whole reads)
    <prefix>{%index}:updated   sorted set: thread ID -> updated_at (for list_threads)
    <prefix>{%index}:expires   sorted set: thread ID -> expires_at (threads with a TTL)
    <prefix>{%index}:ids       sorted set: thread ID -> 0, walked by ID (for iter_threads)

``a`` holds up to :data:`~agents_persist.planning.MAX_APPLIED_KEYS` entries,
newest last, each ``<version>:<byte length of key>:<key>``, concatenated
(``scripts/write.lua`` keeps it).
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence, Tuple

from ...errors import CorruptSnapshotError
from ...planning import Applied, StoredHead

__all__ = [
    "INDEX_TAG",
    "HEAD_FIELDS",
    "escape_tag",
    "thread_keys",
    "positions_key",
    "index_keys",
    "optional_float",
    "corrupt_head",
    "corrupt_part",
    "parse_counter",
    "parse_timestamp",
    "encode_applied",
    "decode_applied",
    "parse_head",
]

#: Hash tag of the index sorted sets; no escaped thread ID can produce it
#: (an escaped ID has ``%`` only in ``%25``, ``%7B`` and ``%7D``).
INDEX_TAG = "{%index}"
#: The head's scalar fields, in the order :func:`parse_head` takes them.
HEAD_FIELDS = ("v", "n", "d", "u", "e", "g", "a")
_APPLIED_ENTRY = re.compile(rb"(\d+):(\d+):")


def escape_tag(thread_id: str) -> str:
    """Make ``thread_id`` safe inside a hash tag: no ``{``/``}``, reversible (``%`` escapes)."""
    if "%" in thread_id or "{" in thread_id or "}" in thread_id:
        return thread_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return thread_id


def thread_keys(key_prefix: str, thread_id: str) -> Tuple[str, str]:
    """Head and log keys of ``thread_id``, hash-tagged by the (escaped) thread ID."""
    base = f"{key_prefix}{{{escape_tag(thread_id)}}}"
    return base + ":head", base + ":log"


def positions_key(key_prefix: str, thread_id: str) -> str:
    """The key of ``thread_id``'s position index (in the hash slot of its head and log)."""
    return f"{key_prefix}{{{escape_tag(thread_id)}}}:pos"


def index_keys(key_prefix: str) -> Tuple[str, str, str]:
    """The index by update time, the index by expiry time and the index by ID."""
    return f"{key_prefix}{INDEX_TAG}:updated", f"{key_prefix}{INDEX_TAG}:expires", f"{key_prefix}{INDEX_TAG}:ids"


def optional_float(raw: Optional[bytes]) -> Optional[float]:
    """A time field that may be absent (``e``); ValueError if it is not a time."""
    return parse_timestamp(raw) if raw is not None else None


def corrupt_head(thread_id: str, exc: Exception) -> CorruptSnapshotError:
    """The error for a head hash whose fields do not parse."""
    return corrupt_part(thread_id, "head", exc)


def corrupt_part(thread_id: str, part: str, exc: Exception) -> CorruptSnapshotError:
    """The error for a stored ``part`` of a thread (its head or log) that is not what this library writes."""
    return CorruptSnapshotError(f"thread {thread_id!r}: the stored {part} is corrupt: {exc}", thread_id=thread_id)


#: Largest counter (version, count, entries) a head may hold: 15 digits, exact in a Lua number.
_MAX_COUNTER_DIGITS = 15
#: Timestamps a head may hold: up to the end of year 9999 (what datetime can show).
_MAX_TIMESTAMP = 253402300799.0


def parse_counter(raw: Optional[bytes]) -> int:
    """A counter field: 1 to 15 ASCII digits; ValueError otherwise."""
    if raw is None or not (0 < len(raw) <= _MAX_COUNTER_DIGITS and raw.isdigit() and raw.isascii()):
        raise ValueError(f"not a counter: {raw[:40]!r}" if raw is not None else "missing counter")
    return int(raw)


def parse_timestamp(raw: bytes) -> float:
    """A time field: a finite float from 0 to the year 9999; ValueError otherwise."""
    value = float(raw)
    if not 0.0 <= value <= _MAX_TIMESTAMP:  # also refuses nan
        raise ValueError(f"time out of range: {raw[:40]!r}")
    return value


def encode_applied(applied: Applied) -> bytes:
    """The ``a`` field for ``applied`` (as ``scripts/write.lua`` writes it; tests set heads up with it)."""
    parts = []
    for key, version in applied:
        raw = key.encode("utf-8")
        parts.append(b"%d:%d:%s" % (version, len(raw), raw))
    return b"".join(parts)


def decode_applied(raw: Optional[bytes]) -> Applied:
    """The applied keys an ``a`` field holds (absent: none); ValueError if it does not parse."""
    if not raw:
        return ()
    entries = []
    pos = 0
    while pos < len(raw):
        match = _APPLIED_ENTRY.match(raw, pos)
        if match is None:
            raise ValueError(f"bad idempotency key entry at byte {pos}")
        start = match.end()
        end = start + int(match.group(2))
        if end > len(raw):
            raise ValueError(f"idempotency key entry at byte {pos} runs past the end")
        entries.append((raw[start:end].decode("utf-8"), int(match.group(1))))
        pos = end
    return tuple(entries)


def parse_head(thread_id: str, fields: Sequence[Any]) -> Optional[StoredHead]:
    """The :data:`HEAD_FIELDS` of a head as read by ``HMGET``; None if there is no head."""
    version, count, digest, updated_at, expires_at, generation, applied = fields
    if version is None:
        return None
    try:
        if digest is None or len(digest) != 16:  # agents_persist.codec.DIGEST_SIZE
            raise ValueError("the digest is not 16 bytes")
        if updated_at is None:
            raise ValueError("no update time")
        if generation is not None and (len(generation) > 19 or not generation.isdigit() or int(generation) >= 1 << 63):
            raise ValueError(f"not a generation: {generation[:40]!r}")
        return StoredHead(
            version=parse_counter(version),
            message_count=parse_counter(count),
            digest=bytes(digest),
            updated_at=parse_timestamp(updated_at),
            expires_at=optional_float(expires_at),
            generation=int(generation) if generation is not None else 0,
            applied=decode_applied(applied),
        )
    except (TypeError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise corrupt_head(thread_id, exc) from exc
