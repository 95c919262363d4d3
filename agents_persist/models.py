"""The data model: msgspec Structs for an agent's conversation state.

Everything here is plain data (readable reprs and notebook HTML are in
:mod:`agents_persist.display`). Values inside ``content``, ``metadata`` and
tool arguments must be JSON-like (``None``, ``bool``, ``int``, ``float``, ``str``,
lists and str-keyed dicts of those); anything else is refused with
:class:`~agents_persist.errors.SerializationError` when the snapshot is saved.

:class:`AgentMessage` and :class:`ToolCall` are frozen: a stored message never
changes behind the store's back, which is what lets a save write only the
messages appended since the last load or save. Change a message by replacing
it (``msg.replace(content=...)``), not by mutating its dicts in place.

Both are also untracked by Python's cyclic garbage collector (msgspec's
``gc=False``): decoding a long conversation allocates thousands of them,
and tracking them made loads 10-30% slower through collector passes. A
message can only be part of a reference cycle if its own JSON-like content
is made to contain it, which nothing stored can express.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Tuple

import msgspec

from . import display
from .errors import InvalidArgumentError

__all__ = [
    "JsonValue",
    "Role",
    "TodoStatus",
    "ToolCall",
    "AgentMessage",
    "TodoItem",
    "HitlInterrupt",
    "AgentStateSnapshot",
    "Provenance",
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


class ToolCall(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
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
                raise InvalidArgumentError(f"tool call {data.get('id')!r} has arguments that are not JSON") from exc
        else:
            arguments = raw
        if not isinstance(arguments, dict):
            raise InvalidArgumentError(f"tool call {data.get('id')!r} arguments must be a JSON object")
        return cls(id=str(data.get("id", "")), name=str(function.get("name", "")), arguments=arguments)


class AgentMessage(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
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
            raise InvalidArgumentError(f"message role must be one of {ROLES}, not {self.role!r}")
        for call in self.tool_calls:
            if type(call) is not ToolCall:
                raise InvalidArgumentError(
                    f"tool_calls must hold ToolCall objects, not {type(call).__name__}"
                    " (ToolCall.from_openai converts OpenAI dicts)"
                )

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
            raise InvalidArgumentError("an OpenAI chat message needs a 'role'")
        return cls(
            role=data["role"],
            content=data.get("content", ""),
            tool_calls=tuple(ToolCall.from_openai(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )

    def __repr__(self) -> str:
        return display.message_repr(self)

    def _repr_html_(self) -> str:
        return display.message_html(self)


class TodoItem(msgspec.Struct, omit_defaults=True):
    """One entry of the agent's todo list."""

    content: str
    status: TodoStatus = "pending"
    id: Optional[str] = None

    def __post_init__(self) -> None:
        if self.status not in TODO_STATUSES:
            raise InvalidArgumentError(f"todo status must be one of {TODO_STATUSES}, not {self.status!r}")


class HitlInterrupt(msgspec.Struct, omit_defaults=True):
    """A tool call waiting for a human's approval (human in the loop)."""

    tool_name: str
    tool_args: Dict[str, JsonValue] = {}
    call_id: Optional[str] = None
    policy_note: Optional[str] = None
    created_at: datetime = msgspec.field(default_factory=_utcnow)


class Provenance(msgspec.Struct, frozen=True):
    """Where a snapshot came from: the committed state it was loaded at or last saved as.

    A declared (not hidden) part of :class:`AgentStateSnapshot`, so
    ``copy.copy``, ``copy.deepcopy`` and ``msgspec.structs.replace`` keep it
    and the copy's save is checked like the original's.

    Attributes:
        thread_id: The thread it belongs to; saved to another thread, a
            snapshot counts as fresh.
        version: The friendly version counter.
        generation: Identifies one incarnation of the thread: a thread
            deleted (or expired) and created again gets a new one, so a stale
            snapshot can never be saved over its successor.
        message_count, digest: The stored message log (count, and the token
            naming this version of it).
        encoded: The stored encoding of those messages: a save appends only
            when the snapshot's first messages still encode to these bytes.
        applied: Idempotency keys the thread had recorded (and the version each produced).
    """

    thread_id: str
    version: int
    generation: int
    message_count: int
    digest: bytes
    encoded: bytes = b""
    applied: Tuple[Tuple[str, int], ...] = ()

    def __repr__(self) -> str:
        return display.provenance_repr(self)


class AgentStateSnapshot(msgspec.Struct, eq=False):
    """The whole persisted state of one conversation thread.

    A snapshot returned by ``load`` (or passed to ``save``) carries its
    :attr:`provenance`: the stored version (and incarnation) it corresponds
    to. Saving it again checks that, so a concurrent newer save, or a
    deletion and re-creation of the thread, is never overwritten unnoticed.
    A freshly built snapshot has no provenance: its save creates the thread
    (``ConflictError`` if it exists) unless ``force=True``.

    Two snapshots are equal when their four state fields are equal; where
    they came from does not count.
    """

    messages: List[AgentMessage] = []
    todos: List[TodoItem] = []
    current_interrupt: Optional[HitlInterrupt] = None
    metadata: Dict[str, JsonValue] = {}
    #: The committed state this snapshot was loaded at or last saved as; None for a freshly built one.
    provenance: Optional[Provenance] = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AgentStateSnapshot):
            return NotImplemented
        return (self.messages, self.todos, self.current_interrupt, self.metadata) == (
            other.messages,
            other.todos,
            other.current_interrupt,
            other.metadata,
        )

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]  # mutable

    @property
    def version(self) -> Optional[int]:
        """The stored version this snapshot was loaded at or last saved as; None if never stored."""
        return None if self.provenance is None else self.provenance.version

    @property
    def thread_id(self) -> Optional[str]:
        """The thread this snapshot was loaded from or last saved to; None if never stored."""
        return None if self.provenance is None else self.provenance.thread_id

    def to_openai_messages(self) -> List[Dict[str, Any]]:
        """Return the messages as OpenAI-style chat dicts."""
        return [message.to_openai() for message in self.messages]

    def __repr__(self) -> str:
        return display.snapshot_repr(self)

    def _repr_html_(self) -> str:
        """The conversation as a chat transcript (Jupyter and IPython display it)."""
        return display.snapshot_html(self)


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

    def __repr__(self) -> str:
        return display.page_repr(self)

    def _repr_html_(self) -> str:
        return display.page_html(self)
