"""Helpers shared by the Redis test modules."""

from __future__ import annotations

from typing import Iterator, List

from agents_persist import AgentMessage, AgentStateSnapshot, RedisCheckpointer
from tests.spec import BackendSpec

FAST_TIMEOUT = 1.0
#: A failing call may spend one connect and one reply timeout, plus scheduling slack.
DEADLINE = 2 * FAST_TIMEOUT + 0.75


def messages(count: int, start: int = 0) -> List[AgentMessage]:
    return [AgentMessage.user(f"message {i}: " + "x" * 100) for i in range(start, start + count)]


def increment(state: AgentStateSnapshot) -> None:
    state.metadata["n"] = state.metadata.get("n", 0) + 1
    state.messages.append(AgentMessage.user(f"+1 #{state.metadata['n']}"))


def checkpointer_on(spec: BackendSpec, prefix: str) -> Iterator[RedisCheckpointer]:
    """A checkpointer on ``spec``'s server; afterwards the threads under ``prefix`` are deleted and it is closed."""
    checkpointer = RedisCheckpointer.from_url(spec.url)
    yield checkpointer
    for info in list(checkpointer.iter_threads(prefix)):
        checkpointer.delete(info.thread_id)
    checkpointer.close()
