"""What only the in-memory backend has: it keeps encoded bytes, per instance."""

from __future__ import annotations

from agents_persist import AgentMessage, AgentStateSnapshot, InMemoryCheckpointer, from_url


def test_stores_encoded_bytes_not_caller_objects() -> None:
    cp = InMemoryCheckpointer()
    state = AgentStateSnapshot(messages=[AgentMessage.user("hi", metadata={"k": [1]})], metadata={"m": {"n": 1}})
    cp.save("t", state)
    stored = cp.store._threads["t"]
    assert isinstance(stored.head, bytes) and all(isinstance(blob, bytes) for blob in stored.messages)
    state.metadata["m"]["n"] = 2
    state.messages[0].metadata["k"].append(2)  # deep mutation of a frozen message's dict
    loaded = cp.load("t")
    assert loaded is not None
    assert loaded.metadata == {"m": {"n": 1}} and loaded.messages[0].metadata == {"k": [1]}
    assert loaded.messages[0] is not state.messages[0]


def test_each_instance_is_its_own_store() -> None:
    first, second = from_url("memory://"), from_url("memory://")
    first.save("t", AgentStateSnapshot())
    assert first.exists("t") and not second.exists("t")


def test_close_drops_the_data() -> None:
    cp = InMemoryCheckpointer()
    cp.save("t", AgentStateSnapshot())
    cp.close()
    assert cp.store._threads == {}
