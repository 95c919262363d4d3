"""The heads of a DynamoDB store's threads as this process last saw them: where a save starts from.

Only ever a hint: every save is conditional on the head's write token, and
a failed condition returns the real head.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple, Optional, Sequence, Tuple

from .layout import HeadState

__all__ = ["HeadCache", "HEAD_CACHE_SIZE", "HEAD_CACHE_INLINE_BYTES"]

HEAD_CACHE_SIZE = 4096
#: Inline head blobs up to this size stay cached: ``append`` keeps the stored head without reading it.
HEAD_CACHE_INLINE_BYTES = 1024


class Cached(NamedTuple):
    """A thread's last seen head (None: missing) and the orphaned chunk keys found with it."""

    head: Optional[HeadState]
    orphans: Tuple[str, ...]


class HeadCache:
    """The heads (and known orphaned chunk keys) this process last saw, least recently used dropped."""

    def __init__(self, size: int = HEAD_CACHE_SIZE) -> None:
        self._size = size
        self._heads: "OrderedDict[str, Cached]" = OrderedDict()
        self._mutex = threading.Lock()

    def get(self, thread_id: str) -> Optional[Cached]:
        """What was last seen of ``thread_id``, if anything."""
        with self._mutex:
            return self._heads.get(thread_id)

    def remember(self, thread_id: str, head: Optional[HeadState], orphans: Sequence[str] = ()) -> None:
        """Keep ``head`` (without its inline head blob, unless small) and the orphaned chunk keys found."""
        if head is not None and head.inline_head is not None and len(head.inline_head) > HEAD_CACHE_INLINE_BYTES:
            head = head._replace(inline_head=None)
        with self._mutex:
            self._heads[thread_id] = Cached(head, tuple(orphans))
            self._heads.move_to_end(thread_id)
            if len(self._heads) > self._size:
                self._heads.popitem(last=False)

    def orphans(self, thread_id: str) -> Tuple[str, ...]:
        """The orphaned chunk keys last found in ``thread_id``."""
        cached = self.get(thread_id)
        return cached.orphans if cached is not None else ()

    def _after_fork_in_child(self) -> None:
        # Keep the contents (still valid hints), not a mutex a parent thread may hold.
        self._mutex = threading.Lock()
