"""Run every read path and the repairs over one damaged thread, on any backend (shared by the corruption tests).

A backend's tests damage the stored data of :attr:`Names.victim` in their own
way (SQL, Redis commands), then call :func:`exercise`, which returns the
outcome of ``load`` as a class name and fails the test on any outcome outside
the contract: an exception other than :class:`CorruptSnapshotError` naming
the thread, a call slower than :data:`SLOW`, a listing that lost or changed a
healthy thread, or a forced save or delete that did not repair.
"""

from __future__ import annotations

import contextlib
import io
import time
from typing import Any, Callable, List, Optional, Tuple

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, CorruptSnapshotError, TodoItem
from agents_persist.cli import main as cli_main

#: Seconds any one call may take over a damaged thread (all are milliseconds normally).
SLOW = 5.0


class Names:
    """The thread IDs of one corruption case, under ``prefix``: the victim and three healthy threads."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.victim = prefix + "victim"
        self.healthy = tuple(prefix + name for name in ("healthy-a", "healthy-b", "healthy-c"))

    def expected(self) -> dict:  # type: ignore[type-arg]
        """(version, message count) of each healthy thread."""
        return {thread_id: (1, i + 1) for i, thread_id in enumerate(self.healthy)}


def victim_state() -> AgentStateSnapshot:
    return AgentStateSnapshot(
        messages=[AgentMessage.user("q" * (i % 5)) if i % 2 else AgentMessage.assistant(f"a{i}") for i in range(12)],
        todos=[TodoItem("fix", "pending")],
        metadata={"n": 1, "deep": [[{"x": 1.5}]]},
    )


def build(cp: Checkpointer, names: Names) -> AgentStateSnapshot:
    """Store the victim (saved in 4 steps, an idempotency key, several log rows or entries) and the healthy threads."""
    state = victim_state()
    full = list(state.messages)
    state.messages = full[:3]
    cp.save(names.victim, state)
    for end in (6, 9):
        state.messages = full[:end]
        cp.save(names.victim, state)
    cp.update(names.victim, lambda s: s.messages.extend(full[9:]), idempotency_key="key-1")
    for i, thread_id in enumerate(names.healthy):
        cp.save(thread_id, AgentStateSnapshot(messages=[AgentMessage.user(f"h{i}")] * (i + 1)))
    loaded = cp.load(names.victim)
    assert loaded is not None and loaded.messages == full
    return loaded


def timed(what: str, fn: Callable[[], Any]) -> Any:
    start = time.monotonic()
    try:
        return fn()
    finally:
        elapsed = time.monotonic() - start
        assert elapsed < SLOW, f"{what} took {elapsed:.1f}s"


def outcome(what: str, fn: Callable[[], Any], victim: str) -> Tuple[str, Any]:
    """("ok", value) or ("corrupt", error) for a call on the victim; anything else fails the test."""
    try:
        return "ok", timed(what, fn)
    except CorruptSnapshotError as exc:
        assert exc.thread_id in (victim, None), f"{what}: {exc!r} names {exc.thread_id!r}"
        assert victim in str(exc) or exc.thread_id is None, f"{what}: {exc}"
        return "corrupt", exc


def run_cli(url: str, *argv: str) -> int:
    """The CLI's exit code for ``argv`` on ``url``; a traceback in its output fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = timed(f"cli {argv}", lambda: cli_main([*argv, "--url", url]))
    assert "Traceback" not in err.getvalue() + out.getvalue(), err.getvalue()
    return int(code)


def check_listings(cp: Checkpointer, names: Names) -> None:
    """Every listing path works and shows each healthy thread exactly once, unchanged."""
    healthy = names.expected()
    under = names.prefix or None
    seen: List[str] = []
    cursor = None
    for _ in range(20):
        page = timed("list_threads", lambda at=cursor: cp.list_threads(prefix=under, limit=2, cursor=at))  # type: ignore[misc]
        seen += [info.thread_id for info in page.threads]
        for info in page.threads:
            if info.thread_id in healthy:
                assert (info.version, info.message_count) == healthy[info.thread_id] and not info.corrupt
        cursor = page.next_cursor
        if cursor is None:
            break
    walked = [info.thread_id for info in timed("iter_threads", lambda: list(cp.iter_threads(under, page_size=2)))]
    for thread_id in healthy:
        assert seen.count(thread_id) == 1, (thread_id, seen)
        assert walked.count(thread_id) == 1, (thread_id, walked)
    timed("iter_threads prefix", lambda: list(cp.iter_threads(prefix=names.victim[: len(names.prefix) + 3])))


def exercise(cp: Checkpointer, original: AgentStateSnapshot, names: Names, *, cli_url: Optional[str] = None) -> str:
    """Every read path over the damaged victim, then repair it; returns the class of the load's outcome."""
    victim = names.victim
    kind, loaded = outcome("load", lambda: cp.load(victim), victim)
    if kind == "ok":
        kind = "missing" if loaded is None else ("loaded correctly" if loaded == original else "loaded other content")
    outcome("exists", lambda: cp.exists(victim), victim)
    outcome("get_version", lambda: cp.get_version(victim), victim)
    outcome("load_messages", lambda: cp.load_messages(victim, 2, 10), victim)
    outcome("tail", lambda: cp.tail(victim, 3), victim)
    outcome("message_count", lambda: cp.message_count(victim), victim)
    check_listings(cp, names)
    timed("purge_expired", cp.purge_expired)
    if cli_url is not None:
        under = ["--prefix", names.prefix] if names.prefix else []
        assert run_cli(cli_url, "list", *under) == 0
        assert run_cli(cli_url, "stats", *under) == 0
        assert run_cli(cli_url, "show", victim) in (0, 1, 3)
    # Healthy threads still load.
    for thread_id, (_, count) in names.expected().items():
        state = cp.load(thread_id)
        assert state is not None and len(state.messages) == count
    # A forced save repairs the victim, whatever is there.
    fresh = AgentStateSnapshot(messages=[AgentMessage.user("repaired"), AgentMessage.assistant("yes")], metadata={"r": 1})
    timed("forced save", lambda: cp.save(victim, fresh, force=True))
    again = cp.load(victim)
    assert again is not None and again == fresh
    again.messages.append(AgentMessage.user("and on"))
    cp.save(victim, again)
    assert cp.load(victim) == again
    assert cp.tail(victim, 2) == again.messages[-2:]
    check_listings(cp, names)
    return kind


def exercise_delete(cp: Checkpointer, names: Names, leftovers: Callable[[], int]) -> None:
    """``delete`` removes whatever the victim has (``leftovers()`` counts what remains stored); then it can be created anew."""
    victim = names.victim
    timed("delete", lambda: cp.delete(victim))
    assert cp.load(victim) is None and not cp.exists(victim)
    assert leftovers() == 0
    cp.save(victim, AgentStateSnapshot(messages=[AgentMessage.user("new")]))
    state = cp.load(victim)
    assert state is not None and state.version == 1
