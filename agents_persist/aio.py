"""AsyncCheckpointer: the checkpointer contract as coroutines for asyncio code.

Each storage call runs the blocking checkpointer in a bounded thread pool
through ``loop.run_in_executor``, so the event loop never blocks, and the same
checkpointer can serve sync and async callers at once. The pool's threads
only ever run store calls, which never wait for one another: a coroutine
that holds a thread ID's lock (``transaction``) or runs an update function
holds no pool thread, so callbacks into the adapter cannot deadlock it.

Cancellation (``asyncio.wait_for`` timing out, a task cancelled): a call
whose storage step had not started does nothing. A storage step already
running in the pool cannot be stopped: it completes (or fails) in the
background, so a cancelled ``save``, ``append`` or the last attempt of a
cancelled ``update`` *may have been applied*. ``update`` runs its function
on the event loop (``async def``) or in the loop's default executor (plain
functions), between its load and its save, so cancelling it while the
function runs (the common case: the function calls a model) never commits.
To retry safely after a cancellation or a timeout, pass the same
``idempotency_key`` to ``update``/``append``: it is applied once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, AsyncIterator, Awaitable, Callable, List, Optional, Sequence, Type, TypeVar, Union

from . import telemetry
from .arguments import already_applied, check_idempotency_key, checked_result
from .checkpointer import Checkpointer
from .errors import CheckpointerClosedError, ConflictError, InvalidArgumentError
from .ids import validate_thread_id
from .models import AgentMessage, AgentStateSnapshot, ThreadInfo, ThreadPage
from .planning import backoff
from .runtime.closing import AsyncClosing

__all__ = ["AsyncCheckpointer", "AsyncUpdateFn", "Attempt", "Attempts"]


R = TypeVar("R")
DEFAULT_MAX_WORKERS = 8
AsyncUpdateFn = Callable[[AgentStateSnapshot], Union[Optional[AgentStateSnapshot], Awaitable[Optional[AgentStateSnapshot]]]]


def _pool_size(checkpointer: Checkpointer) -> int:
    """As many workers as the backend has connections (each store call holds at most one).

    Read from the public class (``RedisCheckpointer.max_connections``, which
    finds it in the store's connection or client) or else from the store.
    """
    size = getattr(checkpointer, "max_connections", None) or getattr(checkpointer.store, "max_connections", None)
    return size if isinstance(size, int) and size > 0 else DEFAULT_MAX_WORKERS


class AsyncCheckpointer(AsyncClosing):
    """Wraps any :class:`Checkpointer` so its calls can be awaited.

    Args:
        checkpointer: The blocking checkpointer to run.
        max_workers: Size of the private thread pool (ignored with
            ``executor``); by default the backend's ``max_connections``
            (8 where it has none). At most this many calls run at once, the
            rest queue.
        executor (Optional[concurrent.futures.ThreadPoolExecutor]): Use this executor instead of a private one (not shut down
            by :meth:`close`).
        close_checkpointer: Whether :meth:`close` also closes ``checkpointer``.
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        *,
        max_workers: Optional[int] = None,
        executor: Optional[ThreadPoolExecutor] = None,
        close_checkpointer: bool = True,
    ) -> None:
        workers = _pool_size(checkpointer) if max_workers is None else max_workers
        if type(workers) is not int or workers < 1:
            raise InvalidArgumentError(f"max_workers must be an int >= 1, not {max_workers!r}")
        self.checkpointer = checkpointer
        self.max_workers = workers
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agents_persist")
        self._close_checkpointer = close_checkpointer
        self._closed = False
        self._locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = weakref.WeakValueDictionary()

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        if self._closed:
            raise CheckpointerClosedError("AsyncCheckpointer is closed")
        loop = asyncio.get_running_loop()
        # The caller's context (an OpenTelemetry span, for one) follows the call into the pool.
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def _lock(self, thread_id: str) -> asyncio.Lock:
        """This adapter's lock of ``thread_id``: async callers of one thread take turns instead of conflicting."""
        lock = self._locks.get(thread_id)
        if lock is None:
            lock = self._locks[thread_id] = asyncio.Lock()
        return lock

    async def save(
        self,
        thread_id: str,
        state: AgentStateSnapshot,
        *,
        expected_version: Optional[int] = None,
        force: bool = False,
    ) -> int:
        """Async :meth:`Checkpointer.save`."""
        return await self._run(self.checkpointer.save, thread_id, state, expected_version=expected_version, force=force)

    async def append(
        self,
        thread_id: str,
        messages: Sequence[AgentMessage],
        *,
        expected_version: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> int:
        """Async :meth:`Checkpointer.append`."""
        return await self._run(
            self.checkpointer.append, thread_id, messages, expected_version=expected_version, idempotency_key=idempotency_key
        )

    async def load(self, thread_id: str) -> Optional[AgentStateSnapshot]:
        """Async :meth:`Checkpointer.load`."""
        return await self._run(self.checkpointer.load, thread_id)

    async def load_messages(
        self, thread_id: str, start: Optional[int] = None, stop: Optional[int] = None
    ) -> List[AgentMessage]:
        """Async :meth:`Checkpointer.load_messages`."""
        return await self._run(self.checkpointer.load_messages, thread_id, start, stop)

    async def tail(self, thread_id: str, n: int) -> List[AgentMessage]:
        """Async :meth:`Checkpointer.tail`."""
        return await self._run(self.checkpointer.tail, thread_id, n)

    async def message_count(self, thread_id: str) -> int:
        """Async :meth:`Checkpointer.message_count`."""
        return await self._run(self.checkpointer.message_count, thread_id)

    async def delete(self, thread_id: str) -> bool:
        """Async :meth:`Checkpointer.delete`."""
        return await self._run(self.checkpointer.delete, thread_id)

    async def exists(self, thread_id: str) -> bool:
        """Async :meth:`Checkpointer.exists`."""
        return await self._run(self.checkpointer.exists, thread_id)

    async def get_version(self, thread_id: str) -> int:
        """Async :meth:`Checkpointer.get_version`."""
        return await self._run(self.checkpointer.get_version, thread_id)

    async def list_threads(self, prefix: Optional[str] = None, *, limit: int = 100, cursor: Optional[str] = None) -> ThreadPage:
        """Async :meth:`Checkpointer.list_threads`."""
        return await self._run(self.checkpointer.list_threads, prefix, limit=limit, cursor=cursor)

    async def update(
        self,
        thread_id: str,
        fn: AsyncUpdateFn,
        *,
        max_retries: Optional[int] = None,
        idempotency_key: Optional[str] = None,
    ) -> AgentStateSnapshot:
        """Async :meth:`Checkpointer.update`; ``fn`` may be an ``async def`` function.

        Load, ``fn`` and the compare-and-set save are separate steps: ``fn``
        runs on the event loop (``async def``) or in the loop's default
        executor, never in this adapter's pool, and only a save on top of the
        very state ``fn`` saw commits. Async callers of one thread ID take
        turns (no conflicts among them); other processes' saves make it
        retry, with backoff, up to ``max_retries`` times.
        """
        thread_id = validate_thread_id(thread_id)
        check_idempotency_key(idempotency_key)
        retries = self.checkpointer.max_retries if max_retries is None else max_retries
        with telemetry.operation("update", self.checkpointer, check_slow=False):
            attempt = 0
            while True:
                async with self._lock(thread_id):
                    state = await self._run(self.checkpointer._load_or_new, thread_id)
                    if already_applied(state, idempotency_key):
                        return state
                    result = checked_result(await self._call(fn, state), state)
                    try:
                        return await self._run(self.checkpointer._commit, thread_id, result, state.provenance, idempotency_key)
                    except ConflictError:
                        if not telemetry.conflicted("update", thread_id, attempt, retries):
                            raise
                attempt += 1
                await asyncio.sleep(backoff(attempt))

    @staticmethod
    async def _call(fn: AsyncUpdateFn, state: AgentStateSnapshot) -> Optional[AgentStateSnapshot]:
        if inspect.iscoroutinefunction(fn):
            return await fn(state)  # type: ignore[no-any-return]
        result = await asyncio.get_running_loop().run_in_executor(None, fn, state)
        if inspect.isawaitable(result):
            return await result  # type: ignore[no-any-return]
        return result

    async def purge_expired(self) -> int:
        """Async :meth:`Checkpointer.purge_expired`."""
        return await self._run(self.checkpointer.purge_expired)

    async def delete_inactive(self, updated_before: Any, *, batch_size: int = 500) -> int:
        """Async :meth:`Checkpointer.delete_inactive`."""
        return await self._run(self.checkpointer.delete_inactive, updated_before, batch_size=batch_size)

    async def iter_threads(self, prefix: Optional[str] = None, *, page_size: int = 100) -> AsyncIterator[ThreadInfo]:
        """Async :meth:`Checkpointer.iter_threads`: ``async for info in acp.iter_threads()``."""
        walk = self.checkpointer.iter_threads(prefix, page_size=page_size)
        done = object()
        while True:
            info = await self._run(next, walk, done)
            if info is done:
                return
            yield info  # type: ignore[misc]

    @asynccontextmanager
    async def transaction(self, thread_id: str) -> AsyncIterator[AgentStateSnapshot]:
        """Load, let the block modify, save with the loaded version (and incarnation) checked.

        Async callers of this adapter on one thread ID take turns, so they
        never conflict with each other; a save by another process (or a sync
        caller) in between makes the exit raise ``ConflictError``, and the
        block's changes are not written. Use :meth:`update` to retry
        automatically. If the block raises, nothing is saved.
        """
        thread_id = validate_thread_id(thread_id)
        async with self._lock(thread_id):
            state = await self._run(self.checkpointer._load_or_new, thread_id)
            yield state
            await self.save(thread_id, state)

    def attempts(self, thread_id: str, *, max_retries: Optional[int] = None) -> "Attempts":
        """:meth:`transaction`, re-run on conflicts: ``async for attempt in acp.attempts(tid): async with attempt as state:``.

        Each attempt is one :meth:`transaction`. If its save conflicts with
        another process's save, the ``async with`` swallows the
        ``ConflictError`` and the loop runs the block again on freshly loaded
        state after a backoff, up to ``max_retries`` times (default: the
        checkpointer's ``max_retries``); the last conflict is raised. Any other
        exception ends the loop at once. The block may run more than once, so
        it should only change the snapshot.
        """
        retries = self.checkpointer.max_retries if max_retries is None else max_retries
        if type(retries) is not int or retries < 0:
            raise InvalidArgumentError(f"max_retries must be an int >= 0, not {max_retries!r}")
        return Attempts(self, validate_thread_id(thread_id), retries)

    async def close(self) -> None:
        """Close the checkpointer (if owned) and shut the private pool down; idempotent."""
        if self._closed:
            return
        try:
            if self._close_checkpointer:
                await self._run(self.checkpointer.close)
        finally:
            self._closed = True
            if self._own_executor:
                self._executor.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"AsyncCheckpointer({self.checkpointer!r})"


class Attempt:
    """One run of an :meth:`~agents_persist.AsyncCheckpointer.attempts` block: ``async with attempt as state:``."""

    def __init__(self, attempts: "Attempts", number: int) -> None:
        self.number = number
        self._attempts = attempts
        self._transaction: Optional[Any] = None

    async def __aenter__(self) -> AgentStateSnapshot:
        if self._transaction is not None:
            raise RuntimeError("an attempt can be entered only once")
        self._transaction = self._attempts.checkpointer.transaction(self._attempts.thread_id)
        return await self._transaction.__aenter__()  # type: ignore[no-any-return]

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> bool:
        attempts = self._attempts
        try:
            await self._transaction.__aexit__(exc_type, exc, tb)  # type: ignore[union-attr]
        except ConflictError as conflict:
            if telemetry.conflicted("transaction", attempts.thread_id, self.number, attempts.max_retries):
                return True  # swallowed: the loop runs the block again
            attempts.finish(conflict)
            raise
        if isinstance(exc, ConflictError) and telemetry.conflicted(
            "transaction", attempts.thread_id, self.number, attempts.max_retries
        ):
            return True
        attempts.done = exc is None
        attempts.finish(exc)
        return False


class Attempts:
    """The async iterator :meth:`~agents_persist.AsyncCheckpointer.attempts` returns; yields :class:`Attempt` objects.

    The whole loop is one ``transaction`` operation for :mod:`agents_persist.telemetry`.
    """

    def __init__(self, checkpointer: AsyncCheckpointer, thread_id: str, max_retries: int) -> None:
        self.checkpointer = checkpointer
        self.thread_id = thread_id
        self.max_retries = max_retries
        self.done = False
        self._current: Optional[Attempt] = None
        self._operation: Optional[telemetry.operation] = None

    def __aiter__(self) -> "Attempts":
        return self

    async def __anext__(self) -> Attempt:
        current = self._current
        if self.done:
            raise StopAsyncIteration
        if current is None:
            self._operation = telemetry.operation("transaction", self.checkpointer.checkpointer, check_slow=False)
            self._operation.__enter__()
        else:
            if current._transaction is None:
                error = RuntimeError("each attempt must be entered with 'async with attempt as state:'")
                self.finish(error)
                raise error
            await asyncio.sleep(backoff(current.number + 1))
        self._current = Attempt(self, 0 if current is None else current.number + 1)
        return self._current

    def finish(self, exc: Optional[BaseException]) -> None:
        """End the loop's telemetry operation (once)."""
        operation, self._operation = self._operation, None
        if operation is not None:
            operation.__exit__(type(exc) if exc is not None else None, exc, None)
