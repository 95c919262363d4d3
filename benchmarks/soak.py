"""Memory soak: many threads through one checkpointer, then deleted; RSS must come back within 50 MB.

Run: ``python -m benchmarks.soak [--backend memory|sqlite|...] [--threads 100000] [--messages 50]
[--pattern rolling|all]``.

Each thread ID is used once: a snapshot of ``--messages`` new messages is
saved, loaded back, and deleted. ``rolling`` (the default) deletes the
threads of each batch of ``--batch`` before the next, so what the backend
itself stores stays small and any growth is the process's own (caches,
registries, leaks); ``all`` saves every thread first and deletes them all at
the end (the backend then holds everything at the peak, so the memory
allocator's fragmentation shows too). RSS is read from ``/proc/self/statm``
after a ``gc.collect()``; the Python objects that grew the most are listed,
which names an unbounded cache when there is one.

The exit status is 1 when the final RSS is more than ``--limit-mb`` (50)
above the RSS at the start.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from agents_persist import Checkpointer, InMemoryCheckpointer, SqliteCheckpointer, from_url, redact_url
from benchmarks.harness import make_messages, snapshot_of

__all__ = ["rss_mb", "SoakReport", "soak", "run_soaks", "main"]

DEFAULT_BACKENDS = ("memory", "sqlite")
LIMIT_MB = 50.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """Resident set size of this process, MB (after a full garbage collection)."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE / 1e6


def _object_counts() -> Counter[str]:
    return Counter(type(obj).__qualname__ for obj in gc.get_objects())


@dataclass
class SoakReport:
    """What a soak run measured (MB, seconds), and the object types that grew the most."""

    backend: str
    threads: int
    messages: int
    pattern: str
    start_mb: float
    peak_mb: float
    end_mb: float
    seconds: float
    trace: List[Tuple[int, float]] = field(default_factory=list)  # (threads done, RSS MB)
    grown: List[Tuple[str, int]] = field(default_factory=list)  # (type, extra live objects at the end)

    @property
    def growth_mb(self) -> float:
        return self.end_mb - self.start_mb

    def render(self) -> str:
        lines = [
            f"{self.backend}: {self.threads:,} threads x {self.messages} messages ({self.pattern}), {self.seconds:.0f} s",
            f"RSS start {self.start_mb:.1f} MB, peak {self.peak_mb:.1f} MB, end {self.end_mb:.1f} MB: "
            f"{self.growth_mb:+.1f} MB after the threads are deleted",
            "RSS along the way: " + ", ".join(f"{done:,}: {mb:.0f}" for done, mb in self.trace),
        ]
        if self.grown:
            lines.append("objects grown: " + ", ".join(f"{name} +{count:,}" for name, count in self.grown))
        return "\n".join(lines)


def soak(
    checkpointer: Checkpointer,
    backend: str,
    threads: int,
    messages: int = 50,
    batch: int = 1000,
    pattern: str = "rolling",
    log: Optional[Callable[[str], None]] = None,
) -> SoakReport:
    """Save, load and delete ``threads`` thread IDs through ``checkpointer``; measure RSS before, along and after."""
    prefix = f"soak-{os.getpid()}-{time.monotonic_ns()}-"
    # Warm up the code paths (imports, first connections, compiled statements) before the baseline.
    checkpointer.save(prefix + "warmup", snapshot_of(make_messages(messages)))
    checkpointer.load(prefix + "warmup")
    checkpointer.delete(prefix + "warmup")
    before_objects = _object_counts()
    start = peak = rss_mb()
    trace: List[Tuple[int, float]] = [(0, start)]
    began = time.perf_counter()
    pending: List[str] = []
    step = max(1, threads // 10)
    for index in range(threads):
        tid = f"{prefix}{index}"
        checkpointer.save(tid, snapshot_of(make_messages(messages, index)))
        checkpointer.load(tid)
        pending.append(tid)
        if pattern == "rolling" and len(pending) >= batch:
            for done in pending:
                checkpointer.delete(done)
            pending.clear()
        if (index + 1) % step == 0:
            now = rss_mb()
            peak = max(peak, now)
            trace.append((index + 1, now))
            if log is not None:
                log(f"{index + 1:,} threads: RSS {now:.1f} MB")
    for done in pending:
        checkpointer.delete(done)
    pending.clear()
    end = rss_mb()
    grown = (_object_counts() - before_objects).most_common(5)
    return SoakReport(
        backend, threads, messages, pattern, start, max(peak, end), end, time.perf_counter() - began, trace + [(threads, end)],
        [(name, count) for name, count in grown if count >= 100],
    )


@contextlib.contextmanager
def open_checkpointer(backend: str, folder: str) -> Iterator[Checkpointer]:
    """``memory``, ``sqlite`` (synchronous=NORMAL: the soak is about memory, not fsyncs), or any URL."""
    if backend == "memory":
        cp: Checkpointer = InMemoryCheckpointer()
    elif backend == "sqlite":
        cp = SqliteCheckpointer(os.path.join(folder, "soak.db"), synchronous="NORMAL")
    else:
        cp = from_url(backend)
    try:
        yield cp
    finally:
        cp.close()


def run_soaks(
    backends: Sequence[str], threads: int, messages: int = 50, batch: int = 1000, pattern: str = "rolling",
    log: Optional[Callable[[str], None]] = None,
) -> List[SoakReport]:
    """:func:`soak` on each of ``backends`` (``memory``, ``sqlite`` or URLs), each in a checkpointer of its own."""
    reports = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as folder, open_checkpointer(backend, folder) as cp:
            reports.append(soak(cp, redact_url(backend), threads, messages, batch, pattern, log))
    return reports


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", action="append", help="memory, sqlite or a URL; repeatable (default: memory and sqlite)")
    parser.add_argument("--threads", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1000, help="threads saved before their deletion (rolling)")
    parser.add_argument("--pattern", choices=("rolling", "all"), default="rolling")
    parser.add_argument("--limit-mb", type=float, default=LIMIT_MB)
    args = parser.parse_args(argv)
    reports = run_soaks(
        args.backend or list(DEFAULT_BACKENDS), args.threads, args.messages, args.batch, args.pattern,
        log=lambda line: print(f"[soak] {line}", file=sys.stderr, flush=True),
    )
    for report in reports:
        print(report.render(), flush=True)
    return 1 if any(report.growth_mb > args.limit_mb for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
