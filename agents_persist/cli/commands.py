"""``list``, ``show``, ``delete``, ``purge-expired`` and ``stats``: look at and tidy one store."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Optional

import msgspec

from ._common import NOT_FOUND, CliError, open_store, say
from .demo import print_state

__all__ = ["cmd_delete", "cmd_delete_inactive", "cmd_list", "cmd_purge_expired", "cmd_show", "cmd_stats", "cutoff", "duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def cmd_list(args: argparse.Namespace) -> int:
    """One line per thread, newest first; the cursor of the next page at the end."""
    with open_store(args.url, read_only=True) as checkpointer:
        page = checkpointer.list_threads(args.prefix, limit=args.limit, cursor=args.cursor)
        if not page.threads:
            say("no threads")
        for info in page.threads:
            say(f"{info.thread_id}\tversion {info.version}\t{info.message_count} messages\tupdated {info.updated_at.isoformat()}")
        if page.next_cursor:
            say(f"more: --cursor {page.next_cursor}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one thread, for people or (``--json``) for programs."""
    with open_store(args.url, read_only=True) as checkpointer:
        state = checkpointer.load(args.thread)
        if state is None:
            raise CliError(f"thread {args.thread!r} not found", NOT_FOUND)
        if args.json:
            data: Dict[str, Any] = msgspec.to_builtins(state)
            data.pop("provenance", None)
            data["version"] = state.version
            say(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            print_state(state, args.thread)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete one thread; exit code 3 if there was none."""
    with open_store(args.url, read_only=True) as checkpointer:
        if not checkpointer.delete(args.thread):
            raise CliError(f"thread {args.thread!r} not found", NOT_FOUND)
        say(f"deleted {args.thread!r}")
    return 0


def cmd_purge_expired(args: argparse.Namespace) -> int:
    """Delete expired threads now and say how many went."""
    with open_store(args.url, read_only=True) as checkpointer:
        removed = checkpointer.purge_expired()
    say(f"purged {removed} expired thread{'s' if removed != 1 else ''}")
    return 0


def duration(text: str) -> timedelta:
    """``--older-than``: a whole number and a unit, ``90d``, ``12h``, ``30m``, ``3600s``, ``2w``."""
    unit = _UNITS.get(text[-1:])
    if unit is None or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"not a duration such as 90d, 12h, 30m or 3600s: {text!r}")
    return timedelta(seconds=int(text[:-1]) * unit)


def cutoff(text: str) -> datetime:
    """``--before``: an ISO 8601 time with a UTC offset (``2025-01-31T00:00:00+00:00``, ``...Z``)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time with a UTC offset (e.g. 2025-01-31T00:00:00Z): {text!r}")
    return moment


def cmd_delete_inactive(args: argparse.Namespace) -> int:
    """Delete threads not saved since a time (``--before``) or for a while (``--older-than``), in batches."""
    before: datetime = args.before if args.before is not None else datetime.now(timezone.utc) - args.older_than
    with open_store(args.url, read_only=True) as checkpointer:
        removed = checkpointer.delete_inactive(before, batch_size=args.batch_size)
    say(f"deleted {removed} thread{'s' if removed != 1 else ''} not saved since {before.isoformat()}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Thread count, total messages, oldest and newest update (one walk over the thread summaries)."""
    count = messages = 0
    oldest: Optional[datetime] = None
    newest: Optional[datetime] = None
    with open_store(args.url, read_only=True) as checkpointer:
        for info in checkpointer.iter_threads(args.prefix):
            count += 1
            messages += info.message_count
            oldest = info.updated_at if oldest is None or info.updated_at < oldest else oldest
            newest = info.updated_at if newest is None or info.updated_at > newest else newest
    say(f"threads:  {count}")
    say(f"messages: {messages}")
    say(f"oldest update: {oldest.isoformat() if oldest else '-'}")
    say(f"newest update: {newest.isoformat() if newest else '-'}")
    return 0
