"""DynamoDbStore: threads in one DynamoDB table, committed by one conditional write of the head item.

The layout is in :mod:`.layout`, the planning and sending of a save's items
in :mod:`.writes`, table set-up and listing reads in :mod:`.table`, the
boto3 client in :mod:`.client`. This module holds the store's primitives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from functools import partial
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ...codec import EMPTY_DIGEST
from ...errors import AgentsPersistError, BackendUnavailableError, ConflictError, CorruptSnapshotError
from ...models import ThreadInfo
from ...paging import Position, thread_info
from ...planning import Decision, PlannedWrite, PrefixMismatch, StoredThread, enforce_precondition, is_expired, precondition
from ...store import Store
from . import table, writes
from .client import DynamoDbClient
from .layout import (
    A_EXPIRES,
    A_HEAD_RUN,
    A_PAYLOAD,
    A_RUNS,
    A_TOKEN,
    A_VERSION,
    HEAD_SK,
    PK,
    SK,
    HeadState,
    Item,
    Run,
    chunk_prefix,
    head_from_item,
    item_key,
    pack_messages,
    run_keys,
    stale_chunks,
    unpack_messages,
)
from .table import HeadRow
from .writes import Scratch, StaleHead, WritePlanner

__all__ = ["DynamoDbStore"]

logger = logging.getLogger(__name__)

#: Conditional-write attempts of one save before giving up with ConflictError.
WRITE_ATTEMPTS = 12
#: Consistent reads of one load before giving up while the thread keeps being rewritten.
READ_ATTEMPTS = 12
HEAD_CACHE_SIZE = 4096


class _Cached(NamedTuple):
    head: Optional[HeadState]
    orphans: Tuple[str, ...]


class HeadCache:
    """The heads (and known orphaned chunk keys) this process last saw, a hint saves start from.

    Never trusted for correctness: every save is conditional on the head's
    write token, and a failed condition returns the real head.
    """

    def __init__(self, size: int = HEAD_CACHE_SIZE) -> None:
        self._size = size
        self._heads: "OrderedDict[str, _Cached]" = OrderedDict()
        self._mutex = threading.Lock()

    def get(self, thread_id: str) -> Optional[_Cached]:
        """What was last seen of ``thread_id``, if anything."""
        with self._mutex:
            return self._heads.get(thread_id)

    def remember(self, thread_id: str, head: Optional[HeadState], orphans: Sequence[str] = ()) -> None:
        """Keep ``head`` (without its inline head blob) and the orphaned chunk keys found."""
        if head is not None and head.inline_head is not None:
            head = head._replace(inline_head=None)
        with self._mutex:
            self._heads[thread_id] = _Cached(head, tuple(orphans))
            self._heads.move_to_end(thread_id)
            if len(self._heads) > self._size:
                self._heads.popitem(last=False)

    def _after_fork_in_child(self) -> None:
        # Keep the contents (still valid hints), not a mutex a parent thread may hold.
        self._mutex = threading.Lock()


class DynamoDbStore(Store):
    """The storage primitives over one DynamoDB table (see :class:`~agents_persist.DynamoDbCheckpointer`)."""

    name = "DynamoDB"

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
        seen_token: Optional[str] = None
        for _ in range(READ_ATTEMPTS):
            head_item: Optional[Item] = None
            chunks: Dict[str, bytes] = {}
            for item in table.query_partition(self.client, thread_id):
                sk = item[SK]["S"]
                if sk == HEAD_SK:
                    head_item = item
                elif A_PAYLOAD in item:
                    chunks[sk] = item[A_PAYLOAD]["B"]
            now = time.time()
            head = head_from_item(head_item, thread_id) if head_item is not None else None
            orphans = stale_chunks(chunks, head, now)
            if head is None or is_expired(head.expires_at, now):
                self._heads.remember(thread_id, head, orphans)
                return None
            try:
                stream = b"".join([chunks[sk] for sk in run_keys(head.runs)])
                if head.inline_head is not None:
                    head_blob = head.inline_head
                elif head.head_run is not None:
                    head_blob = b"".join([chunks[sk] for sk in run_keys([head.head_run])])
                else:
                    raise CorruptSnapshotError(f"thread {thread_id!r}: the head item holds no head", thread_id=thread_id)
            except KeyError as missing:
                # Read committed, not snapshot: a concurrent save may have replaced the head and
                # removed its old chunks between our pages. The same head twice means real damage.
                if head.token == seen_token:
                    raise CorruptSnapshotError(
                        f"thread {thread_id!r}: chunk item {missing.args[0]!r} listed by version {head.version} is missing",
                        thread_id=thread_id,
                    ) from None
                seen_token = head.token
                continue
            messages = unpack_messages(stream, head.message_count, thread_id)
            self._heads.remember(thread_id, head, orphans)
            return StoredThread(
                version=head.version,
                head=head_blob,
                messages=messages,
                message_count=head.message_count,
                digest=head.digest,
                updated_at=head.updated_at,
                expires_at=head.expires_at,
            )
        raise BackendUnavailableError(
            f"thread {thread_id!r} was rewritten during each of {READ_ATTEMPTS} consistent reads; try again",
            thread_id=thread_id,
        )

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
        expires_at = float(item[A_EXPIRES]["N"]) if A_EXPIRES in item else None
        return 0 if is_expired(expires_at) else int(item[A_VERSION]["N"])

    def _read_run(self, thread_id: str, run: Run) -> bytes:
        """The stream of one run; raises StaleHead if its chunks are gone (the head moved on)."""
        items = table.query_partition(
            self.client,
            thread_id,
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :run)",
            ExpressionAttributeNames={"#sk": SK},
            ExpressionAttributeValues={":run": {"S": chunk_prefix(run.run_id)}},
        )
        chunks = {item[SK]["S"]: item[A_PAYLOAD]["B"] for item in items if A_PAYLOAD in item}
        try:
            return b"".join([chunks[sk] for sk in run_keys([run])])
        except KeyError:
            raise StaleHead(None) from None

    # ------------------------------------------------------------------ writes

    def write(self, thread_id: str, write: PlannedWrite) -> int:
        now = write.updated_at
        stream = pack_messages(write.messages)
        cached = self._heads.get(thread_id)
        orphans: Tuple[str, ...] = ()
        fresh = False
        head: Optional[HeadState]
        if cached is not None:
            head, orphans = cached.head, cached.orphans
        elif write.expected_version in (None, 0) and self.planner.fits_one_transaction(len(stream) + len(write.head)):
            head = None  # optimistic: a new thread; a failed condition returns the real head
        else:
            head, fresh = self._get_head(thread_id), True
        scratch = Scratch()
        try:
            for _ in range(WRITE_ATTEMPTS):
                live = head is not None and not is_expired(head.expires_at, now)
                if not self._may_apply(thread_id, write, head if live else None, fresh):
                    head, fresh = self._get_head(thread_id), True  # the cached head may be stale
                    continue
                plan = None
                try:
                    read_run = partial(self._read_run, thread_id)
                    plan = self.planner.plan(thread_id, write, head, live, stream, scratch, read_run)
                    writes.commit(self.client, thread_id, plan, head, live, now, scratch)
                except StaleHead as stale:
                    head = head_from_item(stale.item, thread_id) if stale.item else self._get_head(thread_id)
                    fresh = True
                    if plan is None or head is None or head.token != plan.head.token:
                        continue
                    # botocore retried a request whose first attempt had committed (its
                    # response was lost): the head found is our own write, so this save landed.
                scratch.committed = True
                self._heads.remember(thread_id, plan.head)
                kept = {run.run_id for run in plan.head.all_runs()}
                unused = [run for run in scratch.written.values() if run.run_id not in kept]
                self._collect(thread_id, plan.garbage + unused, orphans)
                return plan.head.version
            raise ConflictError(
                f"thread {thread_id!r}: gave up after {WRITE_ATTEMPTS} attempts, other writers kept changing it",
                thread_id=thread_id,
                expected_version=write.expected_version,
                actual_version=head.version if head is not None else 0,
            )
        finally:
            if not scratch.committed and scratch.written:
                self._collect(thread_id, scratch.written.values(), ())

    def _may_apply(self, thread_id: str, write: PlannedWrite, live: Optional[HeadState], fresh: bool) -> bool:
        """Check :func:`~agents_persist.planning.precondition` on the live head ``live`` (None: missing or expired).

        False if it fails on a cached head (read it again); on a ``fresh``
        one raise ``ConflictError`` or ``PrefixMismatch``. A valid append
        onto a log that needs packing anew (too many runs, chunk TTLs too
        short) also raises ``PrefixMismatch``: the checkpointer then
        plans a rewrite.
        """
        scalars = (live.version, live.message_count, live.digest) if live is not None else (0, 0, EMPTY_DIGEST)
        decision = precondition(write, *scalars)
        repack = (
            decision is Decision.APPLY
            and live is not None
            and write.append_from is not None
            and self.planner.needs_rewrite(live, write)
        )
        if decision is Decision.APPLY and not repack:
            return True
        if not fresh:
            return False
        enforce_precondition(thread_id, write, *scalars)
        raise PrefixMismatch(thread_id)

    def _collect(self, thread_id: str, runs: Iterable[Run], extra_keys: Iterable[str]) -> None:
        """Delete chunk items no committed head references any more; failures only cost space."""
        keys = sorted(set(run_keys(runs)) | set(extra_keys))
        if not keys:
            return
        try:
            writes.batch_write(self.client, thread_id, [{"DeleteRequest": {"Key": item_key(thread_id, sk)}} for sk in keys])
        except AgentsPersistError as exc:
            logger.warning("could not delete %d stale chunk items of thread %r: %s", len(keys), thread_id, exc)

    def _delete_head_if_unchanged(self, thread_id: str, head: HeadState) -> bool:
        """Delete the head item if it is still ``head`` (its write token); False if it was saved meanwhile."""
        from botocore.exceptions import ClientError

        try:
            self.client.call(
                "delete_item",
                expect=("ConditionalCheckFailedException",),
                TableName=self.table_name,
                Key=item_key(thread_id, HEAD_SK),
                ConditionExpression="#w = :w",
                ExpressionAttributeNames={"#w": A_TOKEN},
                ExpressionAttributeValues={":w": {"S": head.token}},
            )
        except ClientError:
            return False
        return True

    def delete(self, thread_id: str) -> bool:
        cached = self._heads.get(thread_id)
        known_orphans = cached.orphans if cached is not None else ()
        names = {"#pk": PK, "#sk": SK, "#w": A_TOKEN, "#v": A_VERSION, "#x": A_EXPIRES, "#r": A_RUNS, "#hr": A_HEAD_RUN}
        for _ in range(WRITE_ATTEMPTS):
            items = table.query_partition(
                self.client, thread_id, ProjectionExpression=", ".join(names), ExpressionAttributeNames=names
            )
            head_items = [item for item in items if item[SK]["S"] == HEAD_SK]
            head = head_from_item(head_items[0], thread_id) if head_items else None
            now = time.time()
            stale = stale_chunks([item[SK]["S"] for item in items if item[SK]["S"] != HEAD_SK], head, now)
            if head is None:
                self._heads.remember(thread_id, None)
                self._collect(thread_id, [], [*stale, *known_orphans])
                return False
            if not self._delete_head_if_unchanged(thread_id, head) and self._get_head(thread_id) is not None:
                continue  # saved meanwhile: delete what is there now
            # Deleted: by us, or by our own request retried by botocore after a lost response.
            self._heads.remember(thread_id, None)
            self._collect(thread_id, head.all_runs(), [*stale, *known_orphans])
            return not is_expired(head.expires_at, now)
        raise ConflictError(f"thread {thread_id!r}: other writers kept saving it during delete", thread_id=thread_id)

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
        return [
            thread_info(row.thread_id, row.version, row.updated_at, row.message_count, row.expires_at) for row in rows[:limit]
        ]

    def purge(self, now: float) -> int:
        purged = 0
        for row in table.scan_heads(self.client, None, now, expired=True):
            head = self._get_head(row.thread_id)
            if head is None or not is_expired(head.expires_at, now):
                continue
            if not self._delete_head_if_unchanged(row.thread_id, head):
                continue  # saved again meanwhile
            self._heads.remember(row.thread_id, None)
            self._collect(row.thread_id, head.all_runs(), ())
            purged += 1
        return purged
