"""The index sorted sets of a Redis store: thread IDs by update time (listing), by expiry (purging) and by ID (walking).

The heads are the truth; the index only finds them. On a standalone server
the save and delete scripts update the index in the same atomic step. In
Redis Cluster the index lives in its own slot, so a second round trip after
the thread's own script does (:meth:`ThreadIndex.touch`,
:meth:`ThreadIndex.forget`), and both walks check every entry against its
head and repair what a lost or overtaken step left behind.

The index by ID is newer than the other two: threads saved by an older
version of this library have no entry there. Under this version every entry
by update time has one by ID, so when the set by update time is the larger,
:meth:`ThreadIndex.by_id` first copies its members over (``ZSCAN``, which
sees every member present for the whole copy), then walks.
"""

from __future__ import annotations

import logging
import math
from typing import Any, List, Literal, Optional, Sequence, Tuple, Union

from ...errors import CorruptSnapshotError
from ...models import ThreadInfo
from ...paging import Position, thread_info
from .client import INDEX_FIX, INDEX_IDS, INDEX_TOUCH, RedisConnection, Script
from .layout import corrupt_head, index_keys, optional_float, parse_counter, parse_timestamp, thread_keys

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
        #: (index by update time, index by expiry, index by ID)
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
        return pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]

    def by_update(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
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
        for (thread_id, member, score), fields in zip(candidates, heads):
            info = _checked_info(thread_id, fields, now)
            if info is False:
                continue
            if info is None:
                fixes += ("r", member, repr(score), "")
                continue
            updated_at = info.updated_timestamp
            assert updated_at is not None
            if updated_at != score:
                fixes += ("s", member, repr(score), fields[2])
            live.append((updated_at, thread_id, info))
        return live

    def by_id(self, prefix: Optional[str], after: Optional[str], limit: int, now: float) -> List[ThreadInfo]:
        """Walk the index by ID from ``after`` on (``ZRANGEBYLEX``), checking each entry against its head.

        Each batch of entries is read together with their update-time scores,
        before the heads: an entry whose thread is missing or expired is
        removed only if that score is still the one seen (none seen: still
        none), so a save since always keeps its entry.
        """
        client = self.connection.client()
        lower, upper = _lex_range(prefix, after)
        found: List[ThreadInfo] = []
        fixes: List[Any] = []
        batch = min(limit, MAX_LIST_BATCH)
        backfilled = False
        keys = (self.keys[0], self.keys[2])
        last: Optional[bytes] = None
        first_lower, reordered = lower, False
        while len(found) < limit:
            by_update, by_id, members, scores = self.connection.run(INDEX_IDS, keys, (lower, upper, batch))
            if members and (last is not None and members[-1] <= last or any(a >= b for a, b in zip(members, members[1:]))):
                # ZRANGEBYLEX is ordered only if every entry has the same score: someone else's
                # write broke that. Give every entry score 0 again and walk anew, once; never loop.
                if reordered:
                    logger.warning("the index by ID %r is still out of order; the walk stops", self.keys[2])
                    break
                logger.warning("the index by ID %r is out of order (entries with other scores): repaired", self.keys[2])
                self._zero_scores(client)
                reordered, lower, last, found, fixes = True, first_lower, None, [], []
                continue
            if int(by_update) > int(by_id) and not backfilled:
                self._backfill(client)
                backfilled = True
                continue
            entries = [(thread_id, member, score) for (thread_id, member), score in zip(_decoded(members), scores)]
            heads = self._heads(client, [thread_id for thread_id, _, _ in entries], "v", "n", "u", "e")
            for (thread_id, member, score), fields in zip(entries, heads):
                info = _checked_info(thread_id, fields, now)
                if info is False:
                    continue
                if info is None:
                    fixes += ("r", member, score, "")
                else:
                    found.append(info)
            if len(members) < batch:
                break
            last = members[-1]
            lower = b"(" + last
            batch = min(max(2 * batch, limit - len(found)), MAX_LIST_BATCH)
        if fixes:
            self.connection.run(INDEX_FIX, self.keys, fixes)
        return found[:limit]

    def _zero_scores(self, client: Any) -> None:
        """Set every entry of the index by ID back to score 0 (what ordered ``ZRANGEBYLEX`` needs)."""
        by_id = self.keys[2]
        stray = [*client.zrangebyscore(by_id, "-inf", "(0"), *client.zrangebyscore(by_id, "(0", "+inf")]
        for start in range(0, len(stray), 1000):
            client.zadd(by_id, dict.fromkeys(stray[start : start + 1000], 0))

    def _backfill(self, client: Any) -> None:
        """Give every thread in the index by update time an entry in the index by ID."""
        updated, _, ids = self.keys
        cursor, copied = 0, 0
        while True:
            cursor, rows = client.zscan(updated, cursor, count=MAX_LIST_BATCH)
            if rows:
                client.zadd(ids, {member: 0 for member, _ in rows})
                copied += len(rows)
            if not cursor:
                break
        logger.info("built the Redis index by thread ID from the index by update time (%d entries)", copied)

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
            for (member, score), fields in zip(rows, heads):
                thread_id = member.decode("utf-8", "replace")
                try:
                    if isinstance(fields, Exception):
                        raise corrupt_head(thread_id, fields)
                    version, raw_expires = fields
                    expiry = optional_float(raw_expires)
                except (CorruptSnapshotError, ValueError) as exc:
                    logger.warning("skipping thread %r while purging: its stored head is corrupt: %s", thread_id, exc)
                    continue
                expires = raw_expires
                if version is None or (expiry is not None and expiry <= now):
                    fixes += ("x", member, repr(score), "")
                else:  # a newer save changed or dropped the TTL: correct the entry
                    fixes += ("e", member, repr(score), expires if expires is not None else "")
            gone, changed = self.connection.run(INDEX_FIX, self.keys, fixes)
            removed += int(gone)
            if len(rows) < MAX_LIST_BATCH or not changed:
                break
        return removed


def _lex_range(prefix: Optional[str], after: Optional[str]) -> Tuple[bytes, bytes]:
    """``ZRANGEBYLEX`` bounds of the IDs under ``prefix`` strictly after ``after`` (UTF-8 byte order)."""
    lower, upper = b"-", b"+"
    if prefix:
        raw = prefix.encode("utf-8")
        # No UTF-8 string holds the byte 0xff: every ID under the prefix sorts below this.
        lower, upper = b"[" + raw, b"(" + raw + b"\xff"
    if after is not None and (not prefix or after >= prefix):
        lower = b"(" + after.encode("utf-8")
    return lower, upper


def _decoded(members: List[bytes]) -> List[Tuple[str, bytes]]:
    """(thread ID, member) of the members that are UTF-8 (others cannot be thread IDs)."""
    decoded: List[Tuple[str, bytes]] = []
    for member in members:
        try:
            decoded.append((member.decode("utf-8"), member))
        except UnicodeDecodeError:
            continue
    return decoded


def _checked_info(thread_id: str, fields: Any, now: float) -> Union[ThreadInfo, None, Literal[False]]:
    """:func:`_live_info`, or False (logged) for a thread whose head is corrupt: listing goes on with the others."""
    try:
        if isinstance(fields, Exception):
            raise corrupt_head(thread_id, fields)
        return _live_info(thread_id, fields, now)
    except CorruptSnapshotError as exc:
        logger.warning("skipping thread %r while listing: %s", thread_id, exc)
        return False


def _live_info(thread_id: str, fields: Sequence[Any], now: float) -> Optional[ThreadInfo]:
    """The listing of a thread from its head's ``v n u e``; None if missing or expired at ``now``."""
    version, count, updated, expires = fields
    try:
        expires_at = optional_float(expires)
        if version is None or (expires_at is not None and expires_at <= now):
            return None
        return thread_info(thread_id, parse_counter(version), parse_timestamp(updated), parse_counter(count), expires_at)
    except (TypeError, ValueError, OverflowError) as exc:
        raise corrupt_head(thread_id, exc) from exc


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
