"""Stored bytes: round trips, format versions, corruption handling, JSON-likeness, digests."""

from __future__ import annotations

import enum
import math
import sqlite3
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator, List, Tuple

import msgspec
import pytest

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    Checkpointer,
    CorruptSnapshotError,
    HitlInterrupt,
    InMemoryCheckpointer,
    SerializationError,
    SqliteCheckpointer,
    TodoItem,
    ToolCall,
    UnsupportedFormatError,
    codec,
)
from agents_persist.codec import EMPTY_DIGEST, FORMAT_VERSION, ensure_json_like, new_digest

TID = "thread-Ω-1"


def sample_messages() -> List[AgentMessage]:
    return [
        AgentMessage.system("You are careful."),
        AgentMessage.user("Find flights ✈"),
        AgentMessage.assistant(None, tool_calls=[ToolCall(id="c1", name="search", arguments={"to": "OSL", "pax": 1})]),
        AgentMessage.tool({"flights": [{"id": "SK1", "price": 99.5}]}, tool_call_id="c1", name="search"),
        AgentMessage.assistant([{"type": "text", "text": "SK1"}], metadata={"tokens": 7, "nested": {"x": [None, True]}}),
    ]


def sample_snapshot() -> AgentStateSnapshot:
    return AgentStateSnapshot(
        messages=sample_messages(),
        todos=[TodoItem("search", "completed", id="1"), TodoItem("book")],
        current_interrupt=HitlInterrupt(
            tool_name="book",
            tool_args={"flight": "SK1"},
            call_id="c2",
            policy_note="needs approval",
            created_at=datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc),
        ),
        metadata={"user": {"id": 42}, "flags": [1, 2.5, None, False], "empty": {}},
    )


# ---------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("message", sample_messages())
def test_message_round_trip(message: AgentMessage) -> None:
    blob = codec.encode_message(message)
    assert isinstance(blob, bytes)
    assert blob[0] == FORMAT_VERSION
    decoded = codec.decode_message(blob, TID)
    assert decoded == message
    assert type(decoded.tool_calls) is tuple


def test_head_round_trip() -> None:
    snapshot = sample_snapshot()
    blob = codec.encode_head(snapshot, TID)
    assert blob[0] == FORMAT_VERSION
    head = codec.decode_head(blob, TID)
    assert (head.todos, head.current_interrupt, head.metadata) == (
        snapshot.todos,
        snapshot.current_interrupt,
        snapshot.metadata,
    )
    assert head.current_interrupt is not None and head.current_interrupt.created_at.tzinfo is not None


def test_empty_head_round_trip() -> None:
    head = codec.decode_head(codec.encode_head(AgentStateSnapshot()), TID)
    assert (head.todos, head.current_interrupt, head.metadata) == ([], None, {})


def test_encoding_is_deterministic() -> None:
    assert codec.encode_message(sample_messages()[2]) == codec.encode_message(sample_messages()[2])
    assert codec.encode_head(sample_snapshot()) == codec.encode_head(sample_snapshot())


def test_encode_message_rejects_non_json_content_naming_thread_and_index() -> None:
    with pytest.raises(SerializationError, match=r"messages\[3\]") as info:
        codec.encode_message(AgentMessage.user(("a", "tuple")), 3, TID)
    assert info.value.thread_id == TID


def test_encode_head_rejects_a_non_snapshot() -> None:
    with pytest.raises(SerializationError):
        codec.encode_head({"messages": []}, TID)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- bad blobs


def _body(blob: bytes) -> bytes:
    return blob[1:]


@pytest.mark.parametrize("decode", [codec.decode_message, codec.decode_head], ids=["message", "head"])
@pytest.mark.parametrize("newer", [FORMAT_VERSION + 1, 255])
def test_newer_format_byte_is_unsupported_and_names_the_thread(decode: Callable[..., Any], newer: int) -> None:
    good = (
        codec.encode_message(AgentMessage.user("hi")) if decode is codec.decode_message else codec.encode_head(sample_snapshot())
    )
    blob = bytes([newer]) + _body(good)
    with pytest.raises(UnsupportedFormatError) as info:
        decode(blob, TID)
    assert info.value.thread_id == TID
    assert repr(TID) in str(info.value) or TID in str(info.value)
    assert str(newer) in str(info.value)
    assert isinstance(info.value, CorruptSnapshotError)  # callers catching corruption see it too


GOOD_MESSAGE = codec.encode_message(sample_messages()[3])
GOOD_HEAD = codec.encode_head(sample_snapshot())


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        bytes([0]) + _body(GOOD_MESSAGE),  # format 0 never existed
        bytes([FORMAT_VERSION]),  # format byte only
        GOOD_MESSAGE[: len(GOOD_MESSAGE) // 2],  # truncated
        GOOD_MESSAGE[:-1],
        GOOD_MESSAGE + b"\x00",  # trailing bytes
        bytes([FORMAT_VERSION]) + b"\xc1\xc1\xc1",  # 0xc1 is never valid msgpack
        bytes([FORMAT_VERSION]) + msgspec.msgpack.encode([1, 2, 3]),  # valid msgpack, wrong shape
        bytes([FORMAT_VERSION]) + msgspec.msgpack.encode({"role": "bot", "content": "x"}),  # bad role
        bytes([FORMAT_VERSION]) + msgspec.msgpack.encode({"content": "no role"}),
    ],
    ids=["empty", "format0", "prefix-only", "half", "minus1", "trailing", "c1", "array", "bad-role", "no-role"],
)
def test_garbage_message_blob_is_corrupt_and_names_the_thread(blob: bytes) -> None:
    with pytest.raises(CorruptSnapshotError) as info:
        codec.decode_message(blob, TID)
    assert not isinstance(info.value, UnsupportedFormatError)
    assert info.value.thread_id == TID
    assert TID in str(info.value)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        bytes([FORMAT_VERSION]),
        GOOD_HEAD[:-3],
        bytes([FORMAT_VERSION]) + b"\xc1",
        bytes([FORMAT_VERSION]) + msgspec.msgpack.encode({"todos": [{"content": "x", "status": "done"}]}),
        bytes([FORMAT_VERSION]) + msgspec.msgpack.encode({"metadata": [1]}),
    ],
    ids=["empty", "prefix-only", "truncated", "c1", "bad-status", "metadata-list"],
)
def test_garbage_head_blob_is_corrupt_and_names_the_thread(blob: bytes) -> None:
    with pytest.raises(CorruptSnapshotError) as info:
        codec.decode_head(blob, TID)
    assert info.value.thread_id == TID
    assert TID in str(info.value)


# ---------------------------------------------------------------------------------------------- ensure_json_like


def nested_lists(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def nested_dicts(levels: int) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        1.5,
        -0.0,
        "",
        "text ✓",
        [],
        {},
        {"a": [1, 2.5, None, True, "s", {"b": [], "c": {}}], "d": {"e": {"f": [[[]]]}}},
        nested_lists(64),
        nested_dicts(64),
    ],
    ids=lambda v: type(v).__name__,
)
def test_ensure_json_like_accepts(value: Any) -> None:
    ensure_json_like(value, "metadata")


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        frozenset({1}),
        b"bytes",
        bytearray(b"x"),
        datetime(2026, 1, 1, tzinfo=timezone.utc),
        date(2026, 1, 1),
        Decimal("1.5"),
        object(),
        {1: "int key"},
        {("t",): "tuple key"},
        {None: "none key"},
        math.nan,
        math.inf,
        -math.inf,
        {"deep": [1, {"x": (1,)}]},
        {"deep": [1, {"x": float("nan")}]},
        [[{"ok": 1}], [{2: "bad key deep"}]],
        nested_lists(65),
        nested_dicts(65),
        nested_lists(1000),
    ],
    ids=lambda v: type(v).__name__,
)
def test_ensure_json_like_rejects(value: Any) -> None:
    with pytest.raises(SerializationError) as info:
        ensure_json_like(value, "metadata", thread_id=TID)
    assert info.value.thread_id == TID
    assert "metadata" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_ensure_json_like_names_the_path() -> None:
    with pytest.raises(SerializationError, match=r"metadata\['a'\]\[1\]"):
        ensure_json_like({"a": [1, {2, 3}]}, "metadata")


# ---------------------------------------------------------------------------------------------- prefix tokens and byte comparison


def blobs_of(messages: List[AgentMessage]) -> List[bytes]:
    return [codec.encode_message(m) for m in messages]


def test_every_written_log_gets_a_fresh_16_byte_token() -> None:
    tokens = {new_digest() for _ in range(1000)}
    assert len(tokens) == 1000 and all(len(t) == 16 for t in tokens)
    assert EMPTY_DIGEST == bytes(16) and EMPTY_DIGEST not in tokens


def test_stream_matches_exactly_the_stored_bytes() -> None:
    messages = sample_messages()
    stored = b"".join(blobs_of(messages))
    assert codec.stream_matches(messages, stored)
    assert codec.stream_matches([], b"") and not codec.stream_matches([], stored)
    assert not codec.stream_matches(messages[:-1], stored) and not codec.stream_matches(messages[::-1], stored)
    for i, message in enumerate(messages):
        changed = list(messages)
        changed[i] = message.replace(metadata={**message.metadata, "edited": i})
        assert not codec.stream_matches(changed, stored)
    many = [AgentMessage.user(f"m{i}") for i in range(70_000)]  # array headers of all three sizes
    for count in (7, 8, 100, 40_000, 70_000):
        assert codec.stream_matches(many[:count], b"".join(blobs_of(many[:count])))


def test_stream_matches_sees_in_place_edits_and_equal_but_different_values() -> None:
    held = [AgentMessage.user("a", metadata={"n": 1})]
    stored = b"".join(blobs_of(held))
    held[0].metadata["n"] = True  # == 1, other bytes
    assert not codec.stream_matches(held, stored)
    unencodable = [AgentMessage.user("a", metadata={"n": 2**70})]
    assert not codec.stream_matches(unencodable, stored)


def test_appended_and_whole_saves_store_the_same_bytes_with_a_new_token_each() -> None:
    with InMemoryCheckpointer() as cp:
        messages = sample_messages()
        state = AgentStateSnapshot(messages=messages[:2])
        cp.save("batched", state)
        tokens = {cp.store._threads["batched"].digest}
        state.messages.extend(messages[2:4])
        cp.save("batched", state)
        tokens.add(cp.store._threads["batched"].digest)
        state.messages.append(messages[4])
        cp.save("batched", state)
        cp.save("whole", AgentStateSnapshot(messages=list(messages)))
        batched, whole = cp.store._threads["batched"], cp.store._threads["whole"]
        assert batched.messages == whole.messages
        assert len(tokens | {batched.digest, whole.digest}) == 4


# ---------------------------------------------------------------------------------------------- values a save must refuse


def _mutated_todo() -> AgentStateSnapshot:
    todo = TodoItem("book a flight")
    todo.status = "done"  # type: ignore[assignment]  # TodoItem is mutable: a typo is easy
    return AgentStateSnapshot(todos=[todo])


SCHEMA_VIOLATIONS = {
    "todo-status-typo": _mutated_todo,
    "todo-content-int": lambda: AgentStateSnapshot(todos=[TodoItem(5)]),  # type: ignore[arg-type]
    "message-name-int": lambda: AgentStateSnapshot(messages=[AgentMessage.user("hi", name=123)]),
    "tool-call-id-int": lambda: AgentStateSnapshot(messages=[AgentMessage.assistant("", tool_calls=[ToolCall(id=1, name="f")])]),  # type: ignore[arg-type]
    "message-metadata-list": lambda: AgentStateSnapshot(messages=[AgentMessage.user("hi", metadata=[1])]),  # type: ignore[arg-type]
    "snapshot-metadata-list": lambda: AgentStateSnapshot(metadata=[1, 2]),  # type: ignore[arg-type]
    "interrupt-created-at-str": lambda: AgentStateSnapshot(current_interrupt=HitlInterrupt("t", created_at="yesterday")),  # type: ignore[arg-type]
    # the provider fields (agents_persist.formats): not type-checked at construction, so by the codec
    "refusal-int": lambda: AgentStateSnapshot(messages=[AgentMessage.assistant("", refusal=7)]),
    "item-type-list": lambda: AgentStateSnapshot(messages=[AgentMessage.assistant("", item_type=["reasoning"])]),
    "item-id-int": lambda: AgentStateSnapshot(messages=[AgentMessage.user("hi", item_id=3)]),
    "status-bytes": lambda: AgentStateSnapshot(messages=[AgentMessage.user("hi", status=b"completed")]),
    "extra-list": lambda: AgentStateSnapshot(messages=[AgentMessage.user("hi", extra=["openai"])]),
    "message-metadata-none": lambda: AgentStateSnapshot(messages=[AgentMessage.user("hi", metadata=None)]),
    "extra-none": lambda: AgentStateSnapshot(messages=[AgentMessage.user("hi", extra=None)]),
    "extra-not-json-like": lambda: AgentStateSnapshot(messages=[AgentMessage.user("hi", extra={"openai": {"audio": {1, 2}}})]),
    "extra-non-str-key": lambda: AgentStateSnapshot(messages=[AgentMessage.user("hi", extra={"responses": {1: "x"}})]),
    "raw-arguments-changed-in-place": lambda: AgentStateSnapshot(messages=[_assistant_with_arguments_changed_in_place()]),
    # construction checks role and tool call types; these go around it, so the codec checks them too
    "role-replaced-around-the-check": lambda: AgentStateSnapshot(
        messages=[msgspec.structs.replace(AgentMessage.user("hi"), role="usr")]  # type: ignore[arg-type]
    ),
    "role-unhashable": lambda: AgentStateSnapshot(messages=[_forced(AgentMessage.user("hi"), "role", ["user"])]),
    "role-a-str-enum": lambda: AgentStateSnapshot(messages=[AgentMessage(role=_Role.USER, content="hi")]),  # type: ignore[arg-type]
    "tool-call-a-dict": lambda: AgentStateSnapshot(
        messages=[_forced(AgentMessage.assistant(""), "tool_calls", ({"id": "c1", "name": "f"},))]
    ),
}


class _Role(str, enum.Enum):
    """A role an application might keep as an enum: equal to "user", but not a str."""

    USER = "user"


def _forced(message: AgentMessage, field: str, value: Any) -> AgentMessage:
    msgspec.structs.force_setattr(message, field, value)
    return message


def _assistant_with_arguments_changed_in_place() -> AgentMessage:
    call = ToolCall(id="c1", name="f", raw_arguments='{"a":1}')
    call.arguments["a"] = 2  # what the tool would get no longer matches what the model sent
    return AgentMessage.assistant(None, tool_calls=[call])


MESSAGE_VIOLATIONS = {name: make for name, make in SCHEMA_VIOLATIONS.items() if make().messages}


@pytest.mark.parametrize("size", [1, 9])  # the per-message path (up to 4 messages) and the batch path
@pytest.mark.parametrize("make", list(MESSAGE_VIOLATIONS.values()), ids=list(MESSAGE_VIOLATIONS))
def test_a_bad_message_is_refused_alone_and_in_a_batch(make: Callable[[], AgentStateSnapshot], size: int) -> None:
    state = make()
    messages = [AgentMessage.user(f"fine {i}") for i in range(size - 1)] + state.messages
    with pytest.raises(SerializationError) as info:
        codec.encode_messages(messages, 0, TID)
    assert f"messages[{size - 1}]" in str(info.value)


def _encode(state: AgentStateSnapshot) -> None:
    codec.encode_head(state, TID)
    codec.encode_messages(state.messages, 0, TID)


@pytest.mark.parametrize("make", list(SCHEMA_VIOLATIONS.values()), ids=list(SCHEMA_VIOLATIONS))
def test_encoding_refuses_values_that_would_not_decode_back(make: Callable[[], AgentStateSnapshot]) -> None:
    """A field of the wrong type must fail encoding with SerializationError, not encode into
    bytes that every later decode reports as corrupt."""
    with pytest.raises(SerializationError) as info:
        _encode(make())
    assert info.value.thread_id == TID


def test_save_of_a_mistyped_todo_writes_nothing_and_keeps_the_thread_loadable(tmp_path: Path) -> None:
    with SqliteCheckpointer(tmp_path / "typo.db", synchronous="NORMAL") as cp:
        state = AgentStateSnapshot(todos=[TodoItem("book a flight")])
        cp.save("trip", state)
        state.todos[0].status = "done"  # type: ignore[assignment]
        with pytest.raises(SerializationError):
            cp.save("trip", state)
        loaded = cp.load("trip")  # the stored thread must stay readable
        assert loaded is not None and loaded.version == 1 and loaded.todos == [TodoItem("book a flight")]


# ---------------------------------------------------------------------------------------------- corrupt stored bytes


def _newer(blob: bytes) -> bytes:
    return bytes([FORMAT_VERSION + 1]) + blob[1:]


def _truncate(blob: bytes) -> bytes:
    return blob[: max(2, len(blob) // 2)]


def _garbage(blob: bytes) -> bytes:
    return bytes([FORMAT_VERSION]) + b"\xc1not msgpack"


CORRUPTIONS: List[Tuple[str, Callable[[bytes], bytes], type]] = [
    ("newer", _newer, UnsupportedFormatError),
    ("truncated", _truncate, CorruptSnapshotError),
    ("garbage", _garbage, CorruptSnapshotError),
    ("empty", lambda blob: b"", CorruptSnapshotError),
]


def _assert_load_fails(cp: Checkpointer, tid: str, error: type) -> None:
    with pytest.raises(error) as info:
        cp.load(tid)
    assert info.value.thread_id == tid
    if error is CorruptSnapshotError:
        assert not isinstance(info.value, UnsupportedFormatError)
    # read-modify-write must refuse too, not overwrite what it cannot read
    with pytest.raises(error):
        cp.update(tid, lambda state: state.metadata.update(touched=True))
    with pytest.raises(error):
        with cp.transaction(tid) as state:
            state.metadata["touched"] = True
    # the thread is still there and listed; the library reports, never repairs
    assert cp.exists(tid) and cp.get_version(tid) > 0
    assert [info.thread_id for info in cp.list_threads()] == [tid]


def _memory_with_thread() -> Tuple[InMemoryCheckpointer, str]:
    cp = InMemoryCheckpointer()
    tid = "corrupt-me"
    cp.save(tid, sample_snapshot())
    return cp, tid


@pytest.mark.parametrize("part", ["head", "message"])
@pytest.mark.parametrize("name,corrupt,error", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_memory_corrupt_stored_bytes(part: str, name: str, corrupt: Callable[[bytes], bytes], error: type) -> None:
    cp, tid = _memory_with_thread()
    stored = cp.store._threads[tid]
    if part == "head":
        bad = msgspec.structs.replace(stored, head=corrupt(stored.head))
    else:
        messages = list(stored.messages)
        messages[2] = corrupt(messages[2])
        bad = msgspec.structs.replace(stored, messages=messages)
    cp.store._threads[tid] = bad
    _assert_load_fails(cp, tid, error)
    assert cp.store._threads[tid] is bad and cp.store._threads[tid] == bad  # untouched


def test_memory_head_listing_more_messages_than_stored() -> None:
    cp, tid = _memory_with_thread()
    stored = cp.store._threads[tid]
    bad = msgspec.structs.replace(stored, messages=stored.messages[:-1])
    cp.store._threads[tid] = bad
    _assert_load_fails(cp, tid, CorruptSnapshotError)
    assert cp.store._threads[tid] == bad


def test_memory_head_listing_fewer_messages_than_stored() -> None:
    cp, tid = _memory_with_thread()
    stored = cp.store._threads[tid]
    bad = msgspec.structs.replace(stored, message_count=stored.message_count - 1)
    cp.store._threads[tid] = bad
    _assert_load_fails(cp, tid, CorruptSnapshotError)
    assert cp.store._threads[tid] == bad


def _dump(path: Path, tid: str) -> Tuple[Any, Any]:
    conn = sqlite3.connect(path)
    try:
        head = conn.execute("SELECT * FROM agents_persist_threads WHERE thread_id = ?", (tid,)).fetchall()
        messages = conn.execute("SELECT * FROM agents_persist_messages WHERE thread_id = ? ORDER BY seq", (tid,)).fetchall()
        return head, messages
    finally:
        conn.close()


def _execute(path: Path, sql: str, params: Tuple[Any, ...]) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            assert conn.execute(sql, params).rowcount == 1
    finally:
        conn.close()


@pytest.fixture
def sqlite_thread(tmp_path: Path) -> Iterator[Tuple[SqliteCheckpointer, Path, str]]:
    path = tmp_path / "corrupt.db"
    tid = "corrupt-me"
    with SqliteCheckpointer(path, synchronous="NORMAL") as cp:
        snapshot = sample_snapshot()
        state = AgentStateSnapshot(messages=snapshot.messages[:1], todos=snapshot.todos, metadata=snapshot.metadata)
        cp.save(tid, state)
        for message in snapshot.messages[1:]:  # one save per message: one log row each (SQLite packs a save's messages)
            state.messages.append(message)
            cp.save(tid, state)
        yield cp, path, tid


@pytest.mark.parametrize("name,corrupt,error", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_sqlite_corrupt_head(
    sqlite_thread: Tuple[SqliteCheckpointer, Path, str], name: str, corrupt: Callable[[bytes], bytes], error: type
) -> None:
    cp, path, tid = sqlite_thread
    (row,), _ = _dump(path, tid)
    head = row[4]
    _execute(path, "UPDATE agents_persist_threads SET head = ? WHERE thread_id = ?", (corrupt(head), tid))
    before = _dump(path, tid)
    _assert_load_fails(cp, tid, error)
    assert _dump(path, tid) == before


@pytest.mark.parametrize("name,corrupt,error", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_sqlite_corrupt_message_row(
    sqlite_thread: Tuple[SqliteCheckpointer, Path, str], name: str, corrupt: Callable[[bytes], bytes], error: type
) -> None:
    cp, path, tid = sqlite_thread
    _, rows = _dump(path, tid)
    assert len(rows) == 5
    _execute(path, "UPDATE agents_persist_messages SET data = ? WHERE thread_id = ? AND seq = 3", (corrupt(rows[3][2]), tid))
    before = _dump(path, tid)
    _assert_load_fails(cp, tid, error)
    assert _dump(path, tid) == before


def test_sqlite_head_listing_more_messages_than_stored(sqlite_thread: Tuple[SqliteCheckpointer, Path, str]) -> None:
    cp, path, tid = sqlite_thread
    _execute(path, "UPDATE agents_persist_threads SET message_count = message_count + 2 WHERE thread_id = ?", (tid,))
    before = _dump(path, tid)
    _assert_load_fails(cp, tid, CorruptSnapshotError)
    assert _dump(path, tid) == before


def test_sqlite_missing_message_row(sqlite_thread: Tuple[SqliteCheckpointer, Path, str]) -> None:
    cp, path, tid = sqlite_thread
    _execute(path, "DELETE FROM agents_persist_messages WHERE thread_id = ? AND seq = 1", (tid,))
    before = _dump(path, tid)
    _assert_load_fails(cp, tid, CorruptSnapshotError)
    assert _dump(path, tid) == before


def test_corrupt_thread_can_still_be_deleted_explicitly(sqlite_thread: Tuple[SqliteCheckpointer, Path, str]) -> None:
    cp, path, tid = sqlite_thread
    _execute(path, "UPDATE agents_persist_threads SET head = ? WHERE thread_id = ?", (b"", tid))
    with pytest.raises(CorruptSnapshotError):
        cp.load(tid)
    assert cp.delete(tid) is True
    assert _dump(path, tid) == ([], [])
    assert cp.load(tid) is None


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_stored_nesting_beyond_the_decoders_budget_is_corrupt_not_a_recursion_error(depth: int) -> None:
    message = b"\x01\x82\xa4role\xa4user\xa7content" + b"\x91" * depth + b"\x01"
    head = b"\x01\x81\xa8metadata\x81\xa1k" + b"\x91" * depth + b"\x01"
    for decode in (
        lambda: codec.decode_message(message, TID),
        lambda: codec.decode_message_stream(message, 1, TID),
        lambda: codec.decode_head(head, TID),
    ):
        with pytest.raises(CorruptSnapshotError) as info:
            decode()
        assert info.value.thread_id == TID
