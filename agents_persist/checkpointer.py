"""The public contract and its policy, written once over any :class:`~agents_persist.store.Store`.

:class:`Checkpointer` holds everything the backends share: thread-ID
validation before any I/O, per-thread-ID locks, encoding, the planning of a
save (append only the new messages, or rewrite the log), the version checks
that prevent lost updates, ``transaction``/``update`` with bounded retries,
TTL arithmetic, ``list_threads`` paging and the life cycle. The store it is
built over only keeps bytes (:mod:`agents_persist.store`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime
from operator import attrgetter
from types import TracebackType
from typing import Any, Callable, Iterator, List, Optional, Sequence, Type, TypeVar

from . import codec, options, telemetry
from .arguments import already_applied, check_idempotency_key, check_limit, checked_result, epoch_seconds
from .errors import CheckpointerClosedError, ConflictError, InvalidArgumentError, SerializationError
from .ids import validate_thread_id
from .models import AgentMessage, AgentStateSnapshot, Provenance, ThreadInfo, ThreadPage
from .paging import DEFAULT_LIST_LIMIT, decode_cursor, encode_cursor
from .planning import Expectation, backoff, is_expired
from .runtime import forking
from .runtime.locks import LockRegistry
from .store import Store
from .writer import Writer

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
        max_snapshot_bytes: The largest encoded snapshot (head and every
            message) a save may write; a larger one raises
            :class:`~agents_persist.SnapshotTooLargeError` before anything is
            written. None: the store's default (16 MiB on Redis and DynamoDB,
            32 MiB elsewhere).
    """

    def __init__(
        self, store: Store, *, ttl: Optional[float] = None, max_retries: int = 50, max_snapshot_bytes: Optional[int] = None
    ) -> None:
        given = {"ttl": ttl, "max_retries": max_retries, "max_snapshot_bytes": max_snapshot_bytes}
        common = options.check(options.COMMON_OPTIONS, given, backend=type(self).__name__)
        self.store = store
        self.ttl: Optional[float] = common["ttl"]
        self.max_retries: int = common["max_retries"]
        self.max_snapshot_bytes: int = common["max_snapshot_bytes"] or store.default_max_snapshot_bytes
        self._locks = LockRegistry()
        self._writer = Writer(store, self.ttl, self.max_snapshot_bytes)
        self._closed = False
        forking.register(store)

    # ------------------------------------------------------------------ public contract

    @telemetry.traced("save")
    def save(
        self,
        thread_id: str,
        state: AgentStateSnapshot,
        *,
        expected_version: Optional[int] = None,
        force: bool = False,
    ) -> int:
        """Atomically replace the stored state of ``thread_id`` with ``state``; never over a newer state unasked.

        Only messages appended since ``state`` was loaded or last saved are
        written (when its earlier messages still encode to the stored bytes);
        otherwise the whole log is rewritten.

        Args:
            thread_id: The conversation's ID.
            state: The snapshot to store. Afterwards it carries the new version.
            expected_version: Save only if the stored version is this one
                (0: only if the thread does not exist). By default a snapshot
                loaded from or saved to ``thread_id`` checks the version and
                incarnation it carries, and any other snapshot (freshly
                built, or from another thread) creates the thread: it raises
                ``ConflictError`` if the thread exists.
            force: Overwrite whatever is stored, skipping every check.

        Returns:
            The new stored version (1 for a new thread).

        Raises:
            InvalidThreadIdError: Bad thread ID (before any I/O).
            SerializationError: ``state`` holds a non-JSON-like value; nothing written.
            SnapshotTooLargeError: ``state`` encodes to more than
                ``max_snapshot_bytes``; nothing written.
            ConflictError: The stored version is not the expected one, or the
                thread was deleted and created again; nothing written.
            BackendUnavailableError: The store could not be reached in time.
        """
        thread_id = validate_thread_id(thread_id)
        if expected_version is not None:
            if force:
                raise InvalidArgumentError("pass either expected_version or force=True, not both")
            if type(expected_version) is not int or expected_version < 0:
                raise InvalidArgumentError(f"expected_version must be an int >= 0, not {expected_version!r}")
        if not isinstance(state, AgentStateSnapshot):
            raise SerializationError(f"expected an AgentStateSnapshot, got {type(state).__name__}", thread_id=thread_id)
        provenance = state.provenance if state.provenance is not None and state.provenance.thread_id == thread_id else None
        if force:
            expect = Expectation()
        elif expected_version is not None:
            known = provenance.generation if provenance is not None and provenance.version == expected_version else None
            expect = Expectation(version=expected_version, generation=known)
        elif provenance is not None:
            expect = Expectation(version=provenance.version, generation=provenance.generation)
        else:
            expect = Expectation(version=0)
        with self._locks.hold(thread_id):
            self._check_open()
            return self._writer.save(thread_id, state, provenance, expect).version

    @telemetry.traced("append")
    def append(
        self,
        thread_id: str,
        messages: Sequence[AgentMessage],
        *,
        expected_version: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> int:
        """Add ``messages`` to the end of ``thread_id``'s log without loading it (or create the thread).

        Writes only the new messages and the head's scalars, in one atomic
        step of the store; the stored todos, interrupt and metadata stay as
        they are. For workers that keep no state between requests.

        Args:
            expected_version: Append only if the stored version is this one
                (0: only to a thread that does not exist yet); by default
                appends to whatever is stored.
            idempotency_key: A key naming this append; repeating the call
                with the same key (for example after a
                :class:`BackendUnavailableError` whose ``maybe_applied`` is
                set) applies it once and returns the version it produced.

        Returns:
            The new stored version.
        """
        thread_id = validate_thread_id(thread_id)
        if expected_version is not None and (type(expected_version) is not int or expected_version < 0):
            raise InvalidArgumentError(f"expected_version must be an int >= 0, not {expected_version!r}")
        check_idempotency_key(idempotency_key)
        if not isinstance(messages, (list, tuple)):
            raise SerializationError(
                f"messages must be a list of AgentMessage, not {type(messages).__name__}", thread_id=thread_id
            )
        expect = Expectation(version=expected_version, idempotency_key=idempotency_key, keep_head=True)
        with self._locks.hold(thread_id):
            self._check_open()
            return self._writer.append(thread_id, list(messages), expect, self.max_retries)

    @telemetry.traced("load")
    def load(self, thread_id: str) -> Optional[AgentStateSnapshot]:
        """Return the stored snapshot of ``thread_id``, or None if there is none (or it expired).

        Raises:
            InvalidThreadIdError: Bad thread ID (before any I/O).
            CorruptSnapshotError: The stored bytes cannot be decoded.
            BackendUnavailableError: The store could not be reached in time.
        """
        thread_id = validate_thread_id(thread_id)
        self._check_open()
        # No per-thread lock: every store's read is one atomic step, and a load
        # never waits behind a transaction() held by another thread.
        stored = self.store.read(thread_id)
        if stored is None or is_expired(stored.expires_at):
            return None
        return self._writer.decode(thread_id, stored)

    @telemetry.traced("load_messages")
    def load_messages(self, thread_id: str, start: Optional[int] = None, stop: Optional[int] = None) -> List[AgentMessage]:
        """The messages ``[start:stop]`` of ``thread_id`` (Python slice bounds; negative counts from the end).

        Reads only what is asked where the backend's log is chunked or
        indexed, from one committed version. A missing or expired thread has
        no messages (``[]``); :meth:`message_count` tells the length.

        Raises:
            InvalidArgumentError: ``start`` or ``stop`` is not an int or None.
            CorruptSnapshotError: The stored bytes cannot be decoded.
        """
        thread_id = validate_thread_id(thread_id)
        for name, bound in (("start", start), ("stop", stop)):
            if bound is not None and type(bound) is not int:
                raise InvalidArgumentError(f"{name} must be an int or None, not {bound!r}")
        self._check_open()
        stored = self.store.read_messages(thread_id, start, stop)
        if stored is None or is_expired(stored.expires_at) or stored.start == stored.stop:
            return []
        return self._writer.decode_slice(thread_id, stored)

    def tail(self, thread_id: str, n: int) -> List[AgentMessage]:
        """The last ``n`` messages of ``thread_id`` (fewer if it has fewer), reading only those where it can."""
        if type(n) is not int or n < 0:
            raise InvalidArgumentError(f"n must be an int >= 0, not {n!r}")
        if n == 0:
            validate_thread_id(thread_id)
            return []
        return self.load_messages(thread_id, -n)

    @telemetry.traced("message_count")
    def message_count(self, thread_id: str) -> int:
        """How many messages ``thread_id`` holds, without loading them; 0 if missing or expired."""
        thread_id = validate_thread_id(thread_id)
        self._check_open()
        head = self.store.read_head(thread_id)
        return 0 if head is None or is_expired(head.expires_at) else head.message_count

    @telemetry.traced("delete")
    def delete(self, thread_id: str) -> bool:
        """Remove everything stored for ``thread_id``; True if a live thread was deleted."""
        thread_id = validate_thread_id(thread_id)
        with self._locks.hold(thread_id):
            self._check_open()
            self._writer.prefixes.forget(thread_id)
            return self.store.delete(thread_id)

    def exists(self, thread_id: str) -> bool:
        """True if ``thread_id`` has a stored, unexpired snapshot."""
        return self.get_version(thread_id) > 0

    @telemetry.traced("get_version")
    def get_version(self, thread_id: str) -> int:
        """The stored version of ``thread_id`` without loading it; 0 if missing or expired."""
        thread_id = validate_thread_id(thread_id)
        self._check_open()
        return self.store.read_version(thread_id)

    @telemetry.traced("list_threads")
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
            raise InvalidArgumentError(f"prefix must be a str or None, not {type(prefix).__name__}")
        check_limit("limit", limit)
        after = decode_cursor(cursor) if cursor is not None else None
        self._check_open()
        found = self.store.list(prefix or None, limit + 1, after, time.time())
        threads = found[:limit]
        next_cursor = encode_cursor(threads[-1]) if len(found) > limit else None
        return ThreadPage(threads=threads, next_cursor=next_cursor)

    def iter_threads(self, prefix: Optional[str] = None, *, page_size: int = DEFAULT_LIST_LIMIT) -> Iterator[ThreadInfo]:
        """Yield every stored thread (optionally under ``prefix``), page by page, in an order saves never change.

        Unlike paging :meth:`list_threads` (newest first, where a thread
        saved meanwhile moves to the front), the walk goes in the store's
        stable order (thread-ID order; on DynamoDB its table's Scan order):
        every thread that exists for the whole walk is yielded exactly once.
        Threads created or deleted during the walk may or may not be seen.
        """
        if prefix is not None and type(prefix) is not str:
            raise InvalidArgumentError(f"prefix must be a str or None, not {type(prefix).__name__}")
        check_limit("page_size", page_size)
        after: Optional[str] = None
        while True:
            self._check_open()
            page = self.store.scan(prefix or None, after, page_size, time.time())
            yield from page
            if len(page) < page_size or page[-1].thread_id == after:
                return  # the last page, or a store that did not move on (never loop); DynamoDB's order is not by ID
            after = page[-1].thread_id

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
        thread_id = validate_thread_id(thread_id)
        with telemetry.operation("transaction", self, check_slow=False), self._locks.hold(thread_id):
            state = self._load_or_new(thread_id)
            yield state
            self.save(thread_id, state)

    @telemetry.traced("update", check_slow=False)
    def update(
        self, thread_id: str, fn: UpdateFn, *, max_retries: Optional[int] = None, idempotency_key: Optional[str] = None
    ) -> AgentStateSnapshot:
        """Read-modify-write ``thread_id`` with ``fn``, retrying on conflicts.

        ``fn`` receives the current snapshot (an empty one for a new thread)
        and either modifies it in place and returns None, or returns the
        snapshot to store. It may run more than once, so it should have no
        side effects besides the snapshot. Each attempt commits only on top of
        the very state (version and incarnation) ``fn`` saw.

        Args:
            idempotency_key: A key naming this update: if a call with the same
                key already committed (for example one that raised
                :class:`BackendUnavailableError` with ``maybe_applied`` set),
                ``fn`` is not run again and the stored snapshot is returned.

        Returns:
            The snapshot as stored (carrying its new version).

        Raises:
            ConflictError: Still conflicting after ``max_retries`` retries.
        """
        thread_id = validate_thread_id(thread_id)
        check_idempotency_key(idempotency_key)
        retries = self.max_retries if max_retries is None else max_retries
        attempt = 0
        while True:
            with self._locks.hold(thread_id):
                state = self._load_or_new(thread_id)
                if already_applied(state, idempotency_key):
                    return state
                result = checked_result(fn(state), state)
                try:
                    return self._commit(thread_id, result, state.provenance, idempotency_key)
                except ConflictError:
                    if not telemetry.conflicted("update", thread_id, attempt, retries):
                        raise
            attempt += 1
            time.sleep(backoff(attempt))

    @telemetry.traced("save")
    def _commit(
        self, thread_id: str, result: AgentStateSnapshot, provenance: Optional[Provenance], idempotency_key: Optional[str]
    ) -> AgentStateSnapshot:
        """One attempt of ``update``: save ``result`` only on top of the very state ``provenance`` names."""
        assert provenance is not None
        expect = Expectation(version=provenance.version, generation=provenance.generation, idempotency_key=idempotency_key)
        with self._locks.hold(thread_id):
            self._check_open()
            written = self._writer.save(thread_id, result, provenance, expect)
        if not written.duplicate:
            return result
        # A concurrent call with the same key committed first: return what it stored.
        return self._load_or_new(thread_id)

    @telemetry.traced("purge_expired")
    def purge_expired(self) -> int:
        """Delete expired threads now; return how many were removed.

        Expired threads are never returned anyway; this reclaims their space
        on stores that do not expire data by themselves.
        """
        self._check_open()
        return self.store.purge(time.time())

    @telemetry.traced("delete_inactive")
    def delete_inactive(self, updated_before: "datetime | float", *, batch_size: int = 500) -> int:
        """Delete every thread last saved before ``updated_before`` (an aware datetime or epoch seconds);
        return how many. Runs in batches of ``batch_size`` threads, one short step each, so savers
        never wait long (see the store's ``delete_inactive`` for what each backend guarantees).
        """
        self._check_open()
        check_limit("batch_size", batch_size)
        return self.store.delete_inactive(epoch_seconds("updated_before", updated_before), time.time(), batch_size)

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
            # "Must not exist yet": saving it creates the thread, or conflicts.
            state = AgentStateSnapshot(provenance=Provenance(thread_id, 0, 0, 0, codec.EMPTY_DIGEST))
        return state
