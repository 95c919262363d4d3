"""OpenAI Agents SDK sessions stored by any checkpointer.

.. code-block:: python

   from agents import Agent, Runner
   from agents_persist import AsyncCheckpointer, from_url
   from agents_persist.openai_agents import Session

   store = AsyncCheckpointer(from_url("redis://localhost:6379/0"))   # one per process
   result = await Runner.run(agent, "Hi", session=Session("user-42", store))

:class:`Session` implements the SDK's ``Session`` protocol (``get_items``,
``add_items``, ``pop_item``, ``clear_session``) with the session ID as the
thread ID, one Responses input item per stored
:class:`~agents_persist.AgentMessage`:

* ``add_items`` is one :meth:`~agents_persist.Checkpointer.append`: only the
  new items are written, in one atomic step, so concurrent writers (processes
  or machines) never lose or interleave each other's batches;
* ``get_items(limit)`` reads only the last ``limit`` messages
  (:meth:`~agents_persist.Checkpointer.tail`);
* ``pop_item`` is an :meth:`~agents_persist.Checkpointer.update`: a
  compare-and-set, so the last item is removed exactly once however many
  processes pop at once; it costs a load of the whole session and a rewrite
  of what remains (the stores have no "drop the last message" step);
* ``clear_session`` deletes the thread.

Items are stored through :func:`~agents_persist.from_responses` (so other
code sees ordinary messages: tool calls, outputs, reasoning) and come back
equal to what was added, with the same bytes as JSON: the item's key order
is kept, and an item the converter would not give back exactly (a ``None``
value of ``id`` or ``status``, say) is kept whole beside the message.

Needs the OpenAI Agents SDK (``pip install "agents_persist[openai-agents]"``);
``import agents_persist`` never imports it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union, cast

import msgspec

from .extras import missing_extra

try:
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the SDK
    raise missing_extra("agents_persist.openai_agents", "the OpenAI Agents SDK", "openai-agents", exc) from exc

from .aio import AsyncCheckpointer
from .checkpointer import Checkpointer
from .errors import InvalidArgumentError
from .formats._common import as_mapping
from .formats.openai_responses import from_responses, to_responses
from .ids import validate_thread_id
from .models import AgentMessage, AgentStateSnapshot
from .runtime.closing import AsyncClosing

if TYPE_CHECKING:
    import agents.items

__all__ = ["Session", "item_to_message", "message_to_items", "EXTRA_KEY"]

#: The key of ``AgentMessage.extra`` holding what :func:`~agents_persist.from_responses` alone would not give back:
#: ``{"order": [...]}`` (the item's key order) or ``{"item": {...}}`` (the whole item).
EXTRA_KEY = "openai_agents"


def _dumps(value: Any) -> Optional[str]:
    """``value`` as JSON, or None if it is not JSON-like (the codec then refuses it by name)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return None


def _ordered(item: Dict[str, Any], order: List[Any]) -> Dict[str, Any]:
    """``item`` with its keys in ``order`` (keys not listed follow, as they are)."""
    first = {key: item[key] for key in order if key in item}
    first.update((key, value) for key, value in item.items() if key not in first)
    return first


def item_to_message(item: Any) -> AgentMessage:
    """One session item (a Responses input item, dict or SDK object) as the message stored for it.

    :func:`message_to_items` of the result gives back an item equal to
    ``item`` whose JSON has the same bytes.
    """
    data = as_mapping(item, "an Agents SDK session item")
    message = from_responses(data)
    back = to_responses(message)
    expected = _dumps(data)
    if len(back) == 1 and expected is not None:
        if _dumps(back[0]) == expected:
            return message
        order = list(data)
        if _dumps(_ordered(back[0], order)) == expected:
            return _with_kept(message, {"order": order})
    return _with_kept(message, {"item": data})


def _with_kept(message: AgentMessage, kept: Dict[str, Any]) -> AgentMessage:
    return msgspec.structs.replace(message, extra={**message.extra, EXTRA_KEY: kept})


def message_to_items(message: AgentMessage) -> List[Dict[str, Any]]:
    """The session item(s) of a stored message: exactly the item it was made from by :func:`item_to_message`.

    A message stored by other code (chat or Anthropic format, the
    constructors) gives its Responses items (:func:`~agents_persist.to_responses`).
    """
    kept = message.extra.get(EXTRA_KEY) if message.extra else None
    if isinstance(kept, dict):
        item = kept.get("item")
        if isinstance(item, dict):
            return [item]
        items = to_responses(message)
        order = kept.get("order")
        if isinstance(order, list) and len(items) == 1:
            return [_ordered(items[0], order)]
        return items
    return to_responses(message)


class _Empty(Exception):
    """Raised inside pop_item's update function: nothing to pop, write nothing."""


class Session(AsyncClosing):
    """An Agents SDK session (``Runner.run(agent, input, session=...)``) stored in a checkpointer.

    Args:
        session_id: The session's ID, used as the thread ID (a valid thread ID:
            non-empty, at most 512 UTF-8 bytes, no control characters).
        checkpointer (Union[agents_persist.AsyncCheckpointer, agents_persist.Checkpointer]):
            Where to store it: an :class:`~agents_persist.AsyncCheckpointer`
            (share one per process among all sessions) or a blocking
            :class:`~agents_persist.Checkpointer`, which this session then runs
            through a private ``AsyncCheckpointer`` (shut down by :meth:`close`;
            the checkpointer itself is never closed by the session).
        session_settings (Optional[agents.memory.SessionSettings]): The SDK's
            session settings; their ``limit`` is the default of :meth:`get_items`.

    The session ID's thread holds only the session's items; other fields of
    its snapshot (todos, metadata) are kept by ``add_items`` and ``pop_item``
    and removed by ``clear_session``.
    """

    session_id: str
    session_settings: Optional[SessionSettings]

    def __init__(
        self,
        session_id: str,
        checkpointer: Union[AsyncCheckpointer, Checkpointer],
        *,
        session_settings: Optional[SessionSettings] = None,
    ) -> None:
        self.session_id = validate_thread_id(session_id)
        if isinstance(checkpointer, AsyncCheckpointer):
            self.checkpointer = checkpointer
            self._own_adapter = False
        elif isinstance(checkpointer, Checkpointer):
            self.checkpointer = AsyncCheckpointer(checkpointer, close_checkpointer=False)
            self._own_adapter = True
        else:
            kind = type(checkpointer).__name__
            raise InvalidArgumentError(f"checkpointer must be a Checkpointer or an AsyncCheckpointer, not {kind}")
        self.session_settings = session_settings

    async def get_items(self, limit: Optional[int] = None) -> List[agents.items.TResponseInputItem]:
        """The session's items, oldest first: all of them, or the last ``limit`` (reading only those).

        ``limit`` defaults to ``session_settings.limit``; None means all.
        """
        limit = resolve_session_limit(limit, self.session_settings)
        if limit is None:
            messages = await self.checkpointer.load_messages(self.session_id)
        else:
            if type(limit) is not int:
                raise InvalidArgumentError(f"limit must be an int or None, not {limit!r}")
            if limit <= 0:
                return []
            messages = await self.checkpointer.tail(self.session_id, limit)
        items = [item for message in messages for item in message_to_items(message)]
        return cast("List[agents.items.TResponseInputItem]", items if limit is None else items[-limit:])

    async def add_items(self, items: List[agents.items.TResponseInputItem]) -> None:
        """Append ``items`` to the session in one atomic step, without reading or rewriting the history."""
        if not items:
            return
        messages = [item_to_message(item) for item in items]
        await self.checkpointer.append(self.session_id, messages)

    async def pop_item(self) -> Optional[agents.items.TResponseInputItem]:
        """Remove and return the newest item (None if the session is empty), exactly once under concurrency.

        A compare-and-set :meth:`~agents_persist.AsyncCheckpointer.update`:
        concurrent pops and appends, in any process, make it retry on the
        new state, so no item is popped twice and none is lost. It loads the
        whole session and rewrites the remaining messages (O(n) in the
        session's length), which is fine for the SDK's occasional rewinds
        but not for a stack used item by item.
        """
        popped: List[Dict[str, Any]] = []

        def pop(state: AgentStateSnapshot) -> None:
            popped.clear()  # a retry starts again from the state it is given
            while state.messages:
                items = message_to_items(state.messages.pop())
                if items:
                    # A message stored by other code may hold several items: the others stay, one message each.
                    state.messages.extend(item_to_message(item) for item in items[:-1])
                    popped.append(items[-1])
                    return
            raise _Empty

        try:
            await self.checkpointer.update(self.session_id, pop)
        except _Empty:
            return None
        return cast("agents.items.TResponseInputItem", popped[0])

    async def clear_session(self) -> None:
        """Delete the session's thread (its items and everything else stored under the session ID)."""
        await self.checkpointer.delete(self.session_id)

    async def close(self) -> None:
        """Shut down the private ``AsyncCheckpointer`` this session made (if any); never closes a checkpointer."""
        if self._own_adapter:
            await self.checkpointer.close()

    def __repr__(self) -> str:
        return f"Session({self.session_id!r}, {self.checkpointer!r})"
