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
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

from ...codec import DIGEST_SIZE
from ...planning import Applied, StoredHead
from ..checks import MAX_INT, corrupt, integer, number, optional_number, what

__all__ = ["LoadedHead", "pack_log", "parse_load", "applied_keys", "checked_head", "encode_key", "MAX_COUNT"]

_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_COPY_HEADER = struct.Struct(">11sii")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
#: Columns the load function returns: the head row fills all but the last, each log row only ``data``.
_LOAD_COLUMNS = 10
#: A log row in the binary COPY stream: the field count, nine NULL fields (length -1), then data's length.
_LOG_ROW_PREFIX = _INT16.pack(_LOAD_COLUMNS) + _INT32.pack(-1) * (_LOAD_COLUMNS - 1)
_LOG_ROW_HEADER = len(_LOG_ROW_PREFIX) + 4
_ARRAY_HEADER = struct.Struct(">iiI")
_ARRAY_DIMENSION = struct.Struct(">ii")
#: Largest message count (the column is a 32-bit integer).
MAX_COUNT = (1 << 31) - 1


class LoadedHead(NamedTuple):
    """The head row of a load: the stored scalars, the encoded head, the generation and the applied keys."""

    version: int
    message_count: int
    digest: bytes
    head: bytes
    updated_at: float
    expires_at: Optional[float]
    generation: int
    applied: Applied


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


def encode_key(key: Optional[str]) -> Optional[bytes]:
    """An idempotency key as stored in ``applied_keys`` (UTF-8; lone surrogates kept, as a str may hold them)."""
    return None if key is None else key.encode("utf-8", "surrogatepass")


def applied_keys(keys: Any, versions: Any, thread_id: str) -> Applied:
    """The ``(key, version)`` pairs of the head's two array columns, oldest first, checked.

    Raises:
        CorruptSnapshotError: They are not two one-dimensional arrays of the
            same length without NULLs, of UTF-8 keys and versions from 1.
    """
    part = "idempotency keys"
    if type(keys) is not list or type(versions) is not list or len(keys) != len(versions):
        raise corrupt(thread_id, part, f"{what(keys)} and {what(versions)}, expected two arrays of the same length")
    pairs = []
    for key, version in zip(keys, versions):
        if not isinstance(key, (bytes, memoryview)):
            raise corrupt(thread_id, part, f"a key is {what(key)}")
        try:
            text = bytes(key).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            # Not written by this library (nor repairable by a forced save, which keeps the keys): an
            # opaque key; the save function compares keys as bytes, which no key encodes to.
            text = bytes(key).decode("utf-8", "surrogateescape")
        pairs.append((text, integer(version, thread_id, "version of an idempotency key", 1)))
    return tuple(pairs)


def checked_head(thread_id: str, row: Sequence[Any]) -> StoredHead:
    """The head of a row ``(version, message_count, digest, updated_at, expires_at, generation, keys, versions)``.

    Raises:
        CorruptSnapshotError: A value is out of the range this library writes
            (the columns' types hold more: negative counts, NaN, ...).
    """
    version, count, digest, updated_at, expires_at, generation, keys, versions = row
    if not isinstance(digest, (bytes, memoryview)) or len(digest) != DIGEST_SIZE:
        raise corrupt(thread_id, "message digest", f"{what(digest)}, expected {DIGEST_SIZE} bytes")
    return StoredHead(
        integer(version, thread_id, "version", 1, MAX_INT - 1),
        integer(count, thread_id, "message count", 0, MAX_COUNT),
        bytes(digest),
        number(updated_at, thread_id, "update time"),
        optional_number(expires_at, thread_id, "expiry time"),
        integer(generation, thread_id, "generation", -MAX_INT - 1),
        applied_keys(keys, versions, thread_id),
    )


def _array_elements(value: bytes) -> List[bytes]:
    """The elements of a one-dimensional array without NULLs, in the binary format."""
    dimensions, _flags, _oid = _ARRAY_HEADER.unpack_from(value, 0)
    if dimensions == 0:
        return []
    if dimensions != 1:
        raise ValueError(f"array of {dimensions} dimensions")
    size, _lower = _ARRAY_DIMENSION.unpack_from(value, _ARRAY_HEADER.size)
    pos = _ARRAY_HEADER.size + _ARRAY_DIMENSION.size
    if not 0 <= size <= (len(value) - pos) // 4:  # each element is at least its length word
        raise ValueError(f"array of {size} elements in {len(value)} bytes")
    elements: List[bytes] = []
    for _ in range(size):
        (length,) = _INT32.unpack_from(value, pos)
        if length < 0 or pos + 4 + length > len(value):
            raise ValueError("array element of bad length")
        elements.append(value[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return elements


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big", signed=True)


def _not_null(value: Optional[bytes]) -> bytes:
    if value is None:
        raise ValueError("head row has NULL columns")
    return value


def _array(part: str, value: Optional[bytes]) -> List[bytes]:
    try:
        return _array_elements(_not_null(value))
    except (ValueError, struct.error) as exc:
        raise ValueError(f"the {part} are not a one-dimensional array without NULLs ({exc})") from None


def _float(value: bytes) -> float:
    (number,) = struct.unpack(">d", value)
    return float(number)


def _parse_head(buf: bytes, view: memoryview, pos: int) -> Tuple[Tuple[Any, ...], bytes, int]:
    """The head row's values starting at ``pos`` (after its field count): its scalars in the order of
    :func:`checked_head`, the encoded head and the next position."""
    values: List[Optional[bytes]] = []
    for _ in range(_LOAD_COLUMNS - 1):
        (length,) = _INT32.unpack_from(buf, pos)
        pos += 4
        if length < 0:
            values.append(None)
        elif length > len(buf) - pos:
            raise ValueError(f"a head column of {length} bytes runs past the end of the stream")
        else:
            values.append(bytes(view[pos : pos + length]))
            pos += length
    (length,) = _INT32.unpack_from(buf, pos)
    if length != -1:
        raise ValueError("head row has a log column")
    version, count, digest, head, updated_at, expires_at, generation, keys, versions = values
    scalars = (
        _int(_not_null(version)),
        _int(_not_null(count)),
        _not_null(digest),
        _float(_not_null(updated_at)),
        None if expires_at is None else _float(expires_at),
        _int(_not_null(generation)),
        _array("idempotency keys", keys),
        [_int(v) for v in _array("versions of the idempotency keys", versions)],
    )
    return scalars, _not_null(head), pos + 4


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
        scalars, blob, pos = _parse_head(buf, view, pos + 2)
        parts = _parse_log_rows(buf, view, pos)
    except (ValueError, struct.error) as exc:
        raise corrupt(thread_id, "thread (as PostgreSQL's COPY sends it)", str(exc)) from exc
    h = checked_head(thread_id, scalars)
    if not blob:
        raise corrupt(thread_id, "head (todos, interrupt, metadata)", "no bytes")
    head = LoadedHead(h.version, h.message_count, h.digest, blob, h.updated_at, h.expires_at, h.generation, h.applied)
    data = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
    return head, data
