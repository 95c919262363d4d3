"""Rows read back from SQLite, checked before use, and the packing of messages into log rows.

SQLite is dynamically typed: any column may hold any type (a TEXT where a
BLOB belongs, a REAL where an INTEGER does), whatever another program, a bad
disk or an attacker put there. Every value read is checked for its type and
range, and the log's row positions, counts and sizes are checked before
anything is allocated or followed; what is wrong is reported as
:class:`~agents_persist.errors.CorruptSnapshotError` naming the thread and the
part (the checks of :mod:`..checks`, shared with PostgreSQL). Listing never
raises for one bad row: it lists the thread with placeholder values and logs a
warning.

A log row holds ``n`` consecutive messages starting at position ``seq``: their
encoded blobs concatenated exactly as written, so a load hands the
concatenation of all rows to the codec in one call.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional, Sequence, Tuple

from ...codec import DIGEST_SIZE, decode_applied
from ...planning import StoredHead
from ..checks import MAX_INT, corrupt, integer, number, summary
from ..checks import optional_number as _optional_number
from ..checks import what as _what

__all__ = ["MAX_INT", "CHUNK_BYTES", "LogRow", "corrupt", "integer", "number", "head", "log", "summary", "pack"]

#: Most bytes of encoded messages packed into one log row (a single larger message gets a row of its own).
CHUNK_BYTES = 1 << 20
#: An encoded message is at least its format byte and a one-byte msgpack map header.
MIN_MESSAGE_BYTES = 2

LogRow = Tuple[int, int, bytes]
"""``(seq, n, data)``: ``n`` messages from position ``seq``, concatenated."""


def _blob(value: Any, thread_id: Optional[str], part: str) -> bytes:
    if type(value) is not bytes or not value:
        raise corrupt(thread_id, part, f"{_what(value)}, expected non-empty bytes")
    return value


def head(row: Sequence[Any], thread_id: str) -> Tuple[StoredHead, Any]:
    """The checked scalars of a head row ``(version, message_count, digest, updated_at, expires_at,
    generation, applied, ...)``; the rest of the row is returned unchecked."""
    version, count, digest, updated_at, expires_at, generation, applied = row[:7]
    if type(digest) is not bytes or len(digest) != DIGEST_SIZE:
        raise corrupt(thread_id, "message digest", f"{_what(digest)}, expected {DIGEST_SIZE} bytes")
    if applied is not None and type(applied) is not bytes:
        raise corrupt(thread_id, "idempotency keys", f"{_what(applied)}, expected bytes")
    return (
        StoredHead(
            integer(version, thread_id, "version", 1, MAX_INT - 1),
            integer(count, thread_id, "message count"),
            digest,
            number(updated_at, thread_id, "update time"),
            _optional_number(expires_at, thread_id, "expiry time"),
            integer(generation, thread_id, "generation", -MAX_INT - 1),
            decode_applied(applied, thread_id),
        ),
        row[7:],
    )


def head_blob(value: Any, thread_id: str) -> bytes:
    """The encoded head (todos, interrupt, metadata), if it is bytes at all (the codec checks the rest)."""
    return _blob(value, thread_id, "head (todos, interrupt, metadata)")


def log(rows: Iterable[Sequence[Any]], message_count: int, thread_id: str) -> bytes:
    """The concatenated messages of log rows ``(seq, n, data)`` in position order.

    The rows must cover positions ``0 .. message_count - 1`` exactly, each
    holding at least ``n`` messages' worth of bytes; the walk stops at the
    first row that does not fit, before reading further rows.
    """
    parts: List[bytes] = []
    expected = 0
    for seq, n, data in rows:
        if expected >= message_count:
            raise corrupt(thread_id, "message log", f"it has rows past the {message_count} messages the head counts")
        if seq != expected or type(seq) is not int:
            raise corrupt(thread_id, "message log", f"a row at {_what(seq)} where position {expected} belongs")
        n = integer(n, thread_id, f"message log row at {seq}: its count", 1, message_count - expected)
        if type(data) is not bytes or len(data) < MIN_MESSAGE_BYTES * n:
            raise corrupt(thread_id, f"message log row at {seq}", f"{_what(data)} cannot hold {n} messages")
        parts.append(data)
        expected += n
    if expected != message_count:
        raise corrupt(thread_id, "message log", f"it holds {expected} messages, the head says {message_count}")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def pack(pieces: Sequence[Tuple[int, bytes]], first_seq: int) -> List[LogRow]:
    """Log rows of at most ``CHUNK_BYTES`` (or one piece) from ``(n, data)`` pieces stored from ``first_seq``."""
    rows: List[LogRow] = []
    group: List[bytes] = []
    seq, n, size = first_seq, 0, 0
    for count, data in pieces:
        if group and size + len(data) > CHUNK_BYTES:
            rows.append((seq, n, b"".join(group)))
            seq, n, size, group = seq + n, 0, 0, []
        group.append(data)
        n += count
        size += len(data)
    if group:
        rows.append((seq, n, group[0] if len(group) == 1 else b"".join(group)))
    return rows


def pack_messages(blobs: List[bytes], first_seq: int) -> List[LogRow]:
    """Log rows for the encoded messages ``blobs`` stored from ``first_seq`` (usually one row)."""
    if not blobs:
        return []
    if sum(map(len, blobs)) <= CHUNK_BYTES:
        return [(first_seq, len(blobs), b"".join(blobs))]
    return pack([(1, blob) for blob in blobs], first_seq)
