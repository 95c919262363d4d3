"""Reprs and notebook HTML of the data model (agents_persist.display)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from agents_persist import AgentMessage, AgentStateSnapshot, HitlInterrupt, ThreadInfo, ThreadPage, TodoItem, ToolCall, from_url
from agents_persist.display import shorten


def _state() -> AgentStateSnapshot:
    return AgentStateSnapshot(
        messages=[
            AgentMessage.system("You are helpful."),
            AgentMessage.user("Email Bob the report " + "x" * 200),
            AgentMessage.assistant("", tool_calls=[ToolCall(id="c1", name="send_email", arguments={"to": "bob@example.com"})]),
            AgentMessage.tool("queued", tool_call_id="c1"),
        ],
        todos=[TodoItem("draft", status="completed"), TodoItem("send")],
        current_interrupt=HitlInterrupt("send_email", {"to": "bob@example.com"}, call_id="c1", policy_note="external"),
        metadata={"user": "bob", "plan": "pro"},
    )


def test_shorten_cuts_at_the_limit_with_an_ellipsis_and_flattens_whitespace() -> None:
    assert shorten("a" * 60) == "a" * 60
    cut = shorten("a" * 61)
    assert len(cut) == 60 and cut.endswith("…")
    assert shorten("one\n  two\tthree") == "one two three"
    assert shorten({"k": [1, 2]}) == '{"k": [1, 2]}'


def test_user_defined_repr_is_not_replaced_by_msgspec() -> None:
    # msgspec generates __repr__ only when the class does not define one.
    message = AgentMessage.user("hi")
    assert type(message).__repr__ is not object.__repr__
    assert repr(message) == "AgentMessage(role='user', content='hi')"
    assert AgentStateSnapshot.__dict__["__repr__"].__module__ == "agents_persist.models"


def test_message_repr_shortens_content_and_leaves_defaults_out() -> None:
    message = AgentMessage.assistant("y" * 100, tool_calls=[ToolCall(id="c1", name="search")], metadata={"a": 1})
    text = repr(message)
    assert text == f"AgentMessage(role='assistant', content='{'y' * 59}…', tool_calls=['search'], metadata_keys=1)"
    assert repr(AgentMessage.tool("ok", tool_call_id="c1")) == "AgentMessage(role='tool', content='ok', tool_call_id='c1')"


def test_snapshot_repr_leads_with_thread_id_and_version_and_hides_provenance_bytes() -> None:
    fresh = repr(_state())
    assert fresh.startswith("AgentStateSnapshot(thread_id=None, version=None, messages=4, ")
    with from_url("memory://") as cp:
        cp.save("repr-thread", _state())
        loaded = cp.load("repr-thread")
    assert loaded is not None and loaded.provenance is not None
    text = repr(loaded)
    assert text.startswith("AgentStateSnapshot(thread_id='repr-thread', version=1, messages=4, ")
    keys = ("thread_id=", "version=", "messages=", "todos=", "metadata_keys=", "current_interrupt=", "last=")
    order = [text.index(key) for key in keys]
    assert order == sorted(order)
    assert "todos=2 (1 completed)" in text and "metadata_keys=2" in text and "current_interrupt='send_email'" in text
    assert "provenance" not in text and "b'" not in text and "digest" not in text
    assert len(text) < 300
    prov = repr(loaded.provenance)
    assert prov.startswith("Provenance(thread_id='repr-thread', version=1, generation=") and "b'" not in prov


def test_page_repr_counts_and_lists_the_first_ids() -> None:
    now = datetime.now(timezone.utc)
    page = ThreadPage(threads=[ThreadInfo(f"t{i}", 1, now, 2) for i in range(7)], next_cursor="c" * 50)
    text = repr(page)
    assert text.startswith("ThreadPage(threads=7, ids=['t0', 't1', 't2', 't3', 't4'] +2 more, next_cursor='")
    assert "c" * 24 not in text and "…" in text
    html = page._repr_html_()
    assert html.count("<tr>") == 8 and "t6" in html


def test_snapshot_html_is_a_transcript_with_calls_results_interrupt_and_todos() -> None:
    html = _state()._repr_html_()
    assert html.count('class="ap-message ') == 4
    for role in ("system", "user", "assistant", "tool"):
        assert f'class="ap-message ap-{role}"' in html
    assert "<b>send_email</b>({&quot;to&quot;: &quot;bob@example.com&quot;})" in html
    assert "tool result · c1" in html and "queued" in html
    assert 'class="ap-interrupt"' in html and "Awaiting human approval" in html and "external" in html
    assert "✓</span> draft" in html and "(pending)" in html
    assert "metadata: user, plan" in html
    assert "<script" not in html and "<link" not in html and "<style" not in html  # inline styles only


def test_html_escapes_everything_that_comes_from_data() -> None:
    evil = "<script>alert(1)</script>"
    state = AgentStateSnapshot(
        messages=[
            AgentMessage.user(evil, name='"><img src=x onerror=alert(1)>'),
            AgentMessage.assistant(tool_calls=[ToolCall(id=evil, name=evil, arguments={evil: evil})]),
            AgentMessage.tool({"html": evil}, tool_call_id=evil),
        ],
        todos=[TodoItem(evil)],
        current_interrupt=HitlInterrupt(evil, {evil: evil}, call_id=evil, policy_note=evil),
        metadata={evil: 1},
    )
    html = state._repr_html_()
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert AgentMessage.user(evil)._repr_html_().count("&lt;script&gt;") == 1
    # Every tag in the output is one of ours.
    assert set(re.findall(r"<(\w+)", html)) <= {"div", "b", "span", "ul", "li"}


def test_long_content_and_long_threads_are_cut_in_html() -> None:
    state = AgentStateSnapshot(messages=[AgentMessage.user(str(i)) for i in range(250)] + [AgentMessage.user("z" * 10_000)])
    html = state._repr_html_()
    assert "… 51 earlier messages" in html
    assert "z" * 3999 + "…" in html and "z" * 4000 not in html
