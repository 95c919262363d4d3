"""Shared benchmark workload and reporting: medians and ratios measured in one run.

Every backend benchmark measures the library next to the raw client doing the
same I/O, in the same process and run, interleaving the two so that machine
noise hits both alike. Results are medians (microseconds) and ratios; nothing
here gates CI.

Workloads:

* ``append``: a thread holding N stored messages gets 2 new messages and is
  saved (one sample per fresh thread, N in 10, 100, 1,000).
* ``load``: a thread of 1,000 messages is loaded.
* ``growing``: one thread, 500 turns of 2-3 messages, saved after every turn
  (the realistic case); median save latency around 10, 100 and 1,000 messages.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, Iterable, List, Mapping, Sequence, Tuple

from agents_persist import AgentMessage, AgentStateSnapshot, Checkpointer, ToolCall

__all__ = [
    "SIZES",
    "WINDOWS",
    "make_messages",
    "snapshot_of",
    "median_us",
    "interleave",
    "append_samples",
    "grow",
    "library_saver",
    "growing_conversation",
    "window_medians",
    "add_growing_conversation",
    "measure_appends",
    "measure_load",
    "SAVE_LABEL",
    "LOAD_LABEL",
    "Report",
    "parse_args",
]

SIZES = (10, 100, 1000)
WINDOWS = {10: (6, 14), 100: (90, 110), 1000: (950, 1050)}


def make_messages(count: int, start: int = 0) -> List[AgentMessage]:
    """Deterministic, realistic messages (~150-300 bytes encoded), numbered from ``start``."""
    out: List[AgentMessage] = []
    for i in range(start, start + count):
        kind = i % 5
        if kind == 0:
            out.append(AgentMessage.user(f"Question {i}: what is the weather in city number {i} tomorrow morning?"))
        elif kind == 1:
            out.append(
                AgentMessage.assistant(
                    None, tool_calls=[ToolCall(id=f"call_{i}", name="get_weather", arguments={"city": i, "day": "tomorrow"})]
                )
            )
        elif kind == 2:
            out.append(
                AgentMessage.tool({"city": i, "forecast": "sunny", "high_c": 21.5, "low_c": 9}, tool_call_id=f"call_{i - 1}")
            )
        else:
            out.append(
                AgentMessage.assistant(
                    f"Answer {i}: tomorrow will be mostly sunny with a high of 21.5 C and a low of 9 C. " * 2,
                    metadata={"model": "demo-1", "tokens": 42 + i % 7},
                )
            )
    return out


def snapshot_of(messages: Sequence[AgentMessage]) -> AgentStateSnapshot:
    """A snapshot with ``messages`` and a small head (todos/metadata)."""
    return AgentStateSnapshot(messages=list(messages), metadata={"user": "bench", "turns": len(messages) // 2})


def median_us(samples: Iterable[float]) -> float:
    """Median of ``samples`` (seconds) in microseconds."""
    return statistics.median(list(samples)) * 1e6


def interleave(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 3) -> Dict[str, List[float]]:
    """Run each function ``repeats`` times, round-robin, and collect durations (seconds).

    A function may return its own measured duration as a float (to exclude
    set-up done inside it); whatever else it returns, its whole call is timed.
    """
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            measured = fn()
            elapsed = measured if isinstance(measured, float) else time.perf_counter() - start
            if round_ >= warmup:
                samples[name].append(elapsed)
    return samples


def append_samples(checkpointer: Checkpointer, prefix: str, size: int, counter: List[int]) -> Callable[[], float]:
    """A benchmark step: store ``size`` messages under a new thread, then time saving 2 more."""

    def step() -> float:
        counter[0] += 1
        tid = f"{prefix}append-{size}-{counter[0]}"
        state = snapshot_of(make_messages(size))
        checkpointer.save(tid, state)
        state.messages.extend(make_messages(2, size))
        start = time.perf_counter()
        checkpointer.save(tid, state)
        elapsed = time.perf_counter() - start
        checkpointer.delete(tid)
        return elapsed

    return step


SAVE_LABEL = "library save +2 msgs onto {size}"
LOAD_LABEL = "library load 1000"


def measure_appends(report: "Report", checkpointer: Checkpointer, raw: Mapping[str, Callable[[], object]], repeats: int) -> None:
    """Report library saves of 2 messages onto 10, 100 and 1,000 stored ones, interleaved with ``raw`` steps.

    Adds the ratio save at 1,000 / save at 10 (target 1.5); the caller adds
    its own library-versus-raw ratio.
    """
    fns: Dict[str, Callable[[], object]] = {
        SAVE_LABEL.format(size=size): append_samples(checkpointer, "bench-", size, [0]) for size in SIZES
    }
    fns.update(raw)
    for label, samples in interleave(fns, repeats).items():
        report.add(label, samples)
    report.ratio("save at 1000 / save at 10", SAVE_LABEL.format(size=1000), SAVE_LABEL.format(size=10), 1.5)


def measure_load(
    report: "Report", checkpointer: Checkpointer, raw_label: str, raw_load: Callable[[], object], repeats: int
) -> None:
    """Report the load of a 1,000-message thread next to ``raw_load``, with their ratio (target 1.5)."""
    checkpointer.save("bench-load", snapshot_of(make_messages(1000)))
    try:
        loads = interleave({LOAD_LABEL: lambda: checkpointer.load("bench-load"), raw_label: raw_load}, repeats)
    finally:
        checkpointer.delete("bench-load")
    for label, samples in loads.items():
        report.add(label, samples)
    report.ratio("library / raw load 1000", LOAD_LABEL, raw_label, 1.5)


Saver = Callable[[List[AgentMessage]], object]


def grow(savers: Mapping[str, Saver], turns: int = 500) -> Dict[str, List[Tuple[int, float]]]:
    """One conversation of ``turns`` turns of 2-3 messages; after each turn every saver gets the turn's messages.

    The savers run one after another on the same turn (interleaved, so that
    noise hits them alike); each keeps its own copy of the conversation.
    Returns, per saver, (message count after the turn, seconds its call took).
    """
    out: Dict[str, List[Tuple[int, float]]] = {name: [] for name in savers}
    count = 0
    for turn in range(turns):
        new = make_messages(2 + turn % 2, count)
        count += len(new)
        for name, save in savers.items():
            start = time.perf_counter()
            save(new)
            out[name].append((count, time.perf_counter() - start))
    return out


def library_saver(checkpointer: Checkpointer, thread_id: str) -> Saver:
    """A saver keeping one snapshot that it extends and saves each turn (the snapshot carries its provenance)."""
    state = AgentStateSnapshot()

    def save(new: List[AgentMessage]) -> None:
        state.messages.extend(new)
        checkpointer.save(thread_id, state)

    return save


def growing_conversation(checkpointer: Checkpointer, thread_id: str, turns: int = 500) -> List[Tuple[int, float]]:
    """One thread, ``turns`` turns of 2-3 messages, saved after each; returns (message count, seconds)."""
    return grow({"library": library_saver(checkpointer, thread_id)}, turns)["library"]


def window_medians(samples: List[Tuple[int, float]]) -> Dict[int, Tuple[float, int]]:
    """Median save latency (µs) and sample count of the growing workload near 10, 100 and 1,000 messages."""
    result: Dict[int, Tuple[float, int]] = {}
    for size, (low, high) in WINDOWS.items():
        inside = [seconds for count, seconds in samples if low <= count <= high]
        if inside:
            result[size] = (median_us(inside), len(inside))
    return result


def add_growing_conversation(report: "Report", checkpointer: Checkpointer, thread_id: str, turns: int) -> List[Tuple[int, float]]:
    """Run :func:`growing_conversation`, report its medians near 10/100/1,000 and their ratio; return the samples."""
    samples = growing_conversation(checkpointer, thread_id, turns)
    medians = window_medians(samples)
    for size, (median, count) in medians.items():
        report.add_median(f"growing conversation save near {size}", median, count)
    if 1000 in medians and 10 in medians:
        report.ratio(
            "growing: save near 1000 / near 10", "growing conversation save near 1000", "growing conversation save near 10", 1.5
        )
    return samples


class Report:
    """Collects medians and prints them with ratios and their targets."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.medians: Dict[str, float] = {}
        self.counts: Dict[str, int] = {}
        self.checks: List[Tuple[str, str, str, float]] = []

    def add(self, label: str, samples: Sequence[float]) -> None:
        self.medians[label] = median_us(samples)
        self.counts[label] = len(samples)

    def add_median(self, label: str, median: float, count: int) -> None:
        self.medians[label] = median
        self.counts[label] = count

    def ratio(self, description: str, numerator: str, denominator: str, target: float) -> None:
        """Report ``numerator / denominator`` against ``target`` (lower is better; > target is flagged)."""
        self.checks.append((description, numerator, denominator, target))

    def render(self) -> str:
        width = max(len(label) for label in self.medians) + 2
        lines = [
            f"## {self.title}",
            "",
            f"| {'measurement'.ljust(width)} | median µs |  n  |",
            f"|{'-' * (width + 2)}|----------:|----:|",
        ]
        for label, value in self.medians.items():
            lines.append(f"| {label.ljust(width)} | {value:9.1f} | {self.counts[label]:3d} |")
        if self.checks:
            lines += ["", "| ratio | value | target | ok |", "|---|---:|---:|:--:|"]
            for description, num, den, target in self.checks:
                value = self.medians[num] / self.medians[den]
                lines.append(f"| {description} | {value:.2f} | ≤ {target:g} | {'yes' if value <= target else 'NO'} |")
        return "\n".join(lines)

    def all_ok(self) -> bool:
        return all(self.medians[n] / self.medians[d] <= t for _, n, d, t in self.checks)


def parse_args(description: str) -> argparse.Namespace:
    """Common options: ``--repeats`` samples per measurement, ``--turns`` of the growing workload."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=40, help="samples per measurement (default 40)")
    parser.add_argument("--turns", type=int, default=500, help="turns of the growing conversation (default 500)")
    return parser.parse_args()
