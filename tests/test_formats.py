"""Provider formats (agents_persist.formats): lossless both ways, stored bytes unchanged for existing messages.

Each format has a hypothesis round-trip property over the provider's own shapes (field names and
optional fields as in the openai and anthropic SDKs' TypedDicts): what goes in comes out equal, after
being stored and loaded, and tool-call argument strings byte for byte.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agents_persist
from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    InMemoryCheckpointer,
    InvalidArgumentError,
    SerializationError,
    ToolCall,
    codec,
)
from agents_persist.formats import anthropic, openai_chat, openai_responses

EXAMPLES = 300
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------ stored bytes unchanged

#: Encoded by main's codec before the provider fields existed (c7426d0): they must stay the same bytes.
MAIN_BYTES = [
    (AgentMessage.user("hi"), b"\x01\x82\xa4role\xa4user\xa7content\xa2hi"),
    (AgentMessage.system("be brief", name="policy"), b"\x01\x83\xa4role\xa6system\xa7content\xa8be brief\xa4name\xa6policy"),
    (
        AgentMessage.assistant(None, tool_calls=[ToolCall(id="c1", name="search", arguments={"q": "oslo", "n": [1, 2.5]})]),
        b"\x01\x83\xa4role\xa9assistant\xa7content\xc0\xaatool_calls\x91\x83\xa2id\xa2c1\xa4name\xa6search"
        b"\xa9arguments\x82\xa1q\xa4oslo\xa1n\x92\x01\xcb@\x04\x00\x00\x00\x00\x00\x00",
    ),
    (
        AgentMessage.tool({"hits": 3}, tool_call_id="c1", name="search"),
        b"\x01\x84\xa4role\xa4tool\xa7content\x81\xa4hits\x03\xactool_call_id\xa2c1\xa4name\xa6search",
    ),
    (
        AgentMessage.user(
            [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}], metadata={"k": 1}
        ),
        b"\x01\x83\xa4role\xa4user\xa7content\x92\x82\xa4type\xa4text\xa4text\xa4look\x82\xa4type\xa9image_url"
        b"\xa9image_url\x81\xa3url\xafhttps://x/y.png\xa8metadata\x81\xa1k\x01",
    ),
    (AgentMessage(role="assistant"), b"\x01\x81\xa4role\xa9assistant"),
]


@pytest.mark.parametrize("message,stored", MAIN_BYTES)
def test_messages_without_the_new_fields_encode_and_decode_as_before(message: AgentMessage, stored: bytes) -> None:
    assert codec.encode_message(message) == stored
    assert codec.encode_messages([message] * 6) == [stored] * 6  # the batch path too
    decoded = codec.decode_message(stored)
    assert decoded == message and codec.encode_message(decoded) == stored
    assert codec.decode_messages([stored] * 3) == [message] * 3


def _stored(messages: List[AgentMessage]) -> List[AgentMessage]:
    """Through the codec, as every store does (validate, encode, decode)."""
    return codec.decode_messages(codec.encode_messages(messages, 0, "t"))


# ------------------------------------------------------------------------------------ shared strategies

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
texts = st.text(max_size=30)
ids = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)


@st.composite
def raw_arguments(draw: Any) -> str:
    """An argument object as a model might write it: any spacing, indentation, escaping."""
    obj = draw(json_objects)
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", ": "), (" , ", " : ")]))
    indent = draw(st.sampled_from([None, 0, 2]))
    text = json.dumps(obj, separators=separators, indent=indent, ensure_ascii=draw(st.booleans()))
    return draw(st.sampled_from([text, " " + text, text + "\n"]))


def optional(draw: Any, data: Dict[str, Any], key: str, strategy: Any) -> None:
    if draw(st.booleans()):
        data[key] = draw(strategy)


# ------------------------------------------------------------------------------------ OpenAI chat

text_part = st.builds(lambda t: {"type": "text", "text": t}, texts)


@st.composite
def image_part(draw: Any) -> Dict[str, Any]:
    image: Dict[str, Any] = {"url": draw(st.sampled_from(["https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo="]))}
    optional(draw, image, "detail", st.sampled_from(["auto", "low", "high"]))
    return {"type": "image_url", "image_url": image}


audio_part = st.builds(
    lambda d, f: {"type": "input_audio", "input_audio": {"data": d, "format": f}},
    st.sampled_from(["UklGRiQAAABXQVZF", ""]),
    st.sampled_from(["wav", "mp3"]),
)
file_part = st.builds(lambda n: {"type": "file", "file": {"file_id": "file-" + n}}, ids)
refusal_part = st.builds(lambda t: {"type": "refusal", "refusal": t}, texts)


@st.composite
def chat_tool_calls(draw: Any) -> List[Dict[str, Any]]:
    return [
        {"id": draw(ids), "type": "function", "function": {"name": draw(ids), "arguments": draw(raw_arguments())}}
        for _ in range(draw(st.integers(1, 3)))
    ]


@st.composite
def chat_messages(draw: Any) -> Dict[str, Any]:
    role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
    data: Dict[str, Any] = {"role": role}
    if role == "user":
        data["content"] = draw(
            texts | st.lists(st.one_of(text_part, image_part(), audio_part, file_part), min_size=1, max_size=3)
        )
    elif role == "assistant":
        data["content"] = draw(st.none() | texts | st.lists(text_part | refusal_part, min_size=1, max_size=2))
        optional(draw, data, "refusal", texts)
        optional(draw, data, "tool_calls", chat_tool_calls())
        optional(draw, data, "audio", st.builds(lambda i: {"id": i}, ids))  # kept in extra["openai"]
    elif role == "tool":
        data["content"] = draw(texts | st.lists(text_part, min_size=1, max_size=2))
        data["tool_call_id"] = draw(ids)
    else:
        data["content"] = draw(texts | st.lists(text_part, min_size=1, max_size=2))
    if role != "tool":
        optional(draw, data, "name", ids)
    return data


def _raw_strings(data: Dict[str, Any]) -> List[bytes]:
    return [c["function"]["arguments"].encode() for c in data.get("tool_calls", ())]


@PROPERTY
@given(chat_messages())
def test_openai_chat_round_trip(data: Dict[str, Any]) -> None:
    message = AgentMessage.from_openai(data)
    (loaded,) = _stored([message])
    assert loaded == message
    out = loaded.to_openai()
    assert out == data
    assert _raw_strings(out) == _raw_strings(data)  # byte for byte
    assert json.loads(json.dumps(out)) == data  # plain JSON


def test_openai_chat_keeps_what_was_dropped_or_refused() -> None:
    message = AgentMessage.from_openai({"role": "developer", "content": "Answer in French.", "name": "ops"})
    assert (message.role, message.name) == ("developer", "ops")
    assert AgentMessage.developer("x") == AgentMessage(role="developer", content="x")
    refused = AgentMessage.from_openai({"role": "assistant", "content": None, "refusal": "I can't help with that."})
    assert refused.refusal == "I can't help with that." and refused.to_openai()["refusal"] == "I can't help with that."
    compact = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
    }
    call = AgentMessage.from_openai(compact).tool_calls[0]
    assert (call.arguments, call.raw_arguments) == ({"a": 1}, '{"a":1}')  # decoded form, and the exact string
    assert AgentMessage.from_openai(compact).to_openai() == compact
    assert call.to_openai()["function"]["arguments"] == '{"a":1}'  # not '{"a": 1}'


def test_raw_arguments_equal_to_the_default_encoding_are_not_stored_twice() -> None:
    call = openai_chat.tool_call_from_openai({"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}})
    assert call == ToolCall(id="c", name="f", arguments={"a": 1}) and call.raw_arguments is None
    assert call.to_openai()["function"]["arguments"] == '{"a": 1}'


def test_raw_and_decoded_arguments_must_agree() -> None:
    assert ToolCall(id="c", name="f", raw_arguments='{"a":1}').arguments == {"a": 1}  # decoded when only raw is given
    assert ToolCall(id="c", name="f", arguments={"a": 1}, raw_arguments='{"a":1}').raw_arguments == '{"a":1}'
    with pytest.raises(InvalidArgumentError, match="disagree"):
        ToolCall(id="c", name="f", arguments={"a": 2}, raw_arguments='{"a":1}')
    call = ToolCall(id="c", name="f", raw_arguments='{"a":1}')
    with pytest.raises(InvalidArgumentError, match="disagree"):
        call.replace(arguments={"a": 2})  # change both, or drop raw_arguments
    assert call.replace(arguments={"a": 2}, raw_arguments=None).to_openai()["function"]["arguments"] == '{"a": 2}'
    # msgspec.structs.replace goes around the check; a save still refuses what no load would accept.
    bypassed = AgentMessage.assistant(None, tool_calls=[msgspec.structs.replace(call, arguments={"a": 2})])
    with pytest.raises(SerializationError, match="no longer match"):
        InMemoryCheckpointer().save("t", AgentStateSnapshot(messages=[bypassed]))
    for bad in ("{not json", "[1]", "3"):
        with pytest.raises(InvalidArgumentError):
            ToolCall(id="c", name="f", raw_arguments=bad)
    with pytest.raises(InvalidArgumentError, match="str"):
        ToolCall(id="c", name="f", raw_arguments=b"{}")  # type: ignore[arg-type]


def test_chat_refuses_custom_tool_calls_and_converts_what_has_no_chat_form_loudly() -> None:
    with pytest.raises(InvalidArgumentError, match="custom"):
        AgentMessage.from_openai(
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "x", "input": "y"}}]}
        )
    reasoning = AgentMessage.from_responses({"type": "reasoning", "id": "rs_1", "summary": []})
    with pytest.raises(InvalidArgumentError, match="reasoning"):
        reasoning.to_openai()


# ------------------------------------------------------------------------------------ OpenAI Responses

_statuses = st.sampled_from(["in_progress", "completed", "incomplete"])
input_text = st.builds(lambda t: {"type": "input_text", "text": t}, texts)
input_image = st.builds(
    lambda d, u: {"type": "input_image", "detail": d, "image_url": u},
    st.sampled_from(["auto", "low", "high"]),
    st.sampled_from(["https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo="]),
)
input_audio = st.builds(
    lambda f: {"type": "input_audio", "input_audio": {"data": "SUQz", "format": f}}, st.sampled_from(["mp3", "wav"])
)
output_text = st.builds(lambda t: {"type": "output_text", "text": t, "annotations": []}, texts)
output_refusal = st.builds(lambda t: {"type": "refusal", "refusal": t}, texts)


@st.composite
def responses_items(draw: Any) -> Dict[str, Any]:
    kind = draw(
        st.sampled_from(
            ["easy", "input_message", "output_message", "function_call", "function_call_output", "reasoning", "other"]
        )
    )
    item: Dict[str, Any]
    if kind == "easy":  # EasyInputMessageParam: no type, maybe a phase
        role = draw(st.sampled_from(["user", "assistant", "system", "developer"]))
        item = {"role": role, "content": draw(texts | st.lists(input_text | input_image | input_audio, min_size=1, max_size=3))}
        optional(draw, item, "type", st.just("message"))
        if role == "assistant":
            optional(draw, item, "phase", st.sampled_from(["commentary", "final_answer"]))
    elif kind == "input_message":
        item = {"type": "message", "role": draw(st.sampled_from(["user", "system", "developer"]))}
        item["content"] = draw(st.lists(input_text | input_image | input_audio, min_size=1, max_size=3))
        optional(draw, item, "status", _statuses)
    elif kind == "output_message":
        item = {"type": "message", "id": "msg_" + draw(ids), "role": "assistant", "status": draw(_statuses)}
        item["content"] = draw(st.lists(output_text | output_refusal, min_size=1, max_size=2))
        optional(draw, item, "phase", st.sampled_from(["commentary", "final_answer"]))
    elif kind == "function_call":
        item = {"type": "function_call", "call_id": "call_" + draw(ids), "name": draw(ids), "arguments": draw(raw_arguments())}
        optional(draw, item, "id", ids.map(lambda i: "fc_" + i))
        optional(draw, item, "status", _statuses)
        optional(draw, item, "namespace", ids)
    elif kind == "function_call_output":
        item = {"type": "function_call_output", "call_id": "call_" + draw(ids)}
        item["output"] = draw(texts | st.lists(input_text | input_image, min_size=1, max_size=2))
        optional(draw, item, "id", ids.map(lambda i: "fco_" + i))
        optional(draw, item, "status", _statuses)
    elif kind == "reasoning":
        item = {"type": "reasoning", "id": "rs_" + draw(ids)}
        item["summary"] = draw(st.lists(st.builds(lambda t: {"type": "summary_text", "text": t}, texts), max_size=2))
        optional(draw, item, "encrypted_content", st.text(st.characters(codec="ascii"), min_size=1, max_size=60))
        optional(draw, item, "content", st.lists(st.builds(lambda t: {"type": "reasoning_text", "text": t}, texts), max_size=2))
        optional(draw, item, "status", _statuses)
    else:  # a built-in tool's call, kept whole
        item = {"type": "web_search_call", "id": "ws_" + draw(ids), "status": draw(_statuses)}
        item["action"] = {"type": "search", "query": draw(texts)}
    return item


@PROPERTY
@given(st.lists(responses_items(), min_size=1, max_size=4))
def test_openai_responses_round_trip(items: List[Dict[str, Any]]) -> None:
    messages = openai_responses.from_responses_items(items)
    loaded = _stored(messages)
    assert loaded == messages
    assert openai_responses.to_responses_items(loaded) == items
    assert AgentStateSnapshot(messages=loaded).to_responses_items() == items
    for item, message in zip(items, loaded):
        assert message.item_id == item.get("id") and message.status == item.get("status")
        if item.get("type") == "function_call":
            (call,) = message.tool_calls
            assert call.id == item["call_id"] and call.to_openai()["function"]["arguments"].encode() == item["arguments"].encode()


def test_responses_items_map_to_fields() -> None:
    call = AgentMessage.from_responses(
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": '{"x":[1]}', "status": "completed"}
    )
    assert (call.role, call.item_type, call.item_id, call.status) == ("assistant", "function_call", "fc_1", "completed")
    assert call.tool_calls == (ToolCall(id="call_1", name="f", arguments={"x": [1]}, raw_arguments='{"x":[1]}'),)
    output = AgentMessage.from_responses({"type": "function_call_output", "call_id": "call_1", "output": "42"})
    assert (output.role, output.tool_call_id, output.content) == ("tool", "call_1", "42")
    reasoning = AgentMessage.from_responses({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"})
    assert reasoning.extra == {"responses": {"encrypted_content": "gAAAA"}}
    # a chat-style turn becomes its text and one function_call item per call
    turn = AgentMessage.assistant(
        "Checking.", tool_calls=[ToolCall(id="a", name="f"), ToolCall(id="b", name="g", arguments={"q": 1})]
    )
    assert turn.to_responses() == [
        {"role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "g", "arguments": '{"q": 1}'},
    ]
    assert AgentMessage.tool({"ok": True}, tool_call_id="a").to_responses() == [
        {"type": "function_call_output", "call_id": "a", "output": '{"ok": true}'}
    ]


# ------------------------------------------------------------------------------------ Anthropic

_cache = st.just({"type": "ephemeral"})


@st.composite
def text_block(draw: Any) -> Dict[str, Any]:
    block = {"type": "text", "text": draw(texts)}
    optional(draw, block, "cache_control", _cache)
    return block


image_block = st.one_of(
    st.builds(
        lambda m: {"type": "image", "source": {"type": "base64", "media_type": m, "data": "iVBORw0KGgo="}},
        st.sampled_from(["image/jpeg", "image/png", "image/gif", "image/webp"]),
    ),
    st.just({"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}),
)
thinking_block = st.builds(
    lambda t, s: {"type": "thinking", "thinking": t, "signature": s}, texts, st.text(min_size=1, max_size=40)
)
redacted_block = st.builds(lambda d: {"type": "redacted_thinking", "data": d}, st.text(min_size=1, max_size=40))


@st.composite
def tool_use_block(draw: Any) -> Dict[str, Any]:
    block = {"type": "tool_use", "id": "toolu_" + draw(ids), "name": draw(ids), "input": draw(json_objects)}
    optional(draw, block, "cache_control", _cache)
    return block


@st.composite
def tool_result_block(draw: Any) -> Dict[str, Any]:
    block: Dict[str, Any] = {"type": "tool_result", "tool_use_id": "toolu_" + draw(ids)}
    optional(draw, block, "content", texts | st.lists(text_block() | image_block, max_size=2))
    optional(draw, block, "is_error", st.booleans())
    return block


@st.composite
def anthropic_messages(draw: Any) -> Dict[str, Any]:
    if draw(st.booleans()):
        blocks = st.one_of(text_block(), image_block, tool_result_block())
        return {"role": "user", "content": draw(texts | st.lists(blocks, min_size=1, max_size=4))}
    blocks = st.one_of(text_block(), thinking_block, redacted_block, tool_use_block())
    return {"role": "assistant", "content": draw(texts | st.lists(blocks, min_size=1, max_size=5))}


@PROPERTY
@given(anthropic_messages())
def test_anthropic_round_trip(data: Dict[str, Any]) -> None:
    message = AgentMessage.from_anthropic(data)
    (loaded,) = _stored([message])
    assert loaded == message
    assert loaded.to_anthropic() == data
    uses = [b for b in data["content"] if b["type"] == "tool_use"] if isinstance(data["content"], list) else []
    assert [(c.id, c.name, c.arguments) for c in loaded.tool_calls] == [(b["id"], b["name"], b["input"]) for b in uses]


def test_anthropic_tool_use_blocks_are_the_tool_calls() -> None:
    message = AgentMessage.from_anthropic(
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "need the weather", "signature": "EqQBCkYIARgC"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        }
    )
    assert message.tool_calls == (ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Oslo"}),)
    assert message.content[0]["signature"] == "EqQBCkYIARgC"
    # the same call, as OpenAI chat sees it
    assert message.to_openai()["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    # chat messages convert to Anthropic: tool calls as tool_use blocks, tool results in a user message
    turn = AgentMessage.assistant("On it.", tool_calls=[ToolCall(id="c1", name="f", arguments={"a": 1})])
    assert turn.to_anthropic() == {
        "role": "assistant",
        "content": [{"type": "text", "text": "On it."}, {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}],
    }
    assert AgentMessage.tool("sunny", tool_call_id="c1").to_anthropic() == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "sunny"}],
    }
    with pytest.raises(InvalidArgumentError, match="system"):
        AgentMessage.system("be brief").to_anthropic()
    state = AgentStateSnapshot(messages=[AgentMessage.system("be brief"), AgentMessage.user("hi")])
    assert state.to_anthropic_messages() == [{"role": "user", "content": "hi"}]


class _StandIn:
    """An object like the SDKs' pydantic models: only ``model_dump()``, without pydantic's keywords."""

    def __init__(self, data: Dict[str, Any]) -> None:
        self._data = data

    def model_dump(self) -> Dict[str, Any]:
        return dict(self._data)


def test_sdk_like_objects_are_read_through_model_dump() -> None:
    blocks = [
        _StandIn({"type": "text", "text": "hi"}),
        _StandIn({"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}),
    ]
    response = _StandIn(
        {"id": "msg_1", "type": "message", "role": "assistant", "content": blocks, "model": "claude", "stop_reason": "tool_use"}
    )
    for data in (response, {"role": "assistant", "content": blocks}):
        message = AgentMessage.from_anthropic(data)
        assert message.tool_calls == (ToolCall(id="t1", name="f", arguments={"a": 1}),)
        assert message.to_anthropic() == {
            "role": "assistant",
            "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
        }
        assert _stored([message]) == [message]
    assert AgentMessage.from_anthropic(response).extra == {
        "anthropic": {"id": "msg_1", "type": "message", "model": "claude", "stop_reason": "tool_use"}
    }
    assert AgentMessage.from_openai(_StandIn({"role": "user", "content": "x"})) == AgentMessage.user("x")


def test_the_real_anthropic_sdk_objects_are_accepted() -> None:
    types = pytest.importorskip("anthropic.types", reason="the anthropic SDK (extra 'anthropic') is not installed")
    response = types.Message.model_validate(
        {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "weather first", "signature": "EqQBCkYIARgC"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 20},
        }
    )
    expected = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "weather first", "signature": "EqQBCkYIARgC"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
    }
    for data in (response, {"role": response.role, "content": response.content}):
        message = AgentMessage.from_anthropic(data)
        assert message.tool_calls == (ToolCall(id="toolu_01", name="get_weather", arguments={"city": "Oslo"}),)
        assert message.to_anthropic() == expected
        assert _stored([message]) == [message]
    assert AgentMessage.from_anthropic(response).extra["anthropic"]["model"] == "claude-sonnet-4-5"
    with InMemoryCheckpointer() as cp:  # the SDK objects themselves are refused by the codec; converted, they are stored
        cp.save("t", AgentStateSnapshot(messages=[AgentMessage.from_anthropic(response)]))
        loaded = cp.load("t")
        assert loaded is not None and loaded.to_anthropic_messages() == [expected]


def test_the_real_openai_sdk_objects_are_accepted() -> None:
    chat = pytest.importorskip("openai.types.chat", reason="the openai SDK is not installed")
    responses = pytest.importorskip("openai.types.responses")
    completion = chat.ChatCompletionMessage.model_validate(
        {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
        }
    )
    message = AgentMessage.from_openai(completion)
    assert message.tool_calls[0].raw_arguments == '{"a":1}'
    assert message.to_openai()["tool_calls"][0]["function"]["arguments"] == '{"a":1}'
    item = responses.ResponseFunctionToolCall.model_validate(
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": '{"a":1}', "status": "completed"}
    )
    assert AgentMessage.from_responses(item).to_responses() == [
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": '{"a":1}', "status": "completed"}
    ]


def test_the_converters_are_exported() -> None:
    assert (agents_persist.from_openai, agents_persist.to_openai) == (openai_chat.from_openai, openai_chat.to_openai)
    assert (agents_persist.from_responses, agents_persist.to_responses) == (
        openai_responses.from_responses,
        openai_responses.to_responses,
    )
    assert (agents_persist.from_anthropic, agents_persist.to_anthropic) == (anthropic.from_anthropic, anthropic.to_anthropic)
