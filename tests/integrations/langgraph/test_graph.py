"""A real LangGraph agent (fake model, tool node, human approval interrupt) persisting through the saver on every backend."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, List

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.types import Command

from agents_persist.langgraph import Checkpointer
from tests.integrations.langgraph import graph as agent


def _config(thread_id: str) -> Dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _contents(messages: List[Any]) -> List[str]:
    return [f"{type(m).__name__}:{m.content}" for m in messages]


def test_interrupt_resume_and_restart(make_saver: Callable[..., Checkpointer]) -> None:
    saver = make_saver()
    app = agent.build(saver)
    config = _config("user-1")
    app.invoke({"messages": [HumanMessage("hello")]}, config)
    first = app.invoke({"messages": [HumanMessage("What is the weather in Paris?")]}, config)
    assert "__interrupt__" in first
    state = app.get_state(config)
    assert state.next == ("approve",)
    assert state.tasks[0].interrupts[0].value == "run get_weather({'city': 'Paris'})?"

    # A new process (a new saver over the same store) resumes the interrupted run.
    restarted = agent.build(make_saver())
    done = restarted.invoke(Command(resume="yes"), config)
    assert _contents(done["messages"]) == [
        "HumanMessage:hello",
        agent.said("hello"),
        "HumanMessage:What is the weather in Paris?",
        "AIMessage:",
        "ToolMessage:sunny in Paris",
        "AIMessage:It is sunny in Paris.",
    ]
    assert isinstance(done["messages"][3], AIMessage) and done["messages"][3].tool_calls[0]["args"] == {"city": "Paris"}
    assert isinstance(done["messages"][4], ToolMessage)
    assert restarted.get_state(config).next == ()

    # Every checkpoint of the history loads, newest first, and each holds the messages it had then.
    history = list(restarted.get_state_history(config))
    assert [len(s.values.get("messages", [])) for s in history][:3] == [6, 5, 4]
    assert history[-1].metadata["source"] == "input"
    steps = [s.metadata["step"] for s in history]
    assert steps == sorted(steps, reverse=True)


def test_time_travel_forks_from_an_earlier_checkpoint(make_saver: Callable[..., Checkpointer]) -> None:
    app = agent.build(make_saver())
    config = _config("user-2")
    for text in ("one", "two", "three"):
        app.invoke({"messages": [HumanMessage(text)]}, config)
    after_one = next(s for s in app.get_state_history(config) if len(s.values.get("messages", [])) == 2)
    forked = app.invoke({"messages": [HumanMessage("other")]}, after_one.config)
    expected = ["HumanMessage:one", agent.said("one"), "HumanMessage:other", agent.said("other")]
    assert _contents(forked["messages"]) == expected
    assert len(app.get_state(config).values["messages"]) == 4  # the fork is the thread's latest now
    old = app.get_state(after_one.config)
    assert _contents(old.values["messages"]) == ["HumanMessage:one", agent.said("one")]


def test_update_state_that_removes_messages(make_saver: Callable[..., Checkpointer]) -> None:
    from langchain_core.messages import RemoveMessage

    app = agent.build(make_saver())
    config = _config("user-3")
    for text in ("a", "b"):
        app.invoke({"messages": [HumanMessage(text)]}, config)
    first_id = app.get_state(config).values["messages"][0].id
    app.update_state(config, {"messages": [RemoveMessage(id=first_id)]})
    assert _contents(agent.build(make_saver()).get_state(config).values["messages"]) == [
        agent.said("a"),
        "HumanMessage:b",
        agent.said("b"),
    ]


def test_a_linear_conversation_stores_each_message_once(make_saver: Callable[..., Checkpointer]) -> None:
    saver = make_saver()
    app = agent.build(saver)
    config = _config("user-4")
    for i in range(20):
        app.invoke({"messages": [HumanMessage(f"m{i}")]}, config)
    items = [info for info in saver.backend.iter_threads(saver.prefix) if "/i/" in info.thread_id]
    assert len(items) == 1 and items[0].message_count == 40
    assert len(agent.build(make_saver()).get_state(config).values["messages"]) == 40


def test_reuse_loaded_values_gives_the_same_states(make_saver: Callable[..., Checkpointer]) -> None:
    app = agent.build(make_saver(reuse_loaded_values=True))
    config = _config("user-6")
    for text in ("a", "b", "What is the weather in Rome?"):
        app.invoke({"messages": [HumanMessage(text)]}, config)
    app.invoke(Command(resume="yes"), config)
    reused = app.get_state(config).values["messages"]
    assert reused == agent.build(make_saver()).get_state(config).values["messages"]
    assert _contents(reused)[-2:] == ["ToolMessage:sunny in Rome", "AIMessage:It is sunny in Rome."]
    assert reused is not app.get_state(config).values["messages"]  # a new list each time (the items are shared)


def test_async_graph(make_saver: Callable[..., Checkpointer]) -> None:
    async def run() -> None:
        app = agent.build(make_saver())
        config = _config("user-5")
        await app.ainvoke({"messages": [HumanMessage("weather in Oslo?")]}, config)
        done = await app.ainvoke(Command(resume="no"), config)
        assert _contents(done["messages"]) == ["HumanMessage:weather in Oslo?", "AIMessage:", "ToolMessage:not approved"]
        assert (await app.aget_state(config)).next == ()
        assert len([s async for s in app.aget_state_history(config)]) >= 3
        await make_saver().adelete_thread("user-5")
        assert (await app.aget_state(config)).values == {}

    asyncio.run(run())
