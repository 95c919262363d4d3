"""Reading and checking the ``AGENTS_PERSIST`` setting, without building or connecting anything.

The setting has the shape of Django's ``CACHES``::

    AGENTS_PERSIST = {
        "default": {"URL": "redis://localhost:6379/0", "OPTIONS": {"ttl": 7 * 24 * 3600}},
        "archive": {"URL": "postgresql://app@db/app"},
    }

A missing setting means ``{"default": {"URL": None}}``: :func:`~agents_persist.from_url`'s
default (``$AGENTS_PERSIST_URL``, else ``sqlite:///agents_persist.db``).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from django.conf import settings

from .. import options, registry
from ..errors import ConfigurationError
from ..urls import DEFAULT_URL, ENV_URL, redact_url

__all__ = ["SETTING", "DEFAULT_ALIAS", "AliasConfig", "SettingProblem", "read", "alias_config", "problems"]

#: Name of the Django setting.
SETTING = "AGENTS_PERSIST"
#: The alias used when none is named.
DEFAULT_ALIAS = "default"
_KEYS = ("URL", "OPTIONS")


@dataclass(frozen=True)
class AliasConfig:
    """One alias of the setting: the store URL (None: ``from_url``'s default) and ``from_url`` options."""

    alias: str
    url: Optional[str]
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SettingProblem:
    """What is wrong with the setting; ``code`` is the number of the system check (``agents_persist.E00<code>``)."""

    code: int
    message: str
    alias: Optional[str] = None


#: Codes: 1 bad URL (not a str, not a URL, unknown scheme); 2 bad or unknown option; 3 malformed setting.
BAD_URL, BAD_OPTION, MALFORMED = 1, 2, 3


def _raw() -> Any:
    return getattr(settings, SETTING, None)


def _shape(raw: Any) -> Tuple[Dict[str, Mapping[str, Any]], List[SettingProblem]]:
    """The aliases of ``raw`` that are dicts, and the problems of its shape."""
    if raw is None:
        return {DEFAULT_ALIAS: {"URL": None}}, []
    if not isinstance(raw, Mapping):
        return {}, [SettingProblem(MALFORMED, f"{SETTING} must be a dict of aliases, not {type(raw).__name__}")]
    found: Dict[str, Mapping[str, Any]] = {}
    problems: List[SettingProblem] = []
    for alias, entry in raw.items():
        if not isinstance(entry, Mapping):
            problems.append(SettingProblem(MALFORMED, f"{SETTING}[{alias!r}] must be a dict, not {type(entry).__name__}", alias))
            continue
        unknown = sorted(str(key) for key in entry if key not in _KEYS)
        if unknown:
            problems.append(
                SettingProblem(MALFORMED, f"{SETTING}[{alias!r}] has unknown keys {unknown}; known: URL, OPTIONS", alias)
            )
        found[str(alias)] = entry
    return found, problems


def _check_url(alias: str, url: Any) -> Tuple[Optional[registry.Backend], List[SettingProblem]]:
    """The backend of ``url`` (None: from_url's default, as this process would build it), or the problem with it."""
    where = f"{SETTING}[{alias!r}]['URL']"
    if url is None:
        url, where = _default_url(), f"{SETTING}[{alias!r}] (no URL: ${ENV_URL}, else {DEFAULT_URL})"
    if not isinstance(url, str) or "://" not in url:
        return None, [SettingProblem(BAD_URL, f"{where} is not a checkpointer URL: {redact_url(str(url))!r}", alias)]
    try:
        urlsplit(url)
        backend = registry.resolve_scheme(url.split("://", 1)[0])
    except (ValueError, ConfigurationError) as exc:
        return None, [SettingProblem(BAD_URL, f"{where}: {exc}", alias)]
    return backend, []


def _default_url() -> str:
    return os.environ.get(ENV_URL) or DEFAULT_URL


def _check_options(alias: str, backend: registry.Backend, url: str, given: Any) -> List[SettingProblem]:
    where = f"{SETTING}[{alias!r}]['OPTIONS']"
    if not isinstance(given, Mapping):
        return [SettingProblem(BAD_OPTION, f"{where} must be a dict of from_url options, not {type(given).__name__}", alias)]
    module = importlib.import_module(backend.target.partition(":")[0])  # never imports the driver
    declared = getattr(module, "OPTIONS", None)
    if declared is None:
        return []  # a backend that declares no options: checked when built
    try:
        options.check(declared, given, backend=backend.name)
        # Values of declared query parameters; other names may be the driver's own (checked when built).
        options.resolve(declared, urlsplit(url).query, {}, backend=backend.name, passthrough=lambda name: True)
    except ConfigurationError as exc:
        return [SettingProblem(BAD_OPTION, f"{where}: {exc}", alias)]
    return []


def problems() -> List[SettingProblem]:
    """Everything wrong with the setting, found without building a checkpointer or connecting."""
    found, problems = _shape(_raw())
    for alias, entry in found.items():
        backend, url_problems = _check_url(alias, entry.get("URL"))
        problems += url_problems
        if backend is not None:
            url = entry.get("URL") or _default_url()
            problems += _check_options(alias, backend, url, entry.get("OPTIONS", {}))
    return problems


def read() -> Dict[str, AliasConfig]:
    """Every alias of the setting; :class:`ConfigurationError` if it is malformed."""
    found, shape_problems = _shape(_raw())
    if shape_problems:
        raise ConfigurationError(shape_problems[0].message)
    configs: Dict[str, AliasConfig] = {}
    for alias, entry in found.items():
        url, given = entry.get("URL"), entry.get("OPTIONS", {})
        if url is not None and not isinstance(url, str):
            raise ConfigurationError(f"{SETTING}[{alias!r}]['URL'] must be a str, not {type(url).__name__}")
        if not isinstance(given, Mapping):
            raise ConfigurationError(f"{SETTING}[{alias!r}]['OPTIONS'] must be a dict, not {type(given).__name__}")
        configs[alias] = AliasConfig(alias, url, dict(given))
    return configs


def alias_config(alias: str) -> AliasConfig:
    """The configuration of ``alias``; :class:`ConfigurationError` naming the known aliases if it has none."""
    configs = read()
    if alias not in configs:
        raise ConfigurationError(f"no {SETTING} alias {alias!r}; configured: {', '.join(sorted(configs)) or 'none'}")
    return configs[alias]
