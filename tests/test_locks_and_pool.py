"""LockRegistry and ConnectionPool: per-key locks, bounded borrowing, broken connections, fork safety."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from agents_persist import (
    AgentStateSnapshot,
    BackendUnavailableError,
    CheckpointerClosedError,
    SqliteCheckpointer,
)
from agents_persist.runtime.locks import LockRegistry
from agents_persist.runtime.pool import ConnectionPool

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")


def in_child(body: Callable[[], int], timeout: float = 10.0) -> int:
    """Run ``body`` in a forked child and return its exit status (``body``'s return value).

    The child leaves with ``os._exit`` so no pytest machinery runs there; a
    child that does not finish within ``timeout`` is killed and counts as 99.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 98
        try:
            code = body()
        except BaseException:
            code = 97
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return 99
        time.sleep(0.01)


class Holder:
    """A background thread that holds a lock until released."""

    def __init__(self, acquire: Callable[[], object], release: Callable[[], object]) -> None:
        self.held = threading.Event()
        self.done = threading.Event()
        self._acquire, self._release = acquire, release
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.held.wait(5)

    def _run(self) -> None:
        self._acquire()
        self.held.set()
        self.done.wait(10)
        self._release()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)


# ---------------------------------------------------------------------------------------------- LockRegistry


def test_same_lock_while_in_use() -> None:
    registry = LockRegistry()
    lock = registry.get("a")
    assert registry.get("a") is lock
    other = registry.get("b")
    assert other is not lock
    assert len(registry) == 2
    del other
    gc.collect()
    assert len(registry) == 1 and registry.get("a") is lock


def test_lock_is_dropped_when_released() -> None:
    registry = LockRegistry()
    with registry.hold("a"):
        assert len(registry) == 1
        with registry.hold("b"):
            assert len(registry) == 2
        gc.collect()
        assert len(registry) == 1
    gc.collect()
    assert len(registry) == 0


def test_table_does_not_grow_with_keys_seen() -> None:
    registry = LockRegistry()
    for i in range(1000):
        with registry.hold(f"k{i}"):
            pass
    gc.collect()
    assert len(registry) == 0


def test_hold_is_reentrant() -> None:
    registry = LockRegistry()
    result = []

    def nested() -> None:
        with registry.hold("a"):
            with registry.hold("a"):
                with registry.hold("a"):
                    result.append("inside")

    thread = threading.Thread(target=nested)
    thread.start()
    thread.join(2)
    assert not thread.is_alive(), "reentrant hold deadlocked"
    assert result == ["inside"]


def test_same_key_blocks_other_threads() -> None:
    registry = LockRegistry()
    with registry.hold("a"):
        got: List[bool] = []
        thread = threading.Thread(target=lambda: got.append(registry.get("a").acquire(timeout=0.1)))
        thread.start()
        thread.join(2)
        assert got == [False]


def test_lock_is_kept_while_another_thread_waits() -> None:
    registry = LockRegistry()
    order: List[str] = []
    holder_in = threading.Event()

    def waiter() -> None:
        holder_in.wait(2)
        with registry.hold("a"):
            order.append("waiter")

    thread = threading.Thread(target=waiter)
    with registry.hold("a"):
        thread.start()
        holder_in.set()
        time.sleep(0.05)
        order.append("holder")
    thread.join(2)
    assert order == ["holder", "waiter"]


def test_different_keys_do_not_block_each_other() -> None:
    registry = LockRegistry()
    lock_a = registry.get("a")  # the caller keeps a reference while using a lock
    holder = Holder(lock_a.acquire, lock_a.release)
    try:
        started = time.monotonic()
        with registry.hold("b"):
            pass
        assert time.monotonic() - started < 0.5
        assert lock_a.acquire(timeout=0.05) is False  # while "a" is still held
    finally:
        holder.stop()


@needs_fork
def test_child_gets_fresh_registry_even_if_a_parent_thread_held_a_lock() -> None:
    registry = LockRegistry()
    lock = registry.get("busy")
    holder = Holder(lock.acquire, lock.release)
    try:
        assert lock.acquire(timeout=0.05) is False  # really held by the other thread

        def child() -> int:
            acquired = registry.get("busy").acquire(timeout=1.0)
            if not acquired:
                return 1
            with registry.hold("busy"):  # and usable through hold()
                pass
            return 0

        assert in_child(child) == 0
    finally:
        holder.stop()
    assert lock.acquire(timeout=1)  # the parent's lock still works
    lock.release()


@needs_fork
def test_child_can_use_the_registry_if_fork_happened_inside_its_mutex() -> None:
    registry = LockRegistry()
    holder = Holder(registry._mutex.acquire, registry._mutex.release)
    try:
        assert in_child(lambda: 0 if registry.get("k").acquire(timeout=1.0) else 1, timeout=5) == 0
    finally:
        holder.stop()


@needs_fork
def test_checkpointer_in_child_works_while_parent_thread_holds_that_thread_id(tmp_path: Path) -> None:
    with SqliteCheckpointer(tmp_path / "fork.db", synchronous="NORMAL") as cp:
        cp.save("t", AgentStateSnapshot(metadata={"n": 1}))
        lock = cp._locks.get("t")
        holder = Holder(lock.acquire, lock.release)  # as if a parent thread were mid-save on "t"
        try:

            def child() -> int:
                cp.update("t", lambda s: s.metadata.update(n=s.metadata["n"] + 1))
                return 0

            assert in_child(child) == 0
        finally:
            holder.stop()
        loaded = cp.load("t")
        assert loaded is not None and loaded.metadata == {"n": 2}


@needs_fork
def test_checkpointer_in_child_works_if_fork_happened_inside_its_prefix_cache(tmp_path: Path) -> None:
    """Internal mutexes held by another parent thread at fork time must not deadlock the child."""
    with SqliteCheckpointer(tmp_path / "fork.db", synchronous="NORMAL") as cp:
        cp.save("t", AgentStateSnapshot(metadata={"n": 1}))
        holder = Holder(cp._writer.prefixes._mutex.acquire, cp._writer.prefixes._mutex.release)
        try:

            def child() -> int:
                return 0 if cp.load("t") is not None else 1

            assert in_child(child, timeout=2) == 0
        finally:
            holder.stop()


# ---------------------------------------------------------------------------------------------- ConnectionPool


class Conn:
    made = 0

    def __init__(self) -> None:
        Conn.made += 1
        self.number = Conn.made
        self.closed = False


class Factory:
    def __init__(self) -> None:
        self.opened: List[Conn] = []
        self.closed: List[Conn] = []

    def connect(self) -> Conn:
        conn = Conn()
        self.opened.append(conn)
        return conn

    def close(self, conn: Conn) -> None:
        conn.closed = True
        self.closed.append(conn)


@pytest.fixture
def factory() -> Factory:
    return Factory()


def make_pool(factory: Factory, **kwargs: object) -> ConnectionPool[Conn]:
    options: dict = {"max_size": 2, "timeout": 0.2, "name": "Fake"}
    options.update(kwargs)
    return ConnectionPool(factory.connect, factory.close, **options)


def test_connections_are_reused(factory: Factory) -> None:
    pool = make_pool(factory)
    with pool.connection() as first:
        pass
    with pool.connection() as second:
        assert second is first
    assert len(factory.opened) == 1 and factory.closed == []


def test_pool_opens_lazily_and_at_most_max_size(factory: Factory) -> None:
    pool = make_pool(factory, max_size=3)
    assert factory.opened == []
    with ExitStack() as stack:
        conns = [stack.enter_context(pool.connection()) for _ in range(3)]
        assert len({id(c) for c in conns}) == 3
    with ExitStack() as stack:
        again = [stack.enter_context(pool.connection()) for _ in range(3)]
    assert {id(c) for c in again} == {id(c) for c in conns}
    assert len(factory.opened) == 3


def test_pool_is_bounded_and_times_out(factory: Factory) -> None:
    pool = make_pool(factory, max_size=2, timeout=0.2)
    with pool.connection(), pool.connection():
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as info:
            with pool.connection():
                pass  # pragma: no cover
        waited = time.monotonic() - started
    assert 0.15 <= waited < 2.0
    assert "Fake" in str(info.value) and "max_connections=2" in str(info.value)
    assert isinstance(info.value, ConnectionError)
    assert len(factory.opened) == 2
    with pool.connection():  # the slots came back
        pass


def test_waiting_borrower_gets_the_released_connection(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1, timeout=5)
    got: List[Conn] = []
    waiting = threading.Event()

    def borrower() -> None:
        waiting.set()
        with pool.connection() as conn:
            got.append(conn)

    with pool.connection() as held:
        thread = threading.Thread(target=borrower)
        thread.start()
        waiting.wait(2)
        time.sleep(0.05)
        assert got == []  # still waiting for the only slot
    thread.join(5)
    assert got == [held]
    assert len(factory.opened) == 1


def test_broken_connection_is_discarded(factory: Factory) -> None:
    pool = make_pool(factory, is_broken=lambda conn, exc: isinstance(exc, OSError))
    with pytest.raises(OSError):
        with pool.connection() as bad:
            raise OSError("socket died")
    assert bad.closed and factory.closed == [bad]
    with pool.connection() as fresh:
        assert fresh is not bad
    assert len(factory.opened) == 2


def test_healthy_connection_survives_a_non_fatal_error(factory: Factory) -> None:
    pool = make_pool(factory, is_broken=lambda conn, exc: isinstance(exc, OSError))
    with pytest.raises(KeyError):
        with pool.connection() as good:
            raise KeyError("application error")
    assert not good.closed
    with pool.connection() as again:
        assert again is good


def test_default_discards_on_any_error(factory: Factory) -> None:
    pool = make_pool(factory)
    with pytest.raises(ValueError):
        with pool.connection() as conn:
            raise ValueError("x")
    assert conn.closed
    with pool.connection() as other:
        assert other is not conn


def test_slot_is_released_when_connect_fails(factory: Factory) -> None:
    attempts = []

    def failing_connect() -> Conn:
        attempts.append(1)
        raise BackendUnavailableError("server down")

    pool: ConnectionPool[Conn] = ConnectionPool(failing_connect, factory.close, max_size=1, timeout=0.2)
    for _ in range(3):  # would time out on the 2nd try if the slot leaked
        with pytest.raises(BackendUnavailableError, match="server down"):
            with pool.connection():
                pass  # pragma: no cover
    assert len(attempts) == 3


def test_closed_pool_refuses_and_closes_connections(factory: Factory) -> None:
    pool = make_pool(factory)
    with pool.connection() as borrowed:
        with pool.connection() as idle:
            pass
        assert idle is not borrowed and not idle.closed
        pool.close()
        assert idle.closed and not borrowed.closed  # a borrowed connection is closed on return
    assert borrowed.closed
    with pytest.raises(CheckpointerClosedError):
        with pool.connection():
            pass  # pragma: no cover
    pool.close()  # idempotent
    assert sorted(c.number for c in factory.closed) == sorted([idle.number, borrowed.number])


def test_discard_idle(factory: Factory) -> None:
    pool = make_pool(factory)
    with pool.connection() as first:
        pass
    pool.discard_idle()
    assert first.closed
    with pool.connection() as second:
        assert second is not first


def test_invalid_max_size(factory: Factory) -> None:
    with pytest.raises(ValueError):
        make_pool(factory, max_size=0)


@needs_fork
def test_child_opens_its_own_connections_and_never_closes_the_parents(factory: Factory) -> None:
    pool = make_pool(factory, max_size=2, timeout=0.5)
    stack = ExitStack()
    parent_borrowed = stack.enter_context(pool.connection())  # still borrowed at fork time
    with pool.connection() as parent_idle:
        pass
    try:

        def child() -> int:
            with ExitStack() as child_stack:
                # the full capacity is available although the parent had a slot in use
                conns = [child_stack.enter_context(pool.connection()) for _ in range(2)]
            if any(c is parent_idle or c is parent_borrowed for c in conns):
                return 1
            if len(factory.opened) != 4:  # 2 from the parent + 2 new ones
                return 2
            pool.discard_idle()
            pool.close()
            if parent_idle.closed or parent_borrowed.closed or any(c in (parent_idle, parent_borrowed) for c in factory.closed):
                return 3
            if not all(c.closed for c in conns):
                return 4
            return 0

        assert in_child(child) == 0
    finally:
        stack.close()
    # the parent's pool is untouched by the child
    assert not parent_idle.closed and not parent_borrowed.closed
    with pool.connection() as conn:
        assert conn in (parent_idle, parent_borrowed)
    assert len(factory.opened) == 2


@needs_fork
def test_child_borrows_fresh_even_while_the_forking_thread_holds_a_connection(factory: Factory) -> None:
    pool = make_pool(factory, max_size=1, timeout=0.2)
    with pool.connection() as parent_conn:

        def child() -> int:
            with pool.connection() as conn:
                return 0 if conn is not parent_conn and not parent_conn.closed else 1

        assert in_child(child) == 0


@pytest.fixture
def sqlite_cp(tmp_path: Path) -> Iterator[SqliteCheckpointer]:
    with SqliteCheckpointer(tmp_path / "pool.db", synchronous="NORMAL", max_connections=2, timeout=0.3) as cp:
        yield cp


def test_sqlite_pool_is_bounded_by_max_connections(sqlite_cp: SqliteCheckpointer) -> None:
    pool = sqlite_cp.store._pool
    assert pool.max_size == 2
    with pool.connection(), pool.connection():
        with pytest.raises(BackendUnavailableError):
            sqlite_cp.load("t")
    assert sqlite_cp.load("t") is None
