"""``from_url``: pick and build a checkpointer from a URL, importing its driver lazily.

Schemes come from :mod:`agents_persist.registry`, and drivers are imported
only when a checkpointer is built, so choosing ``memory://`` never imports
redis, psycopg2 or boto3. Every backend class has a ``from_url``
classmethod; this module only dispatches. :func:`redact_url` lives in
:mod:`agents_persist.redaction`, the one module that hides secrets.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from . import registry
from .errors import ConfigurationError
from .redaction import redact_url

if TYPE_CHECKING:
    from .checkpointer import Checkpointer

__all__ = ["from_url", "register_scheme", "redact_url", "ENV_URL", "DEFAULT_URL"]

ENV_URL = "AGENTS_PERSIST_URL"
DEFAULT_URL = "sqlite:///agents_persist.db"



def register_scheme(scheme: str, target: str, *, allow_override: bool = False) -> None:
    """Make ``from_url`` build ``target`` (``"package.module:Class"``) for ``scheme://`` URLs.

    A shorthand for :func:`agents_persist.registry.register` with a backend
    named after the scheme.

    Raises:
        ConfigurationError: ``scheme`` is taken and ``allow_override`` is false,
            or ``target`` is not of the form ``module:Class``.
    """
    scheme = scheme.lower()
    for backend in registry.backends():
        if scheme in backend.schemes and backend.target == target:
            return
    registry.register(registry.Backend(name=f"scheme:{scheme}", target=target, schemes=(scheme,)), allow_override=allow_override)


def _resolve(scheme: str) -> Any:
    backend = registry.resolve_scheme(scheme)
    try:
        return backend.load()
    except ImportError as exc:
        hint = f"; install it with: pip install agents_persist[{backend.extra}]" if backend.extra else ""
        raise ConfigurationError(f"the {scheme}:// backend needs a missing package ({exc.name}){hint}") from exc


def from_url(url: Optional[str] = None, **options: Any) -> "Checkpointer":
    """Build a checkpointer from ``url``.

    Args:
        url: ``memory://``, ``sqlite:///path``, ``redis://``, ``rediss://``,
            ``redis+cluster://host:port,...``, ``redis+sentinel://host:port,.../service``,
            ``postgresql://``, ``postgres://``
            or ``dynamodb://[region]/table?endpoint_url=...``. If omitted, the
            ``AGENTS_PERSIST_URL`` environment variable, else
            ``sqlite:///agents_persist.db``.
        **options: Passed to the backend's constructor (``ttl``,
            ``max_connections``, ``timeout``, ...).

    Raises:
        ConfigurationError: Unknown scheme, bad URL, or a missing driver (the
            message names the extra to install).
    """
    if url is None:
        url = os.environ.get(ENV_URL) or DEFAULT_URL
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a checkpointer URL: {redact_url(str(url))!r}")
    scheme = url.split("://", 1)[0].lower()
    backend = _resolve(scheme)
    return backend.from_url(url, **options)  # type: ignore[no-any-return]
