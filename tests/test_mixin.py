"""AgentStateMixin: save_state/load_state, incremental writes, conflicts between agents."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

from agents_persist import (
    AgentMessage,
    AgentStateMixin,
    Checkpointer,
    ConflictError,
    HitlInterrupt,
    InMemoryCheckpointer,
    SqliteCheckpointer,
    TodoItem,
)
from agents_persist.planning import PlannedWrite


class Agent(AgentStateMixin):
    def __init__(self, checkpointer: Checkpointer) -> None:
        self.checkpointer = checkpointer


@pytest.fixture(params=["memory", "sqlite"])
def cp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Checkpointer]:
    checkpointer: Checkpointer
    if request.param == "memory":
        checkpointer = InMemoryCheckpointer()
    else:
        checkpointer = SqliteCheckpointer(tmp_path / "mixin.db", synchronous="NORMAL")
    with checkpointer:
        yield checkpointer


def spy_writes(cp: Checkpointer) -> List[Tuple[Optional[int], int]]:
    """Record (append_from, number of message blobs) of every backend write."""
    calls: List[Tuple[Optional[int], int]] = []
    original = cp.store.write

    def recording(thread_id: str, write: PlannedWrite) -> int:
        calls.append((write.append_from, len(write.messages)))
        return original(thread_id, write)

    cp.store.write = recording  # type: ignore[method-assign]
    return calls


def fill(agent: Agent) -> None:
    agent.messages.append(AgentMessage.system("sys"))
    agent.messages.append(AgentMessage.user("hi"))
    agent.todos = [TodoItem("plan", "in_progress", id="1")]
    agent.current_interrupt = HitlInterrupt(
        "book", tool_args={"f": "SK1"}, call_id="c1", created_at=datetime(2026, 1, 1, tzinfo=timezone.utc)
    )
    agent.state_metadata = {"user": "ada", "n": [1, 2]}


def test_fresh_agent_has_empty_defaults(cp: Checkpointer) -> None:
    agent = Agent(cp)
    assert (agent.messages, agent.todos, agent.current_interrupt, agent.state_metadata) == ([], [], None, {})
    agent.messages.append(AgentMessage.user("kept"))
    assert agent.messages == [AgentMessage.user("kept")]  # the default is created once, not per access
    with pytest.raises(AttributeError):
        agent.no_such_attribute  # noqa: B018


def test_save_and_load_round_trip(cp: Checkpointer) -> None:
    agent = Agent(cp)
    fill(agent)
    assert agent.save_state("user-1") == 1
    other = Agent(cp)
    assert other.load_state("user-1") is True
    assert other.messages == agent.messages
    assert other.todos == agent.todos
    assert other.current_interrupt == agent.current_interrupt
    assert other.state_metadata == agent.state_metadata
    stored = cp.load("user-1")
    assert stored is not None and stored.metadata == {"user": "ada", "n": [1, 2]}


def test_load_state_of_unknown_thread_returns_false_and_resets_the_agent(cp: Checkpointer) -> None:
    agent = Agent(cp)
    fill(agent)
    assert agent.load_state("nobody") is False
    assert (agent.messages, agent.todos, agent.current_interrupt, agent.state_metadata) == ([], [], None, {})
    assert not cp.exists("nobody")


def test_load_state_replaces_state_and_does_not_share_lists(cp: Checkpointer) -> None:
    writer = Agent(cp)
    fill(writer)
    writer.save_state("t")
    reader = Agent(cp)
    reader.messages.append(AgentMessage.user("stale local message"))
    reader.state_metadata = {"stale": True}
    assert reader.load_state("t")
    assert reader.messages == writer.messages and reader.state_metadata == writer.state_metadata
    reader.messages.append(AgentMessage.user("local only"))
    reader.state_metadata["local"] = True
    again = cp.load("t")
    assert again is not None and len(again.messages) == 2 and "local" not in again.metadata


def test_agent_state_changes_after_save_do_not_leak_into_the_store(cp: Checkpointer) -> None:
    agent = Agent(cp)
    fill(agent)
    agent.save_state("t")
    agent.messages.append(AgentMessage.user("unsaved"))
    agent.state_metadata["unsaved"] = True
    agent.todos[0].status = "completed"
    stored = cp.load("t")
    assert stored is not None
    assert len(stored.messages) == 2 and "unsaved" not in stored.metadata and stored.todos[0].status == "in_progress"


def test_second_save_writes_only_new_messages(cp: Checkpointer) -> None:
    calls = spy_writes(cp)
    agent = Agent(cp)
    fill(agent)
    assert agent.save_state("t") == 1
    agent.messages.append(AgentMessage.assistant("hello"))
    agent.messages.append(AgentMessage.user("book it"))
    assert agent.save_state("t") == 2
    agent.state_metadata["only"] = "head"
    assert agent.save_state("t") == 3
    assert calls == [(None, 2), (2, 2), (4, 0)]
    stored = cp.load("t")
    assert stored is not None and [m.content for m in stored.messages] == ["sys", "hi", "hello", "book it"]
    assert stored.metadata["only"] == "head"


def test_save_after_load_state_appends_in_another_agent(cp: Checkpointer) -> None:
    first = Agent(cp)
    fill(first)
    first.save_state("t")
    calls = spy_writes(cp)
    second = Agent(cp)
    assert second.load_state("t")
    second.messages.append(AgentMessage.assistant("resumed"))
    assert second.save_state("t") == 2
    assert calls == [(2, 1)]


def test_editing_an_earlier_message_rewrites_the_log(cp: Checkpointer) -> None:
    agent = Agent(cp)
    fill(agent)
    agent.save_state("t")
    calls = spy_writes(cp)
    agent.messages[0] = agent.messages[0].replace(content="new system prompt")
    agent.save_state("t")
    assert calls == [(None, 2)]
    stored = cp.load("t")
    assert stored is not None and stored.messages[0].content == "new system prompt"


def test_two_agents_on_one_thread_conflict(cp: Checkpointer) -> None:
    seed = Agent(cp)
    fill(seed)
    seed.save_state("shared")
    a, b = Agent(cp), Agent(cp)
    assert a.load_state("shared") and b.load_state("shared")
    a.messages.append(AgentMessage.assistant("from a"))
    b.messages.append(AgentMessage.assistant("from b"))
    assert a.save_state("shared") == 2
    with pytest.raises(ConflictError) as info:
        b.save_state("shared")
    assert info.value.thread_id == "shared"
    assert (info.value.expected_version, info.value.actual_version) == (1, 2)
    stored = cp.load("shared")
    assert stored is not None and stored.version == 2 and stored.messages[-1].content == "from a"
    # force=True overwrites with b's state
    assert b.save_state("shared", force=True) == 3
    stored = cp.load("shared")
    assert stored is not None and stored.version == 3
    assert [m.content for m in stored.messages] == ["sys", "hi", "from b"]
    # and b can keep saving normally afterwards
    b.messages.append(AgentMessage.user("next"))
    assert b.save_state("shared") == 4


def test_reload_after_conflict_then_save_succeeds(cp: Checkpointer) -> None:
    a, b = Agent(cp), Agent(cp)
    a.save_state("t")
    assert b.load_state("t")
    a.messages.append(AgentMessage.user("a"))
    a.save_state("t")
    b.messages.append(AgentMessage.user("b"))
    with pytest.raises(ConflictError):
        b.save_state("t")
    assert b.load_state("t")
    b.messages.append(AgentMessage.user("b"))
    assert b.save_state("t") == 3
    stored = cp.load("t")
    assert stored is not None and [m.content for m in stored.messages] == ["a", "b"]


def test_a_never_loaded_agent_does_not_overwrite_unless_forced(cp: Checkpointer) -> None:
    old = Agent(cp)
    fill(old)
    old.save_state("t")
    fresh = Agent(cp)
    fresh.messages.append(AgentMessage.user("fresh start"))
    with pytest.raises(ConflictError):
        fresh.save_state("t")
    assert fresh.save_state("t", force=True) == 2
    stored = cp.load("t")
    assert stored is not None and [m.content for m in stored.messages] == ["fresh start"]
    assert stored.todos == [] and stored.current_interrupt is None and stored.metadata == {}


def test_saving_under_another_thread_id_creates_it_without_checking_the_first(cp: Checkpointer) -> None:
    agent = Agent(cp)
    fill(agent)
    agent.save_state("a")
    assert agent.save_state("b") == 1  # a new thread: no check against "a"'s version
    assert cp.get_version("a") == 1
    with pytest.raises(ConflictError):  # "b" exists now, and the agent's snapshot is "b"'s...
        agent.save_state("a")  # ... so saving to "a" again is a create, which conflicts


def test_two_workers_starting_the_same_thread_do_not_overwrite_each_other(cp: Checkpointer) -> None:
    """Hole 6: both see no thread, both start one; the second save must conflict (failed before Contract v2)."""
    first, second = Agent(cp), Agent(cp)
    assert not first.load_state("t") and not second.load_state("t")
    first.messages.append(AgentMessage.system("first"))
    second.messages.append(AgentMessage.system("second"))
    assert first.save_state("t") == 1
    with pytest.raises(ConflictError):
        second.save_state("t")
    stored = cp.load("t")
    assert stored is not None and [m.content for m in stored.messages] == ["first"]


def test_a_miss_resets_the_agent_and_never_writes_another_users_history(cp: Checkpointer) -> None:
    """Hole 6: load_state(y) finding nothing must not leave x's messages in the agent (failed before Contract v2)."""
    agent = Agent(cp)
    fill(agent)
    agent.save_state("user-x")
    assert agent.load_state("user-x")
    assert not agent.load_state("user-y")
    assert agent.messages == [] and agent.todos == [] and agent.current_interrupt is None and agent.state_metadata == {}
    agent.messages.append(AgentMessage.user("hello from y"))
    assert agent.save_state("user-y") == 1
    stored = cp.load("user-y")
    assert stored is not None and [m.content for m in stored.messages] == ["hello from y"]
