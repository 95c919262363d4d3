"""An OpenAI Agents SDK conversation kept in agents_persist: a tool call, a handoff, and a resumed run.

Run it from any directory: ``python examples/openai_agents_session.py`` stores the
session in ``agents_example.db`` there (``--url`` picks another store, e.g.
``redis://localhost:6379/0``; ``--session`` another session ID). It needs no API key: the agents answer from a
script (the SDK's ``ScriptedModel``); give them ``model="gpt-5-mini"`` instead to
talk to OpenAI. Run it twice: the second run continues the stored conversation.
"""

from __future__ import annotations

import argparse
import asyncio

from agents import Agent, RunConfig, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call

from agents_persist import AsyncCheckpointer, from_url
from agents_persist.openai_agents import Session

SESSION_ID = "demo:alice:support"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"light snow in {city}, -3 C"


def billing_agent(answer: str) -> Agent:
    """The billing agent; its scripted model gives ``answer``."""
    return Agent(name="billing", instructions="Answer billing questions.", model=ScriptedModel([[assistant_message(answer)]]))


def triage_agent() -> Agent:
    """A triage agent that calls get_weather, then hands off to billing."""
    steps = [
        [function_call("get_weather", {"city": "Oslo"}, call_id="call_1")],
        [function_call("transfer_to_billing", {}, call_id="call_2")],
    ]
    return Agent(
        name="triage",
        instructions="Answer, or hand billing questions to the billing agent.",
        model=ScriptedModel(steps),
        tools=[get_weather],
        handoffs=[billing_agent("Billing here: your invoice is paid.")],
    )


async def main(url: str, session_id: str) -> None:
    run_config = RunConfig(tracing_disabled=True)
    # One AsyncCheckpointer per process, shared by every session; closing it closes the store.
    async with AsyncCheckpointer(from_url(url)) as store:
        session = Session(session_id, store)
        history = await session.get_items()
        if history:
            print(f"continuing {session_id}: {len(history)} items stored")
            # A new Runner call (another request, another process): the stored history is fed back.
            result = await Runner.run(billing_agent("You're welcome!"), "Thanks!", session=session, run_config=run_config)
        else:
            question = "Weather in Oslo? And is my invoice paid?"
            result = await Runner.run(triage_agent(), question, session=session, run_config=run_config)
        print(f"{result.last_agent.name}: {result.final_output}")

        items = await session.get_items()
        print(f"{len(items)} items: " + ", ".join(str(item.get("type", "message")) for item in items))
        print("last 2:", [item.get("role", item.get("type")) for item in await session.get_items(limit=2)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="sqlite:///agents_example.db", help="store URL (default: %(default)s)")
    parser.add_argument("--session", default=SESSION_ID, help="session ID (default: %(default)s)")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.session))
