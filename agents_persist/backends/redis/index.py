"""The two index sorted sets of a Redis store: thread IDs by update time (listing) and by expiry (purging).

The heads are the truth; the index only finds them. On a standalone server
the save and delete scripts update the index in the same atomic step. In
Redis Cluster the index lives in its own slot, so a second round trip after
the thread's own script does (:meth:`ThreadIndex.touch`,
:meth:`ThreadIndex.forget`), and listing checks every entry against its
head and repairs what a lost or overtaken step left behind.
"""

from __future__ import annotations

import logging
import math
from typing import Any, List, Optional, Sequence, Tuple

from ...models import ThreadInfo
from ...paging import Position, thread_info
from .client import INDEX_FIX, INDEX_TOUCH, RedisConnection, Script
from .layout import corrupt_head, index_keys, optional_float, thread_keys

__all__ = ["ThreadIndex", "LIST_BATCH", "MAX_LIST_BATCH"]

logger = logging.getLogger(__name__)

#: Thread IDs read from the index per round trip while listing (grows up to the max).
LIST_BATCH = 64
MAX_LIST_BATCH = 4096

#: An index entry read while listing: (thread ID, member as stored, score).
_Entry = Tuple[str, bytes, float]


class ThreadIndex:
    """The update-time and expiry indexes of one key prefix, and the walks over them."""

    def __init__(self, connection: RedisConnection, key_prefix: str) -> None:
        self.connection = connection
        self.key_prefix = key_prefix
        #: (index by update time, index by expiry)
        self.keys = index_keys(key_prefix)

    # ------------------------------------------------------------------ cluster: the second step

    def touch(self, thread_id: str, updated_at: str, expires_at: str) -> None:
        """Record a save (``expires_at`` may be ``''``) unless a newer save already did."""
        self._step(thread_id, INDEX_TOUCH, (thread_id, updated_at, expires_at))

    def forget(self, thread_id: str, updated_at: bytes) -> None:
        """Remove a deleted thread's entries if they are still those of the save that was deleted."""
        self._step(thread_id, INDEX_FIX, ("r", thread_id, updated_at, ""))

    def _step(self, thread_id: str, script: Script, args: Sequence[Any]) -> None:
        """Update the index after the thread's own script succeeded (best effort)."""
        try:
            self.connection.run(script, self.keys, args)
        except Exception as exc:
            if not self.connection.is_down(exc):
                raise
            # The thread itself is stored (or deleted); only listing lags behind.
            logger.warning("thread %r is stored but the Redis index could not be updated: %s", thread_id, exc)

    # ------------------------------------------------------------------ walks

    def _heads(self, client: Any, thread_ids: Sequence[str], *fields: str) -> List[Any]:
        """``HMGET`` of ``fields`` of each thread's head, in one pipelined round trip."""
        pipe = client.pipeline(transaction=False)
        for thread_id in thread_ids:
            pipe.hmget(thread_keys(self.key_prefix, thread_id)[0], *fields)
        return pipe.execute()  # type: ignore[no-any-return]

    def scan(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        """Walk the update-time index newest first, checking each entry against its head.

        The head is the truth: missing or expired threads are skipped and their
        entries removed, entries whose score differs from the head's
        ``updated_at`` are listed by the head's time and repaired. A thread is
        emitted only once no unread entry can sort before it. Entries with
        equal scores are always read as a whole group and ordered here by
        ``(updated_at, thread_id)``: Python's str order is the UTF-8 byte
        order Redis uses for ties, so paging never depends on where a batch ends.
        """
        client = self.connection.client()
        index = self.keys[0]
        found: List[ThreadInfo] = []
        pending: List[Tuple[float, str, ThreadInfo]] = []
        fixes: List[Any] = []
        bound = after  # everything emitted sorts strictly below this
        upper = "+inf" if after is None else repr(after[0])
        batch = min(max(LIST_BATCH, 2 * limit), MAX_LIST_BATCH)
        while len(found) < limit:
            rows = client.zrevrangebyscore(index, upper, "-inf", start=0, num=batch, withscores=True)
            exhausted = len(rows) < batch
            edge = -math.inf
            if not exhausted:
                # Take the whole group of equal scores at the edge, then go on below it.
                edge = rows[-1][1]
                ties = client.zrevrangebyscore(index, repr(edge), repr(edge), withscores=True)
                rows = [row for row in rows if row[1] != edge] + ties
                upper = "(" + repr(edge)
            candidates = _candidates(rows, prefix)
            if candidates:
                for updated_at, thread_id, info in self._check(client, candidates, now, fixes):
                    if bound is None or (updated_at, thread_id) < bound:
                        pending.append((updated_at, thread_id, info))
                    # else: saved while we were listing, so it moved before the cursor
            pending.sort(key=lambda item: (item[0], item[1]))
            while pending and len(found) < limit and pending[-1][0] >= edge:
                updated_at, thread_id, info = pending.pop()
                found.append(info)
                bound = (updated_at, thread_id)
            if exhausted:
                break
            batch = min(batch * 2, MAX_LIST_BATCH)
        if fixes:
            self.connection.run(INDEX_FIX, self.keys, fixes)
        return found

    def _check(self, client: Any, candidates: List[_Entry], now: float, fixes: List[Any]) -> List[Tuple[float, str, ThreadInfo]]:
        """The live threads among ``candidates`` by their heads; repairs for the stale entries go to ``fixes``."""
        live: List[Tuple[float, str, ThreadInfo]] = []
        heads = self._heads(client, [thread_id for thread_id, _, _ in candidates], "v", "n", "u", "e")
        for (thread_id, member, score), (version, count, updated, expires) in zip(candidates, heads):
            if version is None or (expires is not None and float(expires) <= now):
                fixes += ("r", member, repr(score), "")
                continue
            try:
                updated_at = float(updated)
                info = thread_info(thread_id, int(version), updated_at, int(count), optional_float(expires))
            except (TypeError, ValueError) as exc:
                raise corrupt_head(thread_id, exc) from exc
            if updated_at != score:
                fixes += ("s", member, repr(score), updated)
            live.append((updated_at, thread_id, info))
        return live

    def purge(self, now: float) -> int:
        """Remove entries of expired threads (Redis deletes their keys by itself); return how many."""
        client = self.connection.client()
        removed = 0
        while True:
            rows = client.zrangebyscore(self.keys[1], "-inf", repr(now), start=0, num=MAX_LIST_BATCH, withscores=True)
            if not rows:
                break
            heads = self._heads(client, [member.decode("utf-8", "replace") for member, _ in rows], "v", "e")
            fixes: List[Any] = []
            for (member, score), (version, expires) in zip(rows, heads):
                if version is None or (expires is not None and float(expires) <= now):
                    fixes += ("x", member, repr(score), "")
                else:  # a newer save changed or dropped the TTL: correct the entry
                    fixes += ("e", member, repr(score), expires if expires is not None else "")
            gone, changed = self.connection.run(INDEX_FIX, self.keys, fixes)
            removed += int(gone)
            if len(rows) < MAX_LIST_BATCH or not changed:
                break
        return removed


def _candidates(rows: List[Tuple[bytes, float]], prefix: Optional[str]) -> List[_Entry]:
    """Index rows whose member is a UTF-8 thread ID under ``prefix``."""
    candidates: List[_Entry] = []
    for member, score in rows:
        try:
            thread_id = member.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if prefix is None or thread_id.startswith(prefix):
            candidates.append((thread_id, member, score))
    return candidates
