"""Partial reads over chunked logs: which stored chunks cover a slice, checked before they are joined.

Stores that keep a thread's messages in chunks (rows or items of ``n``
messages from position ``seq``) read only the chunks that hold the asked
positions and hand them to :func:`covering_chunks`, which checks that they are
contiguous and cover the slice within the head's count, then joins them for
one decode call (:class:`~agents_persist.planning.StoredSlice`).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from .errors import CorruptSnapshotError
from .planning import StoredSlice, resolve_slice

__all__ = ["covering_chunks", "sliced", "MIN_MESSAGE_BYTES", "clamp_bound"]

#: The smallest encoded message: its format byte and an empty msgpack map.
MIN_MESSAGE_BYTES = 2
_INT32 = 2**31 - 1


def clamp_bound(bound: Optional[int]) -> Optional[int]:
    """A slice bound within a 32-bit server integer, meaning the same slice (logs are shorter than 2**31)."""
    return None if bound is None else max(-_INT32, min(bound, _INT32))


def _corrupt(thread_id: str, detail: str) -> CorruptSnapshotError:
    return CorruptSnapshotError(f"thread {thread_id!r}: the stored message log is corrupt: {detail}", thread_id=thread_id)


def covering_chunks(
    chunks: Sequence[Tuple[Any, Any, Any]], lo: int, hi: int, message_count: int, thread_id: str
) -> Tuple[int, int, bytes]:
    """``(first, count, data)`` of chunks ``(seq, n, data)`` in position order that cover positions ``lo .. hi - 1``.

    Raises:
        CorruptSnapshotError: The chunks are not contiguous, do not reach
            ``lo`` or ``hi``, or claim more messages than they can hold or
            the head counts; nothing is joined before that is known.
    """
    if not chunks:
        raise _corrupt(thread_id, f"no chunk holds positions {lo} to {hi - 1}")
    first = chunks[0][0]
    if type(first) is not int or not 0 <= first <= lo:
        raise _corrupt(thread_id, f"a chunk at {first!r} where one holding position {lo} belongs")
    parts: List[bytes] = []
    expected = first
    for seq, n, data in chunks:
        if type(seq) is not int or seq != expected:
            raise _corrupt(thread_id, f"a chunk at {seq!r} where position {expected} belongs")
        if type(n) is not int or not 1 <= n <= message_count - expected:
            raise _corrupt(thread_id, f"the chunk at {seq} claims {n!r} messages")
        if not isinstance(data, (bytes, memoryview)) or len(data) < MIN_MESSAGE_BYTES * n:
            raise _corrupt(thread_id, f"the chunk at {seq} cannot hold {n} messages")
        parts.append(bytes(data))
        expected += n
    if expected < hi:
        raise _corrupt(thread_id, f"its chunks end at position {expected}, before {hi}")
    return first, expected - first, parts[0] if len(parts) == 1 else b"".join(parts)


def sliced(
    version: int,
    message_count: int,
    expires_at: Optional[float],
    start: Optional[int],
    stop: Optional[int],
    chunks: Sequence[Tuple[Any, Any, Any]],
    thread_id: str,
) -> StoredSlice:
    """The :class:`StoredSlice` of ``[start:stop]`` from a head's scalars and the chunks a store read for it."""
    lo, hi = resolve_slice(start, stop, message_count)
    if lo == hi:
        return StoredSlice(version, message_count, lo, hi, lo, b"", 0, expires_at)
    first, count, data = covering_chunks(chunks, lo, hi, message_count, thread_id)
    return StoredSlice(version, message_count, lo, hi, first, data, count, expires_at)
