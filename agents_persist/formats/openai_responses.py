"""OpenAI Responses API items, both ways, without loss.

One Responses item (an input item, or an output item of a response, as a
dict or an SDK object through ``model_dump()``) maps to one
:class:`~agents_persist.AgentMessage`, whose ``item_type``, ``item_id`` and
``status`` are the item's ``type``, ``id`` and ``status``:

* ``message`` (and the short form without ``type``): ``role`` and
  ``content`` (text or a list of ``input_text``, ``input_image``,
  ``input_audio``, ``input_file``, ``output_text``, ``refusal`` parts, kept
  verbatim);
* ``function_call``: an ``assistant`` message with one
  :class:`~agents_persist.ToolCall` (``call_id`` as its ``id``, ``name``,
  the ``arguments`` string decoded, and kept byte for byte as
  ``raw_arguments`` unless it is exactly ``json.dumps(arguments)``) and
  ``content`` ``None``;
* ``function_call_output``: a ``tool`` message, ``call_id`` as
  ``tool_call_id``, ``output`` as ``content``, ``name``;
* ``reasoning``: an ``assistant`` message whose ``content`` is the item's
  ``summary``; ``encrypted_content`` and the reasoning ``content`` are kept
  in ``extra["responses"]``;
* any other item type (web search, computer, MCP, ... calls and outputs):
  kept whole, its fields in ``extra["responses"]`` (a ``tool`` message for
  ``*_output`` items, else ``assistant``).

Every key without a field of its own (``phase``, ``caller``, ``namespace``,
``encrypted_content``, ...) is kept verbatim in ``extra["responses"]``, so
``to_responses(from_responses(item)) == [item]``. A modelled key whose value
is ``None`` (``"id": None``) reads as absent.

Messages that did not come from Responses (chat, Anthropic, the
constructors) convert too: an assistant turn with tool calls becomes its text
(if any) followed by one ``function_call`` item per call, a ``tool`` message
a ``function_call_output``. Content parts are passed through unchanged, and
``name`` (which Responses messages do not have) is left out.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from ..errors import InvalidArgumentError
from ..models import AgentMessage, ToolCall
from ._common import as_mapping, call_from_raw, extra_of, leftover, merged, optional_str, with_extra

__all__ = ["from_responses", "to_responses", "from_responses_items", "to_responses_items"]

FORMAT = "responses"
_WHAT = "an OpenAI Responses item's"
_ITEM_KEYS = ("type", "id", "status")
_MESSAGE_KEYS = _ITEM_KEYS + ("role", "content")
_CALL_KEYS = _ITEM_KEYS + ("call_id", "name", "arguments")
_OUTPUT_KEYS = _ITEM_KEYS + ("call_id", "output", "name")
_REASONING_KEYS = _ITEM_KEYS + ("summary",)


def from_responses(item: Any) -> AgentMessage:
    """Build an :class:`~agents_persist.AgentMessage` from one Responses item (dict or SDK object)."""
    data = as_mapping(item, "an OpenAI Responses item")
    kind = optional_str(data, "type", _WHAT)
    ids: Dict[str, Any] = {
        "item_type": kind,
        "item_id": optional_str(data, "id", _WHAT),
        "status": optional_str(data, "status", _WHAT),
    }
    if kind is None or kind == "message":
        if "role" not in data:
            raise InvalidArgumentError("an OpenAI Responses message needs a 'role'")
        fields = leftover(data, _MESSAGE_KEYS)
        return AgentMessage(role=data["role"], content=data.get("content", ""), extra=with_extra(fields, FORMAT), **ids)
    if kind == "function_call":
        raw = data.get("arguments")
        if type(raw) is not str:
            raise InvalidArgumentError(f"function_call {data.get('call_id')!r}: 'arguments' must be a str")
        call = call_from_raw(optional_str(data, "call_id", _WHAT) or "", optional_str(data, "name", _WHAT) or "", raw)
        fields = leftover(data, _CALL_KEYS)
        return AgentMessage(role="assistant", content=None, tool_calls=(call,), extra=with_extra(fields, FORMAT), **ids)
    if kind == "function_call_output":
        return AgentMessage(
            role="tool",
            content=data.get("output", ""),
            tool_call_id=optional_str(data, "call_id", _WHAT),
            name=optional_str(data, "name", _WHAT),
            extra=with_extra(leftover(data, _OUTPUT_KEYS), FORMAT),
            **ids,
        )
    if kind == "reasoning":
        fields = leftover(data, _REASONING_KEYS)
        return AgentMessage(role="assistant", content=data.get("summary", []), extra=with_extra(fields, FORMAT), **ids)
    role = "tool" if kind.endswith("_output") else "assistant"  # a call's output, or something the model did
    return AgentMessage(role=role, extra=with_extra(leftover(data, _ITEM_KEYS), FORMAT), **ids)  # type: ignore[arg-type]


def from_responses_items(items: Any) -> List[AgentMessage]:
    """:func:`~agents_persist.from_responses` of every item, in order (a response's ``output``, or an ``input`` list)."""
    return [from_responses(item) for item in items]


def _ids(message: AgentMessage, kind: str) -> Dict[str, Any]:
    item: Dict[str, Any] = {"type": kind}
    if message.item_id is not None:
        item["id"] = message.item_id
    if message.status is not None:
        item["status"] = message.status
    return item


def _call_item(call: ToolCall) -> Dict[str, Any]:
    raw = call.raw_arguments
    arguments = json.dumps(call.arguments) if raw is None else raw
    return {"type": "function_call", "call_id": call.id, "name": call.name, "arguments": arguments}


def _text_parts(message: AgentMessage) -> Any:
    """The content of a chat assistant turn as Responses output parts (its refusal as a refusal part)."""
    content = message.content
    if message.refusal is None:
        return content
    parts: List[Any] = []
    if isinstance(content, list):
        parts.extend(content)
    elif content not in (None, ""):
        parts.append({"type": "output_text", "text": content, "annotations": []})
    parts.append({"type": "refusal", "refusal": message.refusal})
    return parts


def to_responses(message: AgentMessage) -> List[Dict[str, Any]]:
    """Return ``message`` as Responses input items: exactly the item it was read from, if it was.

    A message from elsewhere may give several items: an assistant turn with
    text and tool calls gives a ``message`` item and one ``function_call``
    item per call.
    """
    kind = message.item_type
    extra = extra_of(message.extra, FORMAT)
    if kind == "function_call":
        items = [_call_item(call) for call in message.tool_calls]
        if items:
            items[0] = merged({**items[0], **_ids(message, kind)}, extra)
        return items
    if kind == "function_call_output" or (kind is None and message.role == "tool"):
        output = message.content
        if kind is None and not isinstance(output, (str, list)):
            output = json.dumps(output)
        item = _ids(message, "function_call_output")
        if message.tool_call_id is not None:
            item["call_id"] = message.tool_call_id
        item["output"] = output
        if message.name is not None:
            item["name"] = message.name
        return [merged(item, extra)]
    if kind == "reasoning":
        return [merged({**_ids(message, kind), "summary": message.content}, extra)]
    if kind is not None and kind != "message":
        return [merged(_ids(message, kind), extra)]
    item = _ids(message, "message") if kind == "message" else {}
    item["role"] = message.role
    if not message.tool_calls:
        item["content"] = _text_parts(message)
        return [merged(item, extra)]
    calls = [_call_item(call) for call in message.tool_calls]
    if message.content in (None, "", []) and message.refusal is None:
        return calls
    item["content"] = _text_parts(message)
    return [merged(item, extra)] + calls


def to_responses_items(messages: Any) -> List[Dict[str, Any]]:
    """:func:`~agents_persist.to_responses` of every message, flattened: a Responses ``input`` list."""
    return [item for message in messages for item in to_responses(message)]
