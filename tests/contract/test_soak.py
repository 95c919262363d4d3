"""The mixed soak: 2 processes x 16 threads mix load, update, append, save, create, delete and list_threads over 200 thread IDs.

For ``ContractSpec.mixed_soak_seconds`` (30 s by default;
``$AGENTS_PERSIST_TEST_SOAK_SECONDS`` overrides), every worker thread picks
a random thread ID and operation. Every incarnation of a thread carries a
random nonce in its metadata; every message an operation adds names that
nonce and the operation. Each worker logs every call that returned, with
the nonce it applied to:

* ``update``: increments ``metadata["n"]`` and appends ``u:<nonce>:<op>``;
* ``append`` (with the version just loaded): appends ``a:<nonce>:<op>``;
* ``save`` (of a loaded snapshot): sets ``metadata["touched"]``;
* ``create`` (a fresh snapshot, so only if the thread does not exist), ``delete``;
* ``load`` checks the snapshot is one whole version of one incarnation;
* ``list_threads`` reads a page or three of the prefix.

At the end, each thread's stored state must match the acknowledged calls
of its incarnation exactly: ``n`` equals the acknowledged updates, its
``u:``/``a:`` messages are exactly the acknowledged updates and appends
(each worker's in its order), no message of another incarnation, and a
thread that is gone had a delete acknowledged. The only error allowed is
``ConflictError`` where the call says so (a checked save, a create, an
append with ``expected_version``, an update after its retries); anything
else fails the run. Each process then checks its pool: nothing still
borrowed, the server's count of its connections (``pg_stat_activity`` by
``application_name``, ``CLIENT LIST`` by name; SQLite file handles and
DynamoDB sockets in the process itself) equal to the pool's idle
connections, and none left after ``close()``.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

import msgspec
import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, ConflictError
from tests.conftest import contract_spec
from tests.faults import overridden, report
from tests.faults.connections import labelled, pool_usage, process_connections, server_connections
from tests.spec import BackendSpec

PROCESSES, THREADS, THREAD_IDS = 2, 16, 200
#: Operations and their weights.
MIX = (("update", 30), ("append", 12), ("save", 10), ("create", 10), ("delete", 5), ("load", 28), ("list", 5))
#: Calls whose ConflictError means "not applied, as asked".
MAY_CONFLICT = frozenset({"update", "append", "save", "create"})
#: Backends whose server counts a process's connections by name (the others are counted in the process).
SERVER_COUNTED = frozenset({"postgres", "redis"})
#: Seconds the connections may take to be gone after close().
SETTLE_SECONDS = 3.0
#: (op, thread ID, nonce, kind, op ID) of every call that returned.
Ack = Tuple[str, str, str, str]


class _Missing(Exception):
    """The thread does not exist right now: nothing to update."""


class Tally(msgspec.Struct):
    """One process's log and counts (sent back to the parent as msgpack)."""

    acks: List[Ack] = []
    calls: Dict[str, int] = {}
    conflicts: Dict[str, int] = {}
    errors: List[str] = []
    pools: List[str] = []


def _check_whole(state: AgentStateSnapshot, where: str) -> Optional[str]:
    """Why ``state`` is not one whole version of one incarnation, or None."""
    nonce = state.metadata.get("nonce")
    updates = [m for m in state.messages if str(m.content).startswith("u:")]
    # (an append checked against an earlier incarnation's version may land here: see _final_check)
    foreign = [m.content for m in state.messages if not str(m.content).startswith(("a:", f"u:{nonce}:"))]
    if foreign:
        return f"{where}: {nonce} holds updates of another incarnation: {foreign[:3]}"
    if state.metadata.get("n") != len(updates):
        return f"{where}: n = {state.metadata.get('n')} but {len(updates)} update messages"
    return None


def _worker(cp: Checkpointer, prefix: str, seconds: float, name: str, seed: int, tally: Tally, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    ops, weights = zip(*MIX)
    deadline = time.monotonic() + seconds
    serial = 0
    while time.monotonic() < deadline:
        serial += 1
        op_id = f"{name}.{serial}"
        op = rng.choices(ops, weights)[0]
        tid = f"{prefix}soak-{rng.randrange(THREAD_IDS)}"
        acked: List[Ack] = []
        try:
            if op == "update":

                def bump(state: AgentStateSnapshot, op_id: str = op_id) -> None:
                    nonce = state.metadata.get("nonce")
                    if nonce is None:
                        raise _Missing
                    state.metadata["n"] = int(state.metadata["n"]) + 1  # type: ignore[call-overload]
                    state.messages.append(AgentMessage.user(f"u:{nonce}:{op_id}"))

                result = cp.update(tid, bump)
                acked.append((tid, str(result.metadata["nonce"]), "u", op_id))
            elif op in ("append", "save", "load"):
                state = cp.load(tid)
                if state is None:
                    raise _Missing
                nonce = str(state.metadata["nonce"])
                problem = _check_whole(state, f"load of {tid}")
                if problem:
                    with lock:
                        tally.errors.append(problem)
                if op == "append":
                    cp.append(tid, [AgentMessage.assistant(f"a:{nonce}:{op_id}")], expected_version=state.version)
                    acked.append((tid, nonce, "a", op_id))
                elif op == "save":
                    state.metadata["touched"] = op_id
                    cp.save(tid, state)
                    acked.append((tid, nonce, "s", op_id))
            elif op == "create":
                nonce = uuid.uuid4().hex[:12]
                cp.save(tid, AgentStateSnapshot(metadata={"nonce": nonce, "n": 0}))
                acked.append((tid, nonce, "c", op_id))
            elif op == "delete":
                if cp.delete(tid):
                    acked.append((tid, "", "d", op_id))
            else:
                cursor = None
                for _ in range(1 if rng.random() < 0.8 else 3):  # mostly the first page (a DynamoDB page reads every shard)
                    page = cp.list_threads(prefix, limit=20, cursor=cursor)
                    outside = [info.thread_id for info in page.threads if not info.thread_id.startswith(prefix)]
                    if outside:
                        with lock:
                            tally.errors.append(f"list_threads({prefix!r}) returned {outside[:3]}")
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        except _Missing:
            pass
        except ConflictError as exc:
            with lock:
                if op in MAY_CONFLICT:
                    tally.conflicts[op] = tally.conflicts.get(op, 0) + 1
                else:
                    tally.errors.append(f"{op}: ConflictError: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported and failed below
            with lock:
                tally.errors.append(f"{op}: {type(exc).__name__}: {exc}")
        with lock:
            tally.calls[op] = tally.calls.get(op, 0) + 1
            tally.acks.extend(acked)


def _run_threads(cp: Checkpointer, prefix: str, seconds: float, process: int, tally: Tally) -> None:
    lock = threading.Lock()
    workers = [
        threading.Thread(target=_worker, args=(cp, prefix, seconds, f"p{process}t{i}", random.randrange(2**32), tally, lock))
        for i in range(THREADS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 120)
    hung = [worker.name for worker in workers if worker.is_alive()]
    if hung:
        tally.errors.append(f"threads {hung} hung")


def _settled(measure: Any, seconds: float = SETTLE_SECONDS) -> Optional[int]:
    deadline = time.monotonic() + seconds
    value = measure()
    while value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = measure()
    return value  # type: ignore[no-any-return]


def _check_pools(
    backend: str, spec: BackendSpec, cp: Checkpointer, label: str, probe: Checkpointer, inherited: Optional[int], tally: Tally
) -> None:
    """After the run: nothing borrowed, the server sees exactly the idle connections; none after close().

    ``inherited``: the process's own handles on the store before ``cp`` was built (the forked parent's).
    """

    def own_handles() -> Optional[int]:
        count = process_connections(backend, spec)
        return None if count is None or inherited is None else count - inherited

    usage = pool_usage(cp)
    seen_by_server = server_connections(backend, probe, label)
    own = own_handles()
    cp.close()
    after = _settled(lambda: server_connections(backend, probe, label))
    own_after = _settled(own_handles)
    counted = seen_by_server if seen_by_server is not None else own
    tally.pools.append(
        f"{label}: idle/borrowed {usage}, {'server' if seen_by_server is not None else 'process'} count {counted}, "
        f"after close {after if after is not None else own_after}"
    )
    if usage is not None:
        idle, borrowed = usage
        if borrowed:
            tally.errors.append(f"{label}: {borrowed} connections still borrowed after the run")
        if seen_by_server is not None and seen_by_server != idle:
            tally.errors.append(f"{label}: the server counts {seen_by_server} connections, the pool holds {idle} idle")
        if backend == "sqlite" and own is not None and own > 2 * idle + 1:
            tally.errors.append(f"{label}: {own} open files on the database for {idle} idle connections")
    if after:
        tally.errors.append(f"{label}: the server still counts {after} connections {SETTLE_SECONDS:g}s after close()")
    if own_after:
        tally.errors.append(f"{label}: {own_after} handles still open {SETTLE_SECONDS:g}s after close()")


def _process(spec: BackendSpec, backend: str, prefix: str, seconds: float, process: int, out: str) -> None:
    tally = Tally()
    label = f"ap-soak-{uuid.uuid4().hex[:8]}-p{process}"
    try:
        inherited = process_connections(backend, spec)
        cp = labelled(spec, backend, label).build()
        probe = spec.build() if backend in SERVER_COUNTED else cp  # unlabelled: asks the server, is not counted
        try:
            _run_threads(cp, prefix, seconds, process, tally)
            _check_pools(backend, spec, cp, label, probe, inherited, tally)
        finally:
            cp.close()
            probe.close()
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        tally.errors.append(f"process {process}: {type(exc).__name__}: {exc}")
    Path(out).write_bytes(msgspec.msgpack.encode(tally))


class Outcome(NamedTuple):
    problems: List[str]
    threads: int
    messages: int
    #: Acknowledged appends found in a later incarnation than the one whose version they were checked against.
    crossed: int


def _final_check(cp: Checkpointer, prefix: str, acks: List[Ack]) -> Outcome:
    """Mismatches between the stored threads and the acknowledged calls, and what is left.

    ``append(expected_version=v)`` checks the friendly counter only, which starts again at 1 when a
    thread is deleted and created again: an append checked against incarnation N's version can land
    on a later incarnation M at that version, as documented. Such appends are accounted where they
    landed (each must be an acknowledged append of that thread ID) and counted apart; an append
    checked against the final incarnation's own version must be in it, exactly.
    """
    by_incarnation: Dict[Tuple[str, str], Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    appends: Dict[str, Set[str]] = defaultdict(set)
    deleted: Set[str] = set()
    for tid, nonce, kind, op_id in acks:
        if kind == "d":
            deleted.add(tid)
        else:
            by_incarnation[(tid, nonce)][kind].append(op_id)
        if kind == "a":
            appends[tid].add(op_id)
    problems: List[str] = []
    threads = messages = crossed = 0
    for i in range(THREAD_IDS):
        tid = f"{prefix}soak-{i}"
        state = cp.load(tid)
        created = any(t == tid for t, _ in by_incarnation)
        if state is None:
            if created and tid not in deleted:
                problems.append(f"{tid}: gone, but no delete was acknowledged")
            continue
        threads += 1
        messages += len(state.messages)
        nonce = str(state.metadata.get("nonce"))
        acked = by_incarnation.get((tid, nonce))
        if acked is None or not acked["c"]:
            problems.append(f"{tid}: incarnation {nonce} was never acknowledged as created")
            continue
        problem = _check_whole(state, f"final {tid}")
        if problem:
            problems.append(problem)
        foreign = [str(m.content).split(":")[2] for m in state.messages if str(m.content).startswith("a:")]
        foreign = [op_id for op_id in foreign if f"a:{nonce}:{op_id}" not in {str(m.content) for m in state.messages}]
        crossed += len(foreign)
        unacked = sorted(set(foreign) - appends[tid])
        if unacked:
            problems.append(f"{tid}/{nonce}: appends of another incarnation that were never acknowledged: {unacked[:3]}")
        for kind in ("u", "a"):
            stored = [str(m.content).split(":")[2] for m in state.messages if str(m.content).startswith(f"{kind}:{nonce}:")]
            if sorted(stored) != sorted(acked[kind]):
                lost, extra = set(acked[kind]) - set(stored), set(stored) - set(acked[kind])
                problems.append(
                    f"{tid}/{nonce}: {kind}: {len(lost)} acknowledged missing {sorted(lost)[:3]}, "
                    f"{len(extra)} unacknowledged {sorted(extra)[:3]}"
                )
            for worker in {op_id.rpartition(".")[0] for op_id in stored}:
                own = [int(op_id.rpartition(".")[2]) for op_id in stored if op_id.rpartition(".")[0] == worker]
                if own != sorted(own):
                    problems.append(f"{tid}/{nonce}: {kind}: {worker}'s calls stored out of order: {own[:10]}")
        if state.metadata.get("n") != len(acked["u"]):
            problems.append(f"{tid}/{nonce}: n = {state.metadata.get('n')}, {len(acked['u'])} updates acknowledged")
        touched = state.metadata.get("touched")
        if touched is not None and touched not in acked["s"]:
            problems.append(f"{tid}/{nonce}: touched by {touched}, which no acknowledged save of it did")
    return Outcome(problems, threads, messages, crossed)


def test_mixed_soak_ends_with_exact_counts_no_unexpected_error_and_idle_pools(
    backend_spec: BackendSpec, checkpointer: Checkpointer, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = contract_spec(backend_spec.name)
    seconds = overridden(entry.mixed_soak_seconds, "AGENTS_PERSIST_TEST_SOAK_SECONDS", float)
    tallies: List[Tally] = []
    started = time.monotonic()
    seeded: List[Ack] = []  # every thread exists at the start, so that updates have something to count from
    for i in range(THREAD_IDS):
        tid, nonce = f"{prefix}soak-{i}", uuid.uuid4().hex[:12]
        checkpointer.save(tid, AgentStateSnapshot(metadata={"nonce": nonce, "n": 0}))
        seeded.append((tid, nonce, "c", f"seed.{i}"))
    if entry.shared:
        # Spawned, not forked: a forked child inherits the parent's SQLite connections, and SQLite then defers
        # closing the child's own file handles (its in-memory lock records say the inherited ones hold locks).
        ctx = multiprocessing.get_context("spawn")
        outs = [str(tmp_path / f"tally-{i}") for i in range(PROCESSES)]
        procs = [
            ctx.Process(target=_process, args=(backend_spec, entry.backend, prefix, seconds, i, outs[i]))
            for i in range(PROCESSES)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(seconds + 240)
        hung = [proc.pid for proc in procs if proc.is_alive()]
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                proc.kill()
        assert not hung, f"soak processes {hung} hung"
        assert [proc.exitcode for proc in procs] == [0] * PROCESSES
        tallies = [msgspec.msgpack.decode(Path(out).read_bytes(), type=Tally) for out in outs]
    else:
        # One process: two checkpointers over the one store stand in for the two processes.
        tallies = [Tally() for _ in range(PROCESSES)]
        runners = [
            threading.Thread(target=_run_threads, args=(Checkpointer(checkpointer.store), prefix, seconds, i, tallies[i]))
            for i in range(PROCESSES)
        ]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join(seconds + 240)
    acks = seeded + [tuple(ack) for tally in tallies for ack in tally.acks]
    calls = sum((Counter(tally.calls) for tally in tallies), Counter())
    conflicts = sum((Counter(tally.conflicts) for tally in tallies), Counter())
    errors = [error for tally in tallies for error in tally.errors]
    error_types = Counter(error.split(": ")[1] if ": " in error else error for error in errors)
    outcome = _final_check(checkpointer, prefix, acks)  # type: ignore[arg-type]
    problems = outcome.problems
    kinds = Counter(kind for _, _, kind, _ in acks)
    pools = "; ".join(line for tally in tallies for line in tally.pools) or "n/a"
    report(
        capsys,
        f"[soak] {backend_spec.name}: {sum(calls.values())} calls in {seconds:g} s x {PROCESSES} processes x {THREADS} threads "
        f"over {THREAD_IDS} IDs ({dict(calls)}), acknowledged {dict(kinds)}, ConflictError as allowed {dict(conflicts)}, "
        f"unexpected errors {dict(error_types) or 0}, count mismatches {len(problems)}, appends landed on a later "
        f"incarnation {outcome.crossed}, {outcome.threads} threads / {outcome.messages} messages at the end, pools: {pools}, "
        f"{time.monotonic() - started:.0f} s",
    )
    assert errors == [], f"{len(errors)} unexpected errors: {errors[:10]}"
    assert problems == [], f"{len(problems)} threads do not match their acknowledged calls: {problems[:10]}"
    assert kinds["u"] >= 50 and kinds["c"] > THREAD_IDS and kinds["d"] >= 5, f"too little happened: {dict(kinds)}"
