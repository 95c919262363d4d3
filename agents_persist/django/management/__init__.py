"""Management commands of ``agents_persist.django``."""

from __future__ import annotations

from typing import List, Sequence

from ..conf import alias_config


def _command_argv(alias: str, subcommand: str, args: Sequence[str]) -> List[str]:
    """``agents_persist.cli.main``'s argv for ``subcommand args`` on ``alias``'s URL (``--url`` before the subcommand).

    An alias without a URL leaves ``--url`` out: the CLI's default is ``from_url``'s default.
    """
    url = alias_config(alias).url
    return (["--url", url] if url is not None else []) + [subcommand, *args]
