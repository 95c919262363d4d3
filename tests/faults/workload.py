"""Mixed operations through a :class:`~tests.faults.proxy.FaultProxy`, checked against a model of every thread.

:func:`run` starts ``workers`` threads; each owns a few thread IDs (nobody
else writes them) and runs random saves (checked by expected version, by
the loaded snapshot's provenance, forced), appends and updates with
idempotency keys, loads, listings, version reads and deletes on the
checkpointer under test, whose connections go through the proxy, while the
proxy's schedule injects faults. The model of each thread is its last
acknowledged state: the encoded bytes of its messages and head
(:func:`agents_persist.codec.encode_messages` / ``encode_head``) and its
version.

After a write fails, the worker waits until the proxy holds no byte it
received before the failure (a delayed request may still land), then loads
the thread over a direct connection (the *oracle* checkpointer, no proxy)
and finds the state either as before the call (not applied) or as the call
would have left it (applied); anything else is a violation. So every
``BackendUnavailableError`` is classified: ``maybe_applied`` set and applied
or not, or ``maybe_applied=False`` but applied (a violation). An append or
update that failed is retried with the same idempotency key, which must
apply it exactly once.

Checked after every call: it returned or raised an ``AgentsPersistError``
(anything else is *untyped*), within ``call_bound`` seconds (slower ones are
*overruns*; calls still running ``hang_after`` seconds after the run are
*hangs*); successful reads match the model exactly (a mismatch after an
acknowledged write is a *lost save*); versions only go up by one per write.
When the run ends the schedule is paused and the same checkpointer must
load, append to and list every thread without a single error (*recovery*),
and the oracle must find every thread as the model says.
"""

from __future__ import annotations

import collections
import random
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, TodoItem
from agents_persist.codec import encode_head, encode_messages
from agents_persist.errors import AgentsPersistError, BackendUnavailableError, ConflictError

from .proxy import KINDS, FaultProxy

__all__ = ["Settings", "Report", "run", "fingerprint"]

Fingerprint = Tuple[Tuple[bytes, ...], bytes]

#: Relative frequency of each operation.
OPERATIONS = {
    "save_expected": 2.0,
    "save_loaded": 2.0,
    "save_force": 0.5,
    "append": 2.5,
    "update": 2.0,
    "load": 3.0,
    "list": 1.0,
    "get_version": 0.7,
    "delete": 0.4,
}
#: Attempts of an append or update with one idempotency key.
IDEMPOTENT_ATTEMPTS = 3


def fingerprint(state: AgentStateSnapshot) -> Fingerprint:
    """The encoded bytes of a snapshot: its messages and its head."""
    return tuple(encode_messages(state.messages)), encode_head(state)


def copy_state(state: AgentStateSnapshot) -> AgentStateSnapshot:
    """A fresh snapshot (no provenance) with the same content."""
    return AgentStateSnapshot(
        messages=list(state.messages),
        todos=list(state.todos),
        current_interrupt=state.current_interrupt,
        metadata=dict(state.metadata),
    )


@dataclass
class Stored:
    """What the model says a thread holds: a snapshot's content and its version."""

    state: AgentStateSnapshot
    version: int

    @property
    def fingerprint(self) -> Fingerprint:
        return fingerprint(self.state)


@dataclass
class Settings:
    seed: int = 11
    workers: int = 4
    threads_per_worker: int = 3
    operations: int = 300
    #: The run stops issuing operations after this many seconds even if fewer were run.
    run_seconds: float = 25.0
    #: Seconds one call may take (timeout plus the backend's documented extra, plus a margin).
    call_bound: float = 3.0
    #: A call still running this long after the run ended is a hang.
    hang_after: float = 30.0
    #: Seconds to wait for the proxy to deliver or drop what it held when a call failed.
    settle_timeout: float = 15.0


@dataclass
class Report:
    """Counts of one run; :meth:`line` is the one-line summary, :meth:`problems` what must be empty."""

    backend: str
    seed: int
    operations: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    #: BackendUnavailableError outcomes: "maybe_applied=True applied", "... not applied", "maybe_applied=False ...".
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    faults: Dict[str, int] = field(default_factory=dict)
    faults_at_connect: int = 0
    connections: int = 0
    untyped: List[str] = field(default_factory=list)
    lost: List[str] = field(default_factory=list)
    violations: List[str] = field(default_factory=list)
    overruns: List[str] = field(default_factory=list)
    hangs: List[str] = field(default_factory=list)
    recovery: List[str] = field(default_factory=list)
    max_call: float = 0.0
    call_bound: float = 0.0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def problems(self) -> Dict[str, List[str]]:
        found = {
            "untyped errors": self.untyped,
            "acknowledged saves lost": self.lost,
            "wrong outcomes": self.violations,
            "calls over the bound": self.overruns,
            "hangs": self.hangs,
            "not recovered": self.recovery,
        }
        return {name: items for name, items in found.items() if items}

    def line(self) -> str:
        faults = " ".join(f"{kind}={self.faults.get(kind, 0)}" for kind in KINDS)
        errors = " ".join(f"{name}={count}" for name, count in sorted(self.errors.items())) or "none"
        applied = self.outcomes["maybe_applied=True applied"]
        not_applied = self.outcomes["maybe_applied=True not applied"]
        false_ok = self.outcomes["maybe_applied=False not applied"]
        false_bad = self.outcomes["maybe_applied=False applied"]
        return (
            f"faults[{self.backend}] seed={self.seed} ops={sum(self.operations.values())} "
            f"connections={self.connections} faults: {faults} (at accept {self.faults_at_connect}) | "
            f"errors: {errors} | maybe_applied=True: applied={applied} not={not_applied}; "
            f"maybe_applied=False: not applied={false_ok} applied={false_bad} | "
            f"acked saves lost={len(self.lost)} untyped={len(self.untyped)} hangs={len(self.hangs)} "
            f"overruns={len(self.overruns)} wrong outcomes={len(self.violations)} "
            f"recovered={'yes' if not self.recovery else 'NO'} | "
            f"max call {self.max_call:.2f}s (bound {self.call_bound:.1f}s), {self.seconds:.1f}s"
        )


class _Failed(Exception):
    """A call raised: carries the error and when the call ended."""

    def __init__(self, error: BaseException, ended: float) -> None:
        super().__init__(repr(error))
        self.error = error
        self.ended = ended


class _Worker:
    def __init__(self, number: int, run: "_Run") -> None:
        self.number = number
        self.run = run
        self.cp = run.cp
        self.random = random.Random(run.settings.seed * 1000 + number)
        self.prefix = f"{run.prefix}w{number}:"
        self.threads = [f"{self.prefix}{i}" for i in range(run.settings.threads_per_worker)]
        self.model: Dict[str, Optional[Stored]] = {tid: None for tid in self.threads}
        self.handles: Dict[str, Optional[AgentStateSnapshot]] = {tid: None for tid in self.threads}
        self.busy: Optional[Tuple[str, float]] = None
        self.serial = 0

    # ------------------------------------------------------------------ calls

    def call(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run one library call, timed and checked for its error type; raise :class:`_Failed` if it raised."""
        report = self.run.report
        started = time.monotonic()
        self.busy = (name, started)
        error: Optional[BaseException] = None
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - classifying every error is the point
            error = exc
        ended = time.monotonic()
        self.busy = None
        took = ended - started
        with report.lock:
            report.operations[name] += 1
            report.max_call = max(report.max_call, took)
            if took > self.run.settings.call_bound:
                report.overruns.append(f"{name} took {took:.2f}s ({error!r})")
            if error is not None:
                report.errors[type(error).__name__] += 1
                if not isinstance(error, AgentsPersistError):
                    where = "".join(traceback.format_exception(error)[-6:])
                    report.untyped.append(f"{name}: {type(error).__module__}.{type(error).__name__}: {error}\n{where}")
        if error is not None:
            raise _Failed(error, ended)
        return result

    def fail(self, what: str) -> None:
        with self.run.report.lock:
            self.run.report.violations.append(what)

    def lost(self, what: str) -> None:
        with self.run.report.lock:
            self.run.report.lost.append(what)

    # ------------------------------------------------------------------ content

    def messages(self, tid: str, count: int) -> List[AgentMessage]:
        self.serial += 1
        big = self.random.random() < 0.1
        out = []
        for i in range(count):
            text = f"{tid} op{self.serial} #{i} " + ("x" * 30000 if big and i == 0 else "y" * self.random.randrange(200))
            out.append(AgentMessage.user(text) if i % 2 == 0 else AgentMessage.assistant(text))
        return out

    def batch(self, tid: str) -> List[AgentMessage]:
        """Usually a few messages; sometimes 40 (Redis's staged path)."""
        return self.messages(tid, 40 if self.random.random() < 0.12 else self.random.randint(1, 4))

    def next_state(self, tid: str, before: Optional[Stored]) -> AgentStateSnapshot:
        state = copy_state(before.state) if before is not None else AgentStateSnapshot()
        state.messages.extend(self.batch(tid))
        state.metadata["op"] = self.serial
        if self.random.random() < 0.3:
            state.todos.append(TodoItem(content=f"todo {self.serial}", status="pending"))
        return state

    # ------------------------------------------------------------------ the loop

    def loop(self) -> None:
        names = list(OPERATIONS)
        weights = [OPERATIONS[name] for name in names]
        while self.run.take_ticket():
            tid = self.random.choice(self.threads)
            getattr(self, "op_" + self.random.choices(names, weights)[0])(tid)

    # ------------------------------------------------------------------ writes

    def write(
        self,
        name: str,
        tid: str,
        fn: Callable[[], Any],
        after: Optional[Stored],
        check: Callable[[Any], None],
        idempotent: bool = False,
    ) -> None:
        """Run a write whose success leaves ``after``; on failure find out what it did (see the module docs)."""
        before = self.model[tid]
        for attempt in range(IDEMPOTENT_ATTEMPTS if idempotent else 1):
            try:
                result = self.call(name if attempt == 0 else name + "_retry", fn)
            except _Failed as failed:
                applied = self.resolve(name, tid, before, after, failed)
                if applied is None:
                    return
                if applied:
                    # Applied once: a retry with the same key must leave it so (it applies nothing more).
                    before = after
                continue
            else:
                check(result)
                self.model[tid] = after
                return
        # Every attempt failed: the model holds what the oracle found.

    def resolve(self, name: str, tid: str, before: Optional[Stored], after: Optional[Stored], failed: _Failed) -> Optional[bool]:
        """After a failed write: was it applied? Sets the model to what is stored; None if neither state is."""
        error = failed.error
        self.handles[tid] = None
        if not self.run.proxy.wait_settled(before=failed.ended, timeout=self.run.settings.settle_timeout):
            self.fail(f"{name} {tid}: the proxy still held bytes {self.run.settings.settle_timeout}s later")
        time.sleep(0.1)  # the server runs what the proxy just delivered
        stored = self.run.oracle_read(tid)
        if same(stored, before):
            applied = False
        elif same(stored, after):
            applied = True
        else:
            self.model[tid] = stored
            what = (
                f"{name} {tid} raised {error!r}; stored is neither before (v{version(before)}) "
                f"nor after (v{version(after)}): v{version(stored)}"
            )
            (self.lost if before is not None else self.fail)(what)
            return None
        self.model[tid] = after if applied else before
        with self.run.report.lock:
            if isinstance(error, BackendUnavailableError):
                self.run.report.outcomes[f"maybe_applied={error.maybe_applied} {'applied' if applied else 'not applied'}"] += 1
        if applied and isinstance(error, BackendUnavailableError) and not error.maybe_applied:
            self.fail(f"{name} {tid}: BackendUnavailableError(maybe_applied=False) but it was applied: {error}")
        if applied and isinstance(error, ConflictError):
            self.fail(f"{name} {tid}: ConflictError but it was applied: {error}")
        if applied and not isinstance(error, (BackendUnavailableError, ConflictError)):
            self.fail(f"{name} {tid}: {type(error).__name__} but it was applied: {error}")
        return applied

    def expect_version(self, name: str, tid: str, before: Optional[Stored], got: int) -> None:
        want = 1 if before is None else before.version + 1
        if got != want:
            self.fail(f"{name} {tid}: returned version {got}, expected {want}")

    def op_save_expected(self, tid: str) -> None:
        before = self.model[tid]
        state = self.next_state(tid, before)
        after = Stored(copy_state(state), version(before) + 1)
        expected = version(before)
        self.write(
            "save_expected",
            tid,
            lambda: self.cp.save(tid, state, expected_version=expected),
            after,
            lambda got: self.saved(tid, "save_expected", before, got, state),
        )

    def op_save_loaded(self, tid: str) -> None:
        handle = self.handles[tid]
        if handle is None:
            self.op_load(tid)
            handle = self.handles[tid]
            if handle is None and self.model[tid] is not None:
                return  # the load failed
        before = self.model[tid]
        state = handle if handle is not None else AgentStateSnapshot()
        state.messages.extend(self.batch(tid))
        state.metadata["op"] = self.serial
        after = Stored(copy_state(state), version(before) + 1)
        self.write("save_loaded", tid, lambda: self.cp.save(tid, state), after,
                   lambda got: self.saved(tid, "save_loaded", before, got, state))

    def op_save_force(self, tid: str) -> None:
        before = self.model[tid]
        state = self.next_state(tid, before)
        if state.messages:
            state.messages[0] = AgentMessage.system(f"summary of {tid} at op{self.serial}")  # rewrites the log
        after = Stored(copy_state(state), version(before) + 1)
        self.write("save_force", tid, lambda: self.cp.save(tid, state, force=True), after,
                   lambda got: self.saved(tid, "save_force", before, got, state))

    def saved(self, tid: str, name: str, before: Optional[Stored], got: int, state: AgentStateSnapshot) -> None:
        self.expect_version(name, tid, before, got)
        self.handles[tid] = state

    def op_append(self, tid: str) -> None:
        before = self.model[tid]
        messages = self.batch(tid)
        state = copy_state(before.state) if before is not None else AgentStateSnapshot()
        state.messages.extend(messages)
        after = Stored(state, version(before) + 1)
        key = uuid.uuid4().hex
        checked = self.random.random() < 0.3
        expected = version(before) if checked else None

        def check(got: int) -> None:
            self.expect_version("append", tid, before, got)
            self.handles[tid] = None

        self.write(
            "append",
            tid,
            lambda: self.cp.append(tid, messages, expected_version=expected, idempotency_key=key),
            after,
            check,
            idempotent=True,
        )

    def op_update(self, tid: str) -> None:
        before = self.model[tid]
        message = self.messages(tid, 1)[0]
        state = copy_state(before.state) if before is not None else AgentStateSnapshot()
        state.messages.append(message)
        state.metadata["n"] = int(state.metadata.get("n", 0)) + 1  # type: ignore[call-overload]
        after = Stored(state, version(before) + 1)
        key = uuid.uuid4().hex

        def fn(current: AgentStateSnapshot) -> None:
            current.messages.append(message)
            current.metadata["n"] = int(current.metadata.get("n", 0)) + 1  # type: ignore[call-overload]

        def check(got: AgentStateSnapshot) -> None:
            if fingerprint(got) != after.fingerprint or got.version != after.version:
                self.fail(f"update {tid}: returned v{got.version}, not the state applied once (v{after.version})")
            self.handles[tid] = got

        self.write("update", tid, lambda: self.cp.update(tid, fn, idempotency_key=key), after, check, idempotent=True)

    def op_delete(self, tid: str) -> None:
        before = self.model[tid]

        def check(got: bool) -> None:
            if got != (before is not None):
                self.fail(f"delete {tid}: returned {got} for a thread that {'exists' if before else 'does not exist'}")
            self.handles[tid] = None

        self.write("delete", tid, lambda: self.cp.delete(tid), None, check)

    # ------------------------------------------------------------------ reads

    def op_load(self, tid: str) -> None:
        try:
            got = self.call("load", lambda: self.cp.load(tid))
        except _Failed:
            return
        want = self.model[tid]
        stored = Stored(copy_state(got), got.version) if got is not None else None
        if not same(stored, want):
            self.lost(f"load {tid}: v{version(stored)} differs from the last acknowledged state v{version(want)}")
            self.model[tid] = stored
        self.handles[tid] = got

    def op_get_version(self, tid: str) -> None:
        try:
            got = self.call("get_version", lambda: self.cp.get_version(tid))
        except _Failed:
            return
        if got != version(self.model[tid]):
            self.lost(f"get_version {tid}: {got}, model v{version(self.model[tid])}")

    def op_list(self, tid: str) -> None:
        try:
            page = self.call("list", lambda: self.cp.list_threads(self.prefix, limit=100))
        except _Failed:
            return
        got = {info.thread_id: info.version for info in page.threads}
        want = {t: stored.version for t, stored in self.model.items() if stored is not None}
        if got != want:
            self.lost(f"list_threads {self.prefix}: {got}, model {want}")


def version(stored: Optional[Stored]) -> int:
    return 0 if stored is None else stored.version


def same(a: Optional[Stored], b: Optional[Stored]) -> bool:
    if a is None or b is None:
        return a is b
    return a.version == b.version and a.fingerprint == b.fingerprint


class _Run:
    def __init__(self, cp: Checkpointer, oracle: Checkpointer, proxy: FaultProxy, settings: Settings, report: Report) -> None:
        self.cp = cp
        self.oracle = oracle
        self.proxy = proxy
        self.settings = settings
        self.report = report
        self.prefix = f"faults{uuid.uuid4().hex[:8]}:"
        self._tickets = settings.operations
        self._lock = threading.Lock()
        self.deadline = time.monotonic() + settings.run_seconds

    def take_ticket(self) -> bool:
        with self._lock:
            if self._tickets <= 0 or time.monotonic() > self.deadline:
                return False
            self._tickets -= 1
            return True

    def oracle_read(self, tid: str) -> Optional[Stored]:
        state = self.oracle.load(tid)
        return None if state is None else Stored(copy_state(state), state.version)  # type: ignore[arg-type]


def run(backend: str, cp: Checkpointer, oracle: Checkpointer, proxy: FaultProxy, settings: Settings) -> Report:
    """Run the workload (see the module docs) and return its report; the threads it made are deleted at the end."""
    report = Report(backend, settings.seed, call_bound=settings.call_bound)
    started = time.monotonic()
    state = _Run(cp, oracle, proxy, settings, report)
    workers = [_Worker(n, state) for n in range(settings.workers)]
    threads = [threading.Thread(target=w.loop, name=f"faults-worker-{w.number}", daemon=True) for w in workers]
    proxy.schedule.resume()
    try:
        for thread in threads:
            thread.start()
        limit = time.monotonic() + settings.run_seconds + settings.hang_after
        for thread in threads:
            thread.join(max(0.0, limit - time.monotonic()))
    finally:
        proxy.schedule.pause()
    for worker in workers:
        busy = worker.busy
        if busy is not None:
            report.hangs.append(f"worker {worker.number}: {busy[0]} running for {time.monotonic() - busy[1]:.1f}s")
    report.faults = dict(proxy.counts)
    report.faults_at_connect = sum(1 for event in proxy.events if event.where == "connect")
    report.connections = proxy.accepted
    if not report.hangs:
        proxy.wait_settled(timeout=settings.settle_timeout)
        time.sleep(0.1)
        for worker in workers:
            _recover(worker, report)
    report.seconds = time.monotonic() - started
    for worker in workers:
        for tid in worker.threads:
            try:
                oracle.delete(tid)
            except AgentsPersistError:
                pass
    return report


def _recover(worker: _Worker, report: Report) -> None:
    """With faults off, the same checkpointer must serve every call at once; the oracle must agree with the model."""
    cp = worker.cp
    for tid in worker.threads:
        want = worker.model[tid]
        try:
            got = cp.load(tid)
            stored = Stored(copy_state(got), got.version) if got is not None else None  # type: ignore[arg-type]
            if not same(stored, want):
                report.lost.append(f"after the faults {tid}: v{version(stored)}, model v{version(want)}")
            version_now = cp.append(tid, [AgentMessage.user("after the faults")], idempotency_key=uuid.uuid4().hex)
            if version_now != version(want) + 1:
                report.recovery.append(f"append after the faults {tid}: v{version_now}, expected v{version(want) + 1}")
            page = cp.list_threads(worker.prefix, limit=100)
            if tid not in {info.thread_id for info in page.threads}:
                report.recovery.append(f"list_threads after the faults misses {tid}")
        except Exception as exc:  # noqa: BLE001
            report.recovery.append(f"{tid} after the faults: {type(exc).__name__}: {exc}")
            continue
        final = worker.run.oracle_read(tid)
        kept = want.state.messages if want is not None else []
        if final is None or final.version != version(want) + 1 or final.state.messages[:-1] != kept:
            report.lost.append(f"oracle after the faults {tid}: v{version(final)}, model v{version(want)} + 1")
