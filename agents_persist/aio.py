"""AsyncCheckpointer: the checkpointer contract as coroutines for asyncio code.

Each call runs the blocking checkpointer in a bounded thread pool through
``loop.run_in_executor``, so the event loop never blocks, and the same
checkpointer (and its per-thread-ID locks) can serve sync and async callers at
once. Nothing is shared with the running loop, so it cannot deadlock when
called from inside one.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, AsyncIterator, Callable, Optional, Type, TypeVar

from .checkpointer import Checkpointer, UpdateFn
from .errors import CheckpointerClosedError
from .models import AgentStateSnapshot, ThreadInfo, ThreadPage

__all__ = ["AsyncCheckpointer"]

R = TypeVar("R")
DEFAULT_MAX_WORKERS = 8


class AsyncCheckpointer:
    """Wraps any :class:`Checkpointer` so its calls can be awaited.

    Args:
        checkpointer: The blocking checkpointer to run.
        max_workers: Size of the private thread pool (ignored with ``executor``);
            at most this many calls run at once, the rest queue.
        executor: Use this executor instead of a private one (not shut down
            by :meth:`close`).
        close_checkpointer: Whether :meth:`close` also closes ``checkpointer``.
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        executor: Optional[ThreadPoolExecutor] = None,
        close_checkpointer: bool = True,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.checkpointer = checkpointer
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="agents_persist")
        self._close_checkpointer = close_checkpointer
        self._closed = False

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        if self._closed:
            raise CheckpointerClosedError("AsyncCheckpointer is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

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

    async def load(self, thread_id: str) -> Optional[AgentStateSnapshot]:
        """Async :meth:`Checkpointer.load`."""
        return await self._run(self.checkpointer.load, thread_id)

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

    async def update(self, thread_id: str, fn: UpdateFn, *, max_retries: Optional[int] = None) -> AgentStateSnapshot:
        """Async :meth:`Checkpointer.update`; ``fn`` is a plain function run in the pool."""
        return await self._run(self.checkpointer.update, thread_id, fn, max_retries=max_retries)

    async def purge_expired(self) -> int:
        """Async :meth:`Checkpointer.purge_expired`."""
        return await self._run(self.checkpointer.purge_expired)

    async def iter_threads(self, prefix: Optional[str] = None, *, page_size: int = 100) -> AsyncIterator[ThreadInfo]:
        """Async :meth:`Checkpointer.iter_threads`: ``async for info in acp.iter_threads()``."""
        cursor: Optional[str] = None
        while True:
            page = await self.list_threads(prefix, limit=page_size, cursor=cursor)
            for info in page.threads:
                yield info
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    @asynccontextmanager
    async def transaction(self, thread_id: str) -> AsyncIterator[AgentStateSnapshot]:
        """Load, let the block modify, save with the loaded version checked.

        Unlike the blocking version no lock is held while the block runs (it
        runs on the event loop, not in the pool), so a concurrent save of the
        same thread makes the exit raise ``ConflictError``; use :meth:`update`
        to retry automatically.
        """
        state = await self._run(self.checkpointer._load_or_new, thread_id)
        yield state
        await self.save(thread_id, state)

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

    async def __aenter__(self) -> "AsyncCheckpointer":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncCheckpointer({self.checkpointer!r})"
