"""The Python precondition against the shared table of cases, and the planner's choices."""

from __future__ import annotations

import pytest

from agents_persist import AgentMessage, ConflictError, codec
from agents_persist.models import Provenance
from agents_persist.planning import (
    Decision,
    Expectation,
    KnownPrefix,
    PrefixMismatch,
    enforce_precondition,
    plan_write,
    precondition,
)
from tests.contract.precondition_cases import APPLIED_VERSION, CASES, PreconditionCase


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_precondition_decides_each_case(case: PreconditionCase) -> None:
    assert precondition(case.write(), *case.scalars()) is case.decision


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_enforce_precondition_raises_what_the_decision_says(case: PreconditionCase) -> None:
    if case.decision is Decision.APPLY:
        assert enforce_precondition("t", case.write(), *case.scalars()) is None
    elif case.decision is Decision.DUPLICATE:
        assert enforce_precondition("t", case.write(), *case.scalars()) == APPLIED_VERSION
    elif case.decision is Decision.CONFLICT:
        with pytest.raises(ConflictError) as info:
            enforce_precondition("t", case.write(), *case.scalars())
        assert info.value.actual_version == case.scalars()[0] and info.value.expected_version == case.expected_version
    else:
        with pytest.raises(PrefixMismatch):
            enforce_precondition("t", case.write(), *case.scalars())


def _provenance(history: list) -> Provenance:  # type: ignore[type-arg]
    blobs = codec.encode_messages(history)
    return Provenance("t", 2, 5, len(history), codec.new_digest(), b"".join(blobs))


def _plan(messages: list, provenance: "Provenance | None", cached: "KnownPrefix | None" = None):  # type: ignore[no-untyped-def,type-arg]
    known = [KnownPrefix.of(provenance)] if provenance is not None else []
    known += [cached] if cached is not None else []
    return plan_write("t", messages, known, Expectation(version=2, generation=5), b"h", 1.0, None)


def test_plan_appends_only_messages_after_the_provenance() -> None:
    history = [AgentMessage.user(f"m{i}") for i in range(3)]
    provenance = _provenance(history)
    new = AgentMessage.assistant("new")
    write, encoded = _plan([*history, new], provenance)
    assert (write.append_from, write.base_digest, write.message_count) == (3, provenance.digest, 4)
    assert (write.expected_version, write.expected_generation) == (2, 5)
    assert write.messages == codec.encode_messages([new], 3)
    assert len(write.digest) == 16 and write.digest not in (provenance.digest, codec.EMPTY_DIGEST)
    assert encoded == b"".join(codec.encode_messages([*history, new]))


def test_plan_rewrites_when_an_earlier_message_changed() -> None:
    history = [AgentMessage.user(f"m{i}") for i in range(3)]
    provenance = _provenance(history)
    edited = [history[0], AgentMessage.user("changed"), history[2]]
    write, _ = _plan(edited, provenance, KnownPrefix.of(provenance))
    assert write.append_from is None and write.message_count == 3 and len(write.messages) == 3


def test_plan_rewrites_an_equal_but_differently_encoded_replacement() -> None:
    history = [AgentMessage.user("a", metadata={"score": 1})]
    provenance = _provenance(history)
    replaced = [history[0].replace(metadata={"score": True})]  # == says equal, the bytes differ
    assert replaced == history
    write, _ = _plan(replaced, provenance)
    assert write.append_from is None and write.messages == codec.encode_messages(replaced)


def test_plan_rewrites_after_an_in_place_edit_of_a_stored_message() -> None:
    history = [AgentMessage.user("a", metadata={"approved": False})]
    provenance = _provenance(history)
    history[0].metadata["approved"] = True
    write, _ = _plan(list(history), provenance)
    assert write.append_from is None and write.messages == codec.encode_messages(history)


def test_plan_uses_the_cached_prefix_for_a_fresh_snapshot_with_the_same_start() -> None:
    history = [AgentMessage.user(f"m{i}") for i in range(3)]
    digest = codec.new_digest()
    cached = KnownPrefix(3, digest, b"".join(codec.encode_messages(history)))
    copies = [AgentMessage.user(f"m{i}") for i in range(3)] + [AgentMessage.user("m3")]
    write, _ = _plan(copies, None, cached)
    assert (write.append_from, write.base_digest, len(write.messages)) == (3, digest, 1)
