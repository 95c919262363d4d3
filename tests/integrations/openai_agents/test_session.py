"""The SDK's Session protocol on every backend, and Runner runs (a tool, a handoff) stored and resumed through it."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Coroutine, Dict, List, TypeVar

import pytest
from agents import RunConfig, Runner
from agents.memory import SessionABC, SessionSettings
from agents.memory.session import Session as SessionProtocol

from agents_persist import (
    AgentMessage,
    AsyncCheckpointer,
    Checkpointer,
    InMemoryCheckpointer,
    InvalidArgumentError,
    InvalidThreadIdError,
)
from agents_persist.openai_agents import Session
from tests.conftest import contract_spec
from tests.integrations.openai_agents.catalogue import every_item
from tests.integrations.openai_agents.fake import Workflow
from tests.spec import BackendSpec

T = TypeVar("T")
NO_TRACING = RunConfig(tracing_disabled=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def dumps(items: Any) -> str:
    return json.dumps(items)


class Recording(Session):
    """Records what the Runner hands to ``add_items``, as JSON."""

    added: List[Any]

    async def add_items(self, items: List[Any]) -> None:
        self.added = getattr(self, "added", []) + json.loads(dumps(items))
        await super().add_items(items)


def _no_whole_reads(checkpointer: Checkpointer) -> None:
    """Make the snapshot-level calls fail: add_items must append, get_items(limit) read a slice."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a whole-snapshot load or save")

    checkpointer.load = refuse  # type: ignore[method-assign]
    checkpointer.save = refuse  # type: ignore[method-assign]


def test_it_is_an_sdk_session(checkpointer: Checkpointer, prefix: str) -> None:
    session = Session(f"{prefix}s", checkpointer)
    assert isinstance(session, SessionProtocol) and not isinstance(session, SessionABC)
    assert session.session_id == f"{prefix}s" and session.session_settings is None


def test_protocol_methods(checkpointer: Checkpointer, prefix: str) -> None:
    items = every_item()

    async def main() -> None:
        async with Session(f"{prefix}s", checkpointer) as session:
            assert await session.get_items() == [] and await session.pop_item() is None
            assert not checkpointer.exists(f"{prefix}s")  # popping an empty session writes nothing
            _no_whole_reads(checkpointer)
            await session.add_items(items[:10])
            await session.add_items([])
            await session.add_items(items[10:])
            assert dumps(await session.get_items()) == dumps(items)  # every kind, byte for byte, through the store
            assert dumps(await session.get_items(3)) == dumps(items[-3:])
            assert await session.get_items(0) == [] and dumps(await session.get_items(10_000)) == dumps(items)
            assert checkpointer.message_count(f"{prefix}s") == len(items)  # one message per item
            del checkpointer.load, checkpointer.save  # type: ignore[attr-defined]

            assert dumps(await session.pop_item()) == dumps(items[-1])
            assert dumps(await session.pop_item()) == dumps(items[-2])
            assert dumps(await session.get_items()) == dumps(items[:-2])
            await session.clear_session()
            assert await session.get_items() == [] and not checkpointer.exists(f"{prefix}s")

    run(main())


def test_session_settings_limit_and_a_shared_async_checkpointer(checkpointer: Checkpointer, prefix: str) -> None:
    async def main() -> None:
        acp = AsyncCheckpointer(checkpointer, close_checkpointer=False)
        session = Session(f"{prefix}s", acp, session_settings=SessionSettings(limit=2))
        await session.add_items([{"role": "user", "content": str(i)} for i in range(5)])
        assert [item["content"] for item in await session.get_items()] == ["3", "4"]  # type: ignore[typeddict-item]
        assert len(await session.get_items(4)) == 4
        await session.close()  # not its adapter: still open
        assert len(await acp.load_messages(f"{prefix}s")) == 5
        await acp.close()
        assert not checkpointer.closed

    run(main())


def test_items_from_other_code_are_read_and_popped_one_item_at_a_time(checkpointer: Checkpointer, prefix: str) -> None:
    from agents_persist import ToolCall

    turn = AgentMessage.assistant("Checking.", tool_calls=[ToolCall(id="c1", name="f", arguments={"a": 1})])
    checkpointer.append(f"{prefix}s", [AgentMessage.user("hi"), turn])
    session = Session(f"{prefix}s", checkpointer)
    assert [item.get("type") for item in run(session.get_items())] == [None, None, "function_call"]
    assert len(run(session.get_items(2))) == 2
    assert run(session.pop_item())["type"] == "function_call"  # type: ignore[index]
    assert [item.get("type") for item in run(session.get_items())] == [None, None]  # the turn's text stayed


def test_bad_arguments() -> None:
    checkpointer = InMemoryCheckpointer()
    with pytest.raises(InvalidThreadIdError):
        Session("", checkpointer)
    with pytest.raises(InvalidArgumentError, match="Checkpointer or an AsyncCheckpointer"):
        Session("s", object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        run(Session("s", checkpointer).add_items([{"content": "no role"}]))  # type: ignore[list-item]


def test_runner_with_a_tool_and_a_handoff_is_stored_and_resumed(
    backend_spec: BackendSpec, checkpointer: Checkpointer, prefix: str
) -> None:
    flow = Workflow()
    first = Recording(f"{prefix}conv", checkpointer)
    result = run(Runner.run(flow.triage, "Weather in Oslo?", session=first, run_config=NO_TRACING))
    assert result.final_output == "Billing here: your invoice is paid." and result.last_agent is flow.billing
    stored: List[Dict[str, Any]] = first.added
    assert [item.get("type") for item in stored] == [
        None,
        "reasoning",
        "function_call",
        "function_call_output",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert stored[3]["output"] == "light snow in Oslo, -3 C" and stored[4]["name"] == "transfer_to_billing"
    assert stored[2]["arguments"] == '{"city":"Oslo"}'  # as the model sent it
    # The billing agent was handed the triage history (with the handoff call and its output).
    assert dumps(flow.billing_model.inputs[0]) == dumps(stored[:-1])

    # A new run, on another checkpointer instance where the store is shared (another process, a restart).
    later = backend_spec.build() if contract_spec(backend_spec.name).shared else checkpointer
    try:
        second = Recording(f"{prefix}conv", later)
        assert dumps(run(second.get_items())) == dumps(stored)  # byte for byte, from the store
        again = run(Runner.run(result.last_agent, "thanks", session=second, run_config=NO_TRACING))
        assert again.final_output == "You're welcome."
        fed = flow.billing_model.inputs[1]
        assert dumps(fed) == dumps(stored + [{"content": "thanks", "role": "user"}])  # the history was fed back
        assert dumps(run(second.get_items())) == dumps(stored + second.added)
        assert checkpointer.message_count(f"{prefix}conv") == len(stored) + 2
    finally:
        if later is not checkpointer:
            later.close()
    assert flow.triage_model.turns == [] and flow.billing_model.turns == []
