"""The ABA soak: processes and threads mix update(), delete() and re-creation on one thread ID.

Every incarnation of the thread carries a random nonce (in its metadata, and
in every message an update appends, computed from the state it read). The
workers log each creation (with when it returned) and each observation (with
when the load started). A stale commit of an update computed from an earlier
incarnation would bring that incarnation's nonce back after a later one was
created; the check at the end finds any such resurrection, and every stored
state must hold only messages of its own nonce.

Before Contract v2 (main at 99dfe87) this failed within seconds on every
backend: versions restarted at 1, so a stale update's compare-and-set passed.
"""

from __future__ import annotations

import bisect
import multiprocessing
import random
import threading
import time
import uuid
from pathlib import Path
from typing import List, Tuple

import msgspec

from agents_persist import AgentMessage, AgentStateSnapshot, BackendUnavailableError, Checkpointer, ConflictError
from tests.conftest import contract_spec
from tests.spec import BackendSpec

PROCESSES, THREADS = 4, 4
Event = Tuple[str, str, float, float]  # kind ("create" | "see"), nonce, start, end (monotonic, machine-wide)


class _Missing(Exception):
    """The thread does not exist right now: the update has nothing to extend."""


def _worker(cp: Checkpointer, tid: str, seconds: float, seed: int, events: List[Event], errors: List[str]) -> None:
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds

    def extend(state: AgentStateSnapshot) -> None:
        nonce = state.metadata.get("nonce")
        if nonce is None:
            raise _Missing
        state.messages.append(AgentMessage.user(f"{nonce}:{len(state.messages)}"))

    while time.monotonic() < deadline:
        roll = rng.random()
        start = time.monotonic()
        try:
            if roll < 0.6:
                result = cp.update(tid, extend, max_retries=20)
                events.append(("see", result.metadata["nonce"], start, time.monotonic()))
            elif roll < 0.7:
                cp.delete(tid)
            elif roll < 0.8:
                nonce = uuid.uuid4().hex
                cp.save(tid, AgentStateSnapshot(metadata={"nonce": nonce}), expected_version=0)
                events.append(("create", nonce, start, time.monotonic()))
            else:
                state = cp.load(tid)
                if state is not None:
                    nonce = state.metadata["nonce"]
                    foreign = [m.content for m in state.messages if not str(m.content).startswith(f"{nonce}:")]
                    if foreign:
                        errors.append(f"state of {nonce} holds messages of another incarnation: {foreign[:3]}")
                    events.append(("see", nonce, start, time.monotonic()))
        except (_Missing, ConflictError, BackendUnavailableError):
            pass
        except Exception as exc:  # noqa: BLE001 - reported and failed below
            errors.append(f"{type(exc).__name__}: {exc}")


def _run_threads(cp: Checkpointer, tid: str, seconds: float, threads: int, seed: int) -> Tuple[List[Event], List[str]]:
    events: List[Event] = []
    errors: List[str] = []
    workers = [threading.Thread(target=_worker, args=(cp, tid, seconds, seed * 100 + i, events, errors)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 120)
    return events, errors


def _process(spec: BackendSpec, tid: str, seconds: float, seed: int, out: str) -> None:
    cp = spec.build()
    try:
        events, errors = _run_threads(cp, tid, seconds, THREADS, seed)
    finally:
        cp.close()
    Path(out).write_bytes(msgspec.msgpack.encode([events, errors]))


def _resurrections(events: List[Event]) -> List[str]:
    """Observations of a nonce X that started after an incarnation Y certainly created later than X.

    Y is certainly later when its creation started after X's creation returned;
    X must then have been deleted before Y was created, so once Y's creation
    has returned, a load (or update) that starts afterwards can only meet X
    again if a stale commit brought it back.
    """
    created = {nonce: (start, end) for kind, nonce, start, end in events if kind == "create"}
    by_start = sorted((start, end, nonce) for nonce, (start, end) in created.items())
    starts = [start for start, _, _ in by_start]
    # earliest_end[i]: the creation that returned first among those started at by_start[i] or later.
    earliest_end: List[Tuple[float, str]] = [(float("inf"), "")] * (len(by_start) + 1)
    for i in range(len(by_start) - 1, -1, -1):
        earliest_end[i] = min(earliest_end[i + 1], (by_start[i][1], by_start[i][2]))
    found = []
    for kind, nonce, start, _ in events:
        if kind != "see" or nonce not in created:
            continue
        y_end, y = earliest_end[bisect.bisect_right(starts, created[nonce][1])]
        if y_end < start:
            found.append(f"{nonce} seen at {start:.3f} after {y} was created")
    return found


def test_no_update_ever_lands_on_an_incarnation_it_did_not_read(
    backend_spec: BackendSpec, checkpointer: Checkpointer, prefix: str, tmp_path: Path
) -> None:
    tid = prefix + "aba-soak"
    entry = contract_spec(backend_spec.name)
    seconds = entry.soak_seconds
    if entry.shared:
        ctx = multiprocessing.get_context("fork")
        outs = [str(tmp_path / f"events-{i}") for i in range(PROCESSES)]
        procs = [ctx.Process(target=_process, args=(backend_spec, tid, seconds, i, outs[i])) for i in range(PROCESSES)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(seconds + 180)
        hung = [proc.pid for proc in procs if proc.is_alive()]
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        assert not hung, f"workers {hung} hung"
        assert all(proc.exitcode == 0 for proc in procs)
        events: List[Event] = []
        errors: List[str] = []
        for out in outs:
            more_events, more_errors = msgspec.msgpack.decode(Path(out).read_bytes())
            events += [tuple(e) for e in more_events]  # type: ignore[misc]
            errors += more_errors
    else:
        # One process: four checkpointers over the one store stand in for four processes
        # (each has its own per-thread locks, as separate processes would).
        results = []
        runners = [
            threading.Thread(
                target=lambda i=i: results.append(_run_threads(Checkpointer(checkpointer.store), tid, seconds, THREADS, i))
            )
            for i in range(PROCESSES)
        ]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join(seconds + 180)
        events = [event for found, _ in results for event in found]
        errors = [error for _, found in results for error in found]
    creations = sum(1 for e in events if e[0] == "create")
    observations = len(events) - creations
    assert errors == []
    assert creations >= 5 and observations >= 50, f"too little happened: {creations} creations, {observations} observations"
    assert _resurrections(events) == []
    final = checkpointer.load(tid)
    if final is not None:
        nonce = final.metadata["nonce"]
        assert all(str(m.content).startswith(f"{nonce}:") for m in final.messages)
