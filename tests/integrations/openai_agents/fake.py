"""A scripted model for the Agents SDK (our own ``agents.models.interface.Model``) and a two-agent workflow.

The triage agent reasons, calls the ``get_weather`` tool, then hands off to
the billing agent, which answers; each agent's model records the input the
Runner gave it, so a test can check that a resumed run is fed the stored history.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, List, Sequence, Union

from agents import Agent, function_tool
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseOutputItem, TResponseStreamEvent
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary

#: One model turn: its output items, or a function of the handoffs offered that returns them.
Turn = Union[Sequence[TResponseOutputItem], Callable[[List[Handoff]], Sequence[TResponseOutputItem]]]


class FakeModel(Model):
    """Answers each call with the next scripted turn; records every input it is given."""

    def __init__(self, turns: Sequence[Turn]) -> None:
        self.turns = list(turns)
        self.inputs: List[List[TResponseInputItem]] = []

    async def get_response(  # type: ignore[override]
        self,
        system_instructions: Any,
        input: Union[str, List[TResponseInputItem]],
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: List[Handoff],
        tracing: Any,
        **_: Any,
    ) -> ModelResponse:
        self.inputs.append([{"role": "user", "content": input}] if isinstance(input, str) else list(input))  # type: ignore[list-item]
        if not self.turns:
            raise AssertionError("the fake model was called more often than scripted")
        turn = self.turns.pop(0)
        output = list(turn(handoffs) if callable(turn) else turn)
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("the tests run Runner.run, not run_streamed")


def text(item_id: str, content: str) -> ResponseOutputMessage:
    """An assistant output message."""
    part = ResponseOutputText(text=content, annotations=[], type="output_text")
    return ResponseOutputMessage(id=item_id, content=[part], role="assistant", status="completed", type="message")


def call(item_id: str, call_id: str, name: str, arguments: str) -> ResponseFunctionToolCall:
    """A function call, its arguments as the model sent them."""
    return ResponseFunctionToolCall(
        id=item_id, call_id=call_id, name=name, arguments=arguments, type="function_call", status="completed"
    )


@function_tool
def get_weather(city: str) -> str:
    """The weather in ``city``."""
    return f"light snow in {city}, -3 C"


class Workflow:
    """Triage (a tool, then a handoff) and billing (two answers): the models of one test."""

    def __init__(self) -> None:
        self.billing_model = FakeModel(
            [[text("msg_b1", "Billing here: your invoice is paid.")], [text("msg_b2", "You're welcome.")]]
        )
        self.triage_model = FakeModel(
            [
                [
                    ResponseReasoningItem(
                        id="rs_1",
                        summary=[Summary(text="The user wants the weather.", type="summary_text")],
                        type="reasoning",
                        encrypted_content="gAAAAB-opaque",
                    ),
                    call("fc_1", "call_1", "get_weather", '{"city":"Oslo"}'),  # compact JSON, kept byte for byte
                ],
                lambda handoffs: [call("fc_2", "call_2", handoffs[0].tool_name, "{}")],
            ]
        )
        self.billing = Agent(name="billing", instructions="Answer billing questions.", model=self.billing_model)
        self.triage = Agent(
            name="triage", instructions="Route the user.", model=self.triage_model, tools=[get_weather], handoffs=[self.billing]
        )
