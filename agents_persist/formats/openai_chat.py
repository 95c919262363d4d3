"""OpenAI chat completions messages, both ways, without loss.

A chat message dict (``ChatCompletionMessageParam``, or the SDK's
``ChatCompletionMessage`` through ``model_dump()``) maps to one
:class:`~agents_persist.AgentMessage`:

* ``role`` (``system``, ``developer``, ``user``, ``assistant``, ``tool``),
  ``content`` (text, ``None``, or a list of content parts: ``text``,
  ``image_url``, ``input_audio``, ``file``, ``refusal``, kept verbatim),
  ``name``, ``refusal`` and ``tool_call_id`` to the fields of the same name;
* ``tool_calls`` to :class:`~agents_persist.ToolCall` objects: ``arguments``
  is the decoded argument string, ``raw_arguments`` the string exactly as
  sent (None when it is exactly ``json.dumps(arguments)``, which
  :func:`tool_call_to_openai` writes back anyway);
* every other key (``audio``, ``function_call``, ``annotations``, ...) to
  ``extra["openai"]``, verbatim.

:func:`~agents_persist.to_openai` writes all of it back, so ``to_openai(from_openai(d)) == d``
and argument strings come back byte for byte. A key this module models whose
value is ``None`` (``"refusal": None``) reads as absent; a missing
``content`` reads as ``""``; a tool call without ``type`` gets
``"type": "function"``.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from ..errors import InvalidArgumentError
from ..models import AgentMessage, ToolCall
from ._common import as_mapping, call_from_raw, extra_of, leftover, merged, optional_str, with_extra

__all__ = ["from_openai", "to_openai", "tool_call_from_openai", "tool_call_to_openai"]

_MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_call_id", "name", "refusal")
#: Responses items that have a chat form (a message, a function call, its output).
_CHAT_ITEMS = (None, "message", "function_call", "function_call_output")
FORMAT = "openai"


def tool_call_from_openai(data: Any) -> ToolCall:
    """Build a :class:`~agents_persist.ToolCall` from a chat ``tool_calls`` entry, keeping its argument string.

    Only ``function`` calls exist in this form (a ``custom`` tool call is
    refused). Arguments given as a dict instead of a string (not OpenAI's
    format, but common in hand-written dicts) are taken as decoded arguments.
    """
    entry = as_mapping(data, "an OpenAI tool call")
    call_id = entry.get("id", "")
    kind = entry.get("type", "function")
    if kind != "function":
        raise InvalidArgumentError(f"tool call {call_id!r} is a {kind!r} call; only function calls are supported")
    function = entry.get("function") or {}
    if type(function) is not dict:
        raise InvalidArgumentError(f"tool call {call_id!r}: 'function' must be a dict")
    name = function.get("name", "")
    raw = function.get("arguments")
    if raw is None:
        return ToolCall(id=call_id, name=name)
    if type(raw) is str:
        return call_from_raw(call_id, name, raw)
    if type(raw) is not dict:
        raise InvalidArgumentError(f"tool call {call_id!r} arguments must be a JSON object")
    return ToolCall(id=call_id, name=name, arguments=raw)


def tool_call_to_openai(call: ToolCall) -> Dict[str, Any]:
    """Return the chat ``tool_calls`` entry: ``raw_arguments`` when present, else ``arguments`` as JSON."""
    raw = call.raw_arguments
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(call.arguments) if raw is None else raw},
    }


def from_openai(data: Any) -> AgentMessage:
    """Build an :class:`~agents_persist.AgentMessage` from an OpenAI chat message (dict or SDK object)."""
    message = as_mapping(data, "an OpenAI chat message")
    if "role" not in message:
        raise InvalidArgumentError("an OpenAI chat message needs a 'role'")
    return AgentMessage(
        role=message["role"],
        content=message.get("content", ""),
        tool_calls=tuple(tool_call_from_openai(c) for c in message.get("tool_calls") or ()),
        tool_call_id=optional_str(message, "tool_call_id", "an OpenAI chat message's"),
        name=optional_str(message, "name", "an OpenAI chat message's"),
        refusal=optional_str(message, "refusal", "an OpenAI chat message's"),
        extra=with_extra(leftover(message, _MESSAGE_KEYS), FORMAT),
    )


def to_openai(message: AgentMessage) -> Dict[str, Any]:
    """Return ``message`` as an OpenAI chat message dict (``metadata`` is not included).

    A message read from OpenAI Responses converts when it has a chat form
    (a message, a function call, a function call's output); a ``reasoning``
    or another item raises :class:`~agents_persist.errors.InvalidArgumentError`.
    """
    if message.item_type not in _CHAT_ITEMS:
        raise InvalidArgumentError(f"an OpenAI Responses {message.item_type!r} item has no chat completions form")
    data: Dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["tool_calls"] = [tool_call_to_openai(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        data["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        data["name"] = message.name
    if message.refusal is not None:
        data["refusal"] = message.refusal
    return merged(data, extra_of(message.extra, FORMAT))
