"""Redis through Sentinel (``redis+sentinel://``): writers keep going while the primary fails over.

One run, two failovers: ``SENTINEL FAILOVER`` (coordinated, no process dies),
then SIGKILL of the new primary by PID (the old one, now a replica, is
promoted). The servers run with ``min-replicas-to-write 1`` /
``min-replicas-max-lag 1``, the setting docs/backends/redis.rst recommends.
Checked: every call returns or raises a library error within its bound;
the same checkpointer serves again after each failover, never rebuilt;
no write shows up that was refused outright; and every acknowledged
message is still there, except one acknowledged in the last moment before
the SIGKILL (Redis replicates asynchronously; see the docs). The figures
are printed for the closing note (``-s`` shows them).
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from agents_persist import AgentMessage, AgentsPersistError, BackendUnavailableError, ConflictError, from_url
from tests.servers.redis import RedisSentinelGroup

TIMEOUT = 1.0
#: A call may ask the sentinels (connect + reply), connect to the primary and wait for its reply.
CALL_BOUND = 4 * TIMEOUT + 1.0
WRITERS = 4
#: An acknowledged write may be lost only if it was acknowledged this shortly before the primary was killed.
LOSS_WINDOW = 1.0

DURABLE_ARGS = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "1"]


@pytest.fixture
def group(tmp_path: Path) -> RedisSentinelGroup:
    group = RedisSentinelGroup.start(tmp_path, extra_args=DURABLE_ARGS)
    yield group
    group.stop()


def test_writers_survive_failover_and_sigkill_of_the_primary(group: RedisSentinelGroup) -> None:
    cp = from_url(group.url, timeout=TIMEOUT)
    base = f"failover-{uuid.uuid4().hex[:8]}-"
    stop = threading.Event()
    acked: Dict[str, List[Tuple[str, float]]] = collections.defaultdict(list)  # thread -> (text, time acknowledged)
    refused: Dict[str, List[str]] = collections.defaultdict(list)  # certainly not applied
    errors: collections.Counter[str] = collections.Counter()
    untyped: List[BaseException] = []
    slowest = [0.0]
    operations = [0]

    def writer(w: int) -> None:
        tid = f"{base}{w}"
        i = 0
        while not stop.is_set():
            i += 1
            text = f"w{w}-{i}"
            started = time.monotonic()
            try:
                if i % 2:
                    cp.update(tid, lambda s, text=text: s.messages.append(AgentMessage.user(text)))
                else:
                    cp.append(tid, [AgentMessage.user(text)])
                acked[tid].append((text, time.monotonic()))
            except BackendUnavailableError as exc:
                errors[f"BackendUnavailableError(maybe_applied={exc.maybe_applied})"] += 1
                if not exc.maybe_applied:
                    refused[tid].append(text)
                time.sleep(0.05)
            except ConflictError:
                errors["ConflictError"] += 1  # an append after a lost write: expected_version no longer matches
            except AgentsPersistError as exc:
                errors[type(exc).__name__] += 1
            except BaseException as exc:  # noqa: BLE001 - the test fails on any
                untyped.append(exc)
            finally:
                slowest[0] = max(slowest[0], time.monotonic() - started)
                operations[0] += 1

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(WRITERS)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        first = group.primary_port()
        group.failover()
        second = group.wait_primary_other_than(first, timeout=20)
        time.sleep(3.0)
        killed_at = time.monotonic()
        second.kill()
        third = group.wait_primary_other_than(second.port, timeout=30)
        failover_seconds = time.monotonic() - killed_at
        # The killed server comes back as a replica of the new primary (so min-replicas-to-write is met again).
        second.extra_args = [*DURABLE_ARGS, "--repl-diskless-sync-delay", "0", "--replicaof", third.host, str(third.port)]
        second.restart()
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    assert not untyped, untyped
    assert slowest[0] < CALL_BOUND, f"a call took {slowest[0]:.2f}s"
    # The same checkpointer, never rebuilt, serves the new primary.
    after = f"{base}after"
    cp.append(after, [AgentMessage.user("after the failovers")])
    assert [m.content for m in cp.load(after).messages] == ["after the failovers"]

    lost: List[Tuple[str, str, float]] = []
    total_acked = 0
    for w in range(WRITERS):
        tid = f"{base}{w}"
        stored = {m.content for m in (cp.load(tid).messages if cp.load(tid) else [])}
        assert not stored & set(refused[tid]), "a write refused with maybe_applied=False was applied"
        total_acked += len(acked[tid])
        lost += [(tid, text, at) for text, at in acked[tid] if text not in stored]
    print(
        f"\nsentinel failover run: {operations[0]} operations, 2 failovers (SENTINEL FAILOVER, SIGKILL; "
        f"promotion {failover_seconds:.1f}s after the kill), {total_acked} acknowledged, errors {dict(errors)}, "
        f"slowest call {slowest[0]:.2f}s, lost acknowledged {len(lost)}"
    )
    assert all(killed_at - LOSS_WINDOW <= at <= killed_at for _, _, at in lost), lost
    for info in list(cp.iter_threads(base)):
        cp.delete(info.thread_id)
    cp.close()


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://127.0.0.1:1", "redis+sentinel://127.0.0.1:1/svc/x", "redis+sentinel://127.0.0.1:1/svc/0/1", "redis+sentinel:///svc"],
)
def test_sentinel_url_needs_hosts_and_a_service(url: str) -> None:
    from agents_persist import ConfigurationError

    with pytest.raises(ConfigurationError):
        from_url(url)


def test_sentinel_url_carries_database_credentials_and_tls_options() -> None:
    cp = from_url("rediss+sentinel://u:secret@127.0.0.1:1,127.0.0.1:2/svc/3?ssl_ca_certs=/ca.pem", timeout=TIMEOUT)
    try:
        pool = cp.store.connection.client().connection_pool  # type: ignore[attr-defined]
        kwargs = pool.connection_kwargs
        assert (pool.service_name, kwargs["db"], kwargs["username"], kwargs["ssl_ca_certs"]) == ("svc", 3, "u", "/ca.pem")
        assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
        assert "secret" not in repr(cp)
        with pytest.raises(BackendUnavailableError) as info:  # no sentinel listens there
            cp.load("t")
        assert info.value.maybe_applied is False and "secret" not in str(info.value)
    finally:
        cp.close()
