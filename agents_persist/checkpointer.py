"""The public contract and its policy, written once over any :class:`~agents_persist.store.Store`.

:class:`Checkpointer` holds everything the backends share: thread-ID
validation before any I/O, per-thread-ID locks, encoding, the planning of a
save (append only the new messages, or rewrite the log), the version checks
that prevent lost updates, ``transaction``/``update`` with bounded retries,
TTL arithmetic, ``list_threads`` paging and the life cycle. The store it is
built over only keeps bytes (:mod:`agents_persist.store`).
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from operator import attrgetter
from types import TracebackType
from typing import Any, Callable, Dict, Iterator, List, Optional, Type, TypeVar

from . import codec, options
from .errors import CheckpointerClosedError, ConflictError, CorruptSnapshotError, SerializationError
from .ids import validate_thread_id
from .models import AgentMessage, AgentStateSnapshot, ThreadInfo, ThreadPage, _Origin
from .paging import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, decode_cursor, encode_cursor
from .planning import PrefixMismatch, StoredThread, is_expired, plan_write
from .prefix_cache import PrefixCache
from .runtime import forking
from .runtime.locks import LockRegistry
from .store import Store

__all__ = ["Checkpointer", "UpdateFn", "store_attribute"]

T = TypeVar("T", bound="Checkpointer")


def store_attribute(path: str, doc: str) -> Any:
    """A read-only property of a backend's public class showing ``self.store.<path>`` (a configured value)."""
    get = attrgetter(path)
    return property(lambda self: get(self.store), doc=doc)

UpdateFn = Callable[[AgentStateSnapshot], Optional[AgentStateSnapshot]]


class Checkpointer:
    """Saves and restores :class:`AgentStateSnapshot` objects per thread ID, over a :class:`Store`.

    Guarantees, on every backend:

    * ``load`` returns one committed version whole, never a mix of two.
    * A loaded snapshot saved back checks the version it was loaded at, so a
      newer concurrent save is never overwritten unnoticed (``ConflictError``).
    * ``update`` and ``transaction`` never lose an update across threads,
      processes or machines.
    * Operations on one thread ID are serialized in the process; different
      thread IDs never wait on each other.
    * A save that appends messages writes only the new messages and the head.

    Users construct a backend's class (``SqliteCheckpointer(...)``,
    ``from_url(...)``); ``Checkpointer(store)`` serves any other store.

    Args:
        store: Where the bytes go; closed by :meth:`close`.
        ttl: Seconds a thread lives after its last save (sliding); None keeps
            threads forever. Expired threads are never returned.
        max_retries: How often ``update`` retries after a conflict with
            another process before raising ``ConflictError``.
    """

    def __init__(self, store: Store, *, ttl: Optional[float] = None, max_retries: int = 50) -> None:
        common = options.check(options.COMMON_OPTIONS, {"ttl": ttl, "max_retries": max_retries}, backend=type(self).__name__)
        self.store = store
        self.ttl: Optional[float] = common["ttl"]
        self.max_retries: int = common["max_retries"]
        self._locks = LockRegistry()
        self._prefixes = PrefixCache()
        self._closed = False
        forking.register(store)

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
            stored = self.store.read(thread_id)
            if stored is None or is_expired(stored.expires_at):
                return None
            return self._decode(thread_id, stored)

    def delete(self, thread_id: str) -> bool:
        """Remove everything stored for ``thread_id``; True if a live thread was deleted."""
        validate_thread_id(thread_id)
        with self._locks.hold(thread_id):
            self._check_open()
            self._prefixes.forget(thread_id)
            return self.store.delete(thread_id)

    def exists(self, thread_id: str) -> bool:
        """True if ``thread_id`` has a stored, unexpired snapshot."""
        return self.get_version(thread_id) > 0

    def get_version(self, thread_id: str) -> int:
        """The stored version of ``thread_id`` without loading it; 0 if missing or expired."""
        validate_thread_id(thread_id)
        self._check_open()
        return self.store.read_version(thread_id)

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
        after = decode_cursor(cursor) if cursor is not None else None
        self._check_open()
        found = self.store.list(prefix or None, limit + 1, after, time.time())
        threads = found[:limit]
        next_cursor = encode_cursor(threads[-1]) if len(found) > limit else None
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
        return self.store.purge(time.time())

    def close(self) -> None:
        """Release connections this checkpointer created; idempotent."""
        if not self._closed:
            self._closed = True
            self.store.close()

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
        return f"{type(self).__name__}({self.store.describe()})"

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
        self._prefixes.remember(thread_id, stored.message_count, stored.digest)
        return state

    def _save_planned(
        self,
        thread_id: str,
        state: AgentStateSnapshot,
        head: bytes,
        expected_version: Optional[int],
        origin: Optional[_Origin],
    ) -> int:
        messages: List[AgentMessage] = state.messages
        if not isinstance(messages, list):
            raise SerializationError("messages must be a list of AgentMessage", thread_id=thread_id)
        now = time.time()
        expires_at = now + self.ttl if self.ttl is not None else None
        plan: Dict[str, Any] = dict(expected_version=expected_version, head=head, now=now, expires_at=expires_at)
        write = plan_write(thread_id, messages, origin, self._prefixes.get(thread_id), **plan)
        try:
            version = self.store.write(thread_id, write)
        except PrefixMismatch:
            # Someone else changed the log since our baseline: rewrite it whole.
            self._prefixes.forget(thread_id)
            write = plan_write(thread_id, messages, None, None, **plan)
            version = self.store.write(thread_id, write)
        state.__dict__["_origin"] = _Origin(thread_id, version, write.message_count, write.digest, list(messages))
        self._prefixes.remember(thread_id, write.message_count, write.digest)
        return version
