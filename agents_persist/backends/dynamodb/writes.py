"""Planning and sending the items of one DynamoDB save.

:class:`WritePlanner` lays out a :class:`~agents_persist.planning.PlannedWrite`
as chunk items in runs plus a new head item (:class:`Plan`); :func:`commit`
sends it: one ``TransactWriteItems`` when it fits, else the fresh runs by
``BatchWriteItem`` first and then the head by one conditional ``PutItem``.
Either way the head's condition on its write token is the atomic guard:
:class:`StaleHead` reports that the head changed under the plan.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from functools import partial
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from ...errors import AgentsPersistError, BackendUnavailableError, SnapshotTooLargeError
from ...planning import PlannedWrite, record_applied
from . import layout
from .client import DynamoDbClient, error_code, wait_before_unprocessed_retry
from .layout import (
    A_EXPIRES,
    A_PAYLOAD,
    A_PENDING,
    A_TOKEN,
    CHUNK_PAYLOAD_BYTES,
    PK,
    SK,
    HeadState,
    Item,
    Run,
    RunIndex,
    checked_item,
    chunk_sk,
    extend_index,
    head_item,
    item_size,
    new_run_id,
    pending_entry,
    run_created_at,
    run_index,
    run_of_sk,
    shard_of,
    split_payload,
)

__all__ = ["WritePlanner", "Plan", "Scratch", "StaleHead", "commit", "register", "batch_write", "head_condition"]

#: AWS limits of one TransactWriteItems call are 100 items and 4 MB; the library stays below.
TRANSACTION_MAX_ITEMS = 100
TRANSACTION_MAX_BYTES = 3_500_000
#: A head item bigger than this moves its encoded head into a run of chunk items.
HEAD_ITEM_TARGET_BYTES = 350_000
#: Appends add chunk items to the thread's open run; at this many it is compacted into one sealed run.
OPEN_RUN_MAX_CHUNKS = 32
#: A log of more runs than this is rewritten whole on the next save (packed into few items).
MAX_RUNS = 64
#: BatchWriteItem takes at most 25 requests.
BATCH_WRITE_MAX = 25
BATCH_WRITE_ROUNDS = 10
TRANSACTION_CONFLICT_RETRIES = 5

_CONDITION_FAILED = "ConditionalCheckFailedException"
_TRANSACTION_CANCELED = "TransactionCanceledException"
_TRANSACTION_CONFLICT = "TransactionConflictException"


class StaleHead(Exception):
    """The head changed under a planned write; carries the current head item if DynamoDB returned it."""

    def __init__(self, item: Optional[Item]) -> None:
        super().__init__("head changed")
        self.item = item


class Plan(NamedTuple):
    """One save laid out as items."""

    items: List[Item]  # chunk items still to write
    head_item: Item
    head: HeadState  # the head as it will be stored
    garbage: List[Run]  # runs no longer referenced once this commits
    transactional: bool  # items and head fit one TransactWriteItems
    new_runs: List[Run]  # fresh runs among ``items`` (may be written before the head)


class Scratch:
    """Runs one save wrote outside a transaction; reused by its retries, deleted unless committed.

    ``maybe_committed`` is set once a commit request may have been applied
    although its call ended in a refusal (an earlier attempt's answer was
    lost): an error the save raises later must then say ``maybe_applied``.
    """

    def __init__(self) -> None:
        self.reusable: Dict[str, Tuple[bytes, Run, List[Item]]] = {}
        self.written: Dict[str, Run] = {}
        self.committed = False
        self.maybe_committed = False
        #: The head token the runs in ``written`` are registered on (None: not registered, a new thread's).
        self.registered_on: Optional[str] = None

    def forget_voided(self, head: Optional[HeadState]) -> None:
        """Stop reusing runs registered on a head that is gone: its successor's writer deletes them."""
        if self.registered_on is not None and (head is None or head.token != self.registered_on):
            self.reusable.clear()
            self.registered_on = None

    def run_for(self, role: str, data: bytes, make: Callable[[], Tuple[Run, List[Item]]]) -> Tuple[Run, List[Item]]:
        """The run an earlier attempt of this save made for ``data`` in ``role`` ("data", "head"), else ``make()``."""
        found = self.reusable.get(role)
        if found is None or found[0] != data:
            found = (data, *make())
            self.reusable[role] = found
        return found[1], found[2]


class WritePlanner:
    """Lays out saves of one table's threads as chunk items and head items.

    Args:
        ttl_attribute: The table's TTL attribute.
        list_shards: Listing-index shards the heads are spread over.
        ttl: The checkpointer's ``ttl``; chunk items outlive the head by one more.
    """

    #: Stream bytes per chunk item and the library's transaction budget; tests shrink them to get
    #: many items, and the large-write path, from little data.
    chunk_payload_bytes = CHUNK_PAYLOAD_BYTES
    transaction_max_bytes = TRANSACTION_MAX_BYTES

    def __init__(self, *, ttl_attribute: str, list_shards: int, ttl: Optional[float]) -> None:
        self.ttl_attribute = ttl_attribute
        self.list_shards = list_shards
        self.ttl = ttl

    def fits_one_transaction(self, size: int) -> bool:
        """Whether ``size`` bytes of new data are surely small enough for one transaction."""
        return size < self.transaction_max_bytes // 2

    def needs_rewrite(self, head: HeadState, write: PlannedWrite) -> bool:
        """Whether an append must become a rewrite: too many runs, or chunk TTLs no longer cover the thread."""
        if not head.runs:
            return False
        if len(head.runs) >= MAX_RUNS:
            return True
        if write.expires_at is None:
            return head.keep_until is not None
        return head.keep_until is None or head.keep_until < write.expires_at

    def chunk_ttl(self, expires_at: Optional[float]) -> Optional[int]:
        """TTL of chunk items: one ``ttl`` past the head's, so DynamoDB never drops a live thread's chunks."""
        if expires_at is None or self.ttl is None:
            return None
        return math.ceil(expires_at + self.ttl)

    def chunk_item(self, thread_id: str, run_id: str, seq: int, payload: bytes, chunk_ttl: Optional[int]) -> Item:
        """Chunk ``seq`` of run ``run_id``, size-checked."""
        item: Item = {PK: {"S": thread_id}, SK: {"S": chunk_sk(run_id, seq)}, A_PAYLOAD: {"B": payload}}
        if chunk_ttl is not None:
            item[self.ttl_attribute] = {"N": str(chunk_ttl)}
        return checked_item(item, thread_id)

    def new_run(self, thread_id: str, data: bytes, now: float, chunk_ttl: Optional[int]) -> Tuple[Run, List[Item]]:
        """A fresh run holding ``data``, and its chunk items."""
        run_id = new_run_id(now)
        pieces = split_payload(data, self.chunk_payload_bytes)
        return Run(run_id, len(pieces)), [
            self.chunk_item(thread_id, run_id, seq, piece, chunk_ttl) for seq, piece in enumerate(pieces)
        ]

    def head_item(self, thread_id: str, head: HeadState) -> Item:
        """The head item that stores ``head``."""
        return head_item(thread_id, head, ttl_attribute=self.ttl_attribute, shard=shard_of(thread_id, self.list_shards))

    def plan(
        self,
        thread_id: str,
        write: PlannedWrite,
        head: Optional[HeadState],
        live: bool,
        stream: bytes,
        scratch: Scratch,
        read_run: Callable[[Run], bytes],
        allow_open: bool = True,
    ) -> Plan:
        """Lay out one save: the chunk items to write, the new head, and the runs that become garbage.

        Appends go to the thread's *open* run (new keys of an open run are
        only ever written inside a transaction, so they never pre-exist);
        everything else goes to fresh runs, which are invisible until the
        head lists them and so may be written before the head commits.
        ``read_run`` returns a run's stream, for compacting a full open run.
        """
        now = write.updated_at
        chunk_ttl = self.chunk_ttl(write.expires_at)
        garbage: List[Run] = []
        items: List[Item] = []
        new_runs: List[Run] = []
        uses_open = False
        size = self.chunk_payload_bytes
        index: Optional[List[RunIndex]]
        if head is not None and live and write.append_from is not None:
            runs, open_last = list(head.runs), head.open_run
            index = list(head.positions) if head.positions is not None and len(head.positions) == len(runs) else None
            # The earliest chunk TTL: needs_rewrite made sure both are None or both set when runs exist.
            keep_until = (
                chunk_ttl if not runs or head.keep_until is None or chunk_ttl is None else min(head.keep_until, chunk_ttl)
            )
            last = runs[-1] if runs else None
            pieces = split_payload(stream, self.chunk_payload_bytes)
            small = len(stream) <= self.transaction_max_bytes // 2 and len(pieces) <= OPEN_RUN_MAX_CHUNKS
            if not stream:
                pass
            elif allow_open and small and open_last and last is not None:
                if last.chunks + len(pieces) <= OPEN_RUN_MAX_CHUNKS:
                    items += [
                        self.chunk_item(thread_id, last.run_id, last.chunks + i, piece, chunk_ttl)
                        for i, piece in enumerate(pieces)
                    ]
                    runs[-1] = Run(last.run_id, last.chunks + len(pieces))
                    uses_open = True
                    if index is not None:
                        index[-1] = extend_index(index[-1], stream, size)
                else:
                    # The open run is full: compact it and the new messages into one sealed run.
                    data = read_run(last) + stream
                    run, run_items = self.new_run(thread_id, data, now, chunk_ttl)
                    items += run_items
                    new_runs.append(run)
                    garbage.append(last)
                    runs[-1], open_last = run, False
                    if index is not None:
                        index[-1] = run_index(data, size)
            elif allow_open and small:
                run, run_items = self.new_run(thread_id, stream, now, chunk_ttl)
                items += run_items
                runs.append(run)
                open_last = uses_open = True
                if index is not None:
                    index.append(run_index(stream, size))
            else:
                run, run_items = self._data_run(thread_id, stream, now, chunk_ttl, scratch)
                items += run_items
                new_runs.append(run)
                runs.append(run)
                open_last = False
                if index is not None:
                    index.append(run_index(stream, size))
        else:
            if head is not None:
                garbage += head.runs
            runs, open_last, keep_until, index = [], False, chunk_ttl, []
            if stream:
                run, run_items = self._data_run(thread_id, stream, now, chunk_ttl, scratch)
                items += run_items
                new_runs.append(run)
                runs.append(run)
                index.append(run_index(stream, size))
        if head is not None and head.head_run is not None:
            garbage.append(head.head_run)
        # Runs other writers registered on ``head`` can never commit once this does: void them.
        mine = {run.run_id for run in new_runs} | {run.run_id for run in scratch.written.values()}
        voided = [run for run in head.pending if run.run_id not in mine] if head is not None else []

        version = (head.version if head is not None and live else 0) + 1
        new_head = HeadState(
            token=secrets.token_hex(8),
            version=version,
            message_count=write.message_count,
            digest=write.digest,
            updated_at=write.updated_at,
            expires_at=write.expires_at,
            runs=tuple(runs),
            open_run=open_last,
            keep_until=keep_until if runs else None,
            head_run=None,
            inline_head=write.head,
            generation=head.generation if head is not None and live else write.new_generation,
            applied=record_applied(head.applied if head is not None and live else (), write.idempotency_key, version),
            garbage=tuple(garbage + voided),
            positions=tuple(index) if index is not None else None,
        )
        head_item = self.head_item(thread_id, new_head)
        if item_size(head_item) > HEAD_ITEM_TARGET_BYTES:
            # The encoded head is too big to sit inline: it gets a run of its own, rewritten per save.
            head_run, run_items = scratch.run_for(
                "head", write.head, partial(self.new_run, thread_id, write.head, now, chunk_ttl)
            )
            items += run_items
            new_runs.append(head_run)
            new_head = new_head._replace(head_run=head_run, inline_head=None)
            head_item = self.head_item(thread_id, new_head)
        checked_item(head_item, thread_id)
        to_write = [item for item in items if run_of_sk(item[SK]["S"]) not in scratch.written]
        transactional = len(to_write) + 1 <= TRANSACTION_MAX_ITEMS and (
            sum(item_size(item) for item in to_write) + item_size(head_item) <= self.transaction_max_bytes
        )
        if not transactional and uses_open:
            return self.plan(thread_id, write, head, live, stream, scratch, read_run, allow_open=False)
        # Deleted after the commit: what it unreferences, and again the previous commit's (its writer may have died).
        previous = [run for run in head.garbage if run.run_id not in mine] if head is not None else []
        return Plan(to_write, head_item, new_head, garbage + voided + previous, transactional, new_runs)

    def _data_run(
        self, thread_id: str, stream: bytes, now: float, chunk_ttl: Optional[int], scratch: Scratch
    ) -> Tuple[Run, List[Item]]:
        """A sealed run holding exactly this save's new messages, reused by the save's retries."""
        return scratch.run_for("data", stream, partial(self.new_run, thread_id, stream, now, chunk_ttl))


def head_condition(base: Optional[HeadState], live: bool, now: float) -> Tuple[str, Dict[str, str], Dict[str, Dict[str, str]]]:
    """The head write's condition: exactly the head the plan was built on is still there.

    The token pins the head; the size of its registered runs ``pd`` (which
    only grow while the token stays) pins which runs this commit voids.
    """
    if base is None:
        return "attribute_not_exists(#sk)", {"#sk": SK}, {}
    values = {":w": {"S": base.token}}
    names = {"#w": A_TOKEN, "#pd": A_PENDING}
    if base.pending:
        condition = "#w = :w AND size(#pd) = :pn"
        values[":pn"] = {"N": str(len(base.pending))}
    else:
        condition = "#w = :w AND attribute_not_exists(#pd)"
    if not live:
        return condition, names, values
    values[":now"] = {"N": repr(now)}
    names["#x"] = A_EXPIRES
    return condition + " AND (attribute_not_exists(#x) OR #x > :now)", names, values


def register(client: DynamoDbClient, thread_id: str, base: HeadState, runs: List[Run], scratch: Scratch) -> HeadState:
    """Add ``runs`` to ``base``'s registered runs before writing them outside a transaction; the head as it now is.

    A crashed writer's runs are then known to the next commit, which voids
    and deletes them; raises :class:`StaleHead` if the head moved on.
    """
    from botocore.exceptions import ClientError

    entries = sorted({pending_entry(run) for run in runs} | {pending_entry(run) for run in base.pending})
    try:
        client.call(
            "update_item",
            expect=(_CONDITION_FAILED,),
            TableName=client.table_name,
            Key={PK: {"S": thread_id}, SK: {"S": layout.HEAD_SK}},
            UpdateExpression="ADD #pd :runs",
            ConditionExpression="#w = :w",
            ExpressionAttributeNames={"#pd": A_PENDING, "#w": A_TOKEN},
            ExpressionAttributeValues={":runs": {"SS": [pending_entry(run) for run in runs]}, ":w": {"S": base.token}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        raise StaleHead(exc.response.get("Item")) from None
    scratch.registered_on = base.token
    known = {pending_entry(run): run for run in base.pending + tuple(runs)}
    return base._replace(pending=tuple(known[entry] for entry in entries))


def commit(
    client: DynamoDbClient, thread_id: str, plan: Plan, base: Optional[HeadState], live: bool, now: float, scratch: Scratch
) -> None:
    """Write ``plan``; raises :class:`StaleHead` if the head is no longer ``base``."""
    from botocore.exceptions import ClientError

    if plan.items and not plan.transactional and base is not None:
        base = register(client, thread_id, base, plan.new_runs, scratch)
    condition, names, values = head_condition(base, live, now)
    head_put: Dict[str, Any] = {
        "TableName": client.table_name,
        "Item": plan.head_item,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if values:
        head_put["ExpressionAttributeValues"] = values
    if plan.transactional and plan.items:
        actions = [{"Put": {"TableName": client.table_name, "Item": item}} for item in plan.items]
        _transact(client, actions + [{"Put": head_put}], scratch)
        return
    if plan.items:
        # Too big for one transaction: fresh runs first (invisible until the head lists them).
        scratch.written.update((run.run_id, run) for run in plan.new_runs)
        batch_write(client, thread_id, [{"PutRequest": {"Item": item}} for item in plan.items])
    _check_deadline(thread_id, scratch)
    try:
        client.call("put_item", expect=(_CONDITION_FAILED,), **head_put)
    except ClientError as exc:
        scratch.maybe_committed |= client.maybe_reached()
        raise StaleHead(exc.response.get("Item")) from None


def _check_deadline(thread_id: str, scratch: Scratch) -> None:
    """Refuse to commit runs older than the deadline: a sweeper may already treat them as orphans."""
    for run in scratch.written.values():
        created = run_created_at(run.run_id)
        if created is not None and time.time() - created > layout.WRITE_DEADLINE_SECONDS:
            raise BackendUnavailableError(
                f"thread {thread_id!r}: the save took over {layout.WRITE_DEADLINE_SECONDS:g}s; nothing was committed",
                thread_id=thread_id,
            )


def _transact(client: DynamoDbClient, actions: List[Dict[str, Any]], scratch: Scratch) -> None:
    """One ``TransactWriteItems``; a failed head condition raises :class:`StaleHead`, conflicts are retried."""
    from botocore.exceptions import ClientError

    table = client.table_name
    for attempt in range(TRANSACTION_CONFLICT_RETRIES):
        try:
            client.call("transact_write_items", expect=(_TRANSACTION_CANCELED, _TRANSACTION_CONFLICT), TransactItems=actions)
            return
        except ClientError as exc:
            scratch.maybe_committed |= client.maybe_reached()
            reasons = exc.response.get("CancellationReasons") or []
            codes = [str(reason.get("Code") or "None") for reason in reasons]
            if reasons and codes[-1] == "ConditionalCheckFailed":
                raise StaleHead(reasons[-1].get("Item")) from None
            if error_code(exc) == _TRANSACTION_CONFLICT or "TransactionConflict" in codes:
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
                continue
            failed = sorted({code for code in codes if code != "None"}) or [error_code(exc)]
            if any("throttl" in code.lower() or "throughput" in code.lower() for code in failed):
                raise BackendUnavailableError(f"DynamoDB throttled a save to table {table!r}: {failed}") from exc
            if any("size" in code.lower() for code in failed):
                raise SnapshotTooLargeError(f"DynamoDB refused a save to table {table!r}: {failed}") from exc
            raise AgentsPersistError(f"DynamoDB cancelled a save to table {table!r}: {failed}") from exc
    raise StaleHead(None)


def batch_write(client: DynamoDbClient, thread_id: str, requests: List[Dict[str, Any]]) -> None:
    """BatchWriteItem in groups of 25, retrying unprocessed requests with backoff."""
    table = client.table_name
    for start in range(0, len(requests), BATCH_WRITE_MAX):
        pending = requests[start : start + BATCH_WRITE_MAX]
        for round_ in range(BATCH_WRITE_ROUNDS):
            page = client.call("batch_write_item", RequestItems={table: pending})
            pending = page.get("UnprocessedItems", {}).get(table, [])
            if not pending:
                break
            wait_before_unprocessed_retry(round_)
        else:
            raise BackendUnavailableError(
                f"DynamoDB kept {len(pending)} writes of thread {thread_id!r} unprocessed (throttled)",
                thread_id=thread_id,
            )
