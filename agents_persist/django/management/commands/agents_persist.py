"""``manage.py agents_persist [--alias A] SUBCOMMAND ...``: the ``agents-persist`` CLI against an alias's store."""

from __future__ import annotations

import argparse
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, List

from django.core.management.base import BaseCommand, CommandError

from .... import cli
from .. import _command_argv


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Run an agents-persist subcommand (list, show, delete, demo, ...) against an AGENTS_PERSIST alias's store. "
        "Everything after the subcommand goes to it unchanged."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--alias", default="default", help="the AGENTS_PERSIST alias (default: default)")
        parser.add_argument("subcommand", help="an agents-persist subcommand: list, show, delete, demo, ...")
        parser.add_argument("args", nargs=argparse.REMAINDER, help="the subcommand's arguments")

    def handle(self, *positional: Any, **options: Any) -> None:
        # Django passes the REMAINDER ("args") positionally, from the command line and from call_command alike.
        argv: List[str] = _command_argv(options["alias"], options["subcommand"], [str(arg) for arg in positional])
        # The CLI prints; send it to this command's streams (call_command(stdout=...) captures it).
        with (
            redirect_stdout(getattr(self.stdout, "_out", self.stdout)),
            redirect_stderr(getattr(self.stderr, "_out", self.stderr)),
        ):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse: a usage error (2) or --help (0)
                code = exc.code if isinstance(exc.code, int) else 1
        if code:
            raise CommandError(f"agents-persist {options['subcommand']} exited with status {code}", returncode=code)
