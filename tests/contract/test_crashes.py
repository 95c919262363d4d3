"""Writers SIGKILLed mid-save: nothing acknowledged is lost, nothing half-written is seen, nothing leaks.

Per shared backend, ``ContractSpec.crash_kills`` writer processes (50 by
default) each save large snapshots (200-2,000 messages, some of 10-60 KB)
to three threads, by whole rewrites, growth, edits of an earlier message,
``append()`` and forced saves, and are killed by PID at a random moment.
Each writer writes an *attempt* record to an acknowledgement log before
each call and an *ack* record after it returns (``os.write`` on an
``O_APPEND`` file: the kernel has it before the next call starts).

After each kill the surviving checkpointer (built once, never rebuilt)
loads every thread and compares the bytes of the snapshot (its encoded
messages, todos, interrupt and metadata) with the last acknowledged save of
that thread: they must be those bytes at that version, or — only for the
thread the killed writer was saving — the bytes of the interrupted attempt
at a higher version (it committed before the kill). Anything else is a lost
acknowledged save or a mixed snapshot. Versions never go backwards, every
thread stays listed, and the surviving checkpointer saves each thread again.

After all kills the debris is counted (:mod:`tests.faults.debris`): keys,
rows or items of the threads that no committed head reaches and that carry
no expiry. The figures are printed in one line per backend.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import msgspec
import pytest

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, ConflictError
from tests.conftest import contract_spec
from tests.faults import overridden, report
from tests.faults.connections import labelled, server_connections
from tests.faults.debris import count_debris
from tests.spec import BackendSpec

THREADS = 3
#: A writer is killed during its first, second or third call, at a random moment up to this many
#: times the median call duration (measured from the log) after the call started ...
KILL_SPREAD = 1.5
#: ... taken over the last this many calls.
DURATION_WINDOW = 50
#: Seconds a writer may take to build its checkpointer and start its first save.
START_TIMEOUT = 60.0
#: Seconds the server may take to drop a killed writer's connections.
SETTLE_SECONDS = 10.0
#: Seconds given to a server that does not name connections to finish what a killed writer sent.
UNNAMED_SETTLE_SECONDS = 0.5


def digest(state: AgentStateSnapshot) -> str:
    """The bytes a snapshot stands for (its four state fields, encoded), hashed."""
    encoded = msgspec.msgpack.encode([state.messages, state.todos, state.current_interrupt, state.metadata])
    return hashlib.sha256(encoded).hexdigest()


def _messages(rng: random.Random, tag: str, count: int) -> List[AgentMessage]:
    """``count`` messages of 20-600 bytes, about one in a hundred of 10-60 KB (random, so incompressible)."""
    out = []
    for i in range(count):
        size = rng.randint(10_000, 60_000) if rng.random() < 0.01 else rng.randint(20, 600)
        text = f"{tag}:{i}|" + rng.randbytes(size // 2).hex()
        out.append(AgentMessage.user(text) if i % 2 == 0 else AgentMessage.assistant(text))
    return out


def _writer(spec: BackendSpec, tids: List[str], log: str, seed: int, writer: str) -> None:
    """Save large snapshots to ``tids`` until SIGKILLed, logging each attempt before and each ack after the call."""
    rng = random.Random(seed)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)

    def record(**fields: Any) -> None:
        os.write(fd, (json.dumps({"w": writer, "ts": time.monotonic(), **fields}) + "\n").encode())

    try:
        cp = spec.build()
        states: Dict[str, Optional[AgentStateSnapshot]] = {}
        serial = 0
        while True:
            tid = rng.choice(tids)
            state = states.get(tid)
            if state is None:
                state = cp.load(tid)
            assert state is not None, f"{tid} vanished"
            serial += 1
            tag = f"{writer}.{serial}"
            roll = rng.random()
            if roll < 0.15:
                op = "append"
                new = _messages(rng, tag, rng.randint(1, 60))
                target = AgentStateSnapshot(state.messages + new, state.todos, state.current_interrupt, state.metadata)
                record(k="attempt", t=tid, d=digest(target), op=op)
                version = cp.append(tid, new, expected_version=state.version)
                states[tid] = None  # reloaded next time
            else:
                if roll < 0.25:
                    op, force = "force", True
                    state = AgentStateSnapshot(messages=_messages(rng, tag, rng.randint(200, 2000)))
                elif roll < 0.55:
                    op, force = "rewrite", False
                    state.messages = _messages(rng, tag, rng.randint(200, 2000))
                elif roll < 0.7 and state.messages:
                    op, force = "edit", False
                    state.messages[rng.randrange(len(state.messages))] = AgentMessage.user(f"{tag}:edited")
                else:
                    op, force = "grow", False
                    state.messages += _messages(rng, tag, rng.randint(1, 100))
                state.metadata = {**state.metadata, "tag": tag}
                record(k="attempt", t=tid, d=digest(state), op=op)
                version = cp.save(tid, state, force=force)
                states[tid] = state
            record(k="ack", t=tid, d=digest(target) if op == "append" else digest(state), v=version, op=op)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent through the log and the exit code
        record(k="error", e=f"{type(exc).__name__}: {exc}")
        os._exit(1)


class Attempt(NamedTuple):
    tid: str
    digest: str
    op: str
    started: float


class AckLog:
    """The parent's reading of the acknowledgement log: last ack per thread, open attempt per writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()
        self._offset = 0
        self.acked: Dict[str, Tuple[int, str]] = {}
        self.open: Dict[str, Attempt] = {}
        self.attempted: Counter[str] = Counter()
        self.acks: Counter[str] = Counter()
        self.errors: List[str] = []
        self.calls: Counter[str] = Counter()  # attempts per writer
        self.durations: List[float] = []

    def ack(self, tid: str, version: int, state_digest: str) -> None:
        self.acked[tid] = (version, state_digest)

    def poll(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            entry = json.loads(line)
            if entry["k"] == "attempt":
                self.open[entry["w"]] = Attempt(entry["t"], entry["d"], entry["op"], entry["ts"])
                self.attempted[entry["op"]] += 1
                self.calls[entry["w"]] += 1
            elif entry["k"] == "ack":
                attempt = self.open.pop(entry["w"], None)
                if attempt is not None:
                    self.durations.append(entry["ts"] - attempt.started)
                self.acks[entry["op"]] += 1
                self.ack(entry["t"], entry["v"], entry["d"])
            else:
                self.errors.append(f"writer {entry['w']}: {entry['e']}")

    def wait_for_call(self, writer: str, number: int, timeout: float) -> Optional[Attempt]:
        """The attempt record of ``writer``'s call ``number`` (from 1) once logged; None after ``timeout`` or an error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.errors:
            self.poll()
            if self.calls[writer] >= number:
                return self.open.get(writer) or Attempt("", "", "", time.monotonic())
            time.sleep(0.002)
        return None

    def median_duration(self) -> float:
        recent = sorted(self.durations[-DURATION_WINDOW:])
        return recent[len(recent) // 2] if recent else 0.05


class Figures:
    """What a crash run counted, for the one-line summary."""

    def __init__(self) -> None:
        self.kills = 0
        self.mid_save: Counter[str] = Counter()
        self.committed_unacked = 0
        self.lost: List[str] = []
        self.backwards: List[str] = []
        self.parent_saves = 0
        self.late_commits = 0
        self.errors: Counter[str] = Counter()
        self.debris = "not counted"

    def line(self, name: str, log: AckLog, seconds: float) -> str:
        return (
            f"[crashes] {name}: {self.kills} SIGKILLs ({sum(self.mid_save.values())} mid-save: {dict(self.mid_save)}), "
            f"{sum(log.acks.values())} writer saves acknowledged ({dict(log.acks)}), "
            f"{self.committed_unacked} committed but unacknowledged ({self.late_commits} after the kill was settled), "
            f"{self.parent_saves} saves by the survivor, "
            f"lost acknowledged saves: {len(self.lost)}, versions backwards: {len(self.backwards)}, "
            f"debris: {self.debris}, errors: {dict(self.errors) or 0}, {seconds:.0f} s"
        )


def _settle(backend: str, cp: Checkpointer, label: str) -> None:
    """Wait until the server is done with the killed writer's connections (where it names them), at most SETTLE_SECONDS.

    PostgreSQL runs a statement whose client died to its end (and commits it); Redis runs every command
    it had received in full. Until the connection is gone, the killed writer's save may still land.
    """
    if server_connections(backend, cp, label) is None and backend != "sqlite":
        time.sleep(UNNAMED_SETTLE_SECONDS)  # DynamoDB: requests are not named; give a received one time to finish
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline and server_connections(backend, cp, label):
        time.sleep(0.01)
    assert not server_connections(backend, cp, label), f"the server still serves {label} {SETTLE_SECONDS:g}s after the kill"


def _check_after_kill(cp: Checkpointer, tids: List[str], log: AckLog, interrupted: Optional[Attempt], figures: Figures) -> None:
    """Every thread holds its last acknowledged bytes (or the interrupted attempt's, committed); then save it again.

    A request the killed writer had sent may still commit after the server noticed nothing (DynamoDB: moto
    finishes a request whose client died): the survivor's checked save then conflicts; the thread is checked
    again, and the late commit must be the interrupted attempt.
    """
    for tid in tids:
        try:
            _check_thread(cp, tid, log, interrupted, figures)
        except ConflictError:
            figures.late_commits += 1
            _check_thread(cp, tid, log, interrupted, figures)
    listed = {info.thread_id for info in cp.iter_threads(os.path.commonprefix(tids))}
    assert listed == set(tids), f"after kill {figures.kills}: listed {sorted(listed)}, expected {tids}"


def _check_thread(cp: Checkpointer, tid: str, log: AckLog, interrupted: Optional[Attempt], figures: Figures) -> None:
    state = cp.load(tid)
    version, acked = log.acked[tid]
    if state is None:
        figures.lost.append(f"{tid}: gone (last acknowledged: version {version})")
        return
    found = digest(state)
    assert state.version is not None
    if found == acked and state.version == version:
        pass
    elif interrupted is not None and interrupted.tid == tid and found == interrupted.digest and state.version > version:
        figures.committed_unacked += 1
    elif state.version < version:
        figures.backwards.append(f"{tid}: version {state.version} after version {version} was acknowledged")
        return
    else:
        figures.lost.append(
            f"{tid}: version {state.version} holds bytes that are neither the acknowledged version {version} "
            f"nor the interrupted attempt ({interrupted})"
        )
        return
    state.messages.append(AgentMessage.user(f"survivor:{figures.kills}"))
    state.metadata = {**state.metadata, "checked": figures.kills}
    log.ack(tid, cp.save(tid, state), digest(state))
    figures.parent_saves += 1


def test_writers_killed_mid_save_lose_nothing_acknowledged_and_leave_no_debris(
    shared_backend_spec: BackendSpec,
    shared_checkpointer: Checkpointer,
    prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = contract_spec(shared_backend_spec.name)
    kills = overridden(entry.crash_kills, "AGENTS_PERSIST_TEST_CRASH_KILLS", int)
    cp = shared_checkpointer
    tids = [f"{prefix}crash-{i}" for i in range(THREADS)]
    log = AckLog(tmp_path / "acks.log")
    for tid in tids:
        state = AgentStateSnapshot(messages=[AgentMessage.user(f"{tid}:start")], metadata={"tag": "start"})
        log.ack(tid, cp.save(tid, state), digest(state))
    ctx = multiprocessing.get_context("fork")
    rng = random.Random()
    figures = Figures()
    started = time.monotonic()
    try:
        for round_ in range(kills):
            writer = f"w{round_}"
            label = f"ap-crash-{prefix[1:-1]}-{writer}"
            writer_spec = labelled(shared_backend_spec, entry.backend, label)
            proc = ctx.Process(target=_writer, args=(writer_spec, tids, str(log.path), rng.randrange(2**32), writer))
            proc.start()
            try:
                call = log.wait_for_call(writer, rng.randint(1, 3), START_TIMEOUT)
                assert call is not None, f"writer {writer} never started its calls: {log.errors}"
                kill_at = call.started + rng.uniform(0.0, KILL_SPREAD * log.median_duration())
                time.sleep(max(0.0, kill_at - time.monotonic()))
            finally:
                if proc.pid is not None and proc.is_alive():
                    os.kill(proc.pid, signal.SIGKILL)
                proc.join(30)
            log.poll()
            assert not log.errors, f"a writer failed before it was killed: {log.errors}"
            assert proc.exitcode == -signal.SIGKILL, f"writer {writer} ended with {proc.exitcode}, not by the kill"
            figures.kills += 1
            _settle(entry.backend, cp, label)
            interrupted = log.open.pop(writer, None)
            if interrupted is not None:
                figures.mid_save[interrupted.op] += 1
            try:
                _check_after_kill(cp, tids, log, interrupted, figures)
            except Exception as exc:
                figures.errors[type(exc).__name__] += 1
                raise
            assert not figures.lost and not figures.backwards, f"after kill {figures.kills}: {figures.lost + figures.backwards}"
        debris = count_debris(entry.backend, cp, prefix)
        figures.debris = str(debris)
    finally:
        report(capsys, figures.line(shared_backend_spec.name, log, time.monotonic() - started))
    assert figures.kills == kills
    assert sum(figures.mid_save.values()) >= kills // 2, f"only {sum(figures.mid_save.values())} of {kills} kills landed mid-save"
    assert debris.without_expiry == [], (
        f"{len(debris.without_expiry)} keys/rows/items left by {kills} killed writers are reachable from no head and "
        f"never expire (issue 11, item 3: crash debris must expire or be removed by the next save): {debris}"
    )
