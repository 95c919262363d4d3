"""The write path of a checkpointer: plan, write, retry as a rewrite, and keep provenance.

:class:`Writer` turns a snapshot (or bare messages, for ``append``) into a
:class:`~agents_persist.planning.PlannedWrite`, hands it to the store, and
records what is stored now: the snapshot's new
:class:`~agents_persist.models.Provenance` and this process's prefix hint.
It also decodes what a store read into a snapshot that carries its provenance.
"""

from __future__ import annotations

import time
from typing import List, Optional

from . import codec, telemetry
from .errors import ConflictError, CorruptSnapshotError, SerializationError, SnapshotTooLargeError
from .models import AgentMessage, AgentStateSnapshot, Provenance
from .planning import (
    Expectation,
    KnownPrefix,
    PlannedWrite,
    PrefixMismatch,
    StoredSlice,
    StoredThread,
    Written,
    backoff,
    is_expired,
    new_generation,
    plan_write,
    record_applied,
)
from .prefix_cache import PrefixCache
from .store import Store

__all__ = ["Writer", "EMPTY_HEAD"]

#: The head blob of a thread created by ``append`` (no todos, interrupt or metadata).
EMPTY_HEAD = codec.encode_head(AgentStateSnapshot())
#: What a missing thread holds: no messages.
EMPTY_LOG = KnownPrefix(0, codec.EMPTY_DIGEST, b"")


class Writer:
    """Plans and applies writes for one checkpointer (its store, its TTL, its prefix hints)."""

    def __init__(self, store: Store, ttl: Optional[float], max_bytes: int) -> None:
        self.store = store
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.prefixes = PrefixCache()

    def _check_size(self, thread_id: str, size: int, what: str) -> None:
        if size > self.max_bytes:
            raise SnapshotTooLargeError(
                f"thread {thread_id!r}: {what} encodes to {size} bytes, more than max_snapshot_bytes={self.max_bytes};"
                " nothing was written",
                thread_id=thread_id,
            )

    def _expiry(self, now: float) -> Optional[float]:
        return now + self.ttl if self.ttl is not None else None

    def save(self, thread_id: str, state: AgentStateSnapshot, provenance: Optional[Provenance], expect: Expectation) -> Written:
        """Write ``state`` as ``expect`` says; afterwards ``state`` carries the new provenance."""
        messages: List[AgentMessage] = state.messages
        if not isinstance(messages, list):
            raise SerializationError("messages must be a list of AgentMessage", thread_id=thread_id)
        head = codec.encode_head(state, thread_id)
        now = time.time()
        args = (expect, head, now, self._expiry(now))
        known = [KnownPrefix.of(provenance)] if provenance is not None else []
        cached = self.prefixes.get(thread_id)
        if cached is not None and (not known or cached != known[0]):
            known.append(cached)
        write, encoded = plan_write(thread_id, messages, known, *args)
        self._check_size(thread_id, len(head) + len(encoded), "the snapshot")
        try:
            written = self.store.write(thread_id, write)
        except PrefixMismatch:
            # The log is not what we believed: rewrite it whole.
            self.prefixes.forget(thread_id)
            write, encoded = plan_write(thread_id, messages, (), *args)
            written = self.store.write(thread_id, write)
        telemetry.wrote(write.head, write.messages)
        if not written.duplicate:
            applied = provenance.applied if provenance is not None and written.version > 1 else ()
            state.provenance = Provenance(
                thread_id,
                written.version,
                written.generation,
                write.message_count,
                write.digest,
                encoded,
                applied=record_applied(applied, write.idempotency_key, written.version),
            )
            self.prefixes.remember(thread_id, write.message_count, write.digest, encoded)
        return written

    def append(self, thread_id: str, messages: List[AgentMessage], expect: Expectation, max_retries: int) -> int:
        """Append ``messages`` after whatever the log holds, keeping the stored head; return the new version.

        The write names the prefix it extends (count and digest, from this
        process's hint or a fresh read of the head); when another writer got
        there first, the store refuses it and the append tries again on the
        new head, with backoff, up to ``max_retries`` times.
        """
        blobs = codec.encode_messages(messages, 0, thread_id)
        self._check_size(thread_id, sum(map(len, blobs)), "the appended messages")
        hint = self.prefixes.get(thread_id)
        attempt = 0
        while True:
            fresh = hint is None
            if hint is None:
                head = self.store.read_head(thread_id)
                live = head is not None and not is_expired(head.expires_at)
                hint = KnownPrefix(head.message_count, head.digest, b"") if head is not None and live else EMPTY_LOG
            count, base_digest = hint.message_count, hint.digest
            now = time.time()
            write = PlannedWrite(
                expected_version=expect.version,
                append_from=count,
                base_digest=base_digest,
                messages=blobs,
                message_count=count + len(blobs),
                digest=codec.new_digest(),
                head=EMPTY_HEAD,
                updated_at=now,
                expires_at=self._expiry(now),
                new_generation=new_generation(),
                keep_head=True,
                idempotency_key=expect.idempotency_key,
            )
            try:
                written = self.store.write(thread_id, write)
            except PrefixMismatch:
                self.prefixes.forget(thread_id)
                hint = None
                if fresh:  # another writer appended between our read and our write
                    attempt += 1
                    if not telemetry.conflicted("append", thread_id, attempt - 1, max_retries):
                        raise ConflictError(
                            f"thread {thread_id!r}: other writers kept appending first ({attempt} attempts)", thread_id=thread_id
                        ) from None
                    time.sleep(backoff(attempt))
                continue
            telemetry.wrote(write.head, write.messages)
            if not written.duplicate:
                # The bytes of the whole log are not known here: only the hint for the next append.
                self.prefixes.remember(thread_id, write.message_count, write.digest, None)
            return written.version

    @staticmethod
    def decode_slice(thread_id: str, stored: StoredSlice) -> List[AgentMessage]:
        """The messages ``stored.start .. stored.stop - 1`` of a partial read."""
        if not (0 <= stored.first <= stored.start <= stored.stop <= stored.first + stored.count <= stored.message_count):
            raise CorruptSnapshotError(
                f"thread {thread_id!r}: the stored messages do not cover positions {stored.start} to {stored.stop - 1}",
                thread_id=thread_id,
            )
        if isinstance(stored.messages, bytes):
            messages = codec.decode_message_stream(stored.messages, stored.count, thread_id)
        elif len(stored.messages) != stored.count:
            raise CorruptSnapshotError(f"thread {thread_id!r}: a stored message is missing", thread_id=thread_id)
        else:
            messages = codec.decode_messages(stored.messages, thread_id)
        return messages[stored.start - stored.first : stored.stop - stored.first]

    def decode(self, thread_id: str, stored: StoredThread) -> AgentStateSnapshot:
        """The snapshot ``stored`` holds, carrying its provenance."""
        if isinstance(stored.messages, bytes):
            encoded = stored.messages
            messages = codec.decode_message_stream(encoded, stored.message_count, thread_id)
        elif len(stored.messages) != stored.message_count:
            raise CorruptSnapshotError(
                f"thread {thread_id!r}: head lists {stored.message_count} messages but {len(stored.messages)} are stored",
                thread_id=thread_id,
            )
        else:
            # Joined once: the same bytes are decoded and kept as the provenance's encoding.
            encoded = b"".join(stored.messages)
            messages = codec.decode_messages(stored.messages, thread_id, joined=encoded)
        head = codec.decode_head(stored.head, thread_id)
        provenance = Provenance(
            thread_id,
            stored.version,
            stored.generation,
            stored.message_count,
            stored.digest,
            encoded,
            applied=stored.applied,
        )
        self.prefixes.remember(thread_id, stored.message_count, stored.digest, encoded)
        return AgentStateSnapshot(
            messages=messages,
            todos=head.todos,
            current_interrupt=head.current_interrupt,
            metadata=head.metadata,
            provenance=provenance,
        )
