"""The save precondition as ``scripts/write.lua`` checks it, against the shared table of cases.

Each case of :data:`tests.contract.precondition_cases.CASES` runs through
:meth:`RedisStore.write` on the session server and on the session cluster,
once with a few messages (sent inline to the script) and once with enough
for a whole log to be staged first. The stored head and log are set up with
raw commands under a thread ID of the test's own: a live thread's head has
generation ``STORED_GENERATION`` (field ``g``) and the applied key
``APPLIED_KEY`` (field ``a``, in the encoding of :mod:`...redis.layout`).
The cases with an empty stored prefix also check that the script's empty
digest is ``codec.EMPTY_DIGEST`` (``DIGEST_SIZE`` is a literal in the ``.lua``
file). The other tests here cover what the script keeps besides the
decision: the applied keys (bounded), the head blob of ``keep_head``, and
generations of 63 bits (which a Lua number would round).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple

import pytest
from msgspec.structs import replace

from agents_persist import ConflictError, CorruptSnapshotError, RedisCheckpointer
from agents_persist.backends.redis import RedisStore
from agents_persist.backends.redis.layout import decode_applied, encode_applied
from agents_persist.backends.redis.store import STAGE_MIN_BYTES
from agents_persist.planning import MAX_APPLIED_KEYS, Decision, PlannedWrite, PrefixMismatch, Written, record_applied
from tests.contract.precondition_cases import (
    APPLIED_KEY,
    APPLIED_VERSION,
    CASES,
    LIVE,
    NEW_GENERATION,
    STORED_GENERATION,
    PreconditionCase,
)

#: Messages a write carries: inline, and enough (40 of 2 KiB each) to stage a whole log.
PAYLOADS = {"inline": 2, "staged": 40}
_PAD = b"." * (STAGE_MIN_BYTES // 32)
STORED_HEAD = b"\x01stored"


@pytest.fixture(params=["redis", "redis_cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    """The store of a checkpointer on the session server, then on the session cluster."""
    spec = request.getfixturevalue(f"{request.param}_spec")
    cp = RedisCheckpointer.from_url(spec.url, **spec.options)
    try:
        yield cp.store
    finally:
        cp.close()


@pytest.fixture
def thread(store: RedisStore, prefix: str) -> Iterator[Tuple[str, Tuple[str, str]]]:
    """A thread ID of this test and its keys, removed afterwards."""
    thread_id = f"{prefix}precondition"
    keys = store._keys(thread_id)
    yield thread_id, keys
    store.delete(thread_id)
    store.connection.client().delete(*keys)


def stored_state(client: Any, keys: Tuple[str, str]) -> Tuple[Dict[bytes, bytes], List[bytes]]:
    """The whole head hash and log, read with raw commands."""
    return client.hgetall(keys[0]), client.lrange(keys[1], 0, -1)


def set_up_live(client: Any, keys: Tuple[str, str], version: int, count: int, digest: bytes) -> None:
    """A live thread as the cases describe it, written with raw commands."""
    client.hset(
        keys[0],
        mapping={
            "v": version,
            "n": count,
            "d": digest,
            "h": STORED_HEAD,
            "u": "1699999999.0",
            "g": STORED_GENERATION,
            "a": encode_applied(((APPLIED_KEY, APPLIED_VERSION),)),
        },
    )
    if count:
        client.rpush(keys[1], *[b"old %d" % i for i in range(count)])


@pytest.mark.parametrize("payload", PAYLOADS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_write_script_decides_each_case(
    store: RedisStore, thread: Tuple[str, Tuple[str, str]], case: PreconditionCase, payload: str
) -> None:
    client = store.connection.client()
    thread_id, keys = thread
    if case.stored is not None:
        set_up_live(client, keys, *case.stored)
    write = case.write([b"new %d" % i + (_PAD if payload == "staged" else b"") for i in range(PAYLOADS[payload])])
    version, _, _, generation, applied = case.scalars()
    before = stored_state(client, keys)
    if case.decision is Decision.APPLY:
        expected_generation = generation if case.stored is not None else NEW_GENERATION
        assert store.write(thread_id, write) == Written(version + 1, expected_generation)
        head, log = stored_state(client, keys)
        assert int(head[b"v"]) == version + 1 and int(head[b"k"]) == len(log)
        stored_prefix = b"".join(b"old %d" % i for i in range(write.append_from or 0))
        assert b"".join(log) == stored_prefix + b"".join(write.messages), "the log holds the old prefix and the new messages"
        assert int(head[b"g"]) == expected_generation
        assert decode_applied(head.get(b"a")) == record_applied(applied, case.idempotency_key, version + 1)
        assert head[b"h"] == write.head
    elif case.decision is Decision.DUPLICATE:
        assert store.write(thread_id, write) == Written(APPLIED_VERSION, STORED_GENERATION, duplicate=True)
        assert stored_state(client, keys) == before, "a duplicate must write nothing"
    else:
        expected_error = ConflictError if case.decision is Decision.CONFLICT else PrefixMismatch
        with pytest.raises(expected_error) as info:
            store.write(thread_id, write)
        if isinstance(info.value, ConflictError):
            assert info.value.actual_version == version
            assert info.value.expected_version == case.expected_version
        assert stored_state(client, keys) == before, "a refused write must change nothing"
    assert client.keys(f"{keys[1]}:stage:*") == [], "no staging list may stay behind"


def _unchecked(key: str, head: bytes = b"\x01new", *, keep_head: bool = False, new_generation: int = 5) -> PlannedWrite:
    return PlannedWrite(
        expected_version=None,
        append_from=None,
        base_digest=bytes(16),
        messages=[b"m"],
        message_count=1,
        digest=bytes(range(16)),
        head=head,
        updated_at=1_700_000_000.0,
        expires_at=None,
        new_generation=new_generation,
        keep_head=keep_head,
        idempotency_key=key,
    )


def test_applied_keys_are_bounded_newest_last(store: RedisStore, thread: Tuple[str, Tuple[str, str]]) -> None:
    thread_id, keys = thread
    # Keys of every byte length class, including ones that look like the encoding itself.
    names = [f"k{i}:{'é' * i}:9:" for i in range(MAX_APPLIED_KEYS + 3)]
    for version, name in enumerate(names, 1):
        assert store.write(thread_id, _unchecked(name)).version == version
    stored = store.read(thread_id)
    assert stored is not None
    assert stored.applied == tuple((name, v) for v, name in enumerate(names, 1))[-MAX_APPLIED_KEYS:]
    assert store.write(thread_id, _unchecked(names[-MAX_APPLIED_KEYS])).duplicate
    assert not store.write(thread_id, _unchecked(names[0])).duplicate, "a key dropped from the bound applies again"
    head = store.read_head(thread_id)
    assert head is not None and head.applied[-1] == (names[0], len(names) + 1)


def test_keep_head_keeps_a_live_threads_head_only(store: RedisStore, thread: Tuple[str, Tuple[str, str]]) -> None:
    thread_id, keys = thread
    client = store.connection.client()
    assert store.write(thread_id, _unchecked("a", b"\x01first", keep_head=True)).version == 1
    assert client.hget(keys[0], "h") == b"\x01first", "a new thread takes the write's head"
    assert store.write(thread_id, _unchecked("b", b"\x01second", keep_head=True)).version == 2
    assert client.hget(keys[0], "h") == b"\x01first"


def test_generations_of_63_bits_survive_exactly(store: RedisStore, thread: Tuple[str, Tuple[str, str]]) -> None:
    thread_id, keys = thread
    big = (1 << 63) - 3  # a double would round it to 2**63
    assert store.write(thread_id, _unchecked(None, new_generation=big)) == Written(1, big)
    head = store.read_head(thread_id)
    assert head is not None and head.generation == big
    checked = replace(_unchecked(None), expected_version=1, expected_generation=big - 1)
    with pytest.raises(ConflictError):
        store.write(thread_id, checked)
    checked = replace(_unchecked(None), expected_version=1, expected_generation=big)
    assert store.write(thread_id, checked) == Written(2, big)


def test_threads_stored_before_generations_have_generation_0(store: RedisStore, thread: Tuple[str, Tuple[str, str]]) -> None:
    thread_id, keys = thread
    client = store.connection.client()
    version, count, digest = LIVE
    set_up_live(client, keys, version, count, digest)
    client.hdel(keys[0], "g", "a")
    head = store.read_head(thread_id)
    assert head is not None and (head.generation, head.applied) == (0, ())
    checked = replace(_unchecked("k"), expected_version=version, expected_generation=0)
    assert store.write(thread_id, checked) == Written(version + 1, 0)
    assert client.hget(keys[0], "g") is None, "a live thread keeps its own generation"


def test_corrupt_applied_keys_are_reported(store: RedisStore, thread: Tuple[str, Tuple[str, str]]) -> None:
    thread_id, keys = thread
    client = store.connection.client()
    assert store.write(thread_id, _unchecked("k")).version == 1
    client.hset(keys[0], "a", b"1:99:short")
    before = stored_state(client, keys)
    calls = (lambda: store.read(thread_id), lambda: store.read_head(thread_id), lambda: store.write(thread_id, _unchecked("j")))
    for call in calls:
        with pytest.raises(CorruptSnapshotError) as info:
            call()
        assert info.value.thread_id == thread_id
    assert stored_state(client, keys) == before

