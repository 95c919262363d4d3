"""Readable ``repr`` and notebook HTML for the data model.

The Structs in :mod:`agents_persist.models` delegate their ``__repr__`` and
``_repr_html_`` here, so ``models.py`` stays plain data. Reprs lead with what
identifies a thing (a snapshot's thread ID and version), shorten long content
and count the rest; they never show a provenance's stored bytes. The HTML is a
chat transcript with inline styles only (no scripts, no external CSS), and
every piece of user data in it is escaped, so content can never inject markup.
"""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any, List, Optional

if TYPE_CHECKING:
    from .models import AgentMessage, AgentStateSnapshot, HitlInterrupt, Provenance, ThreadPage, TodoItem, ToolCall

__all__ = [
    "shorten",
    "message_repr",
    "snapshot_repr",
    "page_repr",
    "provenance_repr",
    "message_html",
    "snapshot_html",
    "page_html",
]

REPR_LIMIT = 60
"""Characters of content a repr shows before the ellipsis."""
HTML_LIMIT = 4000
"""Characters of one message's content the HTML shows before the ellipsis."""
HTML_MAX_MESSAGES = 200
"""Messages a transcript shows (the most recent); earlier ones are counted."""
ELLIPSIS = "…"


def _text(value: Any) -> str:
    """``value`` as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def shorten(value: Any, limit: int = REPR_LIMIT) -> str:
    """Return ``value`` as one line of at most ``limit`` characters, ending in ``…`` if cut."""
    text = " ".join(_text(value).split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def _fields(name: str, parts: List[str]) -> str:
    return f"{name}({', '.join(parts)})"


def message_repr(message: "AgentMessage") -> str:
    """``AgentMessage(role=..., content=...)`` with content shortened and defaults left out."""
    parts = [f"role={message.role!r}", f"content={shorten(message.content)!r}"]
    if message.tool_calls:
        parts.append(f"tool_calls={[call.name for call in message.tool_calls]!r}")
    if message.tool_call_id is not None:
        parts.append(f"tool_call_id={message.tool_call_id!r}")
    if message.name is not None:
        parts.append(f"name={message.name!r}")
    if message.metadata:
        parts.append(f"metadata_keys={len(message.metadata)}")
    return _fields("AgentMessage", parts)


def snapshot_repr(snapshot: "AgentStateSnapshot") -> str:
    """Thread ID and version first, then counts, the pending interrupt and the last message."""
    parts = [f"thread_id={snapshot.thread_id!r}", f"version={snapshot.version!r}", f"messages={len(snapshot.messages)}"]
    if snapshot.todos:
        done = sum(1 for todo in snapshot.todos if todo.status == "completed")
        parts.append(f"todos={len(snapshot.todos)} ({done} completed)")
    else:
        parts.append("todos=0")
    parts.append(f"metadata_keys={len(snapshot.metadata)}")
    if snapshot.current_interrupt is not None:
        parts.append(f"current_interrupt={snapshot.current_interrupt.tool_name!r}")
    if snapshot.messages:
        last = snapshot.messages[-1]
        calls = f" calls {[call.name for call in last.tool_calls]!r}" if last.tool_calls else ""
        parts.append(f"last={last.role}: {shorten(last.content)!r}{calls}")
    return _fields("AgentStateSnapshot", parts)


def provenance_repr(provenance: "Provenance") -> str:
    """The identifying counters of a provenance, without its stored bytes or messages."""
    return _fields(
        "Provenance",
        [
            f"thread_id={provenance.thread_id!r}",
            f"version={provenance.version}",
            f"generation={provenance.generation}",
            f"message_count={provenance.message_count}",
        ],
    )


def page_repr(page: "ThreadPage", shown: int = 5) -> str:
    """The number of threads, the first few IDs, and the cursor (shortened)."""
    ids = [info.thread_id for info in page.threads[:shown]]
    more = f" +{len(page.threads) - shown} more" if len(page.threads) > shown else ""
    cursor = None if page.next_cursor is None else shorten(page.next_cursor, 24)
    return _fields("ThreadPage", [f"threads={len(page.threads)}", f"ids={ids!r}{more}", f"next_cursor={cursor!r}"])


# ---------------------------------------------------------------- HTML

_FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:14px;line-height:1.4;color:#1f2328"
_MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px"
_BOX = "max-width:760px;padding:10px 12px;border:1px solid #d0d7de;border-radius:8px;background:#ffffff;" + _FONT
_ROLE_STYLE = {
    "user": ("flex-end", "#dbeafe", "#93c5fd"),
    "assistant": ("flex-start", "#f3f4f6", "#d1d5db"),
    "system": ("center", "#fef9c3", "#fde047"),
    "developer": ("center", "#fef9c3", "#fde047"),
    "tool": ("flex-start", "#dcfce7", "#86efac"),
}
_TODO_MARK = {"pending": "○", "in_progress": "◐", "completed": "✓", "cancelled": "✗"}


def _pre(value: Any, limit: int = HTML_LIMIT) -> str:
    """Escaped content: text as-is, structured data as indented JSON, cut at ``limit``."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    if len(text) > limit:
        text = text[: limit - 1] + ELLIPSIS
    return f'<div style="white-space:pre-wrap;word-break:break-word;margin:0">{escape(text)}</div>'


def _call_html(call: "ToolCall") -> str:
    args = escape(json.dumps(call.arguments, ensure_ascii=False, default=str))
    return (
        f'<div style="margin-top:6px;padding:4px 6px;border-radius:4px;background:#ffffffaa;{_MONO}">'
        f"→ <b>{escape(call.name)}</b>({args})"
        f' <span style="color:#6b7280">id={escape(call.id)}</span></div>'
    )


def message_html(message: "AgentMessage") -> str:
    """One chat bubble: the role (and tool-call ID), the content, the requested tool calls."""
    align, background, border = _ROLE_STYLE.get(message.role, _ROLE_STYLE["assistant"])
    label = escape(message.role)
    if message.name:
        label += f" · {escape(message.name)}"
    if message.role == "tool":
        label = f"tool result · {escape(message.tool_call_id or '?')}"
    body = "" if message.content in ("", None) else _pre(message.content)
    calls = "".join(_call_html(call) for call in message.tool_calls)
    return (
        f'<div class="ap-message ap-{escape(message.role)}" style="display:flex;justify-content:{align};margin:4px 0">'
        f'<div style="max-width:80%;padding:6px 10px;border-radius:10px;background:{background};'
        f'border:1px solid {border}">'
        f'<div style="font-size:11px;font-weight:600;color:#4b5563;text-transform:uppercase">{label}</div>'
        f"{body}{calls}</div></div>"
    )


def _interrupt_html(interrupt: "HitlInterrupt") -> str:
    args = escape(json.dumps(interrupt.tool_args, ensure_ascii=False, default=str))
    note = f'<div style="color:#92400e">{escape(interrupt.policy_note)}</div>' if interrupt.policy_note else ""
    call = f' <span style="color:#6b7280">call {escape(interrupt.call_id)}</span>' if interrupt.call_id else ""
    return (
        '<div class="ap-interrupt" style="margin:8px 0;padding:8px 10px;border:2px dashed #f59e0b;'
        'border-radius:8px;background:#fffbeb">'
        "<b>⚠ Awaiting human approval</b>"
        f'<div style="{_MONO}"><b>{escape(interrupt.tool_name)}</b>({args}){call}</div>{note}</div>'
    )


def _todos_html(todos: "List[TodoItem]") -> str:
    items = "".join(
        f'<li style="list-style:none;margin:2px 0">'
        f'<span title="{escape(todo.status)}">{_TODO_MARK.get(todo.status, "?")}</span> '
        f"{escape(todo.content)} "
        f'<span style="color:#6b7280;font-size:12px">({escape(todo.status)})</span></li>'
        for todo in todos
    )
    listing = f'<ul style="margin:4px 0;padding-left:4px">{items}</ul>'
    return f'<div class="ap-todos" style="margin-top:8px"><b>Todos</b>{listing}</div>'


def _header(title: str, detail: Optional[str]) -> str:
    extra = f' <span style="color:#6b7280;font-weight:400">{escape(detail)}</span>' if detail else ""
    return f'<div style="font-weight:600;margin-bottom:6px;border-bottom:1px solid #e5e7eb">{escape(title)}{extra}</div>'


def snapshot_html(snapshot: "AgentStateSnapshot") -> str:
    """The conversation as a chat transcript, then the pending approval, todos and metadata keys."""
    if snapshot.thread_id is None:
        title, detail = "unsaved thread", f"{len(snapshot.messages)} messages"
    else:
        title, detail = f"thread {snapshot.thread_id}", f"version {snapshot.version} · {len(snapshot.messages)} messages"
    messages = snapshot.messages[-HTML_MAX_MESSAGES:]
    skipped = len(snapshot.messages) - len(messages)
    parts = [f'<div class="ap-snapshot" style="{_BOX}">', _header(title, detail)]
    if skipped:
        parts.append(f'<div style="color:#6b7280;text-align:center">… {skipped} earlier messages</div>')
    parts.extend(message_html(message) for message in messages)
    if snapshot.current_interrupt is not None:
        parts.append(_interrupt_html(snapshot.current_interrupt))
    if snapshot.todos:
        parts.append(_todos_html(snapshot.todos))
    if snapshot.metadata:
        keys = ", ".join(escape(str(key)) for key in snapshot.metadata)
        parts.append(f'<div style="margin-top:6px;color:#6b7280;font-size:12px">metadata: {keys}</div>')
    parts.append("</div>")
    return "".join(parts)


def page_html(page: "ThreadPage") -> str:
    """A table of the page's threads (ID, version, messages, updated, expires) and the cursor."""
    cell = "padding:2px 8px;border-bottom:1px solid #e5e7eb;text-align:left"
    head = "".join(f'<th style="{cell}">{name}</th>' for name in ("thread", "version", "messages", "updated", "expires"))
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td style="{cell}">{escape(str(value))}</td>'
            for value in (
                info.thread_id,
                info.version,
                info.message_count,
                info.updated_at.isoformat(timespec="seconds"),
                "" if info.expires_at is None else info.expires_at.isoformat(timespec="seconds"),
            )
        )
        + "</tr>"
        for info in page.threads
    )
    more = "last page" if page.next_cursor is None else f"next_cursor {shorten(page.next_cursor, 24)}"
    return (
        f'<div class="ap-page" style="{_BOX}">{_header(f"{len(page.threads)} threads", more)}'
        f'<table style="border-collapse:collapse;{_FONT}"><tr>{head}</tr>{rows}</table></div>'
    )
