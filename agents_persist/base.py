"""The checkpointer contract, written once for every backend.

:class:`Checkpointer` holds everything the backends share: thread-ID
validation before any I/O, per-thread-ID locks, encoding, the planning of a
save (append only the new messages, or rewrite the log), the version checks
that prevent lost updates, ``transaction``/``update`` with bounded retries,
TTL arithmetic, ``list_threads`` paging and the life cycle. A backend
implements a handful of small storage primitives (``_read``, ``_write``,
``_delete``, ``_read_version``, ``_list_threads``, ``_purge_expired``) that
each run as one atomic step of its store.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import re
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict
from contextlib import contextmanager
from datetime import datetime, timezone
from types import TracebackType
from typing import Callable, Iterator, List, Optional, Tuple, Type, TypeVar, Union

import msgspec

from . import codec
from .errors import (
    CheckpointerClosedError,
    ConfigurationError,
    ConflictError,
    CorruptSnapshotError,
    InvalidThreadIdError,
    SerializationError,
)
from .locks import LockRegistry
from .models import AgentMessage, AgentStateSnapshot, ThreadInfo, ThreadPage, _Origin

__all__ = [
    "Checkpointer",
    "PlannedWrite",
    "StoredThread",
    "PrefixMismatch",
    "validate_thread_id",
    "MAX_THREAD_ID_BYTES",
]

logger = logging.getLogger(__name__)

MAX_THREAD_ID_BYTES = 512
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 10_000
DEFAULT_MAX_RETRIES = 50
DEFAULT_PREFIX_CACHE_SIZE = 4096
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")

T = TypeVar("T", bound="Checkpointer")
UpdateFn = Callable[[AgentStateSnapshot], Optional[AgentStateSnapshot]]


class PrefixMismatch(Exception):
    """Raised by a backend's ``_write`` when an append's base prefix is no longer what is stored.

    Internal: the base class then rewrites the whole log instead.
    """


class StoredThread(msgspec.Struct, frozen=True):
    """One committed version of a thread as a backend read it, still encoded.

    ``messages`` holds the encoded messages as written: a list with one blob
    per message, or all of them concatenated in one ``bytes`` (cheaper for
    backends that store messages in chunks: no splitting, one decode call).
    """

    version: int
    head: bytes
    messages: Union[List[bytes], bytes]
    message_count: int
    digest: bytes
    updated_at: float
    expires_at: Optional[float] = None


class PlannedWrite(msgspec.Struct, frozen=True):
    """What one save asks a backend to do, atomically.

    Backend contract for ``_write(thread_id, write)``, as one atomic step:

    1. The current version is the stored one, or 0 when the thread is missing
       or expired (``expires_at <= now``).
    2. If ``expected_version`` is not None and differs: raise ``ConflictError``
       (use :meth:`Checkpointer._conflict`), writing nothing.
    3. If ``append_from`` is not None, the stored ``message_count`` must equal
       ``append_from`` and the stored digest ``base_digest`` (a missing or
       expired thread has count 0 and ``EMPTY_DIGEST``); otherwise raise
       :class:`PrefixMismatch`, writing nothing. Then store ``messages`` at
       positions ``append_from, append_from + 1, ...``.
       A backend may also raise :class:`PrefixMismatch` for a valid append to
       ask for a full rewrite instead (for example to compact its layout).
       If ``append_from`` is None, replace the whole log by ``messages``.
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


def validate_thread_id(thread_id: object) -> str:
    """Return ``thread_id`` if valid, else raise :class:`InvalidThreadIdError` (no I/O happens first)."""
    if type(thread_id) is not str:
        raise InvalidThreadIdError(f"thread ID must be a str, not {type(thread_id).__name__}")
    if not thread_id:
        raise InvalidThreadIdError("thread ID must not be empty")
    try:
        size = len(thread_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidThreadIdError("thread ID is not valid Unicode (lone surrogate)") from None
    if size > MAX_THREAD_ID_BYTES:
        raise InvalidThreadIdError(f"thread ID is {size} UTF-8 bytes; at most {MAX_THREAD_ID_BYTES} are allowed")
    if _CONTROL_CHARS.search(thread_id):
        raise InvalidThreadIdError(f"thread ID {thread_id!r} contains a control character")
    return thread_id


def _to_datetime(timestamp: Optional[float]) -> Optional[datetime]:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)


def _encode_cursor(info: ThreadInfo) -> str:
    # The exact stored float, not the (microsecond-rounded) datetime.
    updated_at = info.__dict__.get("_updated_at", info.updated_at.timestamp())
    raw = msgspec.msgpack.encode([updated_at, info.thread_id])
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_cursor(cursor: str) -> Tuple[float, str]:
    try:
        updated_at, thread_id = msgspec.msgpack.decode(base64.urlsafe_b64decode(cursor.encode("ascii")))
        return float(updated_at), validate_thread_id(thread_id)
    except Exception:
        raise ValueError(f"invalid list_threads cursor {cursor!r}") from None


_instances: "weakref.WeakSet[Checkpointer]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for checkpointer in list(_instances):
        try:
            # Another parent thread may have held it at fork time; it would never be released here.
            checkpointer._prefix_cache_mutex = threading.Lock()
            checkpointer._after_fork()
        except Exception:  # pragma: no cover - never break the child over one instance
            logger.exception("resetting %r after fork failed", checkpointer)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Checkpointer(ABC):
    """Saves and restores :class:`AgentStateSnapshot` objects per thread ID.

    Guarantees, on every backend:

    * ``load`` returns one committed version whole, never a mix of two.
    * A loaded snapshot saved back checks the version it was loaded at, so a
      newer concurrent save is never overwritten unnoticed (``ConflictError``).
    * ``update`` and ``transaction`` never lose an update across threads,
      processes or machines.
    * Operations on one thread ID are serialized in the process; different
      thread IDs never wait on each other.
    * A save that appends messages writes only the new messages and the head.

    Args:
        ttl: Seconds a thread lives after its last save (sliding); None keeps
            threads forever. Expired threads are never returned.
        max_retries: How often ``update`` retries after a conflict with
            another process before raising ``ConflictError``.
    """

    #: URL schemes this backend answers to in :func:`agents_persist.from_url`.
    url_schemes: Tuple[str, ...] = ()

    def __init__(self, *, ttl: Optional[float] = None, max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        if ttl is not None and (not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl > 0):
            raise ConfigurationError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an int >= 0, not {max_retries!r}")
        self.ttl: Optional[float] = float(ttl) if ttl is not None else None
        self.max_retries = max_retries
        self._locks = LockRegistry()
        self._prefix_cache: "OrderedDict[str, Tuple[int, bytes]]" = OrderedDict()
        self._prefix_cache_mutex = threading.Lock()
        self._closed = False
        _instances.add(self)

    # ------------------------------------------------------------------ public contract

    def save(
        self,
        thread_id: str,
        state: AgentStateSnapshot,
        *,
        expected_version: Optional[int] = None,
        force: bool = False,
    ) -> int:
        """Atomically replace the stored state of ``thread_id`` with ``state``.

        Only messages appended since ``state`` was loaded or last saved are
        written; if earlier messages changed, the whole log is rewritten.

        Args:
            thread_id: The conversation's ID.
            state: The snapshot to store. Afterwards it carries the new version.
            expected_version: Save only if the stored version is this one
                (0: only if the thread does not exist). By default a snapshot
                that was loaded from or saved to ``thread_id`` checks the
                version it carries; a freshly built snapshot overwrites.
            force: Overwrite whatever is stored, skipping the default check.

        Returns:
            The new stored version (1 for a new thread).

        Raises:
            InvalidThreadIdError: Bad thread ID (before any I/O).
            SerializationError: ``state`` holds a non-JSON-like value; nothing written.
            ConflictError: The stored version is not the expected one; nothing written.
            BackendUnavailableError: The store could not be reached in time.
        """
        validate_thread_id(thread_id)
        if expected_version is not None:
            if force:
                raise ValueError("pass either expected_version or force=True, not both")
            if type(expected_version) is not int or expected_version < 0:
                raise ValueError(f"expected_version must be an int >= 0, not {expected_version!r}")
        head = codec.encode_head(state, thread_id)
        with self._locks.hold(thread_id):
            self._check_open()
            origin: Optional[_Origin] = state.__dict__.get("_origin")
            if origin is not None and origin.thread_id != thread_id:
                origin = None
            if expected_version is None and not force and origin is not None:
                expected_version = origin.version
            return self._save_planned(thread_id, state, head, expected_version, origin)

    def load(self, thread_id: str) -> Optional[AgentStateSnapshot]:
        """Return the stored snapshot of ``thread_id``, or None if there is none (or it expired).

        Raises:
            InvalidThreadIdError: Bad thread ID (before any I/O).
            CorruptSnapshotError: The stored bytes cannot be decoded.
            BackendUnavailableError: The store could not be reached in time.
        """
        validate_thread_id(thread_id)
        with self._locks.hold(thread_id):
            self._check_open()
            stored = self._read(thread_id)
            if stored is None or self._is_expired(stored.expires_at):
                return None
            return self._decode(thread_id, stored)

    def delete(self, thread_id: str) -> bool:
        """Remove everything stored for ``thread_id``; True if a live thread was deleted."""
        validate_thread_id(thread_id)
        with self._locks.hold(thread_id):
            self._check_open()
            self._forget_prefix(thread_id)
            return self._delete(thread_id)

    def exists(self, thread_id: str) -> bool:
        """True if ``thread_id`` has a stored, unexpired snapshot."""
        return self.get_version(thread_id) > 0

    def get_version(self, thread_id: str) -> int:
        """The stored version of ``thread_id`` without loading it; 0 if missing or expired."""
        validate_thread_id(thread_id)
        self._check_open()
        return self._read_version(thread_id)

    def list_threads(
        self, prefix: Optional[str] = None, *, limit: int = DEFAULT_LIST_LIMIT, cursor: Optional[str] = None
    ) -> ThreadPage:
        """List stored threads, most recently updated first, without loading their histories.

        Args:
            prefix: Only thread IDs starting with this string.
            limit: Page size (1 to 10,000).
            cursor: ``next_cursor`` of the previous page.

        Returns:
            A :class:`ThreadPage`; its ``next_cursor`` is None on the last page.
            A thread saved while paging may move to the front and be missed or
            seen twice, as with any live listing.
        """
        if prefix is not None and type(prefix) is not str:
            raise TypeError(f"prefix must be a str or None, not {type(prefix).__name__}")
        if type(limit) is not int or not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be an int from 1 to {MAX_LIST_LIMIT}, not {limit!r}")
        after = _decode_cursor(cursor) if cursor is not None else None
        self._check_open()
        found = self._list_threads(prefix or None, limit + 1, after, time.time())
        threads = found[:limit]
        next_cursor = _encode_cursor(threads[-1]) if len(found) > limit else None
        return ThreadPage(threads=threads, next_cursor=next_cursor)

    def iter_threads(self, prefix: Optional[str] = None, *, page_size: int = DEFAULT_LIST_LIMIT) -> Iterator[ThreadInfo]:
        """Yield every stored thread (optionally under ``prefix``), following cursors."""
        cursor: Optional[str] = None
        while True:
            page = self.list_threads(prefix, limit=page_size, cursor=cursor)
            yield from page.threads
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    @contextmanager
    def transaction(self, thread_id: str) -> Iterator[AgentStateSnapshot]:
        """Load ``thread_id`` (or an empty snapshot), let the block modify it, then save it.

        The save checks the version that was loaded, and the thread's lock is
        held for the whole block, so threads of this process never conflict.
        If another process saved in between, the block's changes are not
        written and ``ConflictError`` is raised: a ``with`` block cannot be
        run again, so use :meth:`update` where retries are wanted. If the
        block raises, nothing is saved.
        """
        validate_thread_id(thread_id)
        with self._locks.hold(thread_id):
            state = self._load_or_new(thread_id)
            yield state
            self.save(thread_id, state)

    def update(self, thread_id: str, fn: UpdateFn, *, max_retries: Optional[int] = None) -> AgentStateSnapshot:
        """Read-modify-write ``thread_id`` with ``fn``, retrying on conflicts.

        ``fn`` receives the current snapshot (an empty one for a new thread)
        and either modifies it in place and returns None, or returns the
        snapshot to store. It may run more than once, so it should have no
        side effects besides the snapshot.

        Returns:
            The snapshot as stored (carrying its new version).

        Raises:
            ConflictError: Still conflicting after ``max_retries`` retries.
        """
        validate_thread_id(thread_id)
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            with self._locks.hold(thread_id):
                state = self._load_or_new(thread_id)
                loaded_version = state.version
                result = fn(state)
                if result is None:
                    result = state
                elif not isinstance(result, AgentStateSnapshot):
                    raise TypeError(f"update function returned {type(result).__name__}, not a snapshot or None")
                try:
                    self.save(thread_id, result, expected_version=loaded_version)
                    return result
                except ConflictError:
                    if attempt >= retries:
                        raise
            attempt += 1
            # Exponential backoff with full jitter, outside the lock.
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 10))))

    def purge_expired(self) -> int:
        """Delete expired threads now; return how many were removed.

        Expired threads are never returned anyway; this reclaims their space
        on stores that do not expire data by themselves.
        """
        self._check_open()
        return self._purge_expired(time.time())

    def close(self) -> None:
        """Release connections this checkpointer created; idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()})"

    # ------------------------------------------------------------------ storage primitives

    @abstractmethod
    def _read(self, thread_id: str) -> Optional[StoredThread]:
        """Read head and messages of one committed version (None if missing), atomically."""

    @abstractmethod
    def _write(self, thread_id: str, write: PlannedWrite) -> int:
        """Apply ``write`` atomically as :class:`PlannedWrite` describes; return the new version."""

    @abstractmethod
    def _delete(self, thread_id: str) -> bool:
        """Remove all of the thread; True if it existed and had not expired."""

    @abstractmethod
    def _read_version(self, thread_id: str) -> int:
        """The stored version, 0 if missing or expired."""

    @abstractmethod
    def _list_threads(
        self, prefix: Optional[str], limit: int, after: Optional[Tuple[float, str]], now: float
    ) -> List[ThreadInfo]:
        """Up to ``limit`` unexpired threads ordered by (updated_at, thread_id) descending,
        strictly after ``after`` in that order, whose IDs start with ``prefix``."""

    @abstractmethod
    def _purge_expired(self, now: float) -> int:
        """Delete threads with ``expires_at <= now``; return how many."""

    def _close(self) -> None:
        """Release resources; backends override."""

    def _after_fork(self) -> None:
        """Drop what must not be shared with the parent after ``fork``; backends extend."""

    def _describe(self) -> str:
        """Constructor-like description for ``repr``, without secrets."""
        return ""

    # ------------------------------------------------------------------ helpers for backends

    def _conflict(self, thread_id: str, expected: Optional[int], actual: int) -> ConflictError:
        """The error a backend raises when a compare-and-set fails."""
        return ConflictError(
            f"thread {thread_id!r} is at version {actual}, not the expected {expected}",
            thread_id=thread_id,
            expected_version=expected,
            actual_version=actual,
        )

    @staticmethod
    def _thread_info(
        thread_id: str, version: int, updated_at: float, message_count: int, expires_at: Optional[float]
    ) -> ThreadInfo:
        """Build a :class:`ThreadInfo` from stored scalars."""
        info = ThreadInfo(
            thread_id=thread_id,
            version=int(version),
            updated_at=datetime.fromtimestamp(updated_at, timezone.utc),
            message_count=int(message_count),
            expires_at=_to_datetime(expires_at),
        )
        info.__dict__["_updated_at"] = float(updated_at)
        return info

    @staticmethod
    def _is_expired(expires_at: Optional[float], now: Optional[float] = None) -> bool:
        return expires_at is not None and expires_at <= (time.time() if now is None else now)

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise CheckpointerClosedError(f"{type(self).__name__} is closed")

    def _load_or_new(self, thread_id: str) -> AgentStateSnapshot:
        state = self.load(thread_id)
        if state is None:
            state = AgentStateSnapshot()
            state.__dict__["_origin"] = _Origin(thread_id, 0, 0, codec.EMPTY_DIGEST, [])
        return state

    def _decode(self, thread_id: str, stored: StoredThread) -> AgentStateSnapshot:
        if isinstance(stored.messages, bytes):
            messages = codec.decode_message_stream(stored.messages, stored.message_count, thread_id)
        elif len(stored.messages) != stored.message_count:
            raise CorruptSnapshotError(
                f"thread {thread_id!r}: head lists {stored.message_count} messages but {len(stored.messages)} are stored",
                thread_id=thread_id,
            )
        else:
            messages = codec.decode_messages(stored.messages, thread_id)
        head = codec.decode_head(stored.head, thread_id)
        state = AgentStateSnapshot(
            messages=messages, todos=head.todos, current_interrupt=head.current_interrupt, metadata=head.metadata
        )
        state.__dict__["_origin"] = _Origin(thread_id, stored.version, stored.message_count, stored.digest, list(messages))
        self._remember_prefix(thread_id, stored.message_count, stored.digest)
        return state

    def _save_planned(
        self,
        thread_id: str,
        state: AgentStateSnapshot,
        head: bytes,
        expected_version: Optional[int],
        origin: Optional[_Origin],
    ) -> int:
        messages = state.messages
        if not isinstance(messages, list):
            raise SerializationError("messages must be a list of AgentMessage", thread_id=thread_id)
        now = time.time()
        expires_at = now + self.ttl if self.ttl is not None else None
        write = self._plan(thread_id, messages, origin, expected_version, head, now, expires_at)
        try:
            version = self._write(thread_id, write)
        except PrefixMismatch:
            # Someone else changed the log since our baseline: rewrite it whole.
            self._forget_prefix(thread_id)
            write = self._plan(thread_id, messages, None, expected_version, head, now, expires_at)
            version = self._write(thread_id, write)
        state.__dict__["_origin"] = _Origin(thread_id, version, write.message_count, write.digest, list(messages))
        self._remember_prefix(thread_id, write.message_count, write.digest)
        return version

    def _plan(
        self,
        thread_id: str,
        messages: List[AgentMessage],
        origin: Optional[_Origin],
        expected_version: Optional[int],
        head: bytes,
        now: float,
        expires_at: Optional[float],
    ) -> PlannedWrite:
        """Decide between appending new messages and rewriting the log."""
        total = len(messages)
        base_count: Optional[int] = None
        base_digest = codec.EMPTY_DIGEST
        if origin is not None and total >= origin.message_count and messages[: origin.message_count] == origin.messages:
            # Fast path: the stored prefix is the very messages we loaded or saved.
            base_count, base_digest = origin.message_count, origin.digest
            blobs = codec.encode_messages(messages[base_count:], base_count, thread_id)
            digest = codec.chain_digest(base_digest, blobs)
        else:
            blobs = codec.encode_messages(messages, 0, thread_id)
            cached = self._cached_prefix(thread_id)
            if cached is not None and 0 < cached[0] <= total:
                prefix_digest = codec.chain_digest(codec.EMPTY_DIGEST, blobs[: cached[0]])
                if prefix_digest == cached[1]:
                    # A fresh snapshot that starts with what this process last saw stored.
                    base_count, base_digest = cached
                    digest = codec.chain_digest(prefix_digest, blobs[base_count:])
                    blobs = blobs[base_count:]
                else:
                    digest = codec.chain_digest(prefix_digest, blobs[cached[0] :])
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

    def _cached_prefix(self, thread_id: str) -> Optional[Tuple[int, bytes]]:
        with self._prefix_cache_mutex:
            return self._prefix_cache.get(thread_id)

    def _remember_prefix(self, thread_id: str, count: int, digest: bytes) -> None:
        with self._prefix_cache_mutex:
            cache = self._prefix_cache
            cache[thread_id] = (count, digest)
            cache.move_to_end(thread_id)
            if len(cache) > DEFAULT_PREFIX_CACHE_SIZE:
                cache.popitem(last=False)

    def _forget_prefix(self, thread_id: str) -> None:
        with self._prefix_cache_mutex:
            self._prefix_cache.pop(thread_id, None)
