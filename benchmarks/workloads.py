"""The workloads of the Performance v2 goal table, each measured against its floor in the same run.

Every function takes a :class:`Target` (one backend: the library's
checkpointer and the raw client next to it, on the same server or file) and
the run's :class:`Settings`, interleaves the library's steps with the
floor's (:func:`benchmarks.harness.interleave`), and adds
:class:`~benchmarks.goals.Row` objects to the run's
:class:`~benchmarks.goals.Results`. Medians everywhere; only public API of
agents_persist.

(a) :func:`many_threads`, (b)-(d) :func:`turn_saves`, (e) :func:`loads`,
(f) :func:`growing`, (g) :func:`small_loads`.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer
from benchmarks.floors import RawPostgres, RawRedis, RawStore, fits, head_of
from benchmarks.goals import Results, Row, Series
from benchmarks.harness import Saver, grow, interleave, library_saver, make_messages, median_us, snapshot_of

__all__ = ["Settings", "Target", "many_threads", "turn_saves", "loads", "growing", "small_loads", "WORKLOADS"]

#: Backends the goals name, per workload (others are measured for reference where cheap).
GOAL_BACKENDS = {
    "many threads": ("memory", "sqlite", "redis", "postgres"),
    "load": ("redis", "sqlite", "postgres"),
}


@dataclass
class Settings:
    """Sizes and sample counts of one run (``quick()``: small, for the smoke test)."""

    repeats: int = 40  # latency samples per measurement
    rounds: int = 9  # rounds of the many-threads workload
    workers: int = 2
    ids_per_worker: int = 200
    thread_messages: int = 50
    history: int = 1000  # messages held before the +2 saves, and the long end of the growing conversation
    load_messages: int = 1150
    conversations: int = 5  # growing conversations per backend (their samples are pooled)
    bin_width: int = 50  # messages per point of the plot
    slow_backends: Tuple[str, ...] = ("dynamodb",)  # fewer samples there (moto is slow per request)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(
            repeats=5, rounds=2, ids_per_worker=10, thread_messages=20, history=100, load_messages=115, conversations=1,
            bin_width=10,
        )

    def repeats_for(self, backend: str) -> int:
        return max(3, self.repeats // 3) if backend in self.slow_backends else self.repeats

    @property
    def turns(self) -> int:
        """Turns of 2-3 messages that take a conversation to 5% past ``history``."""
        return math.ceil(self.history * 1.05 / 2.5) + 2


@dataclass
class Target:
    """One backend as measured: the library and the raw client, and a thread-ID prefix of this run."""

    backend: str
    checkpointer: Checkpointer
    raw: RawStore
    prefix: str
    _counter: List[int] = field(default_factory=lambda: [0])

    def tid(self, what: str) -> str:
        """A thread ID (or raw key) used once in this run."""
        self._counter[0] += 1
        return f"{self.prefix}{what}-{self._counter[0]}"


def _goal(backend: str, workload: str, goal: str) -> Optional[str]:
    backends = GOAL_BACKENDS.get(workload)
    return goal if backends is None or backend in backends else None


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---------------------------------------------------------------------- (a) many threads


def many_threads(target: Target, settings: Settings, results: Results) -> None:
    """(a) 2 worker threads x 200 thread IDs: save a new 50-message thread, then load it; ops/s."""
    cp, raw = target.checkpointer, target.raw
    ops = settings.workers * settings.ids_per_worker * 2

    def one_round(
        save: Callable[[str, AgentStateSnapshot], object], load: Callable[[str], object], remove: Callable[[str], object]
    ) -> float:
        batches = [
            [
                (target.tid("mt"), snapshot_of(make_messages(settings.thread_messages, i * settings.thread_messages)))
                for i in range(settings.ids_per_worker)
            ]
            for _ in range(settings.workers)
        ]
        barrier = threading.Barrier(settings.workers + 1)
        errors: List[BaseException] = []

        def work(batch: List[Tuple[str, AgentStateSnapshot]]) -> None:
            barrier.wait()
            try:
                for tid, state in batch:
                    save(tid, state)
                    load(tid)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the measuring thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
        for batch in batches:
            for tid, _ in batch:
                remove(tid)
        return elapsed

    samples = interleave(
        {
            "library": lambda: one_round(cp.save, cp.load, cp.delete),
            "raw": lambda: one_round(raw.save, raw.load, raw.remove),
        },
        settings.rounds,
        warmup=1,
    )
    library, floor = (ops / statistics.median(samples[name]) for name in ("library", "raw"))
    shape = f"{settings.workers} threads x {settings.ids_per_worker} IDs, save {settings.thread_messages} msgs + load"
    results.add(
        Row(
            f"(a) many threads: {shape}", target.backend, "library", f"raw {raw.save_op}/{raw.load_op}", library, floor,
            "ops/s", _goal(target.backend, "many threads", ">= 0.8"), settings.rounds,
        )
    )


# ---------------------------------------------------------------------- (b)-(d) saves of a turn onto a long history


def turn_saves(target: Target, settings: Settings, results: Results) -> None:
    """(b) fresh snapshot, (c) ``append()``, (d) Redis append floor: +2 messages onto ``history`` held ones.

    Each case has its own thread of ``history`` messages and adds 2 per
    sample (steady state: the thread grows by 2 x repeats). The reference is
    the save of a loaded snapshot (``load()`` untimed, then +2, then save).
    """
    cp, raw, n = target.checkpointer, target.raw, settings.history
    loaded_tid, fresh_tid, append_tid = target.tid("loaded"), target.tid("fresh"), target.tid("append")
    cp.save(loaded_tid, snapshot_of(make_messages(n)))
    history: List[AgentMessage] = make_messages(n)
    version = cp.save(fresh_tid, snapshot_of(history))
    cp.save(append_tid, snapshot_of(make_messages(n)))
    appended = [n]

    def loaded() -> float:
        state = cp.load(loaded_tid)
        assert state is not None
        state.messages.extend(make_messages(2, len(state.messages)))
        return _timed(lambda: cp.save(loaded_tid, state))

    def fresh() -> float:
        nonlocal history, version
        state = AgentStateSnapshot(messages=history + make_messages(2, len(history)), metadata={"user": "bench"})
        start = time.perf_counter()
        version = cp.save(fresh_tid, state, expected_version=version)
        elapsed = time.perf_counter() - start
        history = state.messages  # the agent holds the very objects it saved
        return elapsed

    def append() -> float:
        new = make_messages(2, appended[0])
        appended[0] += 2
        # A stateless worker of a fleet: another worker wrote last, so this process knows
        # nothing of the stored log (no prefix hint) and append() must find it out.
        cp._writer.prefixes.forget(append_tid)
        return _timed(lambda: cp.append(append_tid, new))

    raw_key = target.tid("raw-turn")
    raw_state = snapshot_of(make_messages(n))
    raw.save(raw_key, raw_state)

    def whole() -> float:
        raw_state.messages.extend(make_messages(2, len(raw_state.messages)))
        return _timed(lambda: raw.save(raw_key, raw_state))

    fns: Dict[str, Callable[[], object]] = {"loaded": loaded, "fresh": fresh, "append": append, "whole": whole}
    if isinstance(raw, RawRedis):
        log_key = target.tid("raw-log")
        raw.create_log(log_key, make_messages(n), head_of(raw_state))
        log_count = [n]

        def rpush() -> float:
            new = make_messages(2, log_count[0])
            log_count[0] += 2
            return _timed(lambda: raw.append(log_key, new, head_of(raw_state)))

        fns["rpush"] = rpush
    repeats = settings.repeats_for(target.backend)
    try:
        medians = {name: median_us(samples) for name, samples in interleave(fns, repeats).items()}
    finally:
        for tid in (loaded_tid, fresh_tid, append_tid):
            cp.delete(tid)
        raw.remove(raw_key)
        if isinstance(raw, RawRedis):
            raw.remove(log_key)
    b = target.backend
    loaded_label = f"loaded-snapshot save +2 onto {n}"
    results.add(
        Row(f"(b) fresh snapshot +2 onto {n} held msgs", b, "fresh save", loaded_label, medians["fresh"], medians["loaded"],
            "µs", "<= 1.5", repeats)
    )
    results.add(
        Row(f"(c) stateless worker: append() 2 onto {n}", b, "append()", loaded_label, medians["append"], medians["loaded"],
            "µs", "<= 1.2", repeats)
    )
    if "rpush" in medians:
        results.add(
            Row(f"(d) Redis save +2 onto {n}", b, "loaded-snapshot save", "raw pipelined RPUSH 2 + SET head",
                medians["loaded"], medians["rpush"], "µs", "<= 1.3", repeats)
        )
    results.add(
        Row(f"save +2 onto {n} vs whole snapshot", b, "loaded-snapshot save", f"raw encode + {raw.save_op} of {n + 2}",
            medians["loaded"], medians["whole"], "µs", None, repeats)
    )


# ---------------------------------------------------------------------- (e) load of a long thread


def build_by_turns(cp: Checkpointer, thread_id: str, first: int, total: int) -> None:
    """One save of ``first`` messages, then turns of 2-3 messages saved one by one up to ``total``."""
    state = snapshot_of(make_messages(first))
    cp.save(thread_id, state)
    turn = 0
    while len(state.messages) < total:
        state.messages.extend(make_messages(min(2 + turn % 2, total - len(state.messages)), len(state.messages)))
        cp.save(thread_id, state)
        turn += 1


def loads(target: Target, settings: Settings, results: Results) -> None:
    """(e) Load of ``load_messages`` (1,000 saved at once, the rest in turns) vs the raw whole-snapshot read + one decode."""
    cp, raw, n = target.checkpointer, target.raw, settings.load_messages
    tid, key = target.tid("load"), target.tid("raw-load")
    build_by_turns(cp, tid, settings.history, n)
    full = snapshot_of(make_messages(n))
    if not fits(raw, full):
        cp.delete(tid)
        return
    raw.save(key, full)
    fns: Dict[str, Callable[[], object]] = {"library": lambda: cp.load(tid), "raw": lambda: raw.load(key)}
    if isinstance(raw, RawPostgres):
        fns["copy"] = lambda: raw.load_copy(key)
    repeats = settings.repeats_for(target.backend)
    try:
        medians = {name: median_us(samples) for name, samples in interleave(fns, repeats).items()}
    finally:
        cp.delete(tid)
        raw.remove(key)
    floor = f"raw {raw.load_op} + 1 decode"
    goal = "<= 1.0" if target.backend == "postgres" else "<= 1.2"
    workload = f"(e) load {n} msgs"
    results.add(
        Row(workload, target.backend, "load()", floor, medians["library"], medians["raw"], "µs",
            _goal(target.backend, "load", goal), repeats)
    )
    if "copy" in medians:
        results.add(
            Row(workload, target.backend, "load()", "raw binary COPY + 1 decode", medians["library"], medians["copy"], "µs",
                None, repeats)
        )


# ---------------------------------------------------------------------- (g) PostgreSQL, 1,000 small messages


def small_loads(target: Target, settings: Settings, results: Results) -> None:
    """(g) PostgreSQL: load of ``history`` small messages vs one ``bytea`` (msgpack array) + split + decode each."""
    cp, raw, n = target.checkpointer, target.raw, settings.history
    if not isinstance(raw, RawPostgres):
        return
    one, turns, key = target.tid("small-one"), target.tid("small-turns"), target.tid("raw-small")
    cp.save(one, snapshot_of(make_messages(n)))
    build_by_turns(cp, turns, 0, n)
    raw.put_log(key, make_messages(n))
    fns: Dict[str, Callable[[], object]] = {
        "one save": lambda: cp.load(one),
        "built by turns": lambda: cp.load(turns),
        "raw": lambda: raw.load_log(key),
    }
    try:
        medians = {name: median_us(samples) for name, samples in interleave(fns, settings.repeats).items()}
    finally:
        cp.delete(one)
        cp.delete(turns)
        raw.remove(key)
    for name in ("one save", "built by turns"):
        results.add(
            Row(f"(g) load {n} small msgs ({name})", target.backend, "load()", "raw one bytea SELECT + split + decode",
                medians[name], medians["raw"], "µs", "<= 0.75", settings.repeats)
        )


# ---------------------------------------------------------------------- (f) growing conversation, and the plot


def _whole_saver(raw: RawStore, key: str) -> Saver:
    state = snapshot_of([])

    def save(new: List[AgentMessage]) -> None:
        state.messages.extend(new)
        raw.save(key, state)

    return save


def _rpush_saver(raw: RawRedis, key: str) -> Saver:
    state = snapshot_of([])
    head = head_of(state)

    def save(new: List[AgentMessage]) -> None:
        raw.append(key, new, head)

    return save


def _window(samples: List[Tuple[int, float]], center: int) -> List[float]:
    low, high = (6, 14) if center <= 10 else (round(center * 0.95), round(center * 1.05))
    return [seconds for count, seconds in samples if low <= count <= high]


def _binned(samples: List[Tuple[int, float]], width: int) -> List[Tuple[int, float]]:
    bins: Dict[int, List[float]] = {}
    for count, seconds in samples:
        bins.setdefault((count - 1) // width, []).append(seconds)
    return [((index + 1) * width, median_us(values)) for index, values in sorted(bins.items())]


def growing(target: Target, settings: Settings, results: Results) -> None:
    """(f) Save latency of a growing conversation near ``history`` vs near 10 messages; the plot's series.

    ``conversations`` conversations of turns of 2-3 messages; each turn is
    saved by the library, by the raw whole-snapshot client and (Redis) by the
    ``RPUSH`` + ``SET`` append floor, one after another.
    """
    cp, raw, n = target.checkpointer, target.raw, settings.history
    pooled: Dict[str, List[Tuple[int, float]]] = {}
    conversations = 1 if target.backend in settings.slow_backends else settings.conversations
    for _ in range(conversations):
        tid, key = target.tid("grow"), target.tid("raw-grow")
        savers: Dict[str, Saver] = {"library": library_saver(cp, tid), "whole": _whole_saver(raw, key)}
        if isinstance(raw, RawRedis):
            savers["rpush"] = _rpush_saver(raw, key)
        try:
            for name, samples in grow(savers, settings.turns).items():
                pooled.setdefault(name, []).extend(samples)
        finally:
            cp.delete(tid)
            raw.remove(key)
    names = {"library": "library save", "whole": f"raw whole snapshot {raw.save_op}", "rpush": "raw RPUSH new + SET head"}
    for name, samples in pooled.items():
        if samples:
            kind = "library" if name == "library" else "floor"
            results.series.append(Series(target.backend, names[name], _binned(samples, settings.bin_width), kind))
    for name, goal in (("library", "<= 1.3"), ("whole", None), ("rpush", None)):
        samples = pooled.get(name, [])
        near_n, near_10 = _window(samples, n), _window(samples, 10)
        if near_n and near_10:
            results.add(
                Row(f"(f) growing conversation: save near {n} / near 10", target.backend, f"{names[name]} near {n}",
                    "the same near 10", median_us(near_n), median_us(near_10), "µs", goal if name == "library" else None,
                    len(near_n))
            )


WORKLOADS: List[Tuple[str, Callable[[Target, Settings, Results], None], Tuple[str, ...]]] = [
    ("many threads", many_threads, ("memory", "sqlite", "redis", "postgres")),
    ("turn saves", turn_saves, ("memory", "sqlite", "redis", "postgres", "dynamodb")),
    ("loads", loads, ("memory", "sqlite", "redis", "postgres", "dynamodb")),
    ("small loads", small_loads, ("postgres",)),
    ("growing", growing, ("memory", "sqlite", "redis", "postgres", "dynamodb")),
]
