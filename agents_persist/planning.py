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
import os
import random
import time
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import msgspec

from . import codec
from .errors import ConflictError
from .models import AgentMessage, Provenance

__all__ = [
    "Applied",
    "MAX_APPLIED_KEYS",
    "StoredHead",
    "new_generation",
    "record_applied",
    "StoredThread",
    "StoredSlice",
    "resolve_slice",
    "PlannedWrite",
    "Written",
    "PrefixMismatch",
    "Decision",
    "precondition",
    "enforce_precondition",
    "conflict_error",
    "is_expired",
    "Expectation",
    "KnownPrefix",
    "plan_write",
]


#: Idempotency keys a thread remembers (with the version each produced), newest last.
MAX_APPLIED_KEYS = 32
Applied = Tuple[Tuple[str, int], ...]


def new_generation() -> int:
    """A random, non-zero 63-bit generation for a thread being created."""
    return int.from_bytes(os.urandom(8), "big") >> 1 or 1


def record_applied(applied: Applied, key: Optional[str], version: int) -> Applied:
    """``applied`` with ``key`` recorded as having produced ``version`` (bounded, oldest dropped)."""
    if key is None:
        return applied
    return (*applied, (key, version))[-MAX_APPLIED_KEYS:]


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
    generation: int = 0
    applied: Applied = ()


class StoredSlice(msgspec.Struct, frozen=True):
    """Some messages of one committed version, as a store read them for a partial read.

    ``messages`` holds ``count`` encoded messages, log positions ``first``
    to ``first + count - 1`` (a list of blobs or one concatenated ``bytes``),
    covering the positions ``start`` to ``stop - 1`` asked for, resolved by
    :func:`resolve_slice` against ``message_count`` in the same atomic read.
    Stores may return more than asked (whole chunks); the checkpointer
    decodes them and keeps ``start .. stop - 1``.
    """

    version: int
    message_count: int
    start: int
    stop: int
    first: int
    messages: Union[List[bytes], bytes]
    count: int
    expires_at: Optional[float] = None


def resolve_slice(start: Optional[int], stop: Optional[int], message_count: int) -> Tuple[int, int]:
    """``(start, stop)`` of ``messages[start:stop]`` as non-negative positions, like Python slicing."""
    first, end, _ = slice(start, stop).indices(message_count)
    return first, max(first, end)


class StoredHead(msgspec.Struct, frozen=True):
    """The scalars of a thread's head, read without its messages or head blob."""

    version: int
    message_count: int
    digest: bytes
    updated_at: float
    expires_at: Optional[float] = None
    generation: int = 0
    applied: Applied = ()


class PlannedWrite(msgspec.Struct, frozen=True):
    """One save, to be applied by a store as one atomic step.

    1. The current head is the stored one, or none when the thread is
       missing or expired (``expires_at <= updated_at`` of this write); a
       missing thread counts as version 0, count 0, ``EMPTY_DIGEST``.
    2. :func:`precondition` decides on it. ``DUPLICATE``: return the version
       the idempotency key produced, writing nothing. ``CONFLICT``: raise
       :func:`conflict_error`; ``PREFIX_MISMATCH``: raise
       :class:`PrefixMismatch`, writing nothing either way. A store may also
       raise :class:`PrefixMismatch` for a valid append to ask for a full
       rewrite instead (for example to compact its layout).
    3. If ``append_from`` is None, replace the whole log by ``messages``;
       otherwise store ``messages`` at positions ``append_from, append_from + 1, ...``.
    4. Store the head with version = current + 1: ``head`` (or, with
       ``keep_head`` and a live thread, the stored head blob unchanged),
       ``message_count``, ``digest``, ``updated_at``, ``expires_at``, the
       generation (the stored one; ``new_generation`` if the thread was not
       live) and the applied keys (:func:`record_applied` with
       ``idempotency_key``). Return the new version.
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
    expected_generation: Optional[int] = None
    new_generation: int = 1
    keep_head: bool = False
    idempotency_key: Optional[str] = None

    @property
    def first_seq(self) -> int:
        """Position of ``messages[0]`` in the log."""
        return self.append_from or 0


class Written(NamedTuple):
    """What a store reports after a write: the version stored, its generation, and whether it was a duplicate."""

    version: int
    generation: int
    duplicate: bool = False


class Decision(enum.Enum):
    """The outcome of :func:`precondition`."""

    APPLY = "apply"
    CONFLICT = "conflict"
    PREFIX_MISMATCH = "prefix mismatch"
    DUPLICATE = "duplicate"


def precondition(
    write: PlannedWrite, version: int, message_count: int, digest: bytes, generation: int = 0, applied: Applied = ()
) -> Decision:
    """Decide whether ``write`` may be applied over what is stored (live).

    Pass ``(0, 0, codec.EMPTY_DIGEST)`` for a thread that is missing or
    expired. In order: a write whose idempotency key is among ``applied``
    was already applied (``DUPLICATE``); then the version check, which also
    compares the generation when the write expects an existing thread of a
    known incarnation (``CONFLICT``: a stale writer is told of the
    conflict, not asked to rewrite); then the append's base prefix.
    """
    if write.idempotency_key is not None and any(key == write.idempotency_key for key, _ in applied):
        return Decision.DUPLICATE
    expected = write.expected_version
    if expected is not None:
        if expected != version:
            return Decision.CONFLICT
        if expected > 0 and write.expected_generation is not None and write.expected_generation != generation:
            return Decision.CONFLICT
    if write.append_from is not None and (write.append_from, write.base_digest) != (message_count, bytes(digest)):
        return Decision.PREFIX_MISMATCH
    return Decision.APPLY


def conflict_error(thread_id: str, expected: Optional[int], actual: int, *, recreated: bool = False) -> ConflictError:
    """The error a store raises when the compare-and-set fails."""
    if recreated:
        message = f"thread {thread_id!r} was deleted and created again since version {expected} was read (now at {actual})"
    else:
        message = f"thread {thread_id!r} is at version {actual}, not the expected {expected}"
    return ConflictError(message, thread_id=thread_id, expected_version=expected, actual_version=actual)


def enforce_precondition(
    thread_id: str,
    write: PlannedWrite,
    version: int,
    message_count: int,
    digest: bytes,
    generation: int = 0,
    applied: Applied = (),
) -> Optional[int]:
    """Raise what :func:`precondition` calls for; return the already-applied version of a duplicate, else None."""
    decision = precondition(write, version, message_count, digest, generation, applied)
    if decision is Decision.DUPLICATE:
        return next(v for key, v in applied if key == write.idempotency_key)
    if decision is Decision.CONFLICT:
        raise conflict_error(thread_id, write.expected_version, version, recreated=write.expected_version == version)
    if decision is Decision.PREFIX_MISMATCH:
        raise PrefixMismatch(thread_id)
    return None


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` after a conflict: exponential with full jitter, at most 0.2."""
    return random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 10)))


def is_expired(expires_at: Optional[float], now: Optional[float] = None) -> bool:
    """Whether a thread with this expiry time is gone at ``now`` (default: the current time)."""
    return expires_at is not None and expires_at <= (time.time() if now is None else now)


class Expectation(msgspec.Struct, frozen=True):
    """What a write expects of the stored thread, and the bookkeeping it carries."""

    version: Optional[int] = None
    generation: Optional[int] = None
    idempotency_key: Optional[str] = None
    keep_head: bool = False


class KnownPrefix(NamedTuple):
    """A message log this process knows to be stored: its count, token and encoded bytes."""

    message_count: int
    digest: bytes
    encoded: bytes

    @classmethod
    def of(cls, provenance: Provenance) -> "KnownPrefix":
        """What ``provenance`` says is stored."""
        return cls(provenance.message_count, provenance.digest, provenance.encoded)


def plan_write(
    thread_id: str,
    messages: Sequence[AgentMessage],
    known: Sequence[KnownPrefix],
    expect: Expectation,
    head: bytes,
    now: float,
    expires_at: Optional[float],
) -> Tuple[PlannedWrite, bytes]:
    """Decide between appending the new messages and rewriting the log.

    A stored prefix is reused only when it is provably the same bytes: each
    candidate in ``known`` (the snapshot's provenance, then what this
    process last saw stored for the thread) carries the stored encoding of
    its messages, and the snapshot's first messages must encode to exactly
    those bytes, so an edit made in place, or a replacement that is equal
    but not identical (``True`` for ``1``), always rewrites. The store
    re-checks the prefix (count and token) atomically.

    Returns the write and the stored encoding of all of ``messages`` after it
    (the next provenance's ``encoded``).
    """
    total = len(messages)
    base: Optional[KnownPrefix] = None
    for candidate in known:
        usable = candidate.message_count <= total and (candidate.encoded or not candidate.message_count)
        if usable and codec.stream_matches(messages[: candidate.message_count], candidate.encoded):
            base = candidate
            break
    if base is not None:
        blobs = codec.encode_messages(messages[base.message_count :], base.message_count, thread_id)
        append_from: Optional[int] = base.message_count
        base_digest, prefix_bytes = base.digest, base.encoded
    else:
        blobs = codec.encode_messages(messages, 0, thread_id)
        append_from, base_digest, prefix_bytes = None, codec.EMPTY_DIGEST, b""
    write = PlannedWrite(
        expected_version=expect.version,
        append_from=append_from,
        base_digest=base_digest,
        messages=blobs,
        message_count=total,
        digest=codec.new_digest(),
        head=head,
        updated_at=now,
        expires_at=expires_at,
        expected_generation=expect.generation,
        new_generation=new_generation(),
        keep_head=expect.keep_head,
        idempotency_key=expect.idempotency_key,
    )
    return write, prefix_bytes + b"".join(blobs)
