"""Encoding of stored bytes: one msgspec encoder, typed decoders, a format version.

Every stored blob starts with one format-version byte followed by msgpack.
Blobs of an older known format are upgraded on read; a newer, unknown format
raises :class:`~agents_persist.errors.UnsupportedFormatError`. Nothing is ever
pickled or imported by name.

Messages are encoded one by one so that a save can append just the new ones;
a random token stored with each log version (:func:`new_digest`) identifies a
stored prefix, and held messages are compared with stored ones as bytes.
"""

from __future__ import annotations

import math
import os
import struct
from itertools import chain
from operator import attrgetter
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union, cast

import msgspec

from .errors import CorruptSnapshotError, SerializationError, UnsupportedFormatError
from .models import ROLES, AgentMessage, AgentStateSnapshot, HitlInterrupt, TodoItem, ToolCall, decode_arguments

__all__ = [
    "FORMAT_VERSION",
    "EMPTY_DIGEST",
    "HeadRecord",
    "encode_message",
    "decode_message",
    "encode_head",
    "decode_head",
    "new_digest",
    "check_messages",
    "encode_messages",
    "stream_matches",
    "ensure_json_like",
]

FORMAT_VERSION = 1
DIGEST_SIZE = 16
EMPTY_DIGEST = bytes(DIGEST_SIZE)
_FORMAT_PREFIX = bytes([FORMAT_VERSION])
_MAX_JSON_DEPTH = 64
#: What decoding foreign bytes may raise. RecursionError: nesting deeper than the
#: decoder's C recursion budget (about 1,000 levels); bounded in time and memory.
_UNDECODABLE = (msgspec.DecodeError, ValueError, TypeError, RecursionError, OverflowError)


class HeadRecord(msgspec.Struct, omit_defaults=True):
    """The part of a snapshot stored in a thread's head besides its message log."""

    todos: List[TodoItem] = []
    current_interrupt: Optional[HitlInterrupt] = None
    metadata: Dict[str, Any] = {}


_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(AgentMessage)
_head_decoder = msgspec.msgpack.Decoder(HeadRecord)
_stream_decoder = msgspec.msgpack.Decoder(List[Union[int, AgentMessage]])


_SCALARS = frozenset({str, int, bool, type(None), float})
_CONTAINERS = frozenset({list, dict})
_ALLOWED = _SCALARS | _CONTAINERS
_STR_KEYS = {str}
_isfinite = math.isfinite


def _all_json_like(values: List[Any], max_depth: int = _MAX_JSON_DEPTH) -> bool:
    """Whether every value in ``values`` is JSON-like, checked one nesting level at a time.

    Each level costs a few C-level passes (``set(map(type, ...))``,
    ``chain``) over all its values together, so a batch of messages is
    checked in a number of Python steps that depends on nesting depth, not
    on how many messages or keys there are.
    """
    level = values
    for depth in range(max_depth + 1):
        if not level:
            return True
        kinds = set(map(type, level))
        if not kinds <= _ALLOWED or (depth == max_depth and not kinds.isdisjoint(_CONTAINERS)):
            return False
        if float in kinds and not all(map(_isfinite, [v for v in level if type(v) is float])):
            return False
        nested: List[Any] = []
        if dict in kinds:
            dicts = level if len(kinds) == 1 else [v for v in level if type(v) is dict]
            if not set(map(type, chain.from_iterable(dicts))) <= _STR_KEYS:
                return False
            nested.extend(chain.from_iterable(map(dict.values, dicts)))
        if list in kinds:
            nested.extend(chain.from_iterable(level if len(kinds) == 1 else [v for v in level if type(v) is list]))
        level = nested
    return not level


def _is_json_like(value: Any) -> bool:
    return _all_json_like([value])


def ensure_json_like(value: Any, where: str, thread_id: Optional[str] = None) -> None:
    """Raise :class:`SerializationError` unless ``value`` is JSON-like.

    JSON-like means None, bool, int, float, str, and lists or str-keyed dicts
    of those, nested at most 64 deep. Checking before encoding means a
    refused snapshot writes nothing and never round-trips as something else
    (a tuple as a list, a datetime as a string). The fast check looks at a
    whole container's types at once; only a value that fails it is walked
    element by element, to name exactly what is wrong.
    """
    if not _is_json_like(value):
        _explain_not_json_like(value, where, thread_id)


def _explain_not_json_like(value: Any, where: str, thread_id: Optional[str]) -> None:
    stack = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        kind = type(item)
        if item is None or kind in (str, bool, int):
            continue
        if kind is float:
            if math.isnan(item) or math.isinf(item):
                raise SerializationError(f"{path} holds {item!r}, which JSON cannot represent", thread_id=thread_id)
            continue
        if depth >= _MAX_JSON_DEPTH:
            raise SerializationError(f"{path} is nested deeper than {_MAX_JSON_DEPTH} levels", thread_id=thread_id)
        if kind is list:
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))
        elif kind is dict:
            for key, v in item.items():
                if type(key) is not str:
                    raise SerializationError(f"{path} has a non-str key {key!r}", thread_id=thread_id)
                stack.append((v, f"{path}[{key!r}]", depth + 1))
        else:
            raise SerializationError(f"{path} holds a {kind.__name__}, which is not JSON-like", thread_id=thread_id)
    raise AssertionError(f"{where}: the fast JSON-like check and the walk disagree")  # pragma: no cover


_get_role = attrgetter("role")
_ROLES = frozenset(ROLES)
_TOOL_CALL_ONLY = {ToolCall}
_get_content = attrgetter("content")
_get_metadata = attrgetter("metadata")
_get_tool_calls = attrgetter("tool_calls")
#: Fields that are None or a str, all checked in one C-level pass over the batch.
_OPTIONAL_STR_FIELDS = ("tool_call_id", "name", "refusal", "item_type", "item_id", "status")
_get_optional_strs = attrgetter(*_OPTIONAL_STR_FIELDS)
_get_extra = attrgetter("extra")
_get_call_names = attrgetter("id", "name")
_get_arguments = attrgetter("arguments")
_get_raw_arguments = attrgetter("raw_arguments")
_OPTIONAL_STR = {str, type(None)}
_NONE_ONLY = {None}
_EMPTY: Dict[str, Any] = {}  # compared with, never changed
_PER_MESSAGE_BATCH = 4
_SMALL_CONTAINER = 32


def _raw_arguments_agree(calls: List[Any]) -> bool:
    """Whether each call's ``raw_arguments`` (if any) still decodes to its ``arguments``.

    Construction checks this; an ``arguments`` dict changed in place since
    would make stored bytes that no load accepts. Calls without a raw string
    (the usual case) cost one C-level pass.
    """
    if set(map(_get_raw_arguments, calls)) <= _NONE_ONLY:
        return True
    try:
        return all(decode_arguments(c.raw_arguments, c.id) == c.arguments for c in calls if c.raw_arguments is not None)
    except ValueError:
        return False


def _small_json_like(value: Any, depth: int = 0) -> bool:
    """:func:`_all_json_like` for one small value, walked directly (cheaper below a few dozen items)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return _isfinite(value)
    if depth >= _MAX_JSON_DEPTH:
        return False
    if kind is dict:
        if len(value) > _SMALL_CONTAINER:
            return _all_json_like([value]) if depth == 0 else _all_json_like_at(value, depth)
        for key, item in value.items():
            if type(key) is not str or not _small_json_like(item, depth + 1):
                return False
        return True
    if kind is list:
        if len(value) > _SMALL_CONTAINER:
            return _all_json_like([value]) if depth == 0 else _all_json_like_at(value, depth)
        return all(_small_json_like(item, depth + 1) for item in value)
    return False


def _all_json_like_at(value: Any, depth: int) -> bool:
    """A big container met ``depth`` levels down: the level-wise check, keeping the depth limit."""
    return _all_json_like([value], _MAX_JSON_DEPTH - depth)


def _message_is_valid(m: Any) -> bool:
    """:func:`_batch_is_valid` for one message, with direct attribute checks."""
    if type(m) is not AgentMessage or type(m.role) is not str or m.role not in _ROLES:
        return False
    metadata, extra, calls = m.metadata, m.extra, m.tool_calls
    if type(metadata) is not dict or type(extra) is not dict or type(calls) is not tuple:
        return False
    for value in _get_optional_strs(m):
        if value is not None and type(value) is not str:
            return False
    content = m.content
    if type(content) is not str and not _small_json_like(content):
        return False
    if (metadata and not _small_json_like(metadata)) or (extra and not _small_json_like(extra)):
        return False
    for call in calls:
        if type(call) is not ToolCall or type(call.id) is not str or type(call.name) is not str:
            return False
        if type(call.arguments) is not dict:
            return False
        if call.arguments and not _small_json_like(call.arguments):
            return False
    return not calls or _raw_arguments_agree(list(calls))


def _batch_is_valid(messages: Sequence[Any]) -> bool:
    """Whether every message can be stored and loaded back as it is, checked field by field over the whole batch."""
    if set(map(type, messages)) != {AgentMessage}:
        return False
    roles = list(map(_get_role, messages))
    if set(map(type, roles)) != _STR_KEYS or not set(roles) <= _ROLES:
        return False
    metadata = list(map(_get_metadata, messages))
    extras = list(map(_get_extra, messages))
    calls_per_message = list(map(_get_tool_calls, messages))
    if set(map(type, chain(metadata, extras))) != {dict} or set(map(type, calls_per_message)) != {tuple}:
        return False
    if not set(map(type, chain.from_iterable(map(_get_optional_strs, messages)))) <= _OPTIONAL_STR:
        return False
    calls = list(chain.from_iterable(calls_per_message))
    if calls and set(map(type, calls)) != _TOOL_CALL_ONLY:
        return False
    arguments = list(map(_get_arguments, calls))
    if calls and (
        set(map(type, chain.from_iterable(map(_get_call_names, calls)))) != {str} or set(map(type, arguments)) != {dict}
    ):
        return False
    return _all_json_like([*map(_get_content, messages), *filter(None, metadata), *filter(None, extras), *arguments]) and (
        not calls or _raw_arguments_agree(calls)
    )


def _check_message(message: Any, index: int, thread_id: Optional[str]) -> None:
    """Raise the :class:`SerializationError` that names what is wrong with ``message``, if anything."""
    if type(message) is not AgentMessage:
        raise SerializationError(f"messages[{index}] is a {type(message).__name__}, not an AgentMessage", thread_id=thread_id)
    if not _batch_is_valid([message]):
        _explain_bad_message(message, f"messages[{index}]", thread_id)


def _explain_bad_message(message: AgentMessage, where: str, thread_id: Optional[str]) -> None:
    if type(message.role) is not str:
        # A str subclass (an enum member) equal to a role passes construction, but the batch check wants a str.
        raise SerializationError(f"{where}.role is a {type(message.role).__name__}, not a str", thread_id=thread_id)
    if message.role not in ROLES:
        raise SerializationError(f"{where}.role is {message.role!r}, not one of {ROLES}", thread_id=thread_id)
    for field in _OPTIONAL_STR_FIELDS:
        value = getattr(message, field)
        if value is not None and type(value) is not str:
            raise SerializationError(f"{where}.{field} is a {type(value).__name__}, not a str", thread_id=thread_id)
    ensure_json_like(message.content, f"{where}.content", thread_id)
    for field in ("metadata", "extra"):
        value = getattr(message, field)
        if type(value) is not dict:
            raise SerializationError(f"{where}.{field} is a {type(value).__name__}, not a dict", thread_id=thread_id)
        ensure_json_like(value, f"{where}.{field}", thread_id)
    if type(message.tool_calls) is not tuple:
        raise SerializationError(f"{where}.tool_calls is a {type(message.tool_calls).__name__}, not a tuple", thread_id=thread_id)
    for i, call in enumerate(message.tool_calls):
        if type(call) is not ToolCall:
            raise SerializationError(f"{where}.tool_calls[{i}] is a {type(call).__name__}, not a ToolCall", thread_id=thread_id)
        call_where = f"{where}.tool_calls[{call.id!r}]"
        if type(call.id) is not str or type(call.name) is not str:
            raise SerializationError(f"{call_where} needs a str id and name", thread_id=thread_id)
        if type(call.arguments) is not dict:
            raise SerializationError(f"{call_where}.arguments is not a dict", thread_id=thread_id)
        ensure_json_like(call.arguments, f"{call_where}.arguments", thread_id)
        if not _raw_arguments_agree([call]):
            raise SerializationError(
                f"{call_where}.arguments no longer match its raw_arguments (changed in place?)", thread_id=thread_id
            )
    raise AssertionError(f"{where}: the fast message check and its explanation disagree")  # pragma: no cover


def check_messages(messages: Sequence[Any], start: int = 0, thread_id: Optional[str] = None) -> None:
    """Raise :class:`SerializationError` unless every message can be stored and loaded back as it is.

    Everything is checked, for the whole batch at once: construction checks
    the role and the tool calls' types, but ``msgspec.structs.replace`` and
    ``force_setattr`` go around it. Only a batch that
    fails is looked at message by message, to name the culprit.
    """
    if len(messages) <= _PER_MESSAGE_BATCH:
        # A few messages: checking each directly is cheaper than the batch passes' fixed cost.
        for i, m in enumerate(messages):
            if not _message_is_valid(m):
                _check_message(m, start + i, thread_id)
        return
    if _batch_is_valid(messages):
        return
    for i, message in enumerate(messages):
        _check_message(message, start + i, thread_id)
    raise AssertionError("the batch check and the per-message checks disagree")  # pragma: no cover


def encode_messages(messages: Sequence[AgentMessage], start: int = 0, thread_id: Optional[str] = None) -> List[bytes]:
    """Validate and encode ``messages`` (one blob each), numbering them from ``start`` in error messages.

    Validation is complete without decoding anything back: :func:`check_messages`
    covers every field a decode would type-check, and the encoder refuses
    what msgpack cannot hold (an int beyond 64 bits).
    """
    check_messages(messages, start, thread_id)
    encode = _encoder.encode
    try:
        return [_FORMAT_PREFIX + encode(m) for m in messages]
    except (TypeError, ValueError, OverflowError):
        pass
    for i, message in enumerate(messages):  # name the message that cannot be encoded
        try:
            encode(message)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"messages[{start + i}] cannot be encoded: {exc}", thread_id=thread_id) from exc
    raise AssertionError("unreachable: the batch failed to encode but every message encodes")  # pragma: no cover


def encode_message(message: AgentMessage, index: int = 0, thread_id: Optional[str] = None) -> bytes:
    """Validate and encode one message; ``index`` only names it in errors."""
    return encode_messages([message], index, thread_id)[0]


def _array_header(length: int) -> bytes:
    if length < 16:
        return bytes([0x90 | length])
    if length < 0x10000:
        return b"\xdc" + struct.pack(">H", length)
    return b"\xdd" + struct.pack(">I", length)


def stream_matches(messages: Sequence[AgentMessage], encoded: bytes) -> bool:
    """Whether ``messages`` encode to exactly ``encoded`` (stored messages, concatenated): one encoder call.

    The stored form of a message is its format byte (a msgpack integer)
    followed by msgpack, so the stored form of ``messages`` is the msgpack
    array ``[1, m1, 1, m2, ...]`` without its header. Equal bytes are valid
    by construction; anything that cannot be encoded does not match.
    """
    count = len(messages)
    if not count:
        return not encoded
    items: List[Any] = [FORMAT_VERSION] * (2 * count)
    items[1::2] = messages
    try:
        out = _encoder.encode(items)
    except (TypeError, ValueError, OverflowError):
        return False
    header = len(_array_header(2 * count))
    return len(out) - header == len(encoded) and out.startswith(encoded, header)


def _loads_back(blob: bytes, decoder: "msgspec.msgpack.Decoder[Any]", what: str, thread_id: Optional[str]) -> bytes:
    # TodoItem and HitlInterrupt are mutable and do not type-check assignments (a status typo,
    # an int name): refuse now rather than store bytes no load can read. Heads are small.
    try:
        decoder.decode(memoryview(blob)[1:])
    except msgspec.ValidationError as exc:
        raise SerializationError(f"{what} has a value of the wrong type: {exc}", thread_id=thread_id) from exc
    return blob


def encode_head(state: AgentStateSnapshot, thread_id: Optional[str] = None) -> bytes:
    """Validate and encode the head part (todos, interrupt, metadata) of a snapshot."""
    if not isinstance(state, AgentStateSnapshot):
        raise SerializationError(f"expected an AgentStateSnapshot, got {type(state).__name__}", thread_id=thread_id)
    ensure_json_like(state.metadata, "metadata", thread_id)
    for i, todo in enumerate(state.todos):
        if type(todo) is not TodoItem:
            raise SerializationError(f"todos[{i}] is a {type(todo).__name__}, not a TodoItem", thread_id=thread_id)
    interrupt = state.current_interrupt
    if interrupt is not None:
        if type(interrupt) is not HitlInterrupt:
            raise SerializationError("current_interrupt is not a HitlInterrupt", thread_id=thread_id)
        ensure_json_like(interrupt.tool_args, "current_interrupt.tool_args", thread_id)
    record = HeadRecord(todos=state.todos, current_interrupt=interrupt, metadata=state.metadata)
    try:
        blob = _FORMAT_PREFIX + _encoder.encode(record)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"snapshot head cannot be encoded: {exc}", thread_id=thread_id) from exc
    return _loads_back(blob, _head_decoder, "the snapshot head (todos, current_interrupt, metadata)", thread_id)


def _newer_format_error(what: str, version: int, thread_id: Optional[str]) -> UnsupportedFormatError:
    return UnsupportedFormatError(
        f"thread {thread_id!r}: {what} has format version {version}, newer than this agents_persist "
        f"understands ({FORMAT_VERSION}); upgrade agents_persist",
        thread_id=thread_id,
    )


def _split_format(blob: bytes, what: str, thread_id: Optional[str]) -> memoryview:
    if not blob:
        raise CorruptSnapshotError(f"thread {thread_id!r}: {what} is empty", thread_id=thread_id)
    version = blob[0]
    if version > FORMAT_VERSION:
        raise _newer_format_error(what, version, thread_id)
    if version != FORMAT_VERSION:
        # Older formats would be upgraded here; version 0 never existed.
        raise CorruptSnapshotError(f"thread {thread_id!r}: {what} has unknown format version {version}", thread_id=thread_id)
    return memoryview(blob)[1:]


def _decode(blob: bytes, decoder: "msgspec.msgpack.Decoder[Any]", what: str, thread_id: Optional[str]) -> Any:
    body = _split_format(blob, what, thread_id)
    try:
        return decoder.decode(body)
    except _UNDECODABLE as exc:
        raise CorruptSnapshotError(f"thread {thread_id!r}: {what} is corrupt: {exc}", thread_id=thread_id) from exc


def decode_message(blob: bytes, thread_id: Optional[str] = None) -> AgentMessage:
    """Decode one stored message, raising :class:`CorruptSnapshotError` naming the thread."""
    return cast(AgentMessage, _decode(blob, _message_decoder, "a stored message", thread_id))


def decode_message_stream(data: bytes, count: int, thread_id: Optional[str] = None) -> List[AgentMessage]:
    """Decode ``count`` stored messages concatenated in ``data``, in one msgspec call.

    A stored message is its format byte followed by msgpack; the format byte
    (1) is itself a msgpack integer, so ``count`` concatenated messages are
    ``2 * count`` msgpack values: prefixed with an array header they decode at
    once, about 40% faster than one call per message. Backends that keep many
    messages in one value (a chunk) pass it here without splitting it.
    """
    try:
        values = _stream_decoder.decode(b"\xdd" + struct.pack(">I", 2 * count) + data)
    except _UNDECODABLE as exc:
        if data and data[0] > FORMAT_VERSION:
            raise _newer_format_error("a stored message", data[0], thread_id) from exc
        raise CorruptSnapshotError(f"thread {thread_id!r}: the stored messages are corrupt: {exc}", thread_id=thread_id) from exc
    versions = values[0::2]
    if versions.count(FORMAT_VERSION) != count:
        newest = max((v for v in versions if type(v) is int), default=FORMAT_VERSION)
        if newest > FORMAT_VERSION:
            raise _newer_format_error("a stored message", newest, thread_id)
        raise CorruptSnapshotError(f"thread {thread_id!r}: the stored messages are corrupt", thread_id=thread_id)
    messages = values[1::2]
    if count and set(map(type, messages)) != {AgentMessage}:
        raise CorruptSnapshotError(f"thread {thread_id!r}: the stored messages are corrupt", thread_id=thread_id)
    return cast(List[AgentMessage], messages)


def decode_messages(
    blobs: Iterable[bytes], thread_id: Optional[str] = None, *, joined: Optional[bytes] = None
) -> List[AgentMessage]:
    """Decode stored messages (one blob each) in order, in one msgspec call.

    ``joined`` is ``b"".join(blobs)`` when the caller has it already (a
    thread's log is large: joining it twice costs as much as the checks).
    If decoding fails, each blob is decoded on its own so the error says
    exactly what is wrong (corrupt, or written by a newer format).
    """
    blobs = blobs if isinstance(blobs, list) else list(blobs)
    try:
        return decode_message_stream(b"".join(blobs) if joined is None else joined, len(blobs), thread_id)
    except CorruptSnapshotError:
        for blob in blobs:
            decode_message(blob, thread_id)
        raise


def decode_head(blob: bytes, thread_id: Optional[str] = None) -> HeadRecord:
    """Decode a stored head, raising :class:`CorruptSnapshotError` naming the thread."""
    return cast(HeadRecord, _decode(blob, _head_decoder, "the stored head", thread_id))


_applied_decoder = msgspec.msgpack.Decoder(Tuple[Tuple[str, int], ...])


def encode_applied(applied: Sequence[Tuple[str, int]]) -> bytes:
    """Encode a thread's recorded idempotency keys (key, version) for a store column or field."""
    return _encoder.encode(applied)


def decode_applied(blob: Optional[bytes], thread_id: Optional[str] = None) -> Tuple[Tuple[str, int], ...]:
    """Decode recorded idempotency keys; an absent value is none recorded."""
    if not blob:
        return ()
    try:
        return _applied_decoder.decode(blob)
    except _UNDECODABLE as exc:
        raise CorruptSnapshotError(
            f"thread {thread_id!r}: the stored idempotency keys are corrupt: {exc}", thread_id=thread_id
        ) from exc


def new_digest() -> bytes:
    """A fresh random token naming one written message log (count and token identify a stored prefix).

    A write stores a new token with every change of the log, so a writer
    that names ``(count, token)`` names exactly the log it read or wrote:
    nobody else can produce the same token. Content is compared as bytes
    (:func:`stream_matches`), never through the token, so hashing the
    messages is unnecessary.
    """
    return os.urandom(DIGEST_SIZE)
