"""``export``, ``import`` and ``copy``: move threads between stores as JSON Lines or directly.

Export format (one JSON object per line, UTF-8, encoded with msgspec so ints
stay ints and floats stay floats)::

    {"format": 1, "thread_id": "...", "version": 3,
     "updated_at": "2026-12-01T10:00:00.123456+00:00", "expires_at": null,
     "messages": [...], "todos": [...], "current_interrupt": null, "metadata": {...}}

``version``, ``updated_at`` and ``expires_at`` describe the *source*; the
library assigns versions and timestamps itself when it saves, so an import
keeps the content (the last four fields) exactly, and the destination thread
starts again at version 1, updated now, with the destination's own TTL.

Import and copy are idempotent: a thread that already holds identical content
is skipped, one that holds other content is a conflict (exit code 5) unless
``--force`` overwrites it. A copy killed halfway and run again therefore
finishes with every thread exactly once.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from datetime import datetime
from typing import IO, Any, Dict, Iterator, List, Optional

import msgspec

from ..checkpointer import Checkpointer
from ..errors import ConflictError
from ..models import AgentMessage, AgentStateSnapshot, HitlInterrupt, JsonValue, TodoItem
from ._common import CONFLICT, USAGE, CliError, complain, open_store, say

__all__ = ["FORMAT", "ThreadRecord", "cmd_copy", "cmd_export", "cmd_import", "place", "read_records"]

#: Version of the export format; bumped on an incompatible change.
FORMAT = 1

COPIED, IDENTICAL, CONFLICTED = "copied", "identical", "conflict"


class ThreadRecord(msgspec.Struct, kw_only=True):
    """One line of an export: a thread's source coordinates and its whole content."""

    format: int = FORMAT
    thread_id: str
    version: int
    updated_at: Optional[datetime] = None
    expires_at: Optional[datetime] = None
    messages: List[AgentMessage] = []
    todos: List[TodoItem] = []
    current_interrupt: Optional[HitlInterrupt] = None
    metadata: Dict[str, JsonValue] = {}

    def snapshot(self) -> AgentStateSnapshot:
        """The content as a fresh snapshot (no provenance: saving it creates the thread)."""
        return AgentStateSnapshot(
            messages=list(self.messages),
            todos=list(self.todos),
            current_interrupt=self.current_interrupt,
            metadata=dict(self.metadata),
        )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ThreadRecord)


def records(checkpointer: Checkpointer, prefix: Optional[str]) -> Iterator[ThreadRecord]:
    """Every thread under ``prefix``, in thread-ID order (``iter_threads``); threads deleted meanwhile are left out."""
    for info in checkpointer.iter_threads(prefix):
        state = checkpointer.load(info.thread_id)
        if state is None:
            continue
        yield ThreadRecord(
            thread_id=info.thread_id,
            version=state.version or info.version,
            updated_at=info.updated_at,
            expires_at=info.expires_at,
            messages=state.messages,
            todos=state.todos,
            current_interrupt=state.current_interrupt,
            metadata=state.metadata,
        )


def read_records(stream: IO[bytes]) -> Iterator[ThreadRecord]:
    """Decode an export line by line.

    Raises:
        CliError: A line is not a thread record of a known format (exit code 2).
    """
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            record = _decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CliError(f"line {number} is not a thread record: {exc}", USAGE) from None
        if record.format != FORMAT:
            raise CliError(f"line {number} has export format {record.format}; this version reads format {FORMAT}", USAGE)
        yield record


def place(destination: Checkpointer, thread_id: str, state: AgentStateSnapshot, *, force: bool) -> str:
    """Store ``state`` as ``thread_id`` unless identical content is there; return what happened.

    Creates a missing thread; an existing one with other content is a
    conflict, or is overwritten with ``force``.
    """
    existing = destination.load(thread_id)
    if existing is not None and existing == state:
        return IDENTICAL
    if existing is not None and not force:
        return CONFLICTED
    try:
        destination.save(thread_id, state, force=force)
    except ConflictError:  # created concurrently: compare again
        current = destination.load(thread_id)
        return IDENTICAL if current is not None and current == state else CONFLICTED
    return COPIED


def _report(counts: Dict[str, int], verb: str) -> int:
    say(f"{verb} {counts[COPIED]}, already identical {counts[IDENTICAL]}, conflicts {counts[CONFLICTED]}")
    if counts[CONFLICTED]:
        complain(f"{counts[CONFLICTED]} thread(s) exist with other content; rerun with --force to overwrite them")
        return CONFLICT
    return 0


def _progress(description: str) -> Any:
    """A tqdm bar on stderr (shown on terminals only), or None when tqdm is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(desc=description, unit=" threads", disable=None, file=sys.stderr)


def _warn(bar: Any, message: str) -> None:
    if bar is None:
        complain(message)
    else:
        bar.write(f"agents-persist: {message}", file=sys.stderr)  # above the bar, not through it


def _transfer(source: Iterator[ThreadRecord], destination: Checkpointer, *, force: bool, description: str) -> Dict[str, int]:
    counts = {COPIED: 0, IDENTICAL: 0, CONFLICTED: 0}
    bar = _progress(description)
    try:
        for record in source:
            outcome = place(destination, record.thread_id, record.snapshot(), force=force)
            counts[outcome] += 1
            if outcome == CONFLICTED:
                _warn(bar, f"conflict: {record.thread_id!r} exists with other content")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return counts


def cmd_export(args: argparse.Namespace) -> int:
    """Write every thread (under ``--prefix``) as JSON Lines to ``--output`` or stdout."""
    with ExitStack() as stack:
        checkpointer = stack.enter_context(open_store(args.url, read_only=True))
        out: IO[bytes] = stack.enter_context(open(args.output, "wb")) if args.output else sys.stdout.buffer
        count = 0
        for record in records(checkpointer, args.prefix):
            out.write(_encoder.encode(record) + b"\n")
            count += 1
        out.flush()
    if args.output:
        say(f"exported {count} thread{'s' if count != 1 else ''} to {args.output}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Create every thread of an export (``--input`` or stdin) in the store."""
    with ExitStack() as stack:
        stream: IO[bytes] = stack.enter_context(open(args.input, "rb")) if args.input else sys.stdin.buffer
        checkpointer = stack.enter_context(open_store(args.url))
        counts = _transfer(read_records(stream), checkpointer, force=args.force, description="import")
    return _report(counts, "imported")


def cmd_copy(args: argparse.Namespace) -> int:
    """Copy every thread (under ``--prefix``) from ``--from`` to ``--to``; resumable and idempotent."""
    with open_store(args.source, read_only=True) as source, open_store(args.destination) as destination:
        counts = _transfer(records(source, args.prefix), destination, force=args.force, description="copy")
    return _report(counts, "copied")
