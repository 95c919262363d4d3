"""Contract v2: each way data used to be lost silently, as a regression test on every backend.

Each test here failed before Contract v2 (on main at 99dfe87): the save was
accepted and the newer state, or the edit, was gone.
"""

from __future__ import annotations

import copy
import enum
import threading
import time

import msgspec
import pytest

from agents_persist import (
    AgentMessage,
    AgentStateMixin,
    AgentStateSnapshot,
    Checkpointer,
    ConfigurationError,
    ConflictError,
    InvalidArgumentError,
    SerializationError,
    TodoItem,
    ToolCall,
    codec,
)
from tests.spec import BackendSpec


def stored_bytes(cp: Checkpointer, tid: str) -> bytes:
    state = cp.load(tid)
    assert state is not None
    return b"".join(codec.encode_messages(state.messages))


# ---------------------------------------------------------------------------------------------- 1. ABA


def test_stale_snapshot_never_lands_on_a_thread_deleted_and_created_again(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "aba"
    checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("A's conversation")]))
    stale = checkpointer.load(tid)
    assert stale is not None and stale.version == 1
    checkpointer.delete(tid)
    checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("B's conversation")]))  # version 1 again
    stale.messages.append(AgentMessage.user("A's late turn"))
    with pytest.raises(ConflictError) as info:
        checkpointer.save(tid, stale)
    assert info.value.actual_version == 1 and "created again" in str(info.value)
    loaded = checkpointer.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == ["B's conversation"]


def test_stale_snapshot_never_lands_on_a_thread_that_expired_and_was_created_again(
    backend_spec: BackendSpec, prefix: str
) -> None:
    tid = prefix + "aba-ttl"
    cp = backend_spec.build(ttl=1)
    try:
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("old")]))
        stale = cp.load(tid)
        assert stale is not None
        time.sleep(1.3)
        assert cp.load(tid) is None
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("new")]), expected_version=0)
        with pytest.raises(ConflictError):
            cp.save(tid, stale)
        loaded = cp.load(tid)
        assert loaded is not None and [m.content for m in loaded.messages] == ["new"]
    finally:
        cp.delete(tid)
        cp.close()


def test_update_never_commits_a_function_computed_from_an_earlier_incarnation(
    shared_backend_spec: BackendSpec, prefix: str
) -> None:
    tid = prefix + "aba-update"
    cp, other = shared_backend_spec.build(), shared_backend_spec.build()
    try:
        cp.save(tid, AgentStateSnapshot(metadata={"owner": "A", "n": 1}))
        calls = []

        def fn(state: AgentStateSnapshot) -> None:
            calls.append(dict(state.metadata))
            if len(calls) == 1:  # meanwhile, another process deletes and starts a new conversation
                other.delete(tid)
                other.save(tid, AgentStateSnapshot(metadata={"owner": "B"}))
            state.metadata["n"] = state.metadata.get("n", 0) + 1

        result = cp.update(tid, fn)
        assert calls[0] == {"owner": "A", "n": 1} and calls[1] == {"owner": "B"}
        assert result.metadata == {"owner": "B", "n": 1}
        loaded = cp.load(tid)
        assert loaded is not None and loaded.metadata == {"owner": "B", "n": 1} and loaded.version == 2
    finally:
        cp.delete(tid)
        cp.close()
        other.close()


# ---------------------------------------------------------------------------------------------- 2. and 3. edits


@pytest.mark.parametrize(
    "stored, replacement",
    [({"score": 1}, {"score": True}), ({"x": 0.0}, {"x": -0.0}), ({"x": 1}, {"x": 1.0}), ({"x": True}, {"x": 1})],
    ids=["1->True", "0.0->-0.0", "1->1.0", "True->1"],
)
def test_an_equal_but_different_replacement_is_written(
    checkpointer: Checkpointer, prefix: str, stored: dict, replacement: dict
) -> None:
    tid = prefix + "eq"
    checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("a"), AgentMessage.tool(stored, tool_call_id="c")]))
    state = checkpointer.load(tid)
    assert state is not None
    state.messages[1] = state.messages[1].replace(content=replacement)
    assert state.messages[1].content == stored  # == cannot tell them apart
    checkpointer.save(tid, state)
    expected = b"".join(codec.encode_messages([AgentMessage.user("a"), AgentMessage.tool(replacement, tool_call_id="c")]))
    assert stored_bytes(checkpointer, tid) == expected


def test_an_in_place_edit_of_a_loaded_message_is_written(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "inplace"
    checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.assistant("ok?", metadata={"approved": False})]))
    state = checkpointer.load(tid)
    assert state is not None
    state.messages[0].metadata["approved"] = True
    state.messages.append(AgentMessage.user("next"))
    checkpointer.save(tid, state)
    loaded = checkpointer.load(tid)
    assert loaded is not None and loaded.messages[0].metadata == {"approved": True}
    assert [m.content for m in loaded.messages] == ["ok?", "next"]


def test_an_edit_has_the_same_effect_whatever_the_snapshots_origin(checkpointer: Checkpointer, prefix: str) -> None:
    loaded_tid, fresh_tid = prefix + "origin-loaded", prefix + "origin-fresh"
    for tid in (loaded_tid, fresh_tid):
        checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("q", metadata={"n": [1]})]))
    loaded = checkpointer.load(loaded_tid)
    assert loaded is not None
    loaded.messages[0].metadata["n"].append(2)
    checkpointer.save(loaded_tid, loaded)
    fresh = AgentStateSnapshot(messages=[AgentMessage.user("q", metadata={"n": [1, 2]})])
    checkpointer.save(fresh_tid, fresh, force=True)
    assert stored_bytes(checkpointer, loaded_tid) == stored_bytes(checkpointer, fresh_tid)


# ---------------------------------------------------------------------------------------------- 4. copies


@pytest.mark.parametrize(
    "make_copy",
    [copy.copy, copy.deepcopy, lambda s: msgspec.structs.replace(s, metadata={"copied": True})],
    ids=["copy", "deepcopy", "structs.replace"],
)
def test_a_copy_of_a_loaded_snapshot_keeps_its_version_check(checkpointer: Checkpointer, prefix: str, make_copy) -> None:  # type: ignore[no-untyped-def]
    tid = prefix + "copy"
    checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("1")]))
    loaded = checkpointer.load(tid)
    assert loaded is not None
    duplicate = make_copy(loaded)
    assert duplicate.version == 1 and duplicate.thread_id == tid
    loaded.messages.append(AgentMessage.user("2"))
    checkpointer.save(tid, loaded)  # version 2
    duplicate.messages.append(AgentMessage.user("stale"))
    with pytest.raises(ConflictError):
        checkpointer.save(tid, duplicate)
    stored = checkpointer.load(tid)
    assert stored is not None and [m.content for m in stored.messages] == ["1", "2"]


# ---------------------------------------------------------------------------------------------- 5. fresh snapshots


def test_a_fresh_snapshot_creates_and_never_overwrites_unless_forced(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "fresh"
    assert checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("first")])) == 1
    with pytest.raises(ConflictError) as info:
        checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("second")]))
    assert (info.value.expected_version, info.value.actual_version) == (0, 1)
    assert checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("forced")]), force=True) == 2
    stored = checkpointer.load(tid)
    assert stored is not None and [m.content for m in stored.messages] == ["forced"]


def test_a_snapshot_from_another_thread_follows_the_fresh_rule(checkpointer: Checkpointer, prefix: str) -> None:
    a, b = prefix + "from-a", prefix + "to-b"
    checkpointer.save(a, AgentStateSnapshot(messages=[AgentMessage.user("a")]))
    checkpointer.save(b, AgentStateSnapshot(messages=[AgentMessage.user("b")]))
    from_a = checkpointer.load(a)
    assert from_a is not None
    with pytest.raises(ConflictError):
        checkpointer.save(b, from_a)
    copy_to_new = prefix + "to-new"
    assert checkpointer.save(copy_to_new, from_a) == 1
    stored = checkpointer.load(b)
    assert stored is not None and [m.content for m in stored.messages] == ["b"]


# ---------------------------------------------------------------------------------------------- 6. the mixin


class _Agent(AgentStateMixin):
    def __init__(self, checkpointer: Checkpointer) -> None:
        self.checkpointer = checkpointer


def test_two_agents_starting_one_thread_do_not_overwrite_each_other(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "mixin"
    first, second = _Agent(checkpointer), _Agent(checkpointer)
    assert not first.load_state(tid) and not second.load_state(tid)
    first.messages.append(AgentMessage.system("first"))
    second.messages.append(AgentMessage.system("second"))
    first.save_state(tid)
    with pytest.raises(ConflictError):
        second.save_state(tid)
    stored = checkpointer.load(tid)
    assert stored is not None and [m.content for m in stored.messages] == ["first"]


def test_an_agents_miss_never_carries_another_users_history(checkpointer: Checkpointer, prefix: str) -> None:
    x, y = prefix + "user-x", prefix + "user-y"
    agent = _Agent(checkpointer)
    agent.messages.append(AgentMessage.user("x's secret"))
    agent.save_state(x)
    assert not agent.load_state(y)
    agent.messages.append(AgentMessage.user("y's question"))
    agent.save_state(y)
    stored = checkpointer.load(y)
    assert stored is not None and [m.content for m in stored.messages] == ["y's question"]


# ---------------------------------------------------------------------------------------------- 7. iter_threads


def test_iter_threads_yields_every_thread_once_while_threads_are_saved(checkpointer: Checkpointer, prefix: str) -> None:
    ids = [f"{prefix}walk-{i:03d}" for i in range(40)]
    for tid in ids:
        checkpointer.save(tid, AgentStateSnapshot())
    seen = []
    for info in checkpointer.iter_threads(prefix + "walk-", page_size=7):
        seen.append(info.thread_id)
        # Each step saves a thread not yet walked and one already walked: both move to the front by update time.
        for tid in (ids[-1 - len(seen) % 40], ids[len(seen) % 40]):
            checkpointer.update(tid, lambda s: s.metadata.update(touched=True))
    assert sorted(seen) == ids and len(seen) == len(set(seen))


# ---------------------------------------------------------------------------------------------- 11. bad input


def test_bad_input_gets_typed_errors_and_writes_nothing(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "typed"
    checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("kept")]))
    with pytest.raises(InvalidArgumentError):
        AgentMessage.assistant("x", tool_calls=[{"id": "1", "name": "f"}])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError):
        AgentMessage(role="wizard", content="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        TodoItem("x", status="done")  # type: ignore[arg-type]
    for limit in (0, -1, 10_001, "5", 2.0):
        with pytest.raises(InvalidArgumentError):
            checkpointer.list_threads(prefix, limit=limit)  # type: ignore[arg-type]
    for cursor in ("not a cursor", "", "AAAA"):
        with pytest.raises(InvalidArgumentError):
            checkpointer.list_threads(prefix, cursor=cursor)
    with pytest.raises(InvalidArgumentError):
        checkpointer.update(tid, lambda s: "not a snapshot")  # type: ignore[arg-type,return-value]
    state = checkpointer.load(tid)
    assert state is not None
    state.todos.append(TodoItem("x"))
    state.todos[0].status = "done"  # type: ignore[assignment]  # structs do not check on assignment: the save does
    with pytest.raises(SerializationError):
        checkpointer.save(tid, state)
    stored = checkpointer.load(tid)
    assert stored is not None and stored.version == 1 and [m.content for m in stored.messages] == ["kept"]
    assert ToolCall(id="1", name="f").name == "f"


def test_a_str_subclass_is_a_fine_thread_id(checkpointer: Checkpointer, prefix: str) -> None:
    Thread = enum.Enum("Thread", {"USER": prefix + "enum"}, type=str)  # a StrEnum on every Python version
    assert checkpointer.save(Thread.USER, AgentStateSnapshot(metadata={"ok": True})) == 1  # type: ignore[arg-type]
    loaded = checkpointer.load(prefix + "enum")
    assert loaded is not None and loaded.metadata == {"ok": True} and type(loaded.thread_id) is str
    assert [type(i.thread_id) for i in checkpointer.list_threads(prefix + "enum")] == [str]


def test_an_infinite_ttl_is_refused(backend_spec: BackendSpec) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        backend_spec.build(ttl=float("inf"))


def test_delete_of_an_expired_thread_removes_it_and_says_it_was_not_live(backend_spec: BackendSpec, prefix: str) -> None:
    tid = prefix + "expired"
    cp = backend_spec.build(ttl=1)
    try:
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("x")]))
        time.sleep(1.3)
        assert cp.delete(tid) is False
        assert cp.load(tid) is None and cp.delete(tid) is False
        assert cp.save(tid, AgentStateSnapshot(), expected_version=0) == 1
    finally:
        cp.delete(tid)
        cp.close()


def test_load_takes_no_per_thread_lock(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "nolock"
    checkpointer.save(tid, AgentStateSnapshot(metadata={"v": 1}))
    loaded = threading.Event()
    with checkpointer.transaction(tid) as state:  # holds the thread's lock in this thread
        worker = threading.Thread(target=lambda: (checkpointer.load(tid), loaded.set()))
        worker.start()
        assert loaded.wait(10), "load waited for the transaction's lock"
        state.metadata["v"] = 2
    worker.join(10)
