"""The data model: msgspec Structs for an agent's conversation state.

Everything here is plain data. Values inside ``content``, ``metadata`` and tool
arguments must be JSON-like (``None``, ``bool``, ``int``, ``float``, ``str``,
lists and str-keyed dicts of those); anything else is refused with
:class:`~agents_persist.errors.SerializationError` when the snapshot is saved.

:class:`AgentMessage` and :class:`ToolCall` are frozen: a stored message never
changes behind the store's back, which is what lets a save write only the
messages appended since the last load or save. Change a message by replacing
it (``msg.replace(content=...)``), not by mutating its dicts in place.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Tuple

import msgspec

__all__ = [
    "JsonValue",
    "Role",
    "TodoStatus",
    "ToolCall",
    "AgentMessage",
    "TodoItem",
    "HitlInterrupt",
    "AgentStateSnapshot",
    "ThreadInfo",
    "ThreadPage",
]

JsonValue = Any
"""A JSON-like value: None, bool, int, float, str, list, or dict with str keys."""

Role = Literal["user", "assistant", "system", "tool"]
TodoStatus = Literal["pending", "in_progress", "completed", "cancelled"]

ROLES: Tuple[str, ...] = ("user", "assistant", "system", "tool")
TODO_STATUSES: Tuple[str, ...] = ("pending", "in_progress", "completed", "cancelled")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ToolCall(msgspec.Struct, frozen=True, omit_defaults=True):
    """A tool (function) call requested by the assistant.

    ``arguments`` is the decoded argument object; OpenAI-style dicts carry it
    as a JSON string, which :meth:`AgentMessage.from_openai` parses.
    """

    id: str
    name: str
    arguments: Dict[str, JsonValue] = {}

    def to_openai(self) -> Dict[str, Any]:
        """Return the OpenAI chat ``tool_calls`` entry for this call."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> "ToolCall":
        """Build a call from an OpenAI chat ``tool_calls`` entry."""
        function = data.get("function") or {}
        raw = function.get("arguments", "{}")
        if isinstance(raw, str):
            try:
                arguments = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise ValueError(f"tool call {data.get('id')!r} has arguments that are not JSON") from exc
        else:
            arguments = raw
        if not isinstance(arguments, dict):
            raise ValueError(f"tool call {data.get('id')!r} arguments must be a JSON object")
        return cls(id=str(data.get("id", "")), name=str(function.get("name", "")), arguments=arguments)


class AgentMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message of a conversation.

    ``content`` is text, or structured JSON-like data (for example a list of
    content parts). Build messages with :meth:`user`, :meth:`assistant`,
    :meth:`system` and :meth:`tool`, or from OpenAI-style dicts.
    """

    role: Role
    content: JsonValue = ""
    tool_calls: Tuple[ToolCall, ...] = ()
    tool_call_id: Optional[str] = None
    name: Optional[str] = None
    metadata: Dict[str, JsonValue] = {}

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"message role must be one of {ROLES}, not {self.role!r}")

    @classmethod
    def user(cls, content: JsonValue, **fields: Any) -> "AgentMessage":
        """A message from the user."""
        return cls(role="user", content=content, **fields)

    @classmethod
    def assistant(
        cls, content: JsonValue = "", *, tool_calls: "Tuple[ToolCall, ...] | List[ToolCall]" = (), **fields: Any
    ) -> "AgentMessage":
        """A message from the assistant, optionally requesting tool calls."""
        return cls(role="assistant", content=content, tool_calls=tuple(tool_calls), **fields)

    @classmethod
    def system(cls, content: JsonValue, **fields: Any) -> "AgentMessage":
        """A system prompt."""
        return cls(role="system", content=content, **fields)

    @classmethod
    def tool(cls, content: JsonValue, *, tool_call_id: str, **fields: Any) -> "AgentMessage":
        """The result of the tool call ``tool_call_id``."""
        return cls(role="tool", content=content, tool_call_id=tool_call_id, **fields)

    def replace(self, **changes: Any) -> "AgentMessage":
        """Return a copy with ``changes`` applied (messages are immutable)."""
        return msgspec.structs.replace(self, **changes)

    def to_openai(self) -> Dict[str, Any]:
        """Return this message as an OpenAI-style chat dict (``metadata`` is not included)."""
        data: Dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            data["name"] = self.name
        return data

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> "AgentMessage":
        """Build a message from an OpenAI-style chat dict."""
        if "role" not in data:
            raise ValueError("an OpenAI chat message needs a 'role'")
        return cls(
            role=data["role"],
            content=data.get("content", ""),
            tool_calls=tuple(ToolCall.from_openai(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )


class TodoItem(msgspec.Struct, omit_defaults=True):
    """One entry of the agent's todo list."""

    content: str
    status: TodoStatus = "pending"
    id: Optional[str] = None

    def __post_init__(self) -> None:
        if self.status not in TODO_STATUSES:
            raise ValueError(f"todo status must be one of {TODO_STATUSES}, not {self.status!r}")


class HitlInterrupt(msgspec.Struct, omit_defaults=True):
    """A tool call waiting for a human's approval (human in the loop)."""

    tool_name: str
    tool_args: Dict[str, JsonValue] = {}
    call_id: Optional[str] = None
    policy_note: Optional[str] = None
    created_at: datetime = msgspec.field(default_factory=_utcnow)


class _Origin(msgspec.Struct, frozen=True):
    """Where a snapshot came from: the stored state it was loaded at or last saved as.

    ``messages`` holds the very message objects that were stored, so that a
    later save can tell, in C speed, which messages are new.
    """

    thread_id: str
    version: int
    message_count: int
    digest: bytes
    messages: List[AgentMessage]


class AgentStateSnapshot(msgspec.Struct, dict=True):
    """The whole persisted state of one conversation thread.

    A snapshot returned by ``load`` (or passed to ``save``) remembers the
    stored :attr:`version` it corresponds to; saving it again checks that
    version, so a concurrent newer save is never overwritten unnoticed.
    """

    messages: List[AgentMessage] = []
    todos: List[TodoItem] = []
    current_interrupt: Optional[HitlInterrupt] = None
    metadata: Dict[str, JsonValue] = {}

    @property
    def version(self) -> Optional[int]:
        """The stored version this snapshot was loaded at or last saved as; None if never stored."""
        origin: Optional[_Origin] = self.__dict__.get("_origin")
        return None if origin is None else origin.version

    @property
    def thread_id(self) -> Optional[str]:
        """The thread this snapshot was loaded from or last saved to; None if never stored."""
        origin: Optional[_Origin] = self.__dict__.get("_origin")
        return None if origin is None else origin.thread_id

    def to_openai_messages(self) -> List[Dict[str, Any]]:
        """Return the messages as OpenAI-style chat dicts."""
        return [message.to_openai() for message in self.messages]


class ThreadInfo(msgspec.Struct, frozen=True):
    """A summary of one stored thread, as listed by ``list_threads``.

    ``updated_timestamp`` is the exact stored update time in epoch seconds
    (``updated_at`` is rounded to microseconds); listing cursors use it.
    """

    thread_id: str
    version: int
    updated_at: datetime
    message_count: int
    expires_at: Optional[datetime] = None
    updated_timestamp: Optional[float] = None


class ThreadPage(msgspec.Struct, frozen=True):
    """One page of ``list_threads``; pass ``next_cursor`` to get the next (None at the end)."""

    threads: List[ThreadInfo]
    next_cursor: Optional[str] = None

    def __iter__(self) -> Iterator[ThreadInfo]:
        return iter(self.threads)

    def __len__(self) -> int:
        return len(self.threads)
