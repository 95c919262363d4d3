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

Both check their fields when built by calling the class (and by
:meth:`AgentMessage.replace`), not when msgspec decodes them: the decoder
already type-checks every field (the role is a ``Literal``, tool calls are
``ToolCall`` structs), and running a Python ``__post_init__`` on each decoded
message was a third of the cost of a load. What a save writes is checked
again in full (:func:`agents_persist.codec.check_messages`).
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

Role = Literal["user", "assistant", "system", "developer", "tool"]
TodoStatus = Literal["pending", "in_progress", "completed", "cancelled"]

ROLES: Tuple[str, ...] = ("user", "assistant", "system", "developer", "tool")
TODO_STATUSES: Tuple[str, ...] = ("pending", "in_progress", "completed", "cancelled")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _CheckedWhenBuilt(msgspec.StructMeta):
    """Calls a struct's ``_check()`` after it is built by calling its class; decoding skips it.

    msgspec runs ``__post_init__`` on decode too, where the typed decoder has
    already checked the same fields; this metaclass keeps the check for
    objects built in code (where the fields are not type-checked) only.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__call__(*args, **kwargs)
        obj._check()
        return obj


class ToolCall(msgspec.Struct, metaclass=_CheckedWhenBuilt, frozen=True, omit_defaults=True, gc=False):
    """A tool (function) call requested by the assistant.

    ``arguments`` is the decoded argument object. ``raw_arguments`` is the
    argument string exactly as the model sent it (OpenAI chat and Responses
    carry arguments as a JSON string), kept byte for byte so that
    :meth:`to_openai` gives back what came in; it is None for calls built
    from decoded arguments (Anthropic ``tool_use`` blocks, hand-made calls).

    Given only ``raw_arguments``, ``arguments`` is decoded from it. Given
    both, they must agree (``raw_arguments`` decodes to ``arguments``), or
    :class:`~agents_persist.errors.InvalidArgumentError` is raised: a call can
    never carry one set of arguments for the tool and another for the model.
    To change the arguments, replace both (``raw_arguments=None`` keeps only
    the decoded form). A blank string decodes to ``{}``; anything that is not
    a JSON object is refused.
    """

    id: str
    name: str
    arguments: Dict[str, JsonValue] = {}
    raw_arguments: Optional[str] = None

    def _check(self) -> None:
        """Fill ``arguments`` from ``raw_arguments``, or check that they agree (when built, not when decoded)."""
        raw = self.raw_arguments
        if raw is None:
            return
        decoded = decode_arguments(raw, self.id)
        if not self.arguments:
            msgspec.structs.force_setattr(self, "arguments", decoded)
        elif decoded != self.arguments:
            raise InvalidArgumentError(
                f"tool call {self.id!r}: raw_arguments and arguments disagree (pass raw_arguments=None to keep only arguments)"
            )

    def replace(self, **changes: Any) -> "ToolCall":
        """Return a copy with ``changes`` applied, checked like a new call (change both argument forms, or drop one)."""
        call = msgspec.structs.replace(self, **changes)
        call._check()
        return call

    def to_openai(self) -> Dict[str, Any]:
        """Return the OpenAI chat ``tool_calls`` entry for this call (``raw_arguments`` when present)."""
        from .formats import openai_chat

        return openai_chat.tool_call_to_openai(self)

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> "ToolCall":
        """Build a call from an OpenAI chat ``tool_calls`` entry, keeping its argument string."""
        from .formats import openai_chat

        return openai_chat.tool_call_from_openai(data)


def decode_arguments(raw: Any, call_id: Any) -> Dict[str, JsonValue]:
    """Decode a tool call's argument string (blank is ``{}``); anything but a JSON object is refused."""
    if type(raw) is not str:
        raise InvalidArgumentError(f"tool call {call_id!r}: raw_arguments must be a str, not {type(raw).__name__}")
    try:
        arguments = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise InvalidArgumentError(f"tool call {call_id!r} has arguments that are not JSON") from exc
    if not isinstance(arguments, dict):
        raise InvalidArgumentError(f"tool call {call_id!r} arguments must be a JSON object")
    return arguments


class AgentMessage(msgspec.Struct, metaclass=_CheckedWhenBuilt, frozen=True, omit_defaults=True, gc=False):
    """One message of a conversation.

    ``content`` is text, or structured JSON-like data (for example a list of
    content parts). Build messages with :meth:`user`, :meth:`assistant`,
    :meth:`system`, :meth:`developer` and :meth:`tool`, or convert them from
    and to provider formats without loss: OpenAI chat (:meth:`from_openai`,
    :meth:`to_openai`), OpenAI Responses items (:meth:`from_responses`,
    :meth:`to_responses`) and Anthropic Messages (:meth:`from_anthropic`,
    :meth:`to_anthropic`); see :doc:`/integrations/formats`.
    """

    role: Role
    content: JsonValue = ""
    tool_calls: Tuple[ToolCall, ...] = ()
    tool_call_id: Optional[str] = None
    name: Optional[str] = None
    metadata: Dict[str, JsonValue] = {}
    #: The assistant's refusal text (OpenAI chat ``refusal``).
    refusal: Optional[str] = None
    #: The OpenAI Responses item type (``message``, ``function_call``, ``reasoning``, ...); None otherwise.
    item_type: Optional[str] = None
    #: The provider's id of this item (OpenAI Responses ``id``).
    item_id: Optional[str] = None
    #: The provider's status of this item (OpenAI Responses ``in_progress``, ``completed``, ``incomplete``).
    status: Optional[str] = None
    #: Provider fields with no field of their own, kept verbatim per format:
    #: ``{"openai": {...}, "responses": {...}, "anthropic": {...}}``. Each
    #: converter reads and writes only its own key (see :doc:`/integrations/formats`).
    extra: Dict[str, JsonValue] = {}

    def _check(self) -> None:
        """Refuse an unknown role or tool calls that are not :class:`ToolCall` (when built, not when decoded)."""
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
    def developer(cls, content: JsonValue, **fields: Any) -> "AgentMessage":
        """Developer instructions (OpenAI's successor of the system prompt)."""
        return cls(role="developer", content=content, **fields)

    @classmethod
    def tool(cls, content: JsonValue, *, tool_call_id: str, **fields: Any) -> "AgentMessage":
        """The result of the tool call ``tool_call_id``."""
        return cls(role="tool", content=content, tool_call_id=tool_call_id, **fields)

    def replace(self, **changes: Any) -> "AgentMessage":
        """Return a copy with ``changes`` applied (messages are immutable), checked like a new message."""
        message = msgspec.structs.replace(self, **changes)
        message._check()
        return message

    def to_openai(self) -> Dict[str, Any]:
        """Return this message as an OpenAI chat dict (``metadata`` is not included).

        See :func:`agents_persist.to_openai`.
        """
        from .formats import openai_chat

        return openai_chat.to_openai(self)

    @classmethod
    def from_openai(cls, data: Any) -> "AgentMessage":
        """Build a message from an OpenAI chat dict (or an SDK object with ``model_dump()``), without loss.

        See :func:`agents_persist.from_openai`.
        """
        from .formats import openai_chat

        return openai_chat.from_openai(data)

    def to_responses(self) -> List[Dict[str, Any]]:
        """Return this message as OpenAI Responses input items (one for a message read from one).

        See :func:`agents_persist.to_responses`.
        """
        from .formats import openai_responses

        return openai_responses.to_responses(self)

    @classmethod
    def from_responses(cls, item: Any) -> "AgentMessage":
        """Build a message from one OpenAI Responses item (dict or SDK object), without loss.

        See :func:`agents_persist.from_responses`.
        """
        from .formats import openai_responses

        return openai_responses.from_responses(item)

    def to_anthropic(self) -> Dict[str, Any]:
        """Return this message as an Anthropic Messages ``MessageParam`` dict.

        See :func:`agents_persist.to_anthropic`.
        """
        from .formats import anthropic

        return anthropic.to_anthropic(self)

    @classmethod
    def from_anthropic(cls, data: Any) -> "AgentMessage":
        """Build a message from an Anthropic message (dict, or the SDK's own objects), without loss.

        See :func:`agents_persist.from_anthropic`.
        """
        from .formats import anthropic

        return anthropic.from_anthropic(data)

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

    def to_responses_items(self) -> List[Dict[str, Any]]:
        """Return the messages as OpenAI Responses input items, in order."""
        return [item for message in self.messages for item in message.to_responses()]

    def to_anthropic_messages(self) -> List[Dict[str, Any]]:
        """Return the messages as Anthropic ``MessageParam`` dicts, leaving out ``system`` and ``developer`` ones.

        Anthropic takes the system prompt as the ``system`` parameter, not as a message.
        """
        from .formats import anthropic

        return anthropic.to_anthropic_messages(self.messages)

    def __repr__(self) -> str:
        return display.snapshot_repr(self)

    def _repr_html_(self) -> str:
        """The conversation as a chat transcript (Jupyter and IPython display it)."""
        return display.snapshot_html(self)


class ThreadInfo(msgspec.Struct, frozen=True):
    """A summary of one stored thread, as listed by ``list_threads``.

    ``updated_timestamp`` is the exact stored update time in epoch seconds
    (``updated_at`` is rounded to microseconds); listing cursors use it.
    ``corrupt`` is True for a thread whose stored head could not be read
    (its other fields are then zeros); loading it raises
    :class:`~agents_persist.errors.CorruptSnapshotError`, and
    ``save(..., force=True)`` or ``delete`` repair it.
    """

    thread_id: str
    version: int
    updated_at: datetime
    message_count: int
    expires_at: Optional[datetime] = None
    updated_timestamp: Optional[float] = None
    corrupt: bool = False


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
