"""AsyncCheckpointer: every call as a coroutine, no blocked loop, no lost update, clean shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List

import pytest

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    AsyncCheckpointer,
    Checkpointer,
    CheckpointerClosedError,
    ConflictError,
    InMemoryCheckpointer,
    InvalidThreadIdError,
    RedisCheckpointer,
    SqliteCheckpointer,
)


@pytest.fixture(params=["memory", "sqlite"])
def cp(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Checkpointer]:
    checkpointer: Checkpointer
    if request.param == "memory":
        checkpointer = InMemoryCheckpointer()
    else:
        checkpointer = SqliteCheckpointer(tmp_path / "aio.db", synchronous="NORMAL")
    try:
        yield checkpointer
    finally:
        checkpointer.close()


def test_every_call_works_inside_a_running_loop(cp: Checkpointer) -> None:
    async def main() -> None:
        acp = AsyncCheckpointer(cp, close_checkpointer=False)
        try:
            assert await acp.load("a") is None
            assert await acp.exists("a") is False
            assert await acp.get_version("a") == 0
            state = AgentStateSnapshot(messages=[AgentMessage.user("hi")], metadata={"k": 1})
            assert await acp.save("a", state) == 1
            assert state.version == 1
            loaded = await acp.load("a")
            assert loaded is not None and loaded.messages == [AgentMessage.user("hi")] and loaded.metadata == {"k": 1}
            assert await acp.exists("a") is True
            assert await acp.get_version("a") == 1
            # keyword arguments pass through
            with pytest.raises(ConflictError):
                await acp.save("a", AgentStateSnapshot(), expected_version=0)
            assert await acp.save("a", AgentStateSnapshot(metadata={"k": 2}), force=True) == 2
            await acp.save("b", AgentStateSnapshot())
            await acp.save("other", AgentStateSnapshot())
            page = await acp.list_threads()
            assert sorted(info.thread_id for info in page) == ["a", "b", "other"]
            page = await acp.list_threads(limit=1)
            assert len(page) == 1 and page.next_cursor is not None
            rest = await acp.list_threads(limit=10, cursor=page.next_cursor)
            assert len(rest) == 2
            assert [info.thread_id for info in await acp.list_threads("o")] == ["other"]
            updated = await acp.update("a", lambda s: s.messages.append(AgentMessage.assistant("yo")))
            assert updated.version == 3 and [m.content for m in updated.messages] == ["yo"]
            assert await acp.purge_expired() == 0
            assert await acp.delete("a") is True
            assert await acp.delete("a") is False
            assert await acp.load("a") is None
            # errors surface as the same typed exceptions
            with pytest.raises(InvalidThreadIdError):
                await acp.load("")
        finally:
            await acp.close()

    asyncio.run(main())
    assert not cp.closed  # close_checkpointer=False
    assert cp.load("b") is not None  # the sync API sees what the async one wrote


def test_sync_and_async_callers_share_one_checkpointer(cp: Checkpointer) -> None:
    async def main() -> int:
        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:
            await acp.save("shared", AgentStateSnapshot(metadata={"from": "async"}))
            return await acp.get_version("shared")

    assert asyncio.run(main()) == 1
    loaded = cp.load("shared")
    assert loaded is not None and loaded.metadata == {"from": "async"}


def test_fifty_concurrent_updates_on_one_thread_all_land(cp: Checkpointer) -> None:
    def increment(state: AgentStateSnapshot) -> None:
        state.metadata["n"] = state.metadata.get("n", 0) + 1
        state.messages.append(AgentMessage.user(f"+{state.metadata['n']}"))

    async def main() -> AgentStateSnapshot:
        async with AsyncCheckpointer(cp, max_workers=8, close_checkpointer=False) as acp:
            await asyncio.gather(*(acp.update("counter", increment) for _ in range(50)))
            loaded = await acp.load("counter")
            assert loaded is not None
            return loaded

    final = asyncio.run(main())
    assert final.metadata["n"] == 50
    assert final.version == 50
    assert [m.content for m in final.messages] == [f"+{i}" for i in range(1, 51)]


def test_slow_call_does_not_block_the_event_loop(cp: Checkpointer) -> None:
    def slow(state: AgentStateSnapshot) -> None:
        time.sleep(0.3)
        state.metadata["slow"] = True

    async def main() -> List[float]:
        ticks: List[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            started = time.monotonic()
            await acp.update("slow", slow)
            assert time.monotonic() - started >= 0.3
            stop.set()
            await task
        return ticks

    ticks = asyncio.run(main())
    assert len(ticks) >= 10, f"the loop ticked only {len(ticks)} times during a 0.3 s call"
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.15, f"the loop was blocked for {max(gaps):.3f} s"
    loaded = cp.load("slow")
    assert loaded is not None and loaded.metadata == {"slow": True}


def test_async_transaction_saves(cp: Checkpointer) -> None:
    async def main() -> None:
        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:
            async with acp.transaction("tx") as state:
                assert state.messages == [] and state.version in (None, 0)
                state.messages.append(AgentMessage.user("one"))
            async with acp.transaction("tx") as state:
                assert state.version == 1 and [m.content for m in state.messages] == ["one"]
                state.messages.append(AgentMessage.assistant("two"))
            assert state.version == 2

    asyncio.run(main())
    loaded = cp.load("tx")
    assert loaded is not None and loaded.version == 2
    assert [m.content for m in loaded.messages] == ["one", "two"]


def test_async_transaction_that_raises_saves_nothing(cp: Checkpointer) -> None:
    cp.save("tx", AgentStateSnapshot(metadata={"v": 1}))

    async def main() -> None:
        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:
            with pytest.raises(RuntimeError, match="boom"):
                async with acp.transaction("tx") as state:
                    state.metadata["v"] = 2
                    raise RuntimeError("boom")

    asyncio.run(main())
    loaded = cp.load("tx")
    assert loaded is not None and loaded.version == 1 and loaded.metadata == {"v": 1}


def test_async_transaction_conflicts_with_a_save_in_between(cp: Checkpointer) -> None:
    cp.save("tx", AgentStateSnapshot(metadata={"who": "first"}))

    async def main() -> None:
        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:
            with pytest.raises(ConflictError) as info:
                async with acp.transaction("tx") as state:
                    state.metadata["who"] = "transaction"
                    # another worker saves the same thread meanwhile
                    await acp.save("tx", AgentStateSnapshot(metadata={"who": "concurrent"}), force=True)
            assert info.value.thread_id == "tx"
            assert (info.value.expected_version, info.value.actual_version) == (1, 2)

    asyncio.run(main())
    loaded = cp.load("tx")
    assert loaded is not None and loaded.version == 2 and loaded.metadata == {"who": "concurrent"}


def test_close_shuts_down_own_executor_and_closes_checkpointer(cp: Checkpointer) -> None:
    acp = AsyncCheckpointer(cp)
    executor = acp._executor

    async def main() -> None:
        await acp.save("x", AgentStateSnapshot())
        await acp.close()

    asyncio.run(main())
    assert cp.closed
    with pytest.raises(RuntimeError):
        executor.submit(lambda: None)


def test_close_keeps_a_passed_in_executor_running(cp: Checkpointer) -> None:
    executor = ThreadPoolExecutor(max_workers=2)
    try:
        acp = AsyncCheckpointer(cp, executor=executor)

        async def main() -> None:
            async with acp:
                await acp.save("x", AgentStateSnapshot())

        asyncio.run(main())
        assert cp.closed
        assert executor.submit(lambda: 42).result(timeout=5) == 42
    finally:
        executor.shutdown()


def test_close_without_close_checkpointer_leaves_it_open(cp: Checkpointer) -> None:
    async def main() -> None:
        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:
            await acp.save("x", AgentStateSnapshot())

    asyncio.run(main())
    assert not cp.closed and cp.exists("x")


def test_calls_run_in_the_private_pool_bounded_by_max_workers(cp: Checkpointer) -> None:
    running = 0
    peak = 0
    names: List[str] = []
    mutex = threading.Lock()
    read = cp.store.read

    def slow_read(thread_id: str):  # type: ignore[no-untyped-def]
        nonlocal running, peak
        with mutex:
            running += 1
            peak = max(peak, running)
            names.append(threading.current_thread().name)
        time.sleep(0.05)
        with mutex:
            running -= 1
        return read(thread_id)

    cp.store.read = slow_read  # type: ignore[method-assign]

    async def main() -> None:
        async with AsyncCheckpointer(cp, max_workers=2, close_checkpointer=False) as acp:
            await asyncio.gather(*(acp.load(f"bounded-{i}") for i in range(6)))

    asyncio.run(main())
    assert peak == 2
    assert all(name.startswith("agents_persist") for name in names)


def test_the_pool_is_sized_from_the_backends_connections(tmp_path: Path) -> None:
    with SqliteCheckpointer(tmp_path / "size.db", max_connections=3) as sqlite_cp:
        assert AsyncCheckpointer(sqlite_cp, close_checkpointer=False).max_workers == 3
    assert AsyncCheckpointer(InMemoryCheckpointer()).max_workers == 8
    # Redis keeps the setting on its connection, not its store (the adapter used to miss it: 8)
    with RedisCheckpointer.from_url("redis://127.0.0.1:1/0", max_connections=5) as redis_cp:  # connects lazily
        assert AsyncCheckpointer(redis_cp, close_checkpointer=False).max_workers == 5


def test_close_is_idempotent(cp: Checkpointer) -> None:
    async def main() -> None:
        acp = AsyncCheckpointer(cp)
        await acp.close()
        await acp.close()  # e.g. an explicit close inside ``async with``

    asyncio.run(main())
    assert cp.closed


def test_calls_after_close_raise_checkpointer_closed_error(cp: Checkpointer) -> None:
    async def main() -> None:
        acp = AsyncCheckpointer(cp)
        await acp.close()
        with pytest.raises(CheckpointerClosedError):
            await acp.load("x")

    asyncio.run(main())


def test_bad_max_workers() -> None:
    with pytest.raises(ValueError):
        AsyncCheckpointer(InMemoryCheckpointer(), max_workers=0)


# ---------------------------------------------------------------------------------------------- Contract v2: hole 8


def test_a_timed_out_update_retried_commits_once(cp: Checkpointer) -> None:
    """Failed before Contract v2: the first attempt kept running in the pool and committed too."""
    cp.save("retry", AgentStateSnapshot(metadata={"n": 0}))

    async def main() -> None:
        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:

            async def slow_model_call(state: AgentStateSnapshot) -> None:
                await asyncio.sleep(0.5)  # the model is slow
                state.metadata["n"] += 1

            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(acp.update("retry", slow_model_call), 0.1)

            async def quick(state: AgentStateSnapshot) -> None:
                state.metadata["n"] += 1

            await acp.update("retry", quick)  # the caller retries
            await asyncio.sleep(0.7)  # long enough for a stray first attempt to have committed

    asyncio.run(main())
    loaded = cp.load("retry")
    assert loaded is not None and loaded.metadata == {"n": 1} and loaded.version == 2


def test_a_retry_with_the_same_idempotency_key_applies_once(cp: Checkpointer) -> None:
    async def main() -> None:
        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:

            def add(state: AgentStateSnapshot) -> None:
                state.messages.append(AgentMessage.user("charged once"))

            first = await acp.update("idem", add, idempotency_key="payment-42")
            again = await acp.update("idem", add, idempotency_key="payment-42")
            assert first.version == again.version == 1
            assert await acp.append("idem", [AgentMessage.user("a")], idempotency_key="append-1") == 2
            assert await acp.append("idem", [AgentMessage.user("a")], idempotency_key="append-1") == 2

    asyncio.run(main())
    loaded = cp.load("idem")
    assert loaded is not None and [m.content for m in loaded.messages] == ["charged once", "a"]


def test_a_sync_transaction_in_a_coroutine_does_not_deadlock_an_async_load(cp: Checkpointer) -> None:
    """Failed before Contract v2: the load waited for the transaction's per-thread lock forever."""
    cp.save("mixed", AgentStateSnapshot(metadata={"v": 1}))

    async def main() -> None:
        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:
            with cp.transaction("mixed") as state:
                loaded = await asyncio.wait_for(acp.load("mixed"), 5)
                assert loaded is not None and loaded.metadata == {"v": 1}
                state.metadata["v"] = 2

    asyncio.run(main())
    loaded = cp.load("mixed")
    assert loaded is not None and loaded.metadata == {"v": 2}


def test_update_functions_calling_back_into_a_full_adapter_do_not_deadlock(cp: Checkpointer) -> None:
    """Failed before Contract v2: each update held a pool thread while its function awaited another call."""
    cp.save("other", AgentStateSnapshot(metadata={"seen": "yes"}))

    async def main() -> None:
        async with AsyncCheckpointer(cp, max_workers=2, close_checkpointer=False) as acp:

            async def fn(state: AgentStateSnapshot) -> None:
                other = await acp.load("other")  # calls back into the adapter
                assert other is not None
                state.metadata["seen"] = other.metadata["seen"]

            await asyncio.wait_for(asyncio.gather(*(acp.update(f"cb-{i}", fn) for i in range(6))), 20)

    asyncio.run(main())
    assert all((cp.load(f"cb-{i}") or AgentStateSnapshot()).metadata == {"seen": "yes"} for i in range(6))


def test_hundred_concurrent_async_transactions_on_one_thread_all_commit(cp: Checkpointer) -> None:
    async def main() -> None:
        async with AsyncCheckpointer(cp, close_checkpointer=False) as acp:

            async def request(i: int) -> None:
                async with acp.transaction("busy") as state:
                    state.messages.append(AgentMessage.user(f"request {i}"))

            await asyncio.gather(*(request(i) for i in range(100)))

    asyncio.run(main())
    loaded = cp.load("busy")
    assert loaded is not None and loaded.version == 100 and len(loaded.messages) == 100

