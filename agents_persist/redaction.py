"""The one place that keeps passwords and keys out of what agents_persist shows: reprs, messages, logs.

Three layers, used by every backend:

* **By name.** :func:`is_secret_name` says which option, query parameter or
  libpq keyword holds a credential (``password``, ``sslpassword``,
  ``ssl_password``, ``aws_secret_access_key``, ``aws_session_token``, and any
  name with ``password``, ``passwd``, ``secret``, ``token``, ``credential``,
  ``api_key``, ``access_key`` (not ``access_key_id``) or ``private_key`` in
  it). :func:`~agents_persist.redact_url` and :func:`redact_params` replace such values, and
  the password of a URL's user info, by ``***``; :func:`hidden_value`
  describes a refused value without showing it.
* **By value.** A backend built with credentials :func:`remember`\\ s their
  values (and :func:`forget`\\ s them when closed). :func:`scrub` removes
  every remembered value, every URL's secrets and AWS's
  ``x-amz-security-token`` header from any text. Values shorter than
  :data:`MIN_SCRUBBED_LENGTH` characters are not searched for in free text
  (they would mask ordinary words); they are still hidden by name.
* **Driver text.** :func:`safe_cause` replaces a driver exception whose
  message (or whose chained exceptions' messages) holds a secret by a
  :class:`RedactedDriverError` with the scrubbed text and the original
  traceback, so ``raise error from cause`` never prints it;
  :func:`install_log_filter` puts :class:`RedactingFilter` on driver loggers
  (botocore's, which log request headers, the session token among them, at
  DEBUG).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

__all__ = [
    "MASK",
    "MIN_SCRUBBED_LENGTH",
    "is_secret_name",
    "redact_url",
    "redact_params",
    "hidden_value",
    "url_secrets",
    "remember",
    "forget",
    "scrub",
    "safe_cause",
    "scrub_error",
    "RedactedDriverError",
    "RedactingFilter",
    "install_log_filter",
]

#: What a hidden credential is shown as.
MASK = "***"
#: Remembered secrets shorter than this are not searched for in free text.
MIN_SCRUBBED_LENGTH = 4

_SECRET_NAME = re.compile(
    r"pass(?:word|wd|phrase)|secret|token|credential|api_?key|access_?key(?!_?id)|private_?key|^pwd$|^pass$",
    re.IGNORECASE,
)
_QUERY_PAIR = re.compile(r"(?P<sep>^|&)(?P<name>[^&=]*)=(?P<value>[^&]*)")
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]*")
_KEYWORD_IN_TEXT = re.compile(r"(?P<key>\b[A-Za-z_]+)\s*=\s*(?P<q>')?(?P<value>(?(q)[^']*'|[^\s&,;)'\"]*))")
#: botocore logs signed requests at DEBUG: the canonical request (``x-amz-security-token:...``) and the headers dict.
_AWS_TOKEN_HEADER = re.compile(r"(?P<key>x-amz-security-token['\"]?\s*[:=]\s*(?:b?['\"])?)(?P<value>[^'\"\s,}]+)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether an option / query parameter / libpq keyword called ``name`` holds a credential."""
    return bool(_SECRET_NAME.search(name))


def hidden_value(raw: Any) -> str:
    """How an error message shows a secret option's refused value: its type only."""
    return f"a {type(raw).__name__} (value hidden)"


def _redact_query(query: str) -> str:
    def replace(match: "re.Match[str]") -> str:
        name = unquote_plus(match.group("name"))
        if not is_secret_name(name) or not match.group("value"):
            return match.group(0)
        return f"{match.group('sep')}{match.group('name')}={MASK}"

    return _QUERY_PAIR.sub(replace, query)


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (the user info's, and credential query parameters)."""
    if "://" not in url:
        # Not a URL (a forgotten scheme: "user:pw@host"); hide whatever precedes an '@'.
        _, sign, host = url.rpartition("@")
        return f"{MASK}@{host}" if sign else url
    scheme, _, rest = url.partition("://")
    # Split by hand (urlsplit refuses some malformed URLs, and a password may hold '/', '?' or '#').
    # The host follows the *last* '@' before the path, as browsers and urllib parse it.
    authority_end = len(rest)
    at = re.split(r"[?#]", rest, maxsplit=1)[0].rfind("@")
    if at < 0:
        at = rest.rfind("@")  # a password holding '?' or '#' (over-redacts a query holding ':' and '@': never leaks)
    for mark in "/?#":
        position = rest.find(mark, at + 1 if at >= 0 else 0)
        if position != -1:
            authority_end = min(authority_end, position)
    netloc, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at_sign, hostport = netloc.rpartition("@")
    if at_sign and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
    before_fragment, hash_sign, fragment = tail.partition("#")
    path, question, query = before_fragment.partition("?")
    if question:
        query = _redact_query(query)
    return f"{scheme}://{netloc}{path}{question}{query}{hash_sign}{fragment}"


def redact_params(params: Mapping[str, Any]) -> Dict[str, str]:
    """``params`` (libpq keywords, driver options) with every credential's value replaced by ``***``."""
    return {name: MASK if is_secret_name(name) and value not in (None, "") else str(value) for name, value in params.items()}


def url_secrets(url: str) -> List[str]:
    """The secret values a URL carries (the user info's password, credential query parameters), raw and decoded."""
    values: List[str] = []
    if "://" not in url:
        userinfo = url.rpartition("@")[0]
        return [userinfo, userinfo.partition(":")[2]] if userinfo else []
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    rest = url.split("://", 1)[1]
    userinfo = rest.rpartition("@")[0] if "@" in rest else ""
    if userinfo:
        password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
        values += [password, unquote(password), *re.split(r"[/?#@]", password)]
    query = parts.query if parts is not None else url.partition("?")[2]
    for name, value in parse_qsl(query, keep_blank_values=True):
        if is_secret_name(name):
            values.append(value)
    for match in _QUERY_PAIR.finditer(query):
        if is_secret_name(unquote_plus(match.group("name"))):
            values.append(match.group("value"))
    return [value for value in dict.fromkeys(values) if value]


# ---------------------------------------------------------------------------------------------- by value

_mutex = threading.Lock()
_known: "Counter[str]" = Counter()
_pattern: Optional["re.Pattern[str]"] = None


def remember(values: Iterable[Optional[str]]) -> Tuple[str, ...]:
    """Hide ``values`` in every text :func:`scrub` sees from now on; returns what to :func:`forget` later."""
    global _pattern
    kept = tuple(value for value in dict.fromkeys(v for v in values if v) if len(value) >= MIN_SCRUBBED_LENGTH)
    if kept:
        with _mutex:
            _known.update(kept)
            _pattern = None
    return kept


def forget(values: Tuple[str, ...]) -> None:
    """Undo one :func:`remember` (each value stays hidden while another checkpointer remembers it)."""
    global _pattern
    if not values:
        return
    with _mutex:
        _known.subtract(values)
        for value in values:
            if _known[value] <= 0:
                del _known[value]
        _pattern = None


def _known_pattern() -> Optional["re.Pattern[str]"]:
    global _pattern
    with _mutex:
        if _pattern is None and _known:
            _pattern = re.compile("|".join(re.escape(value) for value in sorted(_known, key=len, reverse=True)))
        return _pattern


def _redact_keyword(match: "re.Match[str]") -> str:
    if not is_secret_name(match.group("key")) or not match.group("value"):
        return match.group(0)
    quote = match.group("q") or ""
    return f"{match.group('key')}={quote}{MASK}{quote}"


def scrub(text: str) -> str:
    """``text`` without remembered secrets, URL passwords, ``password=...``-like pairs and AWS session tokens."""
    known = _known_pattern()
    if known is not None:
        text = known.sub(MASK, text)
    text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)
    text = _KEYWORD_IN_TEXT.sub(_redact_keyword, text)
    return _AWS_TOKEN_HEADER.sub(lambda match: f"{match.group('key')}{MASK}", text)


class RedactedDriverError(Exception):
    """Stands in for a driver exception whose message held a secret: its type's name and the scrubbed message."""


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def safe_cause(exc: BaseException) -> BaseException:
    """``exc`` itself if no message in its chain holds a secret, else a :class:`RedactedDriverError` standing in for it."""
    texts = [f"{type(e).__module__}.{type(e).__qualname__}: {e}" for e in _chain(exc)]
    scrubbed = [scrub(text) for text in texts]
    if scrubbed == texts:
        return exc
    replacement = RedactedDriverError(" <- ".join(scrubbed))
    return replacement.with_traceback(exc.__traceback__)


def scrub_error(error: BaseException) -> BaseException:
    """``error`` with its message arguments scrubbed in place (an error the library builds from driver text)."""
    error.args = tuple(scrub(arg) if isinstance(arg, str) else arg for arg in error.args)
    return error


# ---------------------------------------------------------------------------------------------- logging


class RedactingFilter(logging.Filter):
    """Scrubs every record of the logger it sits on (:func:`scrub`); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's business, not ours
            return True
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def install_log_filter(*prefixes: str) -> None:
    """Put the one :class:`RedactingFilter` on every existing logger named ``prefix`` or ``prefix.*``; idempotent.

    A filter on a logger sees only the records logged on that logger (not
    those propagated from its children), so it goes on each of them.
    """
    manager = logging.Logger.manager
    names = [name for name in list(manager.loggerDict) if any(name == p or name.startswith(p + ".") for p in prefixes)]
    for name in dict.fromkeys([*prefixes, *names]):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
