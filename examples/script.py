"""A plain script on the embedded store: one agent turn with a tool call and a human approval.

Run it from any directory: ``python examples/script.py`` writes ``agents_example.db``
there (``--url`` picks another store, e.g. ``memory://``). Run it twice: the second
run finds the thread and continues it instead of starting over.
"""

from __future__ import annotations

import argparse

from agents_persist import AgentMessage, AgentStateSnapshot, HitlInterrupt, TodoItem, ToolCall, from_url

THREAD = "demo:alice:report"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="sqlite:///agents_example.db", help="store URL (default: %(default)s)")
    args = parser.parse_args()

    with from_url(args.url) as cp:
        state = cp.load(THREAD)
        if state is None:
            cp.save(THREAD, AgentStateSnapshot(messages=[AgentMessage.system("You are a helpful assistant.")]))
            print(f"created {THREAD}")
        else:
            print(f"continuing {THREAD} at version {state.version} ({len(state.messages)} messages)")

        # One turn: the user asks, the assistant wants a tool that needs a human's approval.
        call = ToolCall(id=f"call-{cp.get_version(THREAD)}", name="send_email", arguments={"to": "bob@example.com"})
        with cp.transaction(THREAD) as state:
            state.messages.append(AgentMessage.user("Email Bob the weekly report."))
            state.messages.append(AgentMessage.assistant("I'll send it once you approve.", tool_calls=[call]))
            state.todos = [TodoItem("draft the report", status="completed"), TodoItem("send it to Bob")]
            state.current_interrupt = HitlInterrupt(call.name, call.arguments, call_id=call.id)
        print(f"waiting for approval of {call.name} ({call.id})")

        # The human approves: record the tool result and clear the interrupt (retried on conflicts).
        def approve(state: AgentStateSnapshot) -> None:
            state.messages.append(AgentMessage.tool("sent", tool_call_id=call.id))
            state.todos[-1].status = "completed"
            state.current_interrupt = None

        state = cp.update(THREAD, approve)
        print(repr(state))
        for message in state.messages[-3:]:
            print(" ", repr(message))


if __name__ == "__main__":
    main()
