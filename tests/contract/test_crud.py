"""The contract every backend keeps: save, load, delete, versions, listing, TTL, errors."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    Checkpointer,
    CheckpointerClosedError,
    ConflictError,
    HitlInterrupt,
    InvalidArgumentError,
    InvalidThreadIdError,
    SerializationError,
    TodoItem,
    ToolCall,
)
from tests.spec import BackendSpec


def rich_snapshot() -> AgentStateSnapshot:
    return AgentStateSnapshot(
        messages=[
            AgentMessage.system("You are a careful assistant."),
            AgentMessage.user("Book a flight to Oslo, please."),
            AgentMessage.assistant(
                None,
                tool_calls=[ToolCall(id="call_1", name="search_flights", arguments={"to": "OSL", "pax": 1})],
            ),
            AgentMessage.tool({"flights": [{"id": "SK123", "price": 99.5}]}, tool_call_id="call_1", name="search_flights"),
            AgentMessage.assistant([{"type": "text", "text": "Found SK123 ✈"}], metadata={"tokens": 12}),
        ],
        todos=[TodoItem("search flights", "completed", id="1"), TodoItem("book flight", "in_progress")],
        current_interrupt=HitlInterrupt(
            tool_name="book_flight",
            tool_args={"flight": "SK123"},
            call_id="call_2",
            policy_note="payments need approval",
            created_at=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc),
        ),
        metadata={"user": {"id": 42, "tier": "gold"}, "flags": [True, None, 1.5], "empty": {}},
    )


def same_content(a: AgentStateSnapshot, b: AgentStateSnapshot) -> bool:
    return (a.messages, a.todos, a.current_interrupt, a.metadata) == (b.messages, b.todos, b.current_interrupt, b.metadata)


def test_load_of_unknown_thread_is_none(checkpointer: Checkpointer, prefix: str) -> None:
    assert checkpointer.load(prefix + "nobody") is None
    assert not checkpointer.exists(prefix + "nobody")
    assert checkpointer.get_version(prefix + "nobody") == 0


def test_save_then_load_round_trips_every_field(checkpointer: Checkpointer, prefix: str) -> None:
    original = rich_snapshot()
    assert checkpointer.save(prefix + "a", original) == 1
    loaded = checkpointer.load(prefix + "a")
    assert loaded is not None
    assert same_content(loaded, rich_snapshot())
    assert loaded.version == 1 and loaded.thread_id == prefix + "a"
    assert checkpointer.exists(prefix + "a")


def test_versions_count_up_by_one_per_save(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "v"
    state = AgentStateSnapshot()
    versions = []
    for i in range(4):
        state.metadata = {"i": i}
        versions.append(checkpointer.save(tid, state))
    assert versions == [1, 2, 3, 4]
    assert checkpointer.get_version(tid) == 4


def test_empty_snapshot_round_trips(checkpointer: Checkpointer, prefix: str) -> None:
    checkpointer.save(prefix + "e", AgentStateSnapshot())
    loaded = checkpointer.load(prefix + "e")
    assert loaded is not None and same_content(loaded, AgentStateSnapshot())


def test_caller_mutation_after_save_does_not_leak_into_store(checkpointer: Checkpointer, prefix: str) -> None:
    state = AgentStateSnapshot(metadata={"k": [1]}, todos=[TodoItem("x")])
    checkpointer.save(prefix + "m", state)
    state.metadata["k"].append(2)
    state.todos[0].status = "completed"
    loaded = checkpointer.load(prefix + "m")
    assert loaded is not None
    assert loaded.metadata == {"k": [1]} and loaded.todos[0].status == "pending"


def test_appending_messages_keeps_order_and_prefix(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "grow"
    state = AgentStateSnapshot()
    expected = []
    for turn in range(30):
        new = [AgentMessage.user(f"q{turn}"), AgentMessage.assistant(f"a{turn}")]
        state.messages.extend(new)
        expected.extend(new)
        checkpointer.save(tid, state)
    loaded = checkpointer.load(tid)
    assert loaded is not None and loaded.messages == expected and loaded.version == 30


def test_rewritten_history_replaces_log(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "rw"
    state = AgentStateSnapshot(messages=[AgentMessage.user(str(i)) for i in range(10)])
    checkpointer.save(tid, state)
    state.messages[3] = AgentMessage.user("edited")
    checkpointer.save(tid, state)
    state.messages = [AgentMessage.system("summary")] + state.messages[8:]
    checkpointer.save(tid, state)
    loaded = checkpointer.load(tid)
    assert loaded is not None
    assert [m.content for m in loaded.messages] == ["summary", "8", "9"]
    loaded.messages.pop()
    checkpointer.save(tid, loaded)
    again = checkpointer.load(tid)
    assert again is not None and [m.content for m in again.messages] == ["summary", "8"]


def test_fresh_snapshot_with_same_prefix_appends_correctly(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "fresh"
    base = [AgentMessage.user("a"), AgentMessage.assistant("b")]
    checkpointer.save(tid, AgentStateSnapshot(messages=list(base)))
    extended = base + [AgentMessage.user("c")]
    checkpointer.save(tid, AgentStateSnapshot(messages=[m.replace() for m in extended]), force=True)
    loaded = checkpointer.load(tid)
    assert loaded is not None and loaded.messages == extended


def test_two_instances_see_each_others_appends(shared_backend_spec: BackendSpec, prefix: str) -> None:
    tid = prefix + "two"
    first, second = shared_backend_spec.build(), shared_backend_spec.build()
    try:
        a = AgentStateSnapshot(messages=[AgentMessage.user("1")])
        first.save(tid, a)
        b = second.load(tid)
        assert b is not None
        b.messages.append(AgentMessage.user("2"))
        second.save(tid, b)
        # ``a`` is stale: a default save must refuse, a forced save must rewrite whole.
        a.messages.append(AgentMessage.user("x"))
        with pytest.raises(ConflictError):
            first.save(tid, a)
        first.save(tid, a, force=True)
        loaded = second.load(tid)
        assert loaded is not None and [m.content for m in loaded.messages] == ["1", "x"]
        # A fresh snapshot from ``second`` whose cached prefix is stale must rewrite too.
        fresh = AgentStateSnapshot(messages=[AgentMessage.user("1"), AgentMessage.user("2"), AgentMessage.user("3")])
        second.save(tid, fresh, force=True)
        loaded = first.load(tid)
        assert loaded is not None and [m.content for m in loaded.messages] == ["1", "2", "3"]
    finally:
        first.delete(tid)
        first.close()
        second.close()


def test_saving_a_stale_loaded_snapshot_raises_conflict(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "stale"
    checkpointer.save(tid, AgentStateSnapshot(metadata={"n": 0}))
    mine, theirs = checkpointer.load(tid), checkpointer.load(tid)
    assert mine is not None and theirs is not None
    theirs.metadata["n"] = 1
    assert checkpointer.save(tid, theirs) == 2
    mine.metadata["n"] = 2
    with pytest.raises(ConflictError) as info:
        checkpointer.save(tid, mine)
    assert info.value.thread_id == tid
    assert (info.value.expected_version, info.value.actual_version) == (1, 2)
    stored = checkpointer.load(tid)
    assert stored is not None and stored.metadata == {"n": 1} and stored.version == 2
    assert checkpointer.save(tid, mine, force=True) == 3
    stored = checkpointer.load(tid)
    assert stored is not None and stored.metadata == {"n": 2}


def test_saved_snapshot_carries_new_version(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "carry"
    state = AgentStateSnapshot()
    assert state.version is None
    checkpointer.save(tid, state)
    assert state.version == 1
    state.metadata["x"] = 1
    assert checkpointer.save(tid, state) == 2 and state.version == 2


def test_expected_version_compare_and_set(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "cas"
    with pytest.raises(ConflictError):
        checkpointer.save(tid, AgentStateSnapshot(), expected_version=1)
    assert not checkpointer.exists(tid)
    assert checkpointer.save(tid, AgentStateSnapshot(metadata={"a": 1}), expected_version=0) == 1
    with pytest.raises(ConflictError) as info:
        checkpointer.save(tid, AgentStateSnapshot(), expected_version=0)
    assert info.value.actual_version == 1
    assert checkpointer.save(tid, AgentStateSnapshot(metadata={"a": 2}), expected_version=1) == 2
    loaded = checkpointer.load(tid)
    assert loaded is not None and loaded.metadata == {"a": 2}


def test_expected_version_and_force_are_exclusive(checkpointer: Checkpointer, prefix: str) -> None:
    with pytest.raises(ValueError):
        checkpointer.save(prefix + "x", AgentStateSnapshot(), expected_version=0, force=True)
    with pytest.raises(ValueError):
        checkpointer.save(prefix + "x", AgentStateSnapshot(), expected_version=-1)
    assert not checkpointer.exists(prefix + "x")


def test_delete_removes_everything_and_reports_it(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "del"
    checkpointer.save(tid, rich_snapshot())
    assert checkpointer.delete(tid) is True
    assert checkpointer.load(tid) is None and not checkpointer.exists(tid)
    assert checkpointer.delete(tid) is False
    assert all(info.thread_id != tid for info in checkpointer.iter_threads(prefix))
    # A new thread under the same ID starts from version 1 with nothing of the old one.
    assert checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("new")])) == 1
    loaded = checkpointer.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == ["new"]


def test_snapshot_loaded_before_delete_conflicts_after(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "resurrect"
    checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("a")]))
    old = checkpointer.load(tid)
    checkpointer.delete(tid)
    assert old is not None
    old.messages.append(AgentMessage.user("b"))
    with pytest.raises(ConflictError):
        checkpointer.save(tid, old)
    assert not checkpointer.exists(tid)
    checkpointer.save(tid, old, force=True)
    loaded = checkpointer.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == ["a", "b"]


def test_transaction_saves_block_changes(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "tx"
    with checkpointer.transaction(tid) as state:
        assert state.messages == [] and state.version == 0
        state.messages.append(AgentMessage.user("hi"))
    with checkpointer.transaction(tid) as state:
        state.messages.append(AgentMessage.assistant("hello"))
    loaded = checkpointer.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == ["hi", "hello"] and loaded.version == 2


def test_transaction_saves_nothing_when_block_raises(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "txfail"
    checkpointer.save(tid, AgentStateSnapshot(metadata={"n": 1}))
    with pytest.raises(KeyError):
        with checkpointer.transaction(tid) as state:
            state.metadata["n"] = 2
            raise KeyError("boom")
    loaded = checkpointer.load(tid)
    assert loaded is not None and loaded.metadata == {"n": 1} and loaded.version == 1


def test_update_applies_function_and_returns_stored_snapshot(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "upd"
    result = checkpointer.update(tid, lambda s: s.messages.append(AgentMessage.user("1")))
    assert result.version == 1
    result = checkpointer.update(tid, lambda s: AgentStateSnapshot(messages=s.messages + [AgentMessage.user("2")]))
    assert result.version == 2
    loaded = checkpointer.load(tid)
    assert loaded is not None and [m.content for m in loaded.messages] == ["1", "2"]


def test_update_gives_up_after_bounded_retries(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "retry"
    checkpointer.save(tid, AgentStateSnapshot(metadata={"n": 0}))
    calls = []

    def meddle(state: AgentStateSnapshot) -> None:
        calls.append(1)
        # Another writer commits between our load and our save, every time.
        checkpointer.save(tid, AgentStateSnapshot(metadata={"n": -len(calls)}), force=True)
        state.metadata["n"] = 100

    with pytest.raises(ConflictError):
        checkpointer.update(tid, meddle, max_retries=3)
    assert len(calls) == 4
    loaded = checkpointer.load(tid)
    assert loaded is not None and loaded.metadata == {"n": -4}


def test_list_threads_newest_first_with_prefix_and_paging(checkpointer: Checkpointer, prefix: str) -> None:
    ids = [f"{prefix}{i:02d}" for i in range(7)]
    for i, tid in enumerate(ids):
        checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("x")] * i))
        time.sleep(0.002)
    checkpointer.save(ids[2], AgentStateSnapshot(messages=[AgentMessage.user("y")] * 9), force=True)
    expected_order = [ids[2]] + [t for t in reversed(ids) if t != ids[2]]
    seen = []
    cursor = None
    pages = 0
    while True:
        page = checkpointer.list_threads(prefix, limit=3, cursor=cursor)
        assert len(page) <= 3
        seen.extend(page.threads)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [info.thread_id for info in seen] == expected_order
    assert pages == 3
    info = {i.thread_id: i for i in seen}
    assert info[ids[2]].version == 2 and info[ids[2]].message_count == 9
    assert info[ids[5]].version == 1 and info[ids[5]].message_count == 5
    assert all(i.updated_at.tzinfo is not None for i in seen)
    walked = [i.thread_id for i in checkpointer.iter_threads(prefix + "0", page_size=2)]
    assert sorted(walked) == sorted(t for t in expected_order if t.startswith(prefix + "0"))
    assert len(walked) == len(set(walked))  # each once, in the store's own stable order


def test_list_threads_rejects_bad_arguments(checkpointer: Checkpointer) -> None:
    with pytest.raises(ValueError):
        checkpointer.list_threads(limit=0)
    with pytest.raises(ValueError):
        checkpointer.list_threads(cursor="not a cursor")


def test_ttl_expires_threads_everywhere(backend_spec: BackendSpec, prefix: str) -> None:
    # Margins of a second or more: a loaded CI machine may take hundreds of milliseconds per call.
    cp = backend_spec.build(ttl=2.5)
    try:
        tid = prefix + "ttl"
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("short-lived")]))
        assert cp.exists(tid)
        assert [i.thread_id for i in cp.list_threads(prefix)] == [tid]
        time.sleep(1.5)
        cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("renewed")]), force=True)  # sliding
        time.sleep(1.5)
        assert cp.exists(tid), "a save must extend the TTL"
        time.sleep(1.5)
        assert cp.load(tid) is None and not cp.exists(tid)
        assert list(cp.list_threads(prefix)) == []
        # An expired thread counts as missing for compare-and-set, and leaves nothing behind.
        assert cp.save(tid, AgentStateSnapshot(messages=[AgentMessage.user("again")]), expected_version=0) == 1
        loaded = cp.load(tid)
        assert loaded is not None and [m.content for m in loaded.messages] == ["again"]
    finally:
        cp.delete(prefix + "ttl")
        cp.close()


@pytest.mark.parametrize(
    "bad",
    ["", 42, None, b"bytes", "x" * 513, "é" * 257, "tab\there", "nl\n", "del\x7f", "c1\x85", "\ud800"],
)
def test_invalid_thread_ids_are_refused_before_io(checkpointer: Checkpointer, bad: object) -> None:
    for call in (
        lambda: checkpointer.save(bad, AgentStateSnapshot()),  # type: ignore[arg-type]
        lambda: checkpointer.load(bad),  # type: ignore[arg-type]
        lambda: checkpointer.delete(bad),  # type: ignore[arg-type]
        lambda: checkpointer.exists(bad),  # type: ignore[arg-type]
        lambda: checkpointer.update(bad, lambda s: None),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidThreadIdError):
            call()


def test_longest_valid_thread_id_works(checkpointer: Checkpointer, prefix: str) -> None:
    tid = prefix + "é" * ((512 - len(prefix)) // 2)
    assert len(tid.encode()) <= 512
    checkpointer.save(tid, AgentStateSnapshot(metadata={"ok": True}))
    loaded = checkpointer.load(tid)
    assert loaded is not None and loaded.metadata == {"ok": True}


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda: AgentStateSnapshot(metadata={"when": datetime.now()}),
        lambda: AgentStateSnapshot(metadata={1: "int key"}),
        lambda: AgentStateSnapshot(metadata={"t": (1, 2)}),
        lambda: AgentStateSnapshot(metadata={"nan": float("nan")}),
        lambda: AgentStateSnapshot(metadata={"obj": object()}),
        lambda: AgentStateSnapshot(messages=[AgentMessage.user({"set": {1}})]),
        lambda: AgentStateSnapshot(messages=[AgentMessage.user("ok"), AgentMessage.user(b"bytes")]),
        lambda: AgentStateSnapshot(messages=["not a message"]),  # type: ignore[list-item]
        lambda: AgentStateSnapshot(current_interrupt=HitlInterrupt("t", tool_args={"x": {1, 2}})),
    ],
)
def test_unserializable_state_raises_and_stores_nothing(checkpointer: Checkpointer, prefix: str, make_bad) -> None:  # type: ignore[no-untyped-def]
    tid = prefix + "ser"
    good = rich_snapshot()
    checkpointer.save(tid, good)
    bad = make_bad()
    bad.messages = good.messages + bad.messages  # an append that must not half-happen
    with pytest.raises(SerializationError) as info:
        checkpointer.save(tid, bad, force=True)
    assert info.value.thread_id == tid
    loaded = checkpointer.load(tid)
    assert loaded is not None and same_content(loaded, rich_snapshot()) and loaded.version == 1
    with pytest.raises(SerializationError):
        checkpointer.save(prefix + "never", make_bad())
    assert not checkpointer.exists(prefix + "never")


def test_closed_checkpointer_refuses_calls(backend_spec: BackendSpec, prefix: str) -> None:
    cp = backend_spec.build()
    cp.close()
    cp.close()  # idempotent
    assert cp.closed
    with pytest.raises(CheckpointerClosedError):
        cp.load(prefix + "x")
    with pytest.raises(CheckpointerClosedError):
        cp.save(prefix + "x", AgentStateSnapshot())


def test_context_manager_closes(backend_spec: BackendSpec) -> None:
    with backend_spec.build() as cp:
        assert not cp.closed
    assert cp.closed


def test_delete_inactive_deletes_threads_not_saved_since_the_cutoff(checkpointer: Checkpointer, prefix: str) -> None:
    for name in ("old-a", "old-b"):
        checkpointer.save(prefix + name, AgentStateSnapshot(messages=[AgentMessage.user(name)]))
    time.sleep(0.02)
    cutoff = datetime.now(timezone.utc)
    time.sleep(0.02)
    checkpointer.save(prefix + "new", AgentStateSnapshot(messages=[AgentMessage.user("new")]))
    assert checkpointer.delete_inactive(cutoff, batch_size=1) >= 2
    assert not checkpointer.exists(prefix + "old-a") and not checkpointer.exists(prefix + "old-b")
    assert checkpointer.load(prefix + "new") is not None
    with pytest.raises(InvalidArgumentError):
        checkpointer.delete_inactive(datetime(2020, 1, 1))
    with pytest.raises(InvalidArgumentError):
        checkpointer.delete_inactive(cutoff, batch_size=0)


def test_iter_threads_walks_every_thread_once_in_small_pages(checkpointer: Checkpointer, prefix: str) -> None:
    """Pages of 3 over 25 threads: every thread once, whatever the store's stable order (DynamoDB's is not by ID)."""
    ids = {f"{prefix}walk-{i:02d}" for i in range(25)}
    for tid in ids:
        checkpointer.save(tid, AgentStateSnapshot(messages=[AgentMessage.user(tid)]))
    walked = [info.thread_id for info in checkpointer.iter_threads(prefix + "walk-", page_size=3)]
    assert sorted(walked) == sorted(ids)
