"""``async with`` for the library's asynchronous objects that own something to close."""

from __future__ import annotations

from types import TracebackType
from typing import Optional, Type, TypeVar

__all__ = ["AsyncClosing"]

_Self = TypeVar("_Self", bound="AsyncClosing")


class AsyncClosing:
    """A base for classes with ``async def close()``: ``async with obj:`` closes it when the block ends."""

    async def close(self) -> None:
        """Release what the object owns (each subclass says what)."""
        raise NotImplementedError

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()
