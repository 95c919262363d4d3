"""A real LangGraph agent for the tests: a fake model node, a tool node, and a human approval interrupt."""

from __future__ import annotations

from typing import Any, Dict, List

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt
from typing_extensions import Annotated, TypedDict


class State(TypedDict):
    messages: Annotated[List[AnyMessage], add_messages]
    approved: bool


@tool
def get_weather(city: str) -> str:
    """The weather in ``city``."""
    return f"sunny in {city}"


def fake_model(state: State) -> Dict[str, Any]:
    """Asks for the weather tool when the user mentions weather, answers from a tool result, else echoes."""
    last = state["messages"][-1]
    if isinstance(last, ToolMessage):
        return {"messages": [AIMessage(content=f"The tool says: {last.content}")]}
    text = str(last.content)
    if "weather" in text:
        call = {"name": "get_weather", "args": {"city": text.rsplit(" ", 1)[-1]}, "id": f"call-{len(state['messages'])}"}
        return {"messages": [AIMessage(content="", tool_calls=[call])]}
    return {"messages": [AIMessage(content=f"echo: {text}")]}


def approval(state: State) -> Dict[str, Any]:
    """Pauses the graph until a human answers (``Command(resume=...)``)."""
    answer = interrupt({"question": "run the tool?", "call": state["messages"][-1].tool_calls[0]["name"]})
    return {"approved": answer == "yes"}


def after_model(state: State) -> str:
    last = state["messages"][-1]
    return "approval" if isinstance(last, AIMessage) and last.tool_calls else END


def after_approval(state: State) -> str:
    return "tools" if state["approved"] else END


def build(checkpointer: Any) -> Any:
    """The compiled graph persisting through ``checkpointer``."""
    builder = StateGraph(State)
    builder.add_node("model", fake_model)
    builder.add_node("approval", approval)
    builder.add_node("tools", ToolNode([get_weather]))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", after_model, ["approval", END])
    builder.add_conditional_edges("approval", after_approval, ["tools", END])
    builder.add_edge("tools", "model")
    return builder.compile(checkpointer=checkpointer)
