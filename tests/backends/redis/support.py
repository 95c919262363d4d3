"""Helpers shared by the Redis test modules."""

from __future__ import annotations

from typing import List

from agents_persist import AgentMessage, AgentStateSnapshot

FAST_TIMEOUT = 1.0
#: A failing call may spend one connect and one reply timeout, plus scheduling slack.
DEADLINE = 2 * FAST_TIMEOUT + 0.75


def messages(count: int, start: int = 0) -> List[AgentMessage]:
    return [AgentMessage.user(f"message {i}: " + "x" * 100) for i in range(start, start + count)]


def increment(state: AgentStateSnapshot) -> None:
    state.metadata["n"] = state.metadata.get("n", 0) + 1
    state.messages.append(AgentMessage.user(f"+1 #{state.metadata['n']}"))
