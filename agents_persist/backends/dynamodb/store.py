"""DynamoDbStore: threads in one DynamoDB table, committed by one conditional write of the head item.

The layout is in :mod:`.layout`, the planning and sending of a save's items
in :mod:`.writes`, table set-up and listing reads in :mod:`.table`, the
boto3 client in :mod:`.client`, the heads this process last saw in
:mod:`.cache`. This module holds the store's primitives.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from functools import partial
from typing import Any, Dict, Iterable, List, Optional, Tuple

import msgspec

from ...codec import EMPTY_DIGEST
from ...errors import AgentsPersistError, BackendUnavailableError, ConflictError, CorruptSnapshotError
from ...models import ThreadInfo
from ...paging import Position, thread_info
from ...planning import (
    Applied,
    Decision,
    PlannedWrite,
    PrefixMismatch,
    StoredHead,
    StoredSlice,
    StoredThread,
    Written,
    enforce_precondition,
    is_expired,
    precondition,
    resolve_slice,
)
from ...store import Store
from . import table, writes
from .cache import HeadCache
from .client import DynamoDbClient, maybe_applied_once
from .layout import (
    A_EXPIRES,
    A_GARBAGE,
    A_HEAD_RUN,
    A_PENDING,
    A_RUNS,
    A_TOKEN,
    A_VERSION,
    HEAD_SK,
    MAX_VERSION,
    PK,
    SK,
    HeadState,
    Item,
    Run,
    chunk_sk,
    corrupt,
    covering_chunks,
    head_from_item,
    is_chunk_sk,
    item_key,
    pack_messages,
    read_int,
    read_str,
    read_time,
    run_keys,
    run_of_sk,
    stale_chunks,
    take_messages,
    unpack_messages,
)
from .table import HeadRow
from .writes import Scratch, StaleHead, WritePlanner

__all__ = ["DynamoDbStore"]

logger = logging.getLogger(__name__)

#: Conditional-write attempts of one save before giving up with ConflictError.
WRITE_ATTEMPTS = 12
#: What :meth:`DynamoDbStore._decide` answers for a write to apply (a duplicate's version is >= 1).
_APPLY = 0


def _scalars(head: Optional[HeadState]) -> Tuple[int, int, bytes, int, Applied]:
    """What :func:`~agents_persist.planning.precondition` takes of a live head (None: missing or expired)."""
    if head is None:
        return (0, 0, EMPTY_DIGEST, 0, ())
    return (head.version, head.message_count, head.digest, head.generation, head.applied)


def _infos(rows: Iterable[HeadRow]) -> List[ThreadInfo]:
    """The public rows of listed or scanned head items; a malformed head is listed flagged ``corrupt``."""
    return [
        thread_info(row.thread_id, row.version, row.updated_at, row.message_count, row.expires_at)
        if not row.corrupt
        else ThreadInfo(
            row.thread_id,
            0,
            datetime.fromtimestamp(row.updated_at, timezone.utc),
            0,
            updated_timestamp=row.updated_at,
            corrupt=True,
        )
        for row in rows
    ]


def _is_forced_rewrite(write: PlannedWrite) -> bool:
    """A ``save(..., force=True)``: replaces whatever is stored, so it may replace a corrupt head too."""
    return write.expected_version is None and write.append_from is None and not write.keep_head and write.idempotency_key is None


def _raw_token(item: Optional[Item]) -> Optional[str]:
    """The write token of a (maybe malformed) head item, if it has one of the right type."""
    if item is None:
        return None
    try:
        return read_str(item, A_TOKEN)
    except (KeyError, TypeError):
        return None


class DynamoDbStore(Store):
    """The storage primitives over one DynamoDB table (see :class:`~agents_persist.DynamoDbCheckpointer`)."""

    name = "DynamoDB"
    default_max_snapshot_bytes = 16 * 1024 * 1024  # every MiB is several items to read and write

    def __init__(
        self,
        client: DynamoDbClient,
        *,
        ttl_attribute: str,
        list_index: Optional[str],
        list_shards: int,
        ttl: Optional[float],
        create_table: bool,
    ) -> None:
        self.client = client
        self.table_name = client.table_name
        self.ttl_attribute = ttl_attribute
        self.list_index = list_index
        self.list_shards = list_shards
        self.planner = WritePlanner(ttl_attribute=ttl_attribute, list_shards=list_shards, ttl=ttl)
        self._heads = HeadCache()
        if create_table:
            table.create_table(client, list_index, ttl_attribute)

    def describe(self) -> str:
        return self.client.describe()

    def close(self) -> None:
        self.client.close()

    def _after_fork_in_child(self) -> None:
        self._heads._after_fork_in_child()  # the client registered its own hook

    # ------------------------------------------------------------------ reads

    def _get_head(self, thread_id: str) -> Optional[HeadState]:
        page = self.client.call("get_item", TableName=self.table_name, Key=item_key(thread_id, HEAD_SK), ConsistentRead=True)
        item = page.get("Item")
        return None if item is None else head_from_item(item, thread_id)

    def read(self, thread_id: str) -> Optional[StoredThread]:
        found = table.read_thread(self.client, thread_id)
        self._heads.remember(thread_id, found.head, found.orphans)
        head = found.head
        if head is None or found.head_blob is None:
            return None
        return StoredThread(
            version=head.version,
            head=found.head_blob,
            messages=unpack_messages(found.stream, head.message_count, thread_id),
            message_count=head.message_count,
            digest=head.digest,
            updated_at=head.updated_at,
            expires_at=head.expires_at,
            generation=head.generation,
            applied=head.applied,
        )

    def read_messages(self, thread_id: str, start: Optional[int], stop: Optional[int]) -> Optional[StoredSlice]:
        """A consistent ``GetItem`` of the head, then one consistent ``BatchGetItem`` of the chunk items
        that hold the slice (found by the head's run index ``ri``).

        Chunk items are written once and deleted only after a later head
        stopped listing them, so chunks found are those of the head read; a
        missing one means a save moved on, and the read starts again (the
        same head twice: the thread is corrupt). Heads without an index (of
        older releases) are read whole.
        """
        seen_token: Optional[str] = None
        for _ in range(table.READ_ATTEMPTS):
            head = self._get_head(thread_id)
            self._heads.remember(thread_id, head, self._heads.orphans(thread_id))
            if head is None:
                return None
            count = head.message_count
            lo, hi = resolve_slice(start, stop, count)
            if lo == hi or is_expired(head.expires_at):
                return StoredSlice(head.version, count, lo, hi, lo, b"", 0, head.expires_at)
            wanted = self._covering(head, lo, hi)
            if wanted is None:
                return super().read_messages(thread_id, start, stop)
            chunks = table.get_chunks(self.client, thread_id, [sk for *_, keys in wanted for sk in keys])
            blobs: List[bytes] = []
            for base, end, skip, offset, keys in wanted:
                parts = [chunks.get(sk) for sk in keys]
                if any(part is None for part in parts):
                    break
                taken = take_messages(b"".join(parts), offset, end - skip, thread_id)  # type: ignore[arg-type]
                blobs += taken[max(lo - base, 0) - skip :]
            else:
                return StoredSlice(head.version, count, lo, hi, lo, blobs, hi - lo, head.expires_at)
            if head.token == seen_token:
                raise CorruptSnapshotError(
                    f"thread {thread_id!r}: a chunk item listed by version {head.version} is missing", thread_id=thread_id
                )
            seen_token = head.token
        raise BackendUnavailableError(
            f"thread {thread_id!r} was rewritten during each of {table.READ_ATTEMPTS} consistent reads; try again",
            thread_id=thread_id,
        )

    @staticmethod
    def _covering(head: HeadState, lo: int, hi: int) -> Optional[List[Tuple[int, int, int, int, List[str]]]]:
        """Per run holding part of ``lo .. hi - 1``: its first position, the (run-relative) end of what is
        read of it, the message its first chunk read begins with, that message's byte offset, and the
        chunk keys; None: read the thread whole."""
        if head.positions is None or len(head.positions) != len(head.runs):
            return None
        wanted = []
        base = 0
        for run, index in zip(head.runs, head.positions):
            if base < hi and lo < base + index.messages:
                end = min(hi - base, index.messages)
                first, last, skip, offset = covering_chunks(index, max(lo - base, 0), end)
                wanted.append((base, end, skip, offset, [chunk_sk(run.run_id, seq) for seq in range(first, last + 1)]))
            base += index.messages
        if sum(len(keys) for *_, keys in wanted) > table.BATCH_GET_MAX:
            return None
        return wanted

    def read_head(self, thread_id: str) -> Optional[StoredHead]:
        """One consistent ``GetItem`` of the head item (remembered: a save or an append starts from it)."""
        head = self._get_head(thread_id)
        self._heads.remember(thread_id, head, self._heads.orphans(thread_id))
        if head is None:
            return None
        h = head
        return StoredHead(h.version, h.message_count, h.digest, h.updated_at, h.expires_at, h.generation, h.applied)

    def read_version(self, thread_id: str) -> int:
        page = self.client.call(
            "get_item",
            TableName=self.table_name,
            Key=item_key(thread_id, HEAD_SK),
            ConsistentRead=True,
            ProjectionExpression="#v, #x",
            ExpressionAttributeNames={"#v": A_VERSION, "#x": A_EXPIRES},
        )
        item = page.get("Item")
        if item is None:
            return 0
        try:
            expires_at = read_time(item, A_EXPIRES) if A_EXPIRES in item else None
            version = read_int(item, A_VERSION, 1, MAX_VERSION)
        except (KeyError, ValueError, TypeError) as exc:
            raise corrupt(thread_id, "the head item", exc) from None
        return 0 if is_expired(expires_at) else version

    def _read_run(self, thread_id: str, run: Run) -> bytes:
        """The stream of one run; raises StaleHead if its chunks are gone (the head moved on)."""
        stream = table.read_run(self.client, thread_id, run)
        if stream is None:
            raise StaleHead(None)
        return stream

    # ------------------------------------------------------------------ writes

    def write(self, thread_id: str, write: PlannedWrite) -> Written:
        stream = pack_messages(write.messages)
        cached = self._heads.get(thread_id)
        orphans: Tuple[str, ...] = ()
        fresh = False
        head: Optional[HeadState]
        scratch = Scratch()
        try:
            with maybe_applied_once(lambda: scratch.maybe_committed, thread_id):
                try:
                    if cached is not None:
                        head, orphans = cached.head, cached.orphans
                    elif write.expected_version in (None, 0) and self.planner.fits_one_transaction(len(stream) + len(write.head)):
                        head = None  # optimistic: a new thread; a failed condition returns the real head
                    else:
                        head, fresh = self._get_head(thread_id), True
                    return self._write(thread_id, write, head, fresh, stream, orphans, scratch)
                except CorruptSnapshotError:
                    if not _is_forced_rewrite(write) or scratch.maybe_committed:
                        raise
                # A forced save replaces a corrupt thread: remove every item it has, then write it anew.
                logger.warning("thread %r is corrupt: a forced save deletes its items and writes it anew", thread_id)
                self._delete(thread_id, [])
                return self._write(thread_id, write, None, True, stream, (), scratch)
        finally:
            if not scratch.committed and scratch.written:
                self._collect(thread_id, scratch.written.values(), ())

    def _write(
        self,
        thread_id: str,
        write: PlannedWrite,
        head: Optional[HeadState],
        fresh: bool,
        stream: bytes,
        orphans: Tuple[str, ...],
        scratch: Scratch,
    ) -> Written:
        """The attempts of :meth:`write`, starting from ``head`` (``fresh``: just read, not cached)."""
        now = write.updated_at
        for _ in range(WRITE_ATTEMPTS):
            live = head is not None and not is_expired(head.expires_at, now)
            verdict = self._decide(thread_id, write, head if live else None, fresh)
            if verdict is None:
                head, fresh = self._get_head(thread_id), True  # the cached head may be stale
                continue
            if verdict != _APPLY:
                assert head is not None  # only a live head has applied keys
                return Written(verdict, head.generation, duplicate=True)
            plan = None
            try:
                planned = self._keeping_head(thread_id, write, head, fresh) if write.keep_head and head and live else write
                if planned is None:
                    head, fresh = self._get_head(thread_id), True  # the cached head lacks its blob
                    continue
                read_run = partial(self._read_run, thread_id)
                plan = self.planner.plan(thread_id, planned, head, live, stream, scratch, read_run)
                writes.commit(self.client, thread_id, plan, head, live, now, scratch)
            except StaleHead as stale:
                head = head_from_item(stale.item, thread_id) if stale.item else self._get_head(thread_id)
                fresh = True
                scratch.forget_voided(head)
                if plan is None or head is None or head.token != plan.head.token:
                    continue  # re-decide on the head found: it may make this write a conflict or a duplicate
                # botocore retried a request whose first attempt had committed (its
                # response was lost): the head found is our own write, so this save landed.
            scratch.committed = True
            self._heads.remember(thread_id, plan.head)
            kept = {run.run_id for run in plan.head.all_runs()}
            unused = [run for run in scratch.written.values() if run.run_id not in kept]
            self._collect(thread_id, plan.garbage + unused, orphans)
            return Written(plan.head.version, plan.head.generation)
        raise ConflictError(
            f"thread {thread_id!r}: gave up after {WRITE_ATTEMPTS} attempts, other writers kept changing it",
            thread_id=thread_id,
            expected_version=write.expected_version,
            actual_version=head.version if head is not None else 0,
        )

    def _decide(self, thread_id: str, write: PlannedWrite, live: Optional[HeadState], fresh: bool) -> Optional[int]:
        """Check :func:`~agents_persist.planning.precondition` on the live head ``live`` (None: missing or expired).

        Returns ``_APPLY`` (0), or the version a duplicate's idempotency key
        produced, or None if the check fails on a cached head (read it
        again). On a ``fresh`` head a failure raises ``ConflictError`` or
        ``PrefixMismatch``. A valid append onto a log that needs packing anew
        (too many runs, chunk TTLs too short) also raises ``PrefixMismatch``:
        the checkpointer then plans a rewrite.
        """
        scalars = _scalars(live)
        decision = precondition(write, *scalars)
        repack = (
            decision is Decision.APPLY
            and live is not None
            and write.append_from is not None
            and self.planner.needs_rewrite(live, write)
        )
        if decision is Decision.APPLY and not repack:
            return _APPLY
        if not fresh:
            return None
        duplicate = enforce_precondition(thread_id, write, *scalars)
        if duplicate is not None:
            return duplicate
        raise PrefixMismatch(thread_id)

    def _keeping_head(self, thread_id: str, write: PlannedWrite, head: HeadState, fresh: bool) -> Optional[PlannedWrite]:
        """``write`` carrying the head blob ``head`` stores (``keep_head``); None if a cached head lacks it.

        The blob belongs to the head's write token, on which the commit is
        conditional; a spilled blob's run is read (``StaleHead`` if it is gone).
        """
        if head.inline_head is not None:
            blob = head.inline_head
        elif head.head_run is not None:
            blob = self._read_run(thread_id, head.head_run)
        elif fresh:
            raise CorruptSnapshotError(f"thread {thread_id!r}: the head item holds no head", thread_id=thread_id)
        else:
            return None
        return msgspec.structs.replace(write, head=blob)

    def _collect(self, thread_id: str, runs: Iterable[Run], extra_keys: Iterable[str]) -> None:
        """Delete chunk items no committed head references any more; failures only cost space."""
        keys = sorted(set(run_keys(runs)) | set(extra_keys))
        if not keys:
            return
        try:
            writes.batch_write(self.client, thread_id, [{"DeleteRequest": {"Key": item_key(thread_id, sk)}} for sk in keys])
        except AgentsPersistError as exc:
            logger.warning("could not delete %d stale chunk items of thread %r: %s", len(keys), thread_id, exc)

    def _delete_head_if_unchanged(self, thread_id: str, head: Optional[HeadState], raw: Optional[Item] = None) -> bool:
        """Delete the head item if it is still ``head`` (its write token); False if it was saved meanwhile.

        A malformed head (``head`` None) is deleted if its token is still the
        one in ``raw``, or if it still has none.
        """
        from botocore.exceptions import ClientError

        condition: Dict[str, Any] = {"ExpressionAttributeNames": {"#w": A_TOKEN}}
        token = head.token if head is not None else _raw_token(raw)
        if token is not None:
            condition["ConditionExpression"] = "#w = :w"
            condition["ExpressionAttributeValues"] = {":w": {"S": token}}
        elif raw is not None and A_TOKEN in raw:
            condition["ConditionExpression"] = "attribute_exists(#w)"  # a token of the wrong type: any head will do
        else:
            condition["ConditionExpression"] = "attribute_not_exists(#w)"
        try:
            self.client.call(
                "delete_item",
                expect=("ConditionalCheckFailedException",),
                TableName=self.table_name,
                Key=item_key(thread_id, HEAD_SK),
                **condition,
            )
        except ClientError:
            return False
        return True

    def delete(self, thread_id: str) -> bool:
        landed: List[bool] = []  # non-empty once a delete request may have been applied
        with maybe_applied_once(lambda: bool(landed), thread_id):
            return self._delete(thread_id, landed)

    def _delete(self, thread_id: str, landed: List[bool]) -> bool:
        """Delete the head if unchanged, then every item of the thread no live writer may still commit.

        Works over any garbage: a malformed head is deleted on the token (or
        type) it has; items whose sort keys are not ours are deleted too.
        Only young runs no head registers are left, in case a writer (of an
        older release, or creating the thread) is about to commit them.
        """
        known_orphans = self._heads.orphans(thread_id)
        names = {"#pk": PK, "#sk": SK, "#w": A_TOKEN, "#v": A_VERSION, "#x": A_EXPIRES, "#r": A_RUNS, "#hr": A_HEAD_RUN}
        names.update({"#pd": A_PENDING, "#gc": A_GARBAGE})
        for _ in range(WRITE_ATTEMPTS):
            items = table.query_partition(
                self.client, thread_id, ProjectionExpression=", ".join(names), ExpressionAttributeNames=names
            )
            sort_keys = [item[SK].get("S", "") for item in items]
            raw_head = next((item for item in items if item[SK].get("S") == HEAD_SK), None)
            try:
                head = head_from_item(raw_head, thread_id) if raw_head is not None else None
            except CorruptSnapshotError:
                head = None
            now = time.time()
            others = [sk for sk in sort_keys if sk != HEAD_SK]
            debris = [sk for sk in others if not is_chunk_sk(sk)]
            if raw_head is None:
                self._heads.remember(thread_id, None)
                self._collect(thread_id, [], [*stale_chunks(others, None, now), *debris, *known_orphans])
                return False
            if not self._delete_head_if_unchanged(thread_id, head, raw_head):
                if self.client.maybe_reached():
                    landed.append(True)
                if self._raw_head(thread_id) is not None:
                    continue  # saved meanwhile: delete what is there now
            # Deleted: by us, or by our own request retried by botocore after a lost response.
            self._heads.remember(thread_id, None)
            runs = [*head.all_runs(), *head.pending, *head.garbage] if head is not None else []
            listed = {run.run_id for run in runs}
            unlisted = [sk for sk in others if is_chunk_sk(sk) and run_of_sk(sk) not in listed]
            self._collect(thread_id, runs, [*stale_chunks(unlisted, None, now), *debris, *known_orphans])
            if head is None:
                return True  # a corrupt thread existed
            return not is_expired(head.expires_at, now)
        raise ConflictError(f"thread {thread_id!r}: other writers kept saving it during delete", thread_id=thread_id)

    def _raw_head(self, thread_id: str) -> Optional[Item]:
        page = self.client.call("get_item", TableName=self.table_name, Key=item_key(thread_id, HEAD_SK), ConsistentRead=True)
        item: Optional[Item] = page.get("Item")
        return item

    # ------------------------------------------------------------------ listing and expiry

    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        rows: List[HeadRow]
        if self.list_index is None:
            rows = table.scan_heads(self.client, prefix, now, expired=False)
        else:
            rows = []
            for shard in range(self.list_shards):
                rows += table.list_shard(self.client, self.list_index, shard, prefix, limit, after, now)
        if after is not None:
            rows = [row for row in rows if (row.updated_at, row.thread_id) < after]
        rows.sort(key=lambda row: (row.updated_at, row.thread_id), reverse=True)
        return _infos(rows[:limit])

    def scan(self, prefix: Optional[str], after: Optional[str], limit: int, now: float) -> List[ThreadInfo]:
        """Up to ``limit`` live threads in the table's own ``Scan`` order, strictly after thread ``after`` in it.

        That order is DynamoDB's (by a hash of the thread ID), not by ID: a
        ``Scan`` cannot walk the partitions in key order. It is stable all
        the same (a save rewrites a head item in place; a thread created
        again lands where it was), and ``after`` resumes the ``Scan`` right
        after that thread's head item (as ``ExclusiveStartKey``, which need
        not exist any more), so paging by the last thread ID returned sees
        every thread that exists for the whole walk exactly once.
        """
        return _infos(table.scan_heads(self.client, prefix, now, expired=False, after=after, limit=limit))

    def purge(self, now: float) -> int:
        purged = 0
        for row in table.scan_heads(self.client, None, now, expired=True):
            if row.corrupt:
                continue  # not known to be expired; load, save(force=True) and delete report or repair it
            try:
                head = self._get_head(row.thread_id)
            except CorruptSnapshotError as exc:
                logger.warning("purge_expired skips thread %r: %s", row.thread_id, exc)
                continue
            if head is None or not is_expired(head.expires_at, now):
                continue
            if not self._delete_head_if_unchanged(row.thread_id, head):
                continue  # saved again meanwhile
            self._heads.remember(row.thread_id, None)
            self._collect(row.thread_id, head.all_runs(), ())
            purged += 1
        return purged
