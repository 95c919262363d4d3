"""Anthropic Messages API messages, both ways, without loss.

An Anthropic message (a ``MessageParam`` dict, the SDK's response
``Message``, or a dict whose content holds the SDK's block objects: anything
with ``model_dump()`` is read through it) maps to one
:class:`~agents_persist.AgentMessage`:

* ``role`` (``user`` or ``assistant``) and ``content`` (text, or the list of
  content blocks: ``text``, ``thinking`` with its ``signature``,
  ``redacted_thinking``, ``image``, ``tool_result``, ``document``, ... kept
  verbatim, in order);
* each ``tool_use`` block is one of the message's
  ``tool_calls`` (its ``id``, ``name``, and
  ``input`` as ``arguments``); the block stays in ``content`` where it was,
  without ``name`` and ``input`` (which live in the tool call), keeping its
  other keys (``cache_control``, ``caller``, ...);
* every other key of the message (a response's ``id``, ``model``,
  ``stop_reason``, ``usage``, ...) to ``extra["anthropic"]``.

:func:`~agents_persist.to_anthropic` gives back the ``MessageParam``: ``role`` and ``content``
with each ``tool_use`` block filled in from the tool call at the same
position, so ``to_anthropic(from_anthropic(m)) == m`` for every
``MessageParam``. It never writes ``extra["anthropic"]`` back: the Messages
API takes no other keys in a message, and a response's fields are not part
of the conversation.

Messages from elsewhere convert too: tool calls become ``tool_use`` blocks
after the text, a ``tool`` message a ``user`` message with one
``tool_result`` block. A ``system`` or ``developer`` message raises
:class:`~agents_persist.errors.InvalidArgumentError` (Anthropic takes the
system prompt as the ``system`` parameter); so do Responses items other than
messages, function calls and their outputs.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from ..errors import InvalidArgumentError
from ..models import AgentMessage, ToolCall
from ._common import as_mapping, leftover, with_extra

__all__ = ["from_anthropic", "to_anthropic", "to_anthropic_messages"]

FORMAT = "anthropic"
_MESSAGE_KEYS = ("role", "content")
_TOOL_USE_KEYS = ("name", "input")
_CONVERTIBLE_ITEMS = (None, "message", "function_call", "function_call_output")


def _is_tool_use(block: Any) -> bool:
    return type(block) is dict and block.get("type") == "tool_use"


def from_anthropic(data: Any) -> AgentMessage:
    """Build an :class:`~agents_persist.AgentMessage` from an Anthropic message (dict or SDK objects)."""
    message = as_mapping(data, "an Anthropic message")
    if "role" not in message:
        raise InvalidArgumentError("an Anthropic message needs a 'role'")
    content = message.get("content", "")
    calls: List[ToolCall] = []
    if type(content) is list and any(map(_is_tool_use, content)):
        blocks: List[Any] = []
        for block in content:
            if _is_tool_use(block):
                calls.append(ToolCall(id=block.get("id", ""), name=block.get("name", ""), arguments=block.get("input", {})))
                blocks.append(leftover(block, _TOOL_USE_KEYS))
            else:
                blocks.append(block)
        content = blocks
    return AgentMessage(
        role=message["role"],
        content=content,
        tool_calls=tuple(calls),
        extra=with_extra(leftover(message, _MESSAGE_KEYS), FORMAT),
    )


def _tool_use(call: ToolCall, block: Dict[str, Any]) -> Dict[str, Any]:
    return {**block, "type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}


def to_anthropic(message: AgentMessage) -> Dict[str, Any]:
    """Return ``message`` as an Anthropic ``MessageParam`` dict (``role`` and ``content``)."""
    if message.item_type not in _CONVERTIBLE_ITEMS:
        raise InvalidArgumentError(f"an OpenAI Responses {message.item_type!r} item has no Anthropic form")
    role, content = message.role, message.content
    if role in ("system", "developer"):
        raise InvalidArgumentError(f"Anthropic has no {role!r} messages: pass the system prompt as the 'system' parameter")
    if role == "tool":
        result = content if isinstance(content, (str, list)) else json.dumps(content)
        return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": result}]}
    calls = message.tool_calls
    if not calls:
        return {"role": role, "content": content}
    blocks: List[Any] = []
    used = 0
    if type(content) is list:
        for block in content:
            if _is_tool_use(block) and "input" not in block and used < len(calls):
                blocks.append(_tool_use(calls[used], block))
                used += 1
            else:
                blocks.append(block)
    elif content not in (None, ""):
        blocks.append({"type": "text", "text": content if type(content) is str else json.dumps(content)})
    blocks.extend(_tool_use(call, {}) for call in calls[used:])
    return {"role": role, "content": blocks}


def to_anthropic_messages(messages: Any) -> List[Dict[str, Any]]:
    """:func:`~agents_persist.to_anthropic` of every message but ``system`` and ``developer`` ones (the ``system`` parameter)."""
    return [to_anthropic(m) for m in messages if m.role not in ("system", "developer")]
