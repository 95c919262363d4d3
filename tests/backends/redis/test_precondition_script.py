"""The save precondition as ``scripts/write.lua`` checks it, against the shared table of cases.

Each case of :data:`tests.contract.precondition_cases.CASES` runs through
:meth:`RedisStore.write` on the session server and on the session cluster,
once with a few messages (sent inline to the script) and once with enough
for a whole log to be staged first. The stored head and log are set up with
raw commands under a thread ID of the test's own. The cases with an empty
stored prefix also check that the script's empty digest is
``codec.EMPTY_DIGEST`` (``DIGEST_SIZE`` is a literal in the ``.lua`` file).
"""

from __future__ import annotations

from typing import Any, Iterator, Tuple

import pytest

from agents_persist import ConflictError, RedisCheckpointer
from agents_persist.backends.redis import RedisStore
from agents_persist.backends.redis.store import STAGE_MIN_MESSAGES
from agents_persist.planning import Decision, PrefixMismatch
from tests.contract.precondition_cases import CASES, PreconditionCase

#: Messages a write carries: inline, and enough to stage a whole log.
PAYLOADS = {"inline": 2, "staged": STAGE_MIN_MESSAGES + 8}


@pytest.fixture(params=["redis", "redis_cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    """The store of a checkpointer on the session server, then on the session cluster."""
    spec = request.getfixturevalue(f"{request.param}_spec")
    cp = RedisCheckpointer.from_url(spec.url, **spec.options)
    try:
        yield cp.store
    finally:
        cp.close()


def stored_state(client: Any, keys: Tuple[str, str]) -> Tuple[int, int]:
    """(version in the head or 0, length of the log), read with raw commands."""
    version = client.hget(keys[0], "v")
    return (0 if version is None else int(version)), int(client.llen(keys[1]))


@pytest.mark.parametrize("payload", PAYLOADS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_write_script_decides_each_case(store: RedisStore, prefix: str, case: PreconditionCase, payload: str) -> None:
    client = store.connection.client()
    thread_id = f"{prefix}precondition"
    keys = store._keys(thread_id)
    if case.stored is not None:
        version, count, digest = case.stored
        client.hset(keys[0], mapping={"v": version, "n": count, "d": digest, "h": b"\x01\x80", "u": "1699999999.0"})
        client.rpush(keys[1], *[b"old %d" % i for i in range(count)])
    write = case.write([b"new %d" % i for i in range(PAYLOADS[payload])])
    before = stored_state(client, keys)
    try:
        if case.decision is Decision.APPLY:
            assert store.write(thread_id, write) == case.scalars()[0] + 1
            assert stored_state(client, keys) == (case.scalars()[0] + 1, write.message_count)
        else:
            expected_error = ConflictError if case.decision is Decision.CONFLICT else PrefixMismatch
            with pytest.raises(expected_error) as info:
                store.write(thread_id, write)
            if isinstance(info.value, ConflictError):
                assert info.value.actual_version == case.scalars()[0]
                assert info.value.expected_version == case.expected_version
            assert stored_state(client, keys) == before, "a refused write must change nothing"
        assert client.keys(f"{keys[1]}:stage:*") == [], "no staging list may stay behind"
    finally:
        store.delete(thread_id)
        client.delete(*keys)
