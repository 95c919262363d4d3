"""Each item kind the Agents SDK writes becomes one message and comes back byte for byte (no backend involved)."""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest

from agents_persist import AgentMessage
from agents_persist.formats.openai_responses import to_responses
from agents_persist.openai_agents import EXTRA_KEY, item_to_message, message_to_items
from tests.integrations.openai_agents.catalogue import SDK_OUTPUT, every_item, sdk_output_items


def _label(item: Dict[str, Any]) -> str:
    return str(item.get("type") or f"easy-{item.get('role')}")


@pytest.mark.parametrize("item", every_item(), ids=_label)
def test_item_round_trips_byte_for_byte(item: Dict[str, Any]) -> None:
    message = item_to_message(item)
    assert isinstance(message, AgentMessage)
    assert json.dumps(message_to_items(message)) == json.dumps([item])


def test_the_message_is_the_converters_so_other_code_reads_it() -> None:
    reasoning, call, output = (
        item_to_message(sdk_output_items()[-1]),
        item_to_message(sdk_output_items()[2]),
        item_to_message({"call_id": "call_1", "output": "light snow", "type": "function_call_output"}),
    )
    assert (
        call.role == "assistant" and call.tool_calls[0].name == "get_weather" and call.tool_calls[0].arguments == {"city": "Oslo"}
    )
    assert output.role == "tool" and output.tool_call_id == "call_1" and output.content == "light snow"
    assert reasoning.item_type == "reasoning" and reasoning.extra["responses"]["encrypted_content"] == "gAAAAB-opaque=="


def test_only_what_the_converter_loses_is_kept_beside_it() -> None:
    plain = item_to_message({"role": "user", "content": "hi"})
    assert EXTRA_KEY not in plain.extra  # the converter's own order: nothing extra stored
    reordered = item_to_message({"call_id": "c", "output": "x", "type": "function_call_output"})
    assert reordered.extra[EXTRA_KEY] == {"order": ["call_id", "output", "type"]}  # the converter writes "type" first
    dropped = {"id": None, "call_id": "c", "output": "x", "type": "function_call_output"}
    assert to_responses(item_to_message(dropped)) != [dropped]  # the converter reads "id": None as absent...
    assert item_to_message(dropped).extra[EXTRA_KEY] == {"item": dropped}  # ...so the whole item is kept


def test_sdk_objects_are_accepted() -> None:
    for obj, item in zip(SDK_OUTPUT, sdk_output_items()):
        assert message_to_items(item_to_message(obj)) == [item]


def test_a_message_from_elsewhere_gives_its_responses_items() -> None:
    from agents_persist import ToolCall

    message = AgentMessage.assistant("Checking.", tool_calls=[ToolCall(id="c1", name="f", arguments={"a": 1})])
    assert [item.get("type") for item in message_to_items(message)] == [None, "function_call"]
