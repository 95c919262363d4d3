"""System checks of ``AGENTS_PERSIST`` for ``manage.py check``; they never build a checkpointer or connect.

* ``agents_persist.E001``: an alias's URL is not a str URL or has an unknown scheme.
* ``agents_persist.E002``: an alias's ``OPTIONS`` is not a dict, or names an unknown option or a bad value.
* ``agents_persist.E003``: the setting is not a dict of dicts with only ``URL`` and ``OPTIONS`` keys.
"""

from __future__ import annotations

from typing import Any, List

from django.core import checks

from . import conf

__all__ = ["check_settings"]


def check_settings(app_configs: Any = None, **kwargs: Any) -> List[Any]:
    """One :class:`django.core.checks.Error` per problem of the setting."""
    return [
        checks.Error(problem.message, hint=_HINTS[problem.code], id=f"agents_persist.E{problem.code:03d}")
        for problem in conf.problems()
    ]


_HINTS = {
    conf.BAD_URL: "Use a URL that from_url() accepts, such as sqlite:///agents.db or redis://host:6379/0.",
    conf.BAD_OPTION: "See the backend's page in the agents_persist docs for its options.",
    conf.MALFORMED: 'Write AGENTS_PERSIST = {"default": {"URL": "...", "OPTIONS": {...}}}.',
}
