"""A hypothesis state machine: every backend agrees with a plain-Python model.

Random sequences of fresh saves (which create), forced saves, loads, appends,
in-place edits, equal-but-different replacements and rewrites of held
snapshots (with the default version check), expected-version saves,
``update``, ``append`` and deletes run against a backend and a model; after
every step each thread's stored state must equal the model's *as encoded
bytes* (``==`` calls ``1``, ``1.0`` and ``True`` equal), and every conflict
the backend raises (or not) must be the one the model predicts.

The model counts incarnations: a delete ends one, and a snapshot held from
an earlier incarnation must never be saved over a later one, even when the
version numbers happen to match (the ABA case).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule, run_state_machine_as_test

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, ConflictError, TodoItem, codec
from tests.conftest import contract_spec

THREADS = ["a", "b"]  # few names: deletes, re-creations and stale handles meet often
_run = itertools.count()

#: Ints, floats (signed zeros, integral values) and booleans together: == mixes them up, bytes do not.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.sampled_from([0.0, -0.0, 1.0, 2.5, -1e300]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=6,
)
messages = st.builds(
    AgentMessage,
    role=st.sampled_from(["user", "assistant", "system", "tool"]),
    content=st.one_of(st.text(max_size=40), json_values),
    metadata=st.dictionaries(st.text(max_size=5), json_values, max_size=2),
)
message_lists = st.lists(messages, max_size=4)

#: A thread's stored state as bytes: its messages' encoding and its head's.
Encoded = Tuple[bytes, bytes]


def encoded(state: AgentStateSnapshot) -> Encoded:
    return b"".join(codec.encode_messages(state.messages)), codec.encode_head(state)


def make_snapshot(msgs: List[AgentMessage], note: str) -> AgentStateSnapshot:
    return AgentStateSnapshot(messages=list(msgs), todos=[TodoItem(note)], metadata={"note": note})


@dataclass
class Thread:
    version: int
    content: Encoded
    incarnation: int


@dataclass
class Held:
    name: str
    state: AgentStateSnapshot
    incarnation: int


def run_machine(checkpointer: Checkpointer, prefix: str, examples: int) -> None:
    class CheckpointerMachine(RuleBasedStateMachine):
        held = Bundle("held")

        def __init__(self) -> None:
            super().__init__()
            self.base = f"{prefix}{next(_run)}-"
            self.model: Dict[str, Thread] = {}
            self.incarnations = dict.fromkeys(THREADS, 0)

        def tid(self, name: str) -> str:
            return self.base + name

        def version(self, name: str) -> int:
            thread = self.model.get(name)
            return 0 if thread is None else thread.version

        def committed(self, name: str, content: Encoded, version: int) -> None:
            assert version == self.version(name) + 1
            if name not in self.model:
                self.incarnations[name] += 1
            self.model[name] = Thread(version, content, self.incarnations[name])

        def current(self, held: Held) -> bool:
            thread = self.model.get(held.name)
            return thread is not None and thread.incarnation == held.incarnation and thread.version == held.state.version

        @rule(name=st.sampled_from(THREADS), msgs=message_lists, note=st.text(max_size=8))
        def save_fresh_creates(self, name: str, msgs: List[AgentMessage], note: str) -> None:
            state = make_snapshot(msgs, note)
            if name in self.model:
                with pytest.raises(ConflictError):
                    checkpointer.save(self.tid(name), state)
            else:
                self.committed(name, encoded(state), checkpointer.save(self.tid(name), state))

        @rule(name=st.sampled_from(THREADS), msgs=message_lists)
        def force_fresh_extending_stored(self, name: str, msgs: List[AgentMessage]) -> None:
            stored = checkpointer.load(self.tid(name))
            copies = [m.replace() for m in stored.messages] if stored is not None else []
            state = make_snapshot(copies + msgs, "extend")
            self.committed(name, encoded(state), checkpointer.save(self.tid(name), state, force=True))

        @rule(target=held, name=st.sampled_from(THREADS))
        def load(self, name: str) -> Optional[Held]:
            state = checkpointer.load(self.tid(name))
            if name not in self.model:
                assert state is None
                return None
            assert state is not None and state.version == self.version(name)
            return Held(name, state, self.model[name].incarnation)

        def save_held(self, held: Held, force: bool = False) -> None:
            if force or self.current(held):
                content = encoded(held.state)
                self.committed(held.name, content, checkpointer.save(self.tid(held.name), held.state, force=force))
                held.incarnation = self.model[held.name].incarnation  # the snapshot now belongs to what it saved
            else:
                with pytest.raises(ConflictError):
                    checkpointer.save(self.tid(held.name), held.state)

        @rule(handle=held, msgs=message_lists)
        def append_to_held(self, handle: Optional[Held], msgs: List[AgentMessage]) -> None:
            if handle is not None:
                handle.state.messages.extend(msgs)
                self.save_held(handle)

        @rule(handle=held, data=st.data())
        def rewrite_held(self, handle: Optional[Held], data: st.DataObject) -> None:
            if handle is None or not handle.state.messages:
                return
            state = handle.state
            index = data.draw(st.integers(0, len(state.messages) - 1))
            edit = data.draw(st.sampled_from(["replace", "truncate", "in place", "equal but different"]))
            if edit == "replace":
                state.messages[index] = data.draw(messages)
            elif edit == "truncate":
                del state.messages[index:]
            elif edit == "in place":
                state.messages[index].metadata["edited"] = data.draw(json_scalars)
            else:
                old = state.messages[index]
                current = old.metadata.get("v")
                # A value == the current one, of another type: True, 1 and 1.0 compare equal, their bytes do not.
                other = next(x for x in (1, True, 1.0) if not (type(x) is type(current) and x == current))
                state.messages[index] = old.replace(metadata={**old.metadata, "v": other})
            self.save_held(handle, force=data.draw(st.booleans()))

        @rule(handle=consumes(held), note=st.text(max_size=8))
        def force_save_held(self, handle: Optional[Held], note: str) -> None:
            if handle is not None:
                handle.state.metadata["note"] = note
                self.save_held(handle, force=True)

        @rule(name=st.sampled_from(THREADS), msgs=message_lists, expected=st.integers(0, 6))
        def save_expected_version(self, name: str, msgs: List[AgentMessage], expected: int) -> None:
            state = make_snapshot(msgs, "cas")
            if expected == self.version(name):
                self.committed(name, encoded(state), checkpointer.save(self.tid(name), state, expected_version=expected))
            else:
                with pytest.raises(ConflictError):
                    checkpointer.save(self.tid(name), state, expected_version=expected)

        @rule(name=st.sampled_from(THREADS), msgs=message_lists)
        def update_appends(self, name: str, msgs: List[AgentMessage]) -> None:
            result = checkpointer.update(self.tid(name), lambda s: s.messages.extend(msgs))
            self.committed(name, encoded(result), result.version or 0)

        @rule(name=st.sampled_from(THREADS), msgs=message_lists)
        def append_without_loading(self, name: str, msgs: List[AgentMessage]) -> None:
            thread = self.model.get(name)
            if thread is None:
                head = codec.encode_head(AgentStateSnapshot())
                content: Encoded = (b"".join(codec.encode_messages(msgs)), head)
            else:
                content = (thread.content[0] + b"".join(codec.encode_messages(msgs, len(msgs))), thread.content[1])
            self.committed(name, content, checkpointer.append(self.tid(name), msgs))

        @rule(name=st.sampled_from(THREADS))
        def delete(self, name: str) -> None:
            assert checkpointer.delete(self.tid(name)) == (name in self.model)
            self.model.pop(name, None)

        @rule(name=st.sampled_from(THREADS), msgs=message_lists)
        def delete_and_create_again(self, name: str, msgs: List[AgentMessage]) -> None:
            """The ABA case: the same ID, the same version numbers, another incarnation."""
            self.delete(name)
            self.save_fresh_creates(name, msgs, "again")

        @invariant()
        def stored_equals_model(self) -> None:
            for name in THREADS:
                state = checkpointer.load(self.tid(name))
                if name not in self.model:
                    assert state is None
                else:
                    assert state is not None
                    assert (state.version, encoded(state)) == (self.model[name].version, self.model[name].content)

        def teardown(self) -> None:
            for name in THREADS:
                checkpointer.delete(self.tid(name))

    run_state_machine_as_test(
        CheckpointerMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )


def test_backend_agrees_with_model(checkpointer: Checkpointer, backend_spec, prefix: str) -> None:  # type: ignore[no-untyped-def]
    run_machine(checkpointer, prefix, contract_spec(backend_spec.name).state_machine_examples)
