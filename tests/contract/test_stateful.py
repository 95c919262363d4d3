"""A hypothesis state machine: every backend agrees with a plain-Python model.

Random sequences of fresh saves, loads, appends and rewrites of held
snapshots (with the default version check), expected-version saves, forced
saves and deletes run against a backend and a dict; after every step each
thread's stored state must equal the model's, and every conflict the backend
raises (or not) must be the one the model predicts.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule, run_state_machine_as_test

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, ConflictError, TodoItem
from tests.conftest import contract_spec

THREADS = ["a", "b", "c"]
_run = itertools.count()

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=12))
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
Content = Tuple[Tuple[AgentMessage, ...], Tuple[Tuple[str, str], ...], str]


def content_of(state: AgentStateSnapshot) -> Content:
    return (tuple(state.messages), tuple((t.content, t.status) for t in state.todos), repr(sorted(state.metadata.items())))


def make_snapshot(msgs: List[AgentMessage], note: str) -> AgentStateSnapshot:
    return AgentStateSnapshot(messages=list(msgs), todos=[TodoItem(note)], metadata={"note": note})


def run_machine(checkpointer: Checkpointer, prefix: str, examples: int) -> None:
    class CheckpointerMachine(RuleBasedStateMachine):
        held = Bundle("held")

        def __init__(self) -> None:
            super().__init__()
            self.base = f"{prefix}{next(_run)}-"
            self.model: Dict[str, Tuple[int, Content]] = {}

        def tid(self, name: str) -> str:
            return self.base + name

        def version(self, name: str) -> int:
            return self.model.get(name, (0, None))[0]

        def committed(self, name: str, state: AgentStateSnapshot, version: int) -> None:
            assert version == self.version(name) + 1
            self.model[name] = (version, content_of(state))

        @rule(name=st.sampled_from(THREADS), msgs=message_lists, note=st.text(max_size=8))
        def save_fresh(self, name: str, msgs: List[AgentMessage], note: str) -> None:
            state = make_snapshot(msgs, note)
            self.committed(name, state, checkpointer.save(self.tid(name), state))

        @rule(name=st.sampled_from(THREADS), msgs=message_lists)
        def save_fresh_extending_stored(self, name: str, msgs: List[AgentMessage]) -> None:
            stored = list(self.model[name][1][0]) if name in self.model else []
            state = make_snapshot([m.replace() for m in stored] + msgs, "extend")
            self.committed(name, state, checkpointer.save(self.tid(name), state))

        @rule(target=held, name=st.sampled_from(THREADS))
        def load(self, name: str) -> Tuple[str, Optional[AgentStateSnapshot]]:
            state = checkpointer.load(self.tid(name))
            if name not in self.model:
                assert state is None
            else:
                assert state is not None and state.version == self.version(name)
            return name, state

        def save_held(self, name: str, state: AgentStateSnapshot, loaded_version: int, force: bool = False) -> None:
            if force or loaded_version == self.version(name):
                self.committed(name, state, checkpointer.save(self.tid(name), state, force=force))
            else:
                with pytest.raises(ConflictError):
                    checkpointer.save(self.tid(name), state)

        @rule(handle=held, msgs=message_lists)
        def append_to_held(self, handle: Tuple[str, Optional[AgentStateSnapshot]], msgs: List[AgentMessage]) -> None:
            name, state = handle
            if state is None:
                return
            loaded_version = state.version or 0
            state.messages.extend(msgs)
            self.save_held(name, state, loaded_version)

        @rule(handle=held, data=st.data())
        def rewrite_held(self, handle: Tuple[str, Optional[AgentStateSnapshot]], data: st.DataObject) -> None:
            name, state = handle
            if state is None or not state.messages:
                return
            loaded_version = state.version or 0
            index = data.draw(st.integers(0, len(state.messages) - 1))
            if data.draw(st.booleans()):
                state.messages[index] = data.draw(messages)
            else:
                del state.messages[index:]
            self.save_held(name, state, loaded_version, force=data.draw(st.booleans()))

        @rule(handle=consumes(held), note=st.text(max_size=8))
        def force_save_held(self, handle: Tuple[str, Optional[AgentStateSnapshot]], note: str) -> None:
            name, state = handle
            if state is None:
                return
            state.metadata["note"] = note
            self.save_held(name, state, state.version or 0, force=True)

        @rule(name=st.sampled_from(THREADS), msgs=message_lists, expected=st.integers(0, 6))
        def save_expected_version(self, name: str, msgs: List[AgentMessage], expected: int) -> None:
            state = make_snapshot(msgs, "cas")
            if expected == self.version(name):
                self.committed(name, state, checkpointer.save(self.tid(name), state, expected_version=expected))
            else:
                with pytest.raises(ConflictError):
                    checkpointer.save(self.tid(name), state, expected_version=expected)

        @rule(name=st.sampled_from(THREADS), msgs=message_lists)
        def update_appends(self, name: str, msgs: List[AgentMessage]) -> None:
            result = checkpointer.update(self.tid(name), lambda s: s.messages.extend(msgs))
            self.committed(name, result, result.version or 0)

        @rule(name=st.sampled_from(THREADS))
        def delete(self, name: str) -> None:
            assert checkpointer.delete(self.tid(name)) == (name in self.model)
            self.model.pop(name, None)

        @invariant()
        def stored_equals_model(self) -> None:
            for name in THREADS:
                state = checkpointer.load(self.tid(name))
                if name not in self.model:
                    assert state is None
                else:
                    assert state is not None
                    assert (state.version, content_of(state)) == self.model[name]

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
