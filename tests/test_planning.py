"""The Python precondition against the shared table of cases, and the planner's choices."""

from __future__ import annotations

import pytest

from agents_persist import AgentMessage, ConflictError, codec
from agents_persist.models import _Origin
from agents_persist.planning import Decision, PrefixMismatch, enforce_precondition, plan_write, precondition
from tests.contract.precondition_cases import CASES, PreconditionCase


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_precondition_decides_each_case(case: PreconditionCase) -> None:
    assert precondition(case.write(), *case.scalars()) is case.decision


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_enforce_precondition_raises_what_the_decision_says(case: PreconditionCase) -> None:
    if case.decision is Decision.APPLY:
        enforce_precondition("t", case.write(), *case.scalars())
    elif case.decision is Decision.CONFLICT:
        with pytest.raises(ConflictError) as info:
            enforce_precondition("t", case.write(), *case.scalars())
        assert info.value.actual_version == case.scalars()[0] and info.value.expected_version == case.expected_version
    else:
        with pytest.raises(PrefixMismatch):
            enforce_precondition("t", case.write(), *case.scalars())


def test_plan_appends_only_messages_after_the_origin() -> None:
    history = [AgentMessage.user(f"m{i}") for i in range(3)]
    blobs = codec.encode_messages(history)
    digest = codec.chain_digest(codec.EMPTY_DIGEST, blobs)
    origin = _Origin("t", 2, 3, digest, list(history))
    new = AgentMessage.assistant("new")
    write = plan_write("t", [*history, new], origin, None, 2, b"h", 1.0, None)
    assert (write.append_from, write.base_digest, write.message_count) == (3, digest, 4)
    assert write.messages == codec.encode_messages([new], 3)
    assert write.digest == codec.chain_digest(codec.EMPTY_DIGEST, [*blobs, *write.messages])


def test_plan_rewrites_when_an_earlier_message_changed() -> None:
    history = [AgentMessage.user(f"m{i}") for i in range(3)]
    digest = codec.chain_digest(codec.EMPTY_DIGEST, codec.encode_messages(history))
    origin = _Origin("t", 2, 3, digest, list(history))
    edited = [history[0], AgentMessage.user("changed"), history[2]]
    write = plan_write("t", edited, origin, (3, digest), 2, b"h", 1.0, None)
    assert write.append_from is None and write.message_count == 3 and len(write.messages) == 3


def test_plan_uses_the_cached_prefix_for_a_fresh_snapshot_with_the_same_start() -> None:
    history = [AgentMessage.user(f"m{i}") for i in range(3)]
    digest = codec.chain_digest(codec.EMPTY_DIGEST, codec.encode_messages(history))
    copies = [AgentMessage.user(f"m{i}") for i in range(3)] + [AgentMessage.user("m3")]
    write = plan_write("t", copies, None, (3, digest), None, b"h", 1.0, None)
    assert (write.append_from, write.base_digest, len(write.messages)) == (3, digest, 1)
