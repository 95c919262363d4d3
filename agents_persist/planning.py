"""What a save asks a store to do, the one precondition every store checks, and the planner.

A save becomes a :class:`PlannedWrite`: either *append* the new messages after
a stored prefix the writer knows (by count and digest), or *rewrite* the whole
log. A store applies it as one atomic step after checking
:func:`precondition` against what it holds. The Python stores call that
function; the Redis (Lua) and PostgreSQL (PL/pgSQL) stores check the same
rule server-side, and all three are tested against one table of cases.
"""

from __future__ import annotations

import enum
import time
from typing import List, Optional, Sequence, Tuple, Union

import msgspec

from . import codec
from .errors import ConflictError
from .models import AgentMessage, _Origin

__all__ = [
    "StoredThread",
    "PlannedWrite",
    "PrefixMismatch",
    "Decision",
    "precondition",
    "enforce_precondition",
    "conflict_error",
    "is_expired",
    "plan_write",
]


class PrefixMismatch(Exception):
    """A store's answer when an append's base prefix is no longer what it holds.

    Internal: the checkpointer then plans a whole-log rewrite instead.
    """


class StoredThread(msgspec.Struct, frozen=True):
    """One committed version of a thread as a store read it, still encoded.

    ``messages`` holds the encoded messages as written: a list with one blob
    per message, or all of them concatenated in one ``bytes`` (cheaper for
    stores that keep messages in chunks: no splitting, one decode call).
    """

    version: int
    head: bytes
    messages: Union[List[bytes], bytes]
    message_count: int
    digest: bytes
    updated_at: float
    expires_at: Optional[float] = None


class PlannedWrite(msgspec.Struct, frozen=True):
    """One save, to be applied by a store as one atomic step.

    1. The current version, count and digest are the stored ones, or
       ``(0, 0, EMPTY_DIGEST)`` when the thread is missing or expired
       (``expires_at <= updated_at`` of this write).
    2. :func:`precondition` decides on them: on ``CONFLICT`` raise
       :func:`conflict_error`, on ``PREFIX_MISMATCH`` raise
       :class:`PrefixMismatch`, writing nothing either way. A store may also
       raise :class:`PrefixMismatch` for a valid append to ask for a full
       rewrite instead (for example to compact its layout).
    3. If ``append_from`` is None, replace the whole log by ``messages``;
       otherwise store ``messages`` at positions ``append_from, append_from + 1, ...``.
    4. Store the head (``head``, ``message_count``, ``digest``,
       ``updated_at``, ``expires_at``) with version = current + 1, and return it.
    """

    expected_version: Optional[int]
    append_from: Optional[int]
    base_digest: bytes
    messages: List[bytes]
    message_count: int
    digest: bytes
    head: bytes
    updated_at: float
    expires_at: Optional[float]

    @property
    def first_seq(self) -> int:
        """Position of ``messages[0]`` in the log."""
        return self.append_from or 0


class Decision(enum.Enum):
    """The outcome of :func:`precondition`."""

    APPLY = "apply"
    CONFLICT = "conflict"
    PREFIX_MISMATCH = "prefix mismatch"


def precondition(write: PlannedWrite, version: int, message_count: int, digest: bytes) -> Decision:
    """Decide whether ``write`` may be applied over the stored (live) ``version``, ``message_count`` and ``digest``.

    Pass ``(0, 0, codec.EMPTY_DIGEST)`` for a thread that is missing or expired.
    The version check comes first: a stale writer is told of the conflict,
    not asked to rewrite.
    """
    if write.expected_version is not None and write.expected_version != version:
        return Decision.CONFLICT
    if write.append_from is not None and (write.append_from, write.base_digest) != (message_count, bytes(digest)):
        return Decision.PREFIX_MISMATCH
    return Decision.APPLY


def conflict_error(thread_id: str, expected: Optional[int], actual: int) -> ConflictError:
    """The error a store raises when the compare-and-set fails."""
    return ConflictError(
        f"thread {thread_id!r} is at version {actual}, not the expected {expected}",
        thread_id=thread_id,
        expected_version=expected,
        actual_version=actual,
    )


def enforce_precondition(thread_id: str, write: PlannedWrite, version: int, message_count: int, digest: bytes) -> None:
    """Raise what :func:`precondition` calls for: ``ConflictError`` or :class:`PrefixMismatch`."""
    decision = precondition(write, version, message_count, digest)
    if decision is Decision.CONFLICT:
        raise conflict_error(thread_id, write.expected_version, version)
    if decision is Decision.PREFIX_MISMATCH:
        raise PrefixMismatch(thread_id)


def is_expired(expires_at: Optional[float], now: Optional[float] = None) -> bool:
    """Whether a thread with this expiry time is gone at ``now`` (default: the current time)."""
    return expires_at is not None and expires_at <= (time.time() if now is None else now)


def plan_write(
    thread_id: str,
    messages: Sequence[AgentMessage],
    origin: Optional[_Origin],
    cached_prefix: Optional[Tuple[int, bytes]],
    expected_version: Optional[int],
    head: bytes,
    now: float,
    expires_at: Optional[float],
) -> PlannedWrite:
    """Decide between appending the new messages and rewriting the log.

    ``origin`` is the stored state the snapshot was loaded at or last saved
    as: if its messages are still the first ones (compared at C speed, the
    very objects), only the rest is encoded. Otherwise everything is encoded,
    and ``cached_prefix`` (count and digest this process last saw stored)
    may still let the write be an append when the encoded prefix matches it.
    """
    total = len(messages)
    base_count: Optional[int] = None
    base_digest = codec.EMPTY_DIGEST
    if origin is not None and total >= origin.message_count and messages[: origin.message_count] == origin.messages:
        base_count, base_digest = origin.message_count, origin.digest
        blobs = codec.encode_messages(messages[base_count:], base_count, thread_id)
        digest = codec.chain_digest(base_digest, blobs)
    else:
        blobs = codec.encode_messages(messages, 0, thread_id)
        if cached_prefix is not None and 0 < cached_prefix[0] <= total:
            prefix_digest = codec.chain_digest(codec.EMPTY_DIGEST, blobs[: cached_prefix[0]])
            if prefix_digest == cached_prefix[1]:
                base_count, base_digest = cached_prefix
                digest = codec.chain_digest(prefix_digest, blobs[base_count:])
                blobs = blobs[base_count:]
            else:
                digest = codec.chain_digest(prefix_digest, blobs[cached_prefix[0] :])
        else:
            digest = codec.chain_digest(codec.EMPTY_DIGEST, blobs)
    return PlannedWrite(
        expected_version=expected_version,
        append_from=base_count,
        base_digest=base_digest,
        messages=blobs,
        message_count=total,
        digest=digest,
        head=head,
        updated_at=now,
        expires_at=expires_at,
    )
