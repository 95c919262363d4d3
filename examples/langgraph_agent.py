"""A LangGraph agent persisting through agents_persist: a tool call that waits for a human's approval.

Run it from any directory: ``python examples/langgraph_agent.py`` writes
``langgraph_example.db`` there (``--url`` picks another store, e.g.
``redis://localhost:6379/0``). The model is a stand-in (no API key needed):
it asks for the weather tool when the user mentions the weather. Run it twice:
the second run continues the same LangGraph thread.
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import Command, interrupt
from typing_extensions import Annotated, TypedDict

from agents_persist import from_url
from agents_persist.langgraph import Checkpointer


class State(TypedDict):
    messages: Annotated[List[AnyMessage], add_messages]


@tool
def get_weather(city: str) -> str:
    """The weather in ``city``."""
    return f"sunny in {city}"


def model(state: State) -> Dict[str, Any]:
    """A stand-in for a chat model: calls the tool for weather questions, then answers from its result."""
    last = state["messages"][-1]
    if isinstance(last, ToolMessage):
        return {"messages": [AIMessage(f"It is {last.content}.")]}
    if "weather" in str(last.content):
        city = str(last.content).rstrip("?").rsplit(" ", 1)[-1]
        call = {"name": "get_weather", "args": {"city": city}, "id": f"call-{len(state['messages'])}"}
        return {"messages": [AIMessage("", tool_calls=[call])]}
    return {"messages": [AIMessage(f"You said {last.content!r}; ask me about the weather.")]}


def approve(state: State) -> Command:  # type: ignore[type-arg]
    """Pause until a human answers; run the tool only on "yes"."""
    call = state["messages"][-1].tool_calls[0]
    answer = interrupt(f"run {call['name']}({call['args']})?")
    if answer == "yes":
        return Command(goto="tools")
    return Command(goto=END, update={"messages": [ToolMessage("not approved", tool_call_id=call["id"])]})


def route(state: State) -> str:
    last = state["messages"][-1]
    return "approve" if isinstance(last, AIMessage) and last.tool_calls else END


def build(checkpointer: Checkpointer) -> Any:
    graph = StateGraph(State)
    graph.add_node("model", model)
    graph.add_node("approve", approve, destinations=("tools", END))
    graph.add_node("tools", ToolNode([get_weather]))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route, ["approve", END])
    graph.add_edge("tools", "model")
    return graph.compile(checkpointer=checkpointer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="sqlite:///langgraph_example.db", help="store URL (default: %(default)s)")
    args = parser.parse_args()
    config = {"configurable": {"thread_id": "alice"}}

    with from_url(args.url) as store:
        agent = build(Checkpointer(store))
        before = agent.get_state(config).values.get("messages", [])
        print(f"thread alice: {len(before)} messages stored")

        result = agent.invoke({"messages": [HumanMessage("What is the weather in Paris?")]}, config)
        for pending in result.get("__interrupt__", []):
            print(f"waiting for approval: {pending.value}")

        # Later (in another process, after a restart: a new saver over the same store) the human approves.
        agent = build(Checkpointer(store))
        result = agent.invoke(Command(resume="yes"), config)
        for message in result["messages"][len(before) :]:
            print(f"{message.type}: {message.content or message.tool_calls}")
        history = list(agent.get_state_history(config))
        print(f"{len(result['messages'])} messages, {len(history)} checkpoints")


if __name__ == "__main__":
    main()
