"""The one table of cases for the save precondition (apply / conflict / prefix mismatch).

:func:`agents_persist.planning.precondition` is the Python rule; the Redis Lua
script and the PostgreSQL save function check the same rule server-side.
Each is tested against every case below (``tests/test_planning.py`` for the
Python function, the backend test packages for the server-side twins), so
the three can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from agents_persist.codec import EMPTY_DIGEST
from agents_persist.planning import Applied, Decision, PlannedWrite

#: The digest the stored prefix has in these cases, and another one.
STORED_DIGEST = bytes(range(1, 17))
OTHER_DIGEST = bytes(range(2, 18))


#: The stored thread's generation in these cases, and the idempotency key it has applied.
STORED_GENERATION = 77
APPLIED_KEY, APPLIED_VERSION = "job-1", 2


@dataclass(frozen=True)
class PreconditionCase:
    """Stored ``(version, message_count, digest)`` (None: no live thread) and a write's expectations.

    A live thread has generation ``STORED_GENERATION`` and has applied
    ``APPLIED_KEY`` (producing version ``APPLIED_VERSION``).
    """

    name: str
    stored: Optional[Tuple[int, int, bytes]]
    expected_version: Optional[int]
    append_from: Optional[int]
    base_digest: bytes
    decision: Decision
    expected_generation: Optional[int] = None
    idempotency_key: Optional[str] = None

    def write(self, messages: Optional[List[bytes]] = None, head: bytes = b"\x01\x80") -> PlannedWrite:
        """A planned write with this case's expectations (its payload is arbitrary)."""
        blobs = list(messages or [])
        base = self.append_from or 0
        return PlannedWrite(
            expected_version=self.expected_version,
            append_from=self.append_from,
            base_digest=self.base_digest,
            messages=blobs,
            message_count=base + len(blobs),
            digest=OTHER_DIGEST,
            head=head,
            updated_at=1_700_000_000.0,
            expires_at=None,
            expected_generation=self.expected_generation,
            new_generation=NEW_GENERATION,
            idempotency_key=self.idempotency_key,
        )

    def scalars(self) -> Tuple[int, int, bytes, int, Applied]:
        """What the store holds, as :func:`precondition` takes it (a missing thread is ``(0, 0, EMPTY_DIGEST)``)."""
        if self.stored is None:
            return (0, 0, EMPTY_DIGEST, 0, ())
        return (*self.stored, STORED_GENERATION, ((APPLIED_KEY, APPLIED_VERSION),))


NEW_GENERATION = 99
LIVE = (3, 5, STORED_DIGEST)
APPLY, CONFLICT, MISMATCH, DUPLICATE = Decision.APPLY, Decision.CONFLICT, Decision.PREFIX_MISMATCH, Decision.DUPLICATE

CASES: List[PreconditionCase] = [
    PreconditionCase("rewrite unchecked over a live thread", LIVE, None, None, EMPTY_DIGEST, APPLY),
    PreconditionCase("rewrite unchecked over nothing", None, None, None, EMPTY_DIGEST, APPLY),
    PreconditionCase("rewrite at the stored version", LIVE, 3, None, EMPTY_DIGEST, APPLY),
    PreconditionCase("rewrite at an older version", LIVE, 2, None, EMPTY_DIGEST, CONFLICT),
    PreconditionCase("rewrite at a newer version", LIVE, 4, None, EMPTY_DIGEST, CONFLICT),
    PreconditionCase("create (version 0) over nothing", None, 0, None, EMPTY_DIGEST, APPLY),
    PreconditionCase("create (version 0) over a live thread", LIVE, 0, None, EMPTY_DIGEST, CONFLICT),
    PreconditionCase("checked save of a vanished thread", None, 3, None, EMPTY_DIGEST, CONFLICT),
    PreconditionCase("append on the stored prefix", LIVE, 3, 5, STORED_DIGEST, APPLY),
    PreconditionCase("append unchecked on the stored prefix", LIVE, None, 5, STORED_DIGEST, APPLY),
    PreconditionCase("append on another digest", LIVE, 3, 5, OTHER_DIGEST, MISMATCH),
    PreconditionCase("append after fewer messages", LIVE, 3, 4, STORED_DIGEST, MISMATCH),
    PreconditionCase("append after more messages", LIVE, None, 6, STORED_DIGEST, MISMATCH),
    PreconditionCase("stale append: the version check comes first", LIVE, 2, 4, OTHER_DIGEST, CONFLICT),
    PreconditionCase("append from 0 onto nothing", None, 0, 0, EMPTY_DIGEST, APPLY),
    PreconditionCase("append onto a prefix that vanished", None, None, 5, STORED_DIGEST, MISMATCH),
    PreconditionCase("checked save of the same incarnation", LIVE, 3, None, EMPTY_DIGEST, APPLY, STORED_GENERATION),
    PreconditionCase("checked save of an older incarnation (ABA)", LIVE, 3, None, EMPTY_DIGEST, CONFLICT, 12),
    PreconditionCase("checked append of an older incarnation", LIVE, 3, 5, STORED_DIGEST, CONFLICT, 12),
    PreconditionCase("create ignores the generation", None, 0, None, EMPTY_DIGEST, APPLY, 12),
    PreconditionCase("unchecked save ignores the generation", LIVE, None, None, EMPTY_DIGEST, APPLY, 12),
    PreconditionCase("a key applied before is a duplicate", LIVE, 2, 4, OTHER_DIGEST, DUPLICATE, 12, APPLIED_KEY),
    PreconditionCase("a new key applies", LIVE, 3, 5, STORED_DIGEST, APPLY, None, "job-2"),
    PreconditionCase("a new key still conflicts", LIVE, 2, None, EMPTY_DIGEST, CONFLICT, None, "job-2"),
    PreconditionCase("a key on a missing thread applies", None, 0, 0, EMPTY_DIGEST, APPLY, None, APPLIED_KEY),
]
