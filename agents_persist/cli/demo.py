"""``agents-persist demo``: a scripted agent saves, a second process resumes, the first shows the result.

The agent plans a trip, calls a tool, and stops at a booking that needs a
human's approval; that state is saved, then a *second process* resumes the
conversation from the store, approves, finishes, and saves again. The child
gets the store URL through ``$AGENTS_PERSIST_URL`` in its environment, never on
its command line (where ``ps`` would show a password). A ``memory://`` store
lives in one process only, so there the resume runs in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid

from .. import __version__
from ..checkpointer import Checkpointer
from ..mixin import AgentStateMixin
from ..models import AgentMessage, AgentStateSnapshot, HitlInterrupt, TodoItem, ToolCall
from ..urls import ENV_URL, from_url, redact_url
from ._common import NOT_FOUND, CliError, say

__all__ = ["TripAgent", "cmd_demo", "cmd_demo_resume", "print_state"]


def _describe_message(message: AgentMessage) -> str:
    if message.content is None or isinstance(message.content, str):
        content = message.content or ""
    else:
        content = json.dumps(message.content)
    label = f"tool:{message.name}" if message.role == "tool" and message.name else message.role
    if message.tool_calls:
        calls = ", ".join(f"{c.name}({json.dumps(c.arguments)})" for c in message.tool_calls)
        content = f"{content} [calls {calls}]" if content else f"[calls {calls}]"
    return f"{label:>9}: {content}"


def print_state(state: AgentStateSnapshot, thread_id: str) -> None:
    """Print a snapshot for people: messages, todos, the pending approval, metadata."""
    say(f"  thread {thread_id!r}, version {state.version}, {len(state.messages)} messages")
    for message in state.messages:
        say("    " + _describe_message(message))
    if state.todos:
        say("  todos:")
        for todo in state.todos:
            say(f"    [{todo.status}] {todo.content}")
    if state.current_interrupt is not None:
        interrupt = state.current_interrupt
        say(
            f"  pending approval: {interrupt.tool_name}({json.dumps(interrupt.tool_args)}) - {interrupt.policy_note or 'no note'}"
        )
    if state.metadata:
        say(f"  metadata: {json.dumps(state.metadata)}")


class TripAgent(AgentStateMixin):
    """A scripted stand-in for an LLM agent: deterministic, offline, but with real state."""

    def __init__(self, checkpointer: Checkpointer) -> None:
        self.checkpointer = checkpointer

    def start(self, request: str) -> None:
        """First worker: plan, call a tool, and stop at a booking that needs approval."""
        self.messages.append(AgentMessage.system("You are a travel agent. Bookings need human approval."))
        self.messages.append(AgentMessage.user(request))
        self.todos = [TodoItem("Find flights to Oslo", "in_progress", id="t1"), TodoItem("Book the best flight", id="t2")]
        call = ToolCall(id="call_search", name="search_flights", arguments={"to": "OSL", "date": "2026-12-04"})
        self.messages.append(AgentMessage.assistant(None, tool_calls=[call]))
        flights = [
            {"flight": "SK4035", "departs": "08:05", "price_eur": 129},
            {"flight": "DY1303", "departs": "17:40", "price_eur": 98},
        ]
        self.messages.append(AgentMessage.tool({"flights": flights}, tool_call_id=call.id, name=call.name))
        self.todos[0].status = "completed"
        self.todos[1].status = "in_progress"
        booking = {"flight": "DY1303", "passenger": "Ada Lovelace", "price_eur": 98}
        self.messages.append(
            AgentMessage.assistant(
                "DY1303 at 17:40 is the cheapest (98 EUR). I'd like to book it.",
                tool_calls=[ToolCall(id="call_book", name="book_flight", arguments=booking)],
            )
        )
        self.current_interrupt = HitlInterrupt(
            tool_name="book_flight", tool_args=booking, call_id="call_book", policy_note="payments need a human's approval"
        )
        self.state_metadata = {"user_id": "ada", "channel": "demo"}

    def resume_after_approval(self) -> None:
        """Second worker: the human approved; run the tool and finish."""
        interrupt = self.current_interrupt
        if interrupt is None:
            raise CliError("nothing is waiting for approval in this thread", NOT_FOUND)
        confirmation = {"status": "confirmed", "booking_ref": "PNR7Q2", **interrupt.tool_args}
        self.messages.append(AgentMessage.tool(confirmation, tool_call_id=interrupt.call_id or "", name=interrupt.tool_name))
        self.messages.append(AgentMessage.assistant("Booked! DY1303 on 4 December, reference PNR7Q2."))
        self.current_interrupt = None
        self.todos[1].status = "completed"
        self.state_metadata["approved_by"] = "demo-operator"


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo against ``args.url``; the resume runs in a second process (in this one for memory://)."""
    url: str = args.url
    thread_id = args.thread or f"demo-{uuid.uuid4().hex[:8]}"
    in_process = url.lower().startswith("memory:")
    # One checkpointer for the whole run: a memory:// store would not outlive it.
    with from_url(url) as checkpointer:
        say(f"agents_persist {__version__} demo - store: {redact_url(url)} ({type(checkpointer).__name__})")
        say()
        say(f"[process {os.getpid()}] The agent plans a trip and stops at a booking that needs approval.")
        agent = TripAgent(checkpointer)
        agent.start("Find me a flight to Oslo on 4 December and book the cheapest one.")
        version = agent.save_state(thread_id)
        say(f"  saved thread {thread_id!r} as version {version}:")
        stored = checkpointer.load(thread_id)
        assert stored is not None
        print_state(stored, thread_id)
        say()
        if in_process:
            say("A memory:// store lives in this process only, so the resume runs here (use sqlite:/// to see two processes)...")
            _resume(checkpointer, thread_id)
        else:
            say("A second process (a different worker) resumes the conversation from the store...")
            _resume_in_child(url, thread_id)
        say()
        final = checkpointer.load(thread_id)
        if final is None:
            raise CliError(f"thread {thread_id!r} vanished from the store", NOT_FOUND)
        say(f"[process {os.getpid()}] Back in the first process, the store now holds:")
        print_state(final, thread_id)
        if not in_process:
            say()
            say(f"Inspect it again with: agents-persist --url {redact_url(url)} show {thread_id}")
    return 0


def _resume_in_child(url: str, thread_id: str) -> None:
    # The URL (maybe with a password) goes through the environment, never argv: `ps` shows argv to everyone.
    child = subprocess.run(
        [sys.executable, "-m", "agents_persist.cli", "_demo-resume", thread_id],
        env={**os.environ, ENV_URL: url},
        check=False,
    )
    if child.returncode != 0:
        raise CliError(f"the resuming process failed with exit code {child.returncode}", child.returncode)


def cmd_demo_resume(args: argparse.Namespace) -> int:
    """The demo's second worker (hidden ``_demo-resume``): the URL comes from ``$AGENTS_PERSIST_URL``."""
    with from_url(args.url) as checkpointer:
        _resume(checkpointer, args.thread)
    return 0


def _resume(checkpointer: Checkpointer, thread_id: str) -> None:
    agent = TripAgent(checkpointer)
    if not agent.load_state(thread_id):
        raise CliError(f"thread {thread_id!r} not found", NOT_FOUND)
    pending = agent.current_interrupt
    waiting = pending.tool_name if pending else None
    say(f"[process {os.getpid()}] restored {len(agent.messages)} messages; pending approval: {waiting}")
    say("  a human approves the booking; the agent runs the tool and answers")
    agent.resume_after_approval()
    version = agent.save_state(thread_id)
    say(f"  saved version {version} (only the 2 new messages were written)")
