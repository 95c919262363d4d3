"""The data model: constructors, validation, immutability, OpenAI conversion, defaults."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import msgspec
import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, HitlInterrupt, InMemoryCheckpointer, TodoItem, ToolCall

# ---------------------------------------------------------------------------------------------- AgentMessage


def test_constructors_set_role_and_fields() -> None:
    call = ToolCall(id="c1", name="search", arguments={"q": "oslo"})
    assert AgentMessage.user("hi") == AgentMessage(role="user", content="hi")
    assert AgentMessage.system("be nice") == AgentMessage(role="system", content="be nice")
    assistant = AgentMessage.assistant("ok", tool_calls=[call])
    assert (assistant.role, assistant.content, assistant.tool_calls) == ("assistant", "ok", (call,))
    assert type(assistant.tool_calls) is tuple  # a list is normalised, so it equals its decoded form
    tool = AgentMessage.tool({"hits": 3}, tool_call_id="c1", name="search")
    assert (tool.role, tool.content, tool.tool_call_id, tool.name) == ("tool", {"hits": 3}, "c1", "search")
    assert AgentMessage.user("x", metadata={"k": 1}).metadata == {"k": 1}


def test_defaults_of_a_bare_message() -> None:
    message = AgentMessage(role="assistant")
    assert (message.content, message.tool_calls, message.tool_call_id, message.name, message.metadata) == (
        "",
        (),
        None,
        None,
        {},
    )


def test_tool_message_requires_tool_call_id() -> None:
    with pytest.raises(TypeError):
        AgentMessage.tool("result")  # type: ignore[call-arg]


@pytest.mark.parametrize("role", ["bot", "", "User", "function"])
def test_bad_role_is_a_value_error(role: str) -> None:
    with pytest.raises(ValueError, match="role"):
        AgentMessage(role=role)  # type: ignore[arg-type]


@pytest.mark.parametrize("decode", [msgspec.json.decode, msgspec.msgpack.decode])
def test_bad_role_is_a_value_error_on_decode(decode) -> None:  # type: ignore[no-untyped-def]
    encode = msgspec.json.encode if decode is msgspec.json.decode else msgspec.msgpack.encode
    good = encode({"role": "user", "content": "hi"})
    assert decode(good, type=AgentMessage) == AgentMessage.user("hi")
    bad = encode({"role": "bot", "content": "hi"})
    with pytest.raises(ValueError):
        decode(bad, type=AgentMessage)


def test_bad_role_from_openai_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="role"):
        AgentMessage.from_openai({"role": "developer-bot", "content": "x"})


def test_messages_are_frozen() -> None:
    message = AgentMessage.user("hi")
    with pytest.raises(AttributeError):
        message.content = "changed"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        message.role = "assistant"  # type: ignore[misc]
    assert message.content == "hi" and message.role == "user"
    call = ToolCall(id="c", name="f")
    with pytest.raises(AttributeError):
        call.name = "g"  # type: ignore[misc]
    assert call.name == "f"


def test_replace_returns_a_changed_copy_and_keeps_the_original() -> None:
    original = AgentMessage.user("hi", metadata={"a": 1})
    changed = original.replace(content="bye")
    assert changed is not original
    assert (changed.role, changed.content, changed.metadata) == ("user", "bye", {"a": 1})
    assert original.content == "hi"
    assert original.replace() == original


def test_replace_validates_the_role() -> None:
    with pytest.raises(ValueError, match="role"):
        AgentMessage.user("hi").replace(role="bot")


# ---------------------------------------------------------------------------------------------- OpenAI dicts


def test_to_openai_of_plain_messages() -> None:
    assert AgentMessage.user("hi").to_openai() == {"role": "user", "content": "hi"}
    assert AgentMessage.tool("42", tool_call_id="c1", name="calc").to_openai() == {
        "role": "tool",
        "content": "42",
        "tool_call_id": "c1",
        "name": "calc",
    }
    # metadata is not part of the OpenAI format
    assert "metadata" not in AgentMessage.user("hi", metadata={"secret": 1}).to_openai()


def test_to_openai_encodes_tool_call_arguments_as_a_json_string() -> None:
    message = AgentMessage.assistant(None, tool_calls=[ToolCall(id="c1", name="search", arguments={"to": "OSL", "n": [1, 2]})])
    data = message.to_openai()
    assert data["role"] == "assistant" and data["content"] is None
    (entry,) = data["tool_calls"]
    assert entry["id"] == "c1" and entry["type"] == "function" and entry["function"]["name"] == "search"
    assert isinstance(entry["function"]["arguments"], str)
    assert json.loads(entry["function"]["arguments"]) == {"to": "OSL", "n": [1, 2]}
    json.dumps(data)  # the whole dict is plain JSON


def test_from_openai_parses_json_string_arguments() -> None:
    data = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"to": "OSL", "pax": 2}'}},
            {"id": "c2", "type": "function", "function": {"name": "noop", "arguments": ""}},
            {"id": "c3", "type": "function", "function": {"name": "dictargs", "arguments": {"x": 1}}},
        ],
    }
    message = AgentMessage.from_openai(data)
    assert message.role == "assistant" and message.content is None
    assert message.tool_calls == (
        ToolCall(id="c1", name="search", arguments={"to": "OSL", "pax": 2}),
        ToolCall(id="c2", name="noop", arguments={}, raw_arguments=""),  # the blank string comes back blank
        ToolCall(id="c3", name="dictargs", arguments={"x": 1}),
    )


def test_from_openai_defaults() -> None:
    message = AgentMessage.from_openai({"role": "user"})
    assert message == AgentMessage.user("")
    tool = AgentMessage.from_openai({"role": "tool", "content": "ok", "tool_call_id": "c9", "name": "f"})
    assert tool == AgentMessage.tool("ok", tool_call_id="c9", name="f")


@pytest.mark.parametrize(
    "message",
    [
        AgentMessage.system("You are helpful."),
        AgentMessage.user("hi"),
        AgentMessage.user([{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]),
        AgentMessage.assistant(None, tool_calls=[ToolCall(id="c1", name="f", arguments={"a": {"b": [1, 2.5, None]}})]),
        AgentMessage.assistant(
            "two calls", tool_calls=[ToolCall(id="a", name="f"), ToolCall(id="b", name="g", arguments={"x": "y"})]
        ),
        AgentMessage.tool({"result": True}, tool_call_id="c1", name="f"),
        AgentMessage.user("named", name="ada"),
    ],
)
def test_openai_round_trip(message: AgentMessage) -> None:
    data = message.to_openai()
    # through real JSON, as when sent to / received from an API
    assert AgentMessage.from_openai(json.loads(json.dumps(data))) == message


def test_from_openai_with_bad_json_arguments_is_a_value_error() -> None:
    data = {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{not json"}}]}
    with pytest.raises(ValueError, match="c1"):
        AgentMessage.from_openai(data)


@pytest.mark.parametrize("arguments", ["[1, 2]", '"text"', "3", "null"])
def test_from_openai_with_non_object_arguments_is_a_value_error(arguments: str) -> None:
    data = {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": arguments}}]}
    with pytest.raises(ValueError):
        AgentMessage.from_openai(data)


def test_from_openai_without_role_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="role"):
        AgentMessage.from_openai({"content": "hi"})


# ---------------------------------------------------------------------------------------------- TodoItem, HitlInterrupt


def test_todo_item_statuses() -> None:
    assert TodoItem("write tests").status == "pending"
    for status in ("pending", "in_progress", "completed", "cancelled"):
        assert TodoItem("x", status).status == status  # type: ignore[arg-type]


@pytest.mark.parametrize("status", ["done", "", "PENDING", "in-progress"])
def test_todo_item_rejects_unknown_status(status: str) -> None:
    with pytest.raises(ValueError, match="status"):
        TodoItem("x", status)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        msgspec.json.decode(msgspec.json.encode({"content": "x", "status": status}), type=TodoItem)


def test_hitl_interrupt_created_at_defaults_to_aware_utc_now() -> None:
    before = datetime.now(timezone.utc)
    interrupt = HitlInterrupt(tool_name="book")
    after = datetime.now(timezone.utc)
    created = interrupt.created_at
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
    assert before <= created <= after
    assert interrupt.tool_args == {} and interrupt.call_id is None and interrupt.policy_note is None


def test_hitl_interrupt_defaults_are_not_shared() -> None:
    a, b = HitlInterrupt(tool_name="a"), HitlInterrupt(tool_name="b")
    a.tool_args["x"] = 1
    assert b.tool_args == {}


# ---------------------------------------------------------------------------------------------- AgentStateSnapshot


def test_fresh_snapshot_has_no_version_or_thread() -> None:
    state = AgentStateSnapshot()
    assert state.version is None and state.thread_id is None
    assert (state.messages, state.todos, state.current_interrupt, state.metadata) == ([], [], None, {})


def test_snapshot_knows_version_and_thread_after_save_and_load() -> None:
    with InMemoryCheckpointer() as cp:
        state = AgentStateSnapshot(messages=[AgentMessage.user("hi")])
        cp.save("t1", state)
        assert (state.version, state.thread_id) == (1, "t1")
        cp.save("t1", state)
        assert state.version == 2
        loaded = cp.load("t1")
        assert loaded is not None and (loaded.version, loaded.thread_id) == (2, "t1")


def test_snapshot_mutable_defaults_are_not_shared() -> None:
    a = AgentStateSnapshot()
    a.messages.append(AgentMessage.user("hi"))
    a.todos.append(TodoItem("x"))
    a.metadata["k"] = 1
    b = AgentStateSnapshot()
    assert (b.messages, b.todos, b.metadata) == ([], [], {})


def test_to_openai_messages() -> None:
    call = ToolCall(id="c1", name="f", arguments={"a": 1})
    state = AgentStateSnapshot(
        messages=[
            AgentMessage.system("sys"),
            AgentMessage.user("hi"),
            AgentMessage.assistant(None, tool_calls=[call]),
            AgentMessage.tool("done", tool_call_id="c1"),
        ],
        todos=[TodoItem("not a message")],
        metadata={"not": "a message"},
    )
    converted = state.to_openai_messages()
    assert [m["role"] for m in converted] == ["system", "user", "assistant", "tool"]
    assert converted[2]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    assert converted[3] == {"role": "tool", "content": "done", "tool_call_id": "c1"}
    assert [AgentMessage.from_openai(m) for m in converted] == state.messages
    assert AgentStateSnapshot().to_openai_messages() == []


def test_snapshot_equality_compares_state_not_provenance_both_ways() -> None:
    """!= used msgspec's own comparison (provenance included) and disagreed with ==."""
    a, b = AgentStateSnapshot(metadata={"k": 1}), AgentStateSnapshot(metadata={"k": 1})
    assert a == b and not (a != b)
    assert AgentStateSnapshot() != AgentStateSnapshot(metadata={"k": 2})
    cp = InMemoryCheckpointer()
    cp.save("t", a)
    loaded = cp.load("t")
    assert loaded == b and not (loaded != b)
