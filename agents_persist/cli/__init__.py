"""The ``agents-persist`` command: look at, move and check stored threads; a demo.

``main(argv) -> int`` is the API (the console script, ``python -m
agents_persist.cli`` and the Flask/Django command groups call it). Every
mistake prints one line on stderr and returns a documented exit code (see
:mod:`agents_persist.cli._common` and docs/cli.rst); nothing prints a
traceback, and output piped into ``head`` ends quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Optional, Sequence

from .. import __version__
from ..errors import AgentsPersistError
from ..urls import DEFAULT_URL, ENV_URL
from ._common import BROKEN_PIPE, FAILED, NOT_FOUND, PROG, USAGE, CliError, complain, default_url, describe, exit_code_for
from .commands import cmd_delete, cmd_delete_inactive, cmd_list, cmd_purge_expired, cmd_show, cmd_stats, cutoff, duration
from .demo import cmd_demo, cmd_demo_resume
from .doctor import cmd_doctor
from .transfer import cmd_copy, cmd_export, cmd_import

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        message = message.replace("'_demo-resume', ", "")  # the internal command stays hidden
        complain(f"{message} (see {self.prog} --help)")
        raise SystemExit(USAGE)


def _limit(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    url_help = f"store URL (default: ${ENV_URL} or {DEFAULT_URL}); accepted before or after the command"
    parser = _Parser(prog=PROG, description="Look at, move and check stored agent threads; run a demo.")
    parser.add_argument("--version", action="version", version=f"agents_persist {__version__}")
    parser.add_argument("--url", default=default_url(), help=url_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: Optional[str], run: object) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text) if help_text else commands.add_parser(name)
        # SUPPRESS: a --url after the command overrides the one before it, and its absence keeps it.
        sub.add_argument("--url", default=argparse.SUPPRESS, help=url_help)
        sub.set_defaults(run=run)
        return sub

    demo = command("demo", "run a conversation, persist it, resume it in a second process", cmd_demo)
    demo.add_argument("--thread", help="thread ID to use (default: a new demo-XXXXXXXX)")
    resume = command("_demo-resume", None, cmd_demo_resume)  # internal: the demo's second process
    resume.add_argument("thread")
    listing = command("list", "list stored threads, newest first", cmd_list)
    listing.add_argument("--prefix", help="only thread IDs starting with this")
    listing.add_argument("--limit", type=_limit, default=50, help="page size, 1 to 10000 (default: 50)")
    listing.add_argument("--cursor", help="the cursor printed at the end of the previous page")
    show = command("show", "print one thread's stored state", cmd_show)
    show.add_argument("thread")
    show.add_argument("--json", action="store_true", help="print JSON")
    delete = command("delete", "delete one thread", cmd_delete)
    delete.add_argument("thread")
    export = command("export", "write threads as JSON Lines, one thread per line", cmd_export)
    export.add_argument("--prefix", help="only thread IDs starting with this")
    export.add_argument("--output", "-o", help="file to write (default: stdout)")
    importing = command("import", "create the threads of an export (idempotent)", cmd_import)
    importing.add_argument("--input", "-i", help="file to read (default: stdin)")
    importing.add_argument("--force", action="store_true", help="overwrite threads that exist with other content")
    copy = command("copy", "copy every thread from one store to another (resumable, idempotent)", cmd_copy)
    copy.add_argument("--from", dest="source", required=True, metavar="URL", help="source store URL")
    copy.add_argument("--to", dest="destination", required=True, metavar="URL", help="destination store URL")
    copy.add_argument("--prefix", help="only thread IDs starting with this")
    copy.add_argument("--force", action="store_true", help="overwrite threads that exist with other content")
    command("purge-expired", "delete expired threads now", cmd_purge_expired)
    inactive = command("delete-inactive", "delete threads not saved since a time, in batches", cmd_delete_inactive)
    since = inactive.add_mutually_exclusive_group(required=True)
    since.add_argument("--before", type=cutoff, metavar="TIME", help="ISO 8601 time with a UTC offset, e.g. 2025-01-31T00:00:00Z")
    since.add_argument("--older-than", type=duration, metavar="AGE", help="not saved for this long: 90d, 12h, 30m, 3600s, 2w")
    inactive.add_argument("--batch-size", type=_limit, default=500, help="threads per batch, 1 to 10000 (default: 500)")
    stats = command("stats", "thread count, total messages, oldest and newest update", cmd_stats)
    stats.add_argument("--prefix", help="only thread IDs starting with this")
    doctor = command("doctor", "check a store: connectivity, permissions, a timed save/load/delete", cmd_doctor)
    doctor.add_argument("target", nargs="?", metavar="URL", help="store to check (default: --url)")
    # Hide the internal command from the COMMAND list of --help.
    commands._choices_actions = [a for a in commands._choices_actions if a.dest != "_demo-resume"]
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``agents-persist`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else USAGE
    try:
        return int(args.run(args))
    except CliError as exc:
        complain(str(exc))
        return exc.code
    except AgentsPersistError as exc:
        complain(describe(exc))
        return exit_code_for(exc)
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE
    except FileNotFoundError as exc:
        complain(f"no such file: {exc.filename}")
        return NOT_FOUND
    except OSError as exc:
        complain(f"{type(exc).__name__}: {exc}")
        return FAILED
    except KeyboardInterrupt:
        complain("interrupted")
        return 130


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
