"""``from_url``: pick and build a checkpointer from a URL, importing its driver lazily.

Schemes come from :mod:`agents_persist.registry`, and drivers are imported
only when a checkpointer is built, so choosing ``memory://`` never imports
redis, psycopg2 or boto3. Every backend class has a ``from_url``
classmethod; this module only dispatches, and hides passwords in anything it
prints.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

from . import registry
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .checkpointer import Checkpointer

__all__ = ["from_url", "register_scheme", "redact_url", "ENV_URL", "DEFAULT_URL"]

ENV_URL = "AGENTS_PERSIST_URL"
DEFAULT_URL = "sqlite:///agents_persist.db"

_SECRET_IN_QUERY = re.compile(r"(?i)((?:^|&)(?:password|secret|token|aws_secret_access_key|aws_session_token)=)[^&]*")


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


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (also in query parameters)."""
    if "://" not in url:
        # Not a URL (a forgotten scheme: "user:pw@host"); hide whatever precedes an '@'.
        _, at, host = url.rpartition("@")
        return f"***@{host}" if at else url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")  # the host follows the *last* '@', as urllib parses it
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = _SECRET_IN_QUERY.sub(r"\1***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing secret; keep the URL exactly as given (sqlite:/// stays intact)
    # Rebuild by hand: urlunsplit drops an empty netloc ("dynamodb:///t" would become "dynamodb:/t").
    redacted = f"{parts.scheme}://{netloc}{parts.path}"
    return redacted + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


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
