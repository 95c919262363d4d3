"""The bytes of the message log: packing a save's messages into log rows, parsing a load's binary COPY.

A log row's ``data`` is its messages' encoded blobs concatenated exactly as
written (no framing): a load hands the concatenation of all rows to
``codec.decode_message_stream`` in one call. A SELECT would bring bytea as
hex text through psycopg2 (twice the bytes, unhexed on arrival); a load
instead runs ``COPY (SELECT * FROM <table>_load(...)) TO STDOUT (FORMAT
binary)``, which moves bytea raw, and :func:`parse_load` reads that stream.
"""

from __future__ import annotations

import struct
from typing import List, NamedTuple, Optional, Sequence, Tuple

from ...errors import CorruptSnapshotError

__all__ = ["LoadedHead", "pack_log", "parse_load"]

_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER = struct.Struct(">11sii")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
#: Columns the load function returns: the head row fills the first six, each log row only ``data``.
_LOAD_COLUMNS = 7
#: A log row in the binary COPY stream: field count 7, six NULL fields (length -1), then data's length.
_LOG_ROW_PREFIX = _INT16.pack(_LOAD_COLUMNS) + _INT32.pack(-1) * (_LOAD_COLUMNS - 1)
_LOG_ROW_HEADER = len(_LOG_ROW_PREFIX) + 4


class LoadedHead(NamedTuple):
    """The head row of a load: the stored scalars and the encoded head."""

    version: int
    message_count: int
    digest: bytes
    head: bytes
    updated_at: float
    expires_at: Optional[float]


def pack_log(blobs: Sequence[bytes], first_seq: int, chunk_bytes: int) -> Tuple[List[int], List[int], List[bytes]]:
    """Group encoded messages into log rows of at most ``chunk_bytes``: (seqs, counts, concatenated blobs).

    A single message longer than ``chunk_bytes`` gets a row of its own.
    """
    seqs: List[int] = []
    counts: List[int] = []
    chunks: List[bytes] = []
    start = 0
    while start < len(blobs):
        end, size = start, 0
        while end < len(blobs) and (end == start or size + len(blobs[end]) <= chunk_bytes):
            size += len(blobs[end])
            end += 1
        seqs.append(first_seq + start)
        counts.append(end - start)
        chunks.append(b"".join(blobs[start:end]))
        start = end
    return seqs, counts, chunks


def _parse_head(buf: bytes, view: memoryview, pos: int) -> Tuple[LoadedHead, int]:
    """The head row's six values starting at ``pos`` (after its field count); returns the head and the next position."""
    values: List[Optional[bytes]] = []
    for _ in range(_LOAD_COLUMNS - 1):
        (length,) = _INT32.unpack_from(buf, pos)
        pos += 4
        if length < 0:
            values.append(None)
        else:
            values.append(bytes(view[pos : pos + length]))
            pos += length
    (length,) = _INT32.unpack_from(buf, pos)
    if length != -1:
        raise ValueError("head row has a log column")
    version, count, digest, head, updated_at, expires_at = values
    if version is None or count is None or digest is None or head is None or updated_at is None:
        raise ValueError("head row has NULL columns")
    parsed = LoadedHead(
        int.from_bytes(version, "big", signed=True),
        int.from_bytes(count, "big", signed=True),
        digest,
        head,
        struct.unpack(">d", updated_at)[0],
        None if expires_at is None else struct.unpack(">d", expires_at)[0],
    )
    return parsed, pos + 4


def _parse_log_rows(buf: bytes, view: memoryview, pos: int) -> List[memoryview]:
    """The ``data`` of every log row from ``pos`` to the end of the stream, as slices of ``buf``."""
    parts: List[memoryview] = []
    prefix, header = _LOG_ROW_PREFIX, _LOG_ROW_HEADER
    while buf[pos : pos + 2] != b"\xff\xff":
        if buf[pos : pos + header - 4] != prefix:
            raise ValueError(f"unexpected log row at byte {pos}")
        (length,) = _INT32.unpack_from(buf, pos + header - 4)
        pos += header
        if length < 0 or pos + length > len(buf):
            raise ValueError(f"log row of bad length {length} at byte {pos}")
        parts.append(view[pos : pos + length])
        pos += length
    if pos + 2 != len(buf):
        raise ValueError("trailing bytes after the end of the COPY stream")
    return parts


def parse_load(buf: bytes, thread_id: str) -> Optional[Tuple[LoadedHead, bytes]]:
    """Parse the binary COPY output of the load function: the head row, then the log rows.

    Returns None when there is no head row (missing or expired thread), else
    the head and all log rows' ``data`` concatenated in order.

    Raises:
        CorruptSnapshotError: The stream is not what the load function sends.
    """
    try:
        signature, _flags, extension = _COPY_HEADER.unpack_from(buf, 0)
        if signature != _COPY_SIGNATURE:
            raise ValueError("not a binary COPY stream")
        view = memoryview(buf)
        pos = _COPY_HEADER.size + extension
        (fields,) = _INT16.unpack_from(buf, pos)
        if fields == -1:
            return None
        if fields != _LOAD_COLUMNS:
            raise ValueError(f"head row has {fields} columns")
        head, pos = _parse_head(buf, view, pos + 2)
        parts = _parse_log_rows(buf, view, pos)
    except (ValueError, struct.error) as exc:
        message = f"thread {thread_id!r}: cannot read the stored thread from PostgreSQL's COPY output: {exc}"
        raise CorruptSnapshotError(message, thread_id=thread_id) from exc
    data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
    return head, data
