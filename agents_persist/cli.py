"""The ``agents-persist`` command: a demo, and list/show/delete of stored threads.

``agents-persist demo`` runs a scripted agent that plans a trip, calls a
tool, and stops at a booking that needs a human's approval; it saves that
state, then a *second process* resumes the conversation from the store,
approves, finishes, and saves again, and the first process prints what the
store holds. The default store is ``sqlite:///agents_persist.db`` (or
``AGENTS_PERSIST_URL``); ``--url`` picks another.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from typing import Any, Dict, Optional, Sequence

import msgspec

from . import __version__
from .checkpointer import Checkpointer
from .errors import AgentsPersistError
from .mixin import AgentStateMixin
from .models import AgentMessage, AgentStateSnapshot, HitlInterrupt, TodoItem, ToolCall
from .urls import DEFAULT_URL, ENV_URL, from_url, redact_url

__all__ = ["main"]


def _default_url() -> str:
    return os.environ.get(ENV_URL) or DEFAULT_URL


def _say(text: str = "") -> None:
    print(text, flush=True)


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


def _print_state(state: AgentStateSnapshot, thread_id: str) -> None:
    _say(f"  thread {thread_id!r}, version {state.version}, {len(state.messages)} messages")
    for message in state.messages:
        _say("    " + _describe_message(message))
    if state.todos:
        _say("  todos:")
        for todo in state.todos:
            _say(f"    [{todo.status}] {todo.content}")
    if state.current_interrupt is not None:
        interrupt = state.current_interrupt
        _say(
            f"  pending approval: {interrupt.tool_name}({json.dumps(interrupt.tool_args)}) - {interrupt.policy_note or 'no note'}"
        )
    if state.metadata:
        _say(f"  metadata: {json.dumps(state.metadata)}")


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
            raise SystemExit("nothing is waiting for approval")
        confirmation = {"status": "confirmed", "booking_ref": "PNR7Q2", **interrupt.tool_args}
        self.messages.append(AgentMessage.tool(confirmation, tool_call_id=interrupt.call_id or "", name=interrupt.tool_name))
        self.messages.append(AgentMessage.assistant("Booked! DY1303 on 4 December, reference PNR7Q2."))
        self.current_interrupt = None
        self.todos[1].status = "completed"
        self.state_metadata["approved_by"] = "demo-operator"


def _cmd_demo(args: argparse.Namespace) -> int:
    url = args.url
    thread_id = args.thread or f"demo-{uuid.uuid4().hex[:8]}"
    with from_url(url) as checkpointer:
        _say(f"agents_persist {__version__} demo - store: {redact_url(url)} ({type(checkpointer).__name__})")
        _say()
        _say(f"[process {os.getpid()}] The agent plans a trip and stops at a booking that needs approval.")
        agent = TripAgent(checkpointer)
        agent.start("Find me a flight to Oslo on 4 December and book the cheapest one.")
        version = agent.save_state(thread_id)
        _say(f"  saved thread {thread_id!r} as version {version}:")
        stored = checkpointer.load(thread_id)
        assert stored is not None
        _print_state(stored, thread_id)
    _say()
    _say("A second process (a different worker) resumes the conversation from the store...")
    child = subprocess.run(
        [sys.executable, "-m", "agents_persist.cli", "--url", url, "_demo-resume", thread_id],
        check=False,
    )
    if child.returncode != 0:
        _say(f"the resuming process failed with exit code {child.returncode}")
        return child.returncode
    _say()
    with from_url(url) as checkpointer:
        final = checkpointer.load(thread_id)
        if final is None:
            _say("the thread vanished from the store")
            return 1
        _say(f"[process {os.getpid()}] Back in the first process, the store now holds:")
        _print_state(final, thread_id)
        _say()
        _say(f"Inspect it again with: agents-persist --url {redact_url(url)} show {thread_id}")
    return 0


def _cmd_demo_resume(args: argparse.Namespace) -> int:
    with from_url(args.url) as checkpointer:
        agent = TripAgent(checkpointer)
        if not agent.load_state(args.thread):
            _say(f"thread {args.thread!r} not found")
            return 1
        pending = agent.current_interrupt
        _say(
            f"[process {os.getpid()}] restored {len(agent.messages)} messages; "
            f"pending approval: {pending.tool_name if pending else None}"
        )
        _say("  a human approves the booking; the agent runs the tool and answers")
        agent.resume_after_approval()
        version = agent.save_state(args.thread)
        _say(f"  saved version {version} (only the 2 new messages were written)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    with from_url(args.url) as checkpointer:
        page = checkpointer.list_threads(args.prefix, limit=args.limit, cursor=args.cursor)
        if not page.threads:
            _say("no threads")
        for info in page.threads:
            _say(
                f"{info.thread_id}\tversion {info.version}\t{info.message_count} messages\tupdated {info.updated_at.isoformat()}"
            )
        if page.next_cursor:
            _say(f"more: --cursor {page.next_cursor}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with from_url(args.url) as checkpointer:
        state = checkpointer.load(args.thread)
        if state is None:
            _say(f"thread {args.thread!r} not found")
            return 1
        if args.json:
            data: Dict[str, Any] = msgspec.to_builtins(state)
            data["version"] = state.version
            _say(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            _print_state(state, args.thread)
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    with from_url(args.url) as checkpointer:
        deleted = checkpointer.delete(args.thread)
        _say(f"deleted {args.thread!r}" if deleted else f"thread {args.thread!r} not found")
        return 0 if deleted else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agents-persist", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"agents_persist {__version__}")
    parser.add_argument("--url", default=_default_url(), help=f"store URL (default: ${ENV_URL} or {DEFAULT_URL})")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a conversation, persist it, resume it in a second process")
    demo.add_argument("--thread", help="thread ID to use (default: a new demo-XXXXXXXX)")
    demo.set_defaults(run=_cmd_demo)
    resume = commands.add_parser("_demo-resume")
    resume.add_argument("thread")
    resume.set_defaults(run=_cmd_demo_resume)
    listing = commands.add_parser("list", help="list stored threads, newest first")
    listing.add_argument("--prefix")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor")
    listing.set_defaults(run=_cmd_list)
    show = commands.add_parser("show", help="print one thread's stored state")
    show.add_argument("thread")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=_cmd_show)
    delete = commands.add_parser("delete", help="delete one thread")
    delete.add_argument("thread")
    delete.set_defaults(run=_cmd_delete)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``agents-persist`` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except AgentsPersistError as exc:
        print(f"agents-persist: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
