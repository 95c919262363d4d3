"""RedisStore: threads in Redis or Redis Cluster, one atomic Lua script per save.

Every thread is a small head hash plus a list of encoded messages, both
hash-tagged by the thread ID so that they live in one cluster slot
(:mod:`.layout`). A save is one ``EVALSHA`` of ``scripts/write.lua``:
version check, append to (or rewrite of) the log, head and expiry, all
atomic. A load is one ``MULTI``/``EXEC`` round trip. Three sorted sets serve
``list_threads``, ``iter_threads`` and ``purge_expired`` (:mod:`.index`).
"""

from __future__ import annotations

import math
import os
import struct
import time
from itertools import accumulate
from typing import Any, ContextManager, List, Optional, Sequence, Tuple

from ... import planning
from ...errors import AgentsPersistError, BackendUnavailableError
from ...models import ThreadInfo
from ...paging import Position
from ...planning import PlannedWrite, PrefixMismatch, StoredHead, StoredThread, Written, conflict_error, is_expired
from ...slices import clamp_bound
from ...store import Store
from ...translate import translated
from .client import DELETE, WRITE, RedisConnection, Script, reply_text
from .index import ThreadIndex
from .layout import HEAD_FIELDS, corrupt_head, corrupt_part, parse_counter, parse_head, positions_key, thread_keys

__all__ = ["RedisStore", "STAGE_MIN_BYTES", "CHUNK_BYTES", "STAGE_TTL_MS", "log_entries"]

#: A save that writes a whole log of at least this many bytes (a new thread
#: or a rewrite) first pushes it to a staging list, which the save script
#: then renames into place: the bulk never passes through Lua, which costs the
#: single-threaded server a copy per argument (and Lua garbage later).
STAGE_MIN_BYTES = 64 * 1024
#: Log entries a staged log is cut into are about this big (CHUNK_BYTES in ``scripts/write.lua``).
CHUNK_BYTES = 1024 * 1024
#: A staging list left behind by a client that died mid-save expires after this.
STAGE_TTL_MS = 60_000
#: Statuses of the save script (``scripts/write.lua``).
_APPLIED, _CONFLICT, _MISMATCH, _BAD_STAGE, _DUPLICATE, _CORRUPT, _RESENT, _GARBAGE = 1, 0, 2, 3, 4, 5, 6, 7


#: The partial read (``scripts/slice.lua``) and the modes of its reply.
SLICE = Script("slice.lua")
_CUT, _BY_POSITION, _WHOLE, _NOTHING, _HEAD_TYPE, _LOG_TYPE = 0, 1, 2, 3, 4, 5


def _entry_starts(messages: List[bytes], chunk_bytes: int) -> List[int]:
    """The first message of each log entry ``messages`` are packed into (about ``chunk_bytes`` each)."""
    starts: List[int] = []
    size = 0
    for i, blob in enumerate(messages):
        if not starts or (size and size + len(blob) > chunk_bytes):
            starts.append(i)
            size = 0
        size += len(blob)
    return starts


def _joined_entries(messages: List[bytes], starts: List[int]) -> List[bytes]:
    """The log entries that begin at message positions ``starts`` (from :func:`_entry_starts`)."""
    return [b"".join(messages[a:b]) for a, b in zip(starts, [*starts[1:], len(messages)])]


def log_entries(messages: List[bytes], chunk_bytes: int = CHUNK_BYTES) -> List[bytes]:
    """``messages`` packed into log entries of about ``chunk_bytes`` each (a message is never split)."""
    return _joined_entries(messages, _entry_starts(messages, chunk_bytes))


def _packed(numbers: Sequence[int]) -> bytes:
    """4-byte big-endian unsigned integers, concatenated (the position index's encoding)."""
    return struct.pack(f">{len(numbers)}I", *numbers)


class RedisStore(Store):
    """The storage primitives over one Redis or Redis Cluster (see :class:`~agents_persist.RedisCheckpointer`).

    Args:
        connection: The redis-py client to use; closed by :meth:`close` if it built it.
        key_prefix: Prepended to every key (no ``{`` or ``}``).
    """

    name = "Redis"
    default_max_snapshot_bytes = 16 * 1024 * 1024  # a single-threaded server: a huge value stalls every client

    def __init__(self, connection: RedisConnection, key_prefix: str) -> None:
        self.connection = connection
        self.key_prefix = key_prefix
        self.cluster = connection.cluster
        self.index = ThreadIndex(connection, key_prefix)

    def describe(self) -> str:
        return f"{self.connection.describe()}, key_prefix={self.key_prefix!r}"

    def close(self) -> None:
        self.connection.close()

    def _after_fork_in_child(self) -> None:
        self.connection._after_fork_in_child()

    # ------------------------------------------------------------------ errors and keys

    def _classify(self, exc: Exception, thread_id: Optional[str], change: bool) -> Optional[AgentsPersistError]:
        """Errors meaning "the server cannot serve now" become :class:`BackendUnavailableError`.

        For a request that changes data (``change``), ``maybe_applied`` tells
        whether it may have reached the server before the failure.
        """
        if not self.connection.is_down(exc):
            return None
        maybe_applied = change and self.connection.may_have_sent(exc)
        if isinstance(exc, self.connection.redis.exceptions.InvalidResponse):
            detail = f"it did not answer like a Redis server (wrong port?): {exc}"
        else:
            detail = f"{type(exc).__name__}: {reply_text(exc)}"
        return BackendUnavailableError(
            f"Redis ({self.connection.where}) is unavailable: {detail}"
            + ("; the change may or may not have been applied" if maybe_applied else ""),
            thread_id=thread_id,
            maybe_applied=maybe_applied,
        )

    def _translated(self, thread_id: Optional[str] = None, *, change: bool = False) -> ContextManager[None]:
        """:func:`~agents_persist.translate.translated` with this store's classifier, naming ``thread_id``."""
        return translated(lambda exc: self._classify(exc, thread_id, change))

    def _keys(self, thread_id: str) -> Tuple[str, str]:
        """Head and log keys of ``thread_id``."""
        return thread_keys(self.key_prefix, thread_id)

    # ------------------------------------------------------------------ primitives

    def read(self, thread_id: str) -> Optional[StoredThread]:
        head_key, log_key = self._keys(thread_id)
        with self._translated(thread_id):
            pipe = self.connection.client().pipeline(transaction=True)
            pipe.hmget(head_key, *HEAD_FIELDS, "k", "h")
            pipe.lrange(log_key, 0, -1)
            fields, entries = pipe.execute(raise_on_error=False)
        if isinstance(fields, Exception):
            raise corrupt_part(thread_id, "head", fields)
        head = parse_head(thread_id, fields[: len(HEAD_FIELDS)])
        if head is None:
            return None
        if isinstance(entries, Exception):
            raise corrupt_part(thread_id, "log", entries)
        h = head
        try:
            expected = h.message_count if fields[-2] is None else parse_counter(fields[-2])
        except ValueError as exc:
            raise corrupt_part(thread_id, "head", exc) from None
        if len(entries) != expected or fields[-1] is None:
            found = "no head blob" if fields[-1] is None else f"{len(entries)} log entries, not {fields[-2]!r}"
            raise corrupt_part(thread_id, "log", ValueError(found))
        return StoredThread(
            h.version, fields[-1], b"".join(entries), h.message_count, h.digest, h.updated_at, h.expires_at,
            h.generation, h.applied,
        )

    def read_messages(self, thread_id: str, start: Optional[int], stop: Optional[int]) -> Optional[planning.StoredSlice]:
        """One run of ``scripts/slice.lua``: the head and only the bytes of the slice, cut by the position index.

        Threads without a valid index (stored by older releases, or appended
        to by one) are read by position when their log holds one message per
        entry, else whole.
        """
        head_key, log_key = self._keys(thread_id)
        keys = (head_key, log_key, positions_key(self.key_prefix, thread_id))
        bounds = tuple("" if b is None else clamp_bound(b) for b in (start, stop))
        with self._translated(thread_id):
            try:
                reply = self.connection.run(SLICE, keys, bounds)
            except self.connection.redis.exceptions.ResponseError as exc:
                if self.connection.is_down(exc):
                    raise
                raise corrupt_part(thread_id, "log", exc) from None
        mode, fields = int(reply[0]), reply[1]
        if mode == _HEAD_TYPE:
            raise corrupt_part(thread_id, "head", ValueError("the head is not a hash"))
        head = parse_head(thread_id, fields[: len(HEAD_FIELDS)])
        if head is None:
            return None
        if mode == _LOG_TYPE:
            raise corrupt_part(thread_id, "log", ValueError("the log is not a list"))
        count = head.message_count
        lo, hi = planning.resolve_slice(start, stop, count)
        if mode == _NOTHING:
            if lo != hi:
                raise corrupt_part(thread_id, "head", ValueError(f"the entry count {fields[-1][:40]!r} does not parse"))
            return planning.StoredSlice(head.version, count, lo, hi, lo, b"", 0, head.expires_at)
        first, got, data = int(reply[2]), int(reply[3]), reply[4:]
        if mode == _WHOLE:
            try:
                entries = count if fields[-1] is None else parse_counter(fields[-1])
            except ValueError as exc:
                raise corrupt_part(thread_id, "head", exc) from None
            if len(data) != entries:
                raise corrupt_part(thread_id, "log", ValueError(f"{len(data)} log entries, not {entries}"))
            return planning.StoredSlice(head.version, count, lo, hi, 0, b"".join(data), count, head.expires_at)
        if (first, got) != (lo, hi - lo) or len(data) != (1 if mode == _CUT else got):
            raise corrupt_part(thread_id, "log", ValueError(f"{len(data)} parts for positions {lo} to {hi - 1}"))
        messages = data[0] if mode == _CUT else list(data)
        return planning.StoredSlice(head.version, count, lo, hi, lo, messages, got, head.expires_at)

    def read_head(self, thread_id: str) -> Optional[StoredHead]:
        head_key, _ = self._keys(thread_id)
        with self._translated(thread_id):
            try:
                fields = self.connection.client().hmget(head_key, *HEAD_FIELDS)
            except self.connection.redis.exceptions.ResponseError as exc:
                if self.connection.is_down(exc):
                    raise
                raise corrupt_part(thread_id, "head", exc) from None
        return parse_head(thread_id, fields)

    def read_version(self, thread_id: str) -> int:
        head_key, _ = self._keys(thread_id)
        head = self.read_head(thread_id)
        return 0 if head is None or is_expired(head.expires_at) else head.version

    def write(self, thread_id: str, write: PlannedWrite) -> Written:
        head_key, log_key = self._keys(thread_id)
        expires_at = write.expires_at
        updated_at = repr(write.updated_at)
        expires = repr(expires_at) if expires_at is not None else ""
        args = [
            "" if write.expected_version is None else write.expected_version,
            "" if write.append_from is None else write.append_from,
            write.base_digest,
            write.message_count,
            write.digest,
            write.head,
            updated_at,
            expires,
            math.ceil(expires_at * 1000) if expires_at is not None else "",
            thread_id,
        ]
        expectations = (
            "" if write.expected_generation is None else str(write.expected_generation),
            str(write.new_generation),
            "1" if write.keep_head else "",
            "" if write.idempotency_key is None else "+" + write.idempotency_key,
            # Makes the save safe to re-send: redis-py re-sends commands whose reply
            # came late (a cluster pipeline always does, users' clients by default),
            # and the script answers a repeat with what the first run did.
            os.urandom(8).hex(),
        )
        indexes = () if self.cluster else self.index.keys
        with self._translated(thread_id, change=True):
            reply = None
            message_ends = list(accumulate(map(len, write.messages)))
            ends = _packed(message_ends)
            pos_key = positions_key(self.key_prefix, thread_id)
            if write.append_from is None and message_ends and message_ends[-1] >= STAGE_MIN_BYTES:
                starts = _entry_starts(write.messages, CHUNK_BYTES)
                entries = _joined_entries(write.messages, starts)
                staged_args = (*args, len(entries), *expectations, ends, _packed(starts))
                reply = self._write_staged(log_key, (head_key, log_key), (pos_key, *indexes), staged_args, entries)
            if reply is None or int(reply[0]) == _BAD_STAGE:
                keys = (head_key, log_key, self._stage_key(log_key), pos_key, *indexes)
                entry = [b"".join(write.messages)] if write.messages else []
                reply = self.connection.run(WRITE, keys, (*args, "", *expectations, ends, _packed([0] * len(entry)), *entry))
        status, version, generation = int(reply[0]), int(reply[1]), int(reply[2])
        if status == _CONFLICT:
            raise conflict_error(thread_id, write.expected_version, version, recreated=write.expected_version == version)
        if status == _MISMATCH:
            raise PrefixMismatch(thread_id)
        if status == _CORRUPT:
            raise corrupt_head(thread_id, ValueError("the applied idempotency keys do not parse"))
        if status == _GARBAGE:
            if write.append_from is not None and not write.keep_head:
                raise PrefixMismatch(thread_id)  # a save then rewrites, which a forced save may do over anything
            raise corrupt_part(thread_id, "head or log", ValueError("wrong key type or fields that do not parse"))
        # _RESENT: a repeat of this very save (by its token) after a late reply: applied, once.
        if status == _DUPLICATE:
            return Written(version, generation, duplicate=True)
        if self.cluster:
            self.index.touch(thread_id, updated_at, expires)
        return Written(version, generation)

    def _write_staged(
        self, log_key: str, keys: Tuple[str, str], more_keys: Sequence[str], args: Sequence[Any], messages: List[bytes]
    ) -> Optional[List[Any]]:
        """Push a whole new log to a staging list and run the save script on it, in one atomic round trip.

        The script alone decides: it renames the staging list into place only
        if it holds exactly ``messages``, and deletes it otherwise. Returns its
        reply; None means the server lost its script cache, and the caller
        then saves inline (which reloads the script).
        """
        stage = self._stage_key(log_key)
        client = self.connection.client()
        # One MULTI/EXEC: a client that dies while sending leaves nothing (no
        # EXEC, nothing runs), so no staging list ever exists without its TTL.
        pipe = client.pipeline(transaction=True)
        pipe.rpush(stage, *messages)
        pipe.pexpire(stage, STAGE_TTL_MS)
        pipe.execute_command("EVALSHA", WRITE.sha, len(keys) + 1 + len(more_keys), *keys, stage, *more_keys, *args)
        result = pipe.execute(raise_on_error=False)[-1]
        if isinstance(result, self.connection.redis.exceptions.NoScriptError):
            client.delete(stage)
            return None
        if isinstance(result, Exception):
            raise result
        return result  # type: ignore[no-any-return]

    @staticmethod
    def _stage_key(log_key: str) -> str:
        """A fresh staging key in the log's hash slot (one per save, so concurrent saves never share)."""
        return f"{log_key}:stage:{os.urandom(8).hex()}"

    def delete(self, thread_id: str) -> bool:
        keys: Tuple[str, ...] = (*self._keys(thread_id), positions_key(self.key_prefix, thread_id))
        if not self.cluster:
            keys += self.index.keys
        with self._translated(thread_id, change=True):
            result = self.connection.run(DELETE, keys, (repr(time.time()), thread_id))
        if self.cluster and len(result) > 1:
            self.index.forget(thread_id, result[1])
        return bool(result[0])

    def list(self, prefix: Optional[str], limit: int, after: Optional[Position], now: float) -> List[ThreadInfo]:
        with self._translated():
            return self.index.by_update(prefix, limit, after, now)

    def scan(self, prefix: Optional[str], after: Optional[str], limit: int, now: float) -> List[ThreadInfo]:
        with self._translated():
            return self.index.by_id(prefix, after, limit, now)

    def purge(self, now: float) -> int:
        with self._translated(change=True):
            return self.index.purge(now)
