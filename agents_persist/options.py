"""Declared options: each backend lists its options once; one parser reads URLs and keyword arguments.

An :class:`Option` has a name, a :class:`Kind` (which converts URL text and
checks values, with one wording for every error), a default and a help
text. :func:`resolve` turns a URL query plus keyword arguments into checked
values, refusing unknown names the same way for every backend; options a
driver understands itself (redis-py's ``ssl_ca_certs``, libpq's ``sslmode``)
are passed through only where the backend says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qsl

from .errors import ConfigurationError
from .redaction import hidden_value, is_secret_name

__all__ = [
    "Kind",
    "Option",
    "SECONDS",
    "OPTIONAL_SECONDS",
    "POSITIVE_INT",
    "NON_NEGATIVE_INT",
    "TEXT",
    "BOOLEAN",
    "choice",
    "COMMON_OPTIONS",
    "resolve",
    "check",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Kind:
    """How an option's value is checked, converted from URL text, and described in errors."""

    what: str
    convert: Callable[[Any], Any]
    from_text: Optional[Callable[[str], Any]] = None
    optional: bool = False

    def value(self, raw: Any, *, text: bool = False) -> Any:
        """The checked value of ``raw`` (URL text when ``text``); ``ValueError`` if it is not one."""
        if raw is None:
            if self.optional:
                return None
            raise ValueError
        if text:
            if self.optional and raw.lower() in ("", "none", "null"):
                return None
            raw = (self.from_text or self.convert)(raw)
        return self.convert(raw)


def _number(raw: Any) -> float:
    if isinstance(raw, str):
        return float(raw)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ValueError
    return float(raw)


def _positive_seconds(raw: Any) -> float:
    value = _number(raw)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError
    return value


def _int_at_least(minimum: int) -> Callable[[Any], int]:
    def convert(raw: Any) -> int:
        if isinstance(raw, str):
            raw = int(raw)
        if type(raw) is not int or raw < minimum:
            raise ValueError
        return raw

    return convert


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError
    return raw


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in _TRUE | _FALSE:
        return raw.lower() in _TRUE
    raise ValueError


def choice(*values: str, upper: bool = False) -> Kind:
    """One of ``values`` (case-insensitive; normalised to upper case when ``upper``)."""

    def convert(raw: Any) -> str:
        if not isinstance(raw, str):
            raise ValueError
        normal = raw.upper() if upper else raw.lower()
        if normal not in values:
            raise ValueError
        return normal

    return Kind("one of " + ", ".join(values), convert)


SECONDS = Kind("a positive number of seconds", _positive_seconds)
OPTIONAL_SECONDS = Kind("a positive number of seconds or None", _positive_seconds, optional=True)
POSITIVE_INT = Kind("an int >= 1", _int_at_least(1))
NON_NEGATIVE_INT = Kind("an int >= 0", _int_at_least(0))
OPTIONAL_POSITIVE_INT = Kind("an int >= 1 or None", _int_at_least(1), optional=True)
TEXT = Kind("a str", _text)
BOOLEAN = Kind("true or false", _boolean)


@dataclass(frozen=True)
class Option:
    """One declared option of a backend (or of every checkpointer)."""

    name: str
    kind: Kind
    default: Any = None
    help: str = ""
    aliases: Tuple[str, ...] = ()
    check: Optional[Callable[[Any], Any]] = None
    """A further check beyond the kind (raise ``ValueError`` with the reason); returns the value to use."""

    def value(self, raw: Any, *, backend: str, text: bool = False, given_as: Optional[str] = None) -> Any:
        """``raw`` checked, or :class:`~agents_persist.ConfigurationError` in the one wording all options share."""
        try:
            value = self.kind.value(raw, text=text)
            if self.check is not None and value is not None:
                value = self.check(value)
            return value
        except (ValueError, TypeError, OverflowError) as exc:
            name = given_as or self.name
            if is_secret_name(name):  # a credential: never echo the value, nor a reason that may quote it
                raise ConfigurationError(f"{backend} option {name} must be {self.kind.what}, not {hidden_value(raw)}") from None
            reason = f" ({exc})" if str(exc) else ""
            raise ConfigurationError(f"{backend} option {name} must be {self.kind.what}{reason}, not {raw!r}") from None


COMMON_OPTIONS: Tuple[Option, ...] = (
    Option("ttl", OPTIONAL_SECONDS, None, "Seconds a thread lives after its last save (sliding); None keeps threads."),
    Option("max_retries", NON_NEGATIVE_INT, 50, "How often update() retries after a conflict before raising ConflictError."),
    Option(
        "max_snapshot_bytes",
        OPTIONAL_POSITIVE_INT,
        None,
        "Largest encoded snapshot a save may write (SnapshotTooLargeError otherwise); None: the backend's default.",
    ),
)


def _by_name(options: Sequence[Option]) -> Dict[str, Option]:
    table: Dict[str, Option] = {}
    for option in options:
        for name in (option.name, *option.aliases):
            table[name] = option
    return table


def _unknown(backend: str, name: str, options: Sequence[Option]) -> ConfigurationError:
    known = ", ".join(sorted(option.name for option in options))
    return ConfigurationError(f"unknown {backend} option {name!r}; known options: {known}")


def check(options: Sequence[Option], given: Mapping[str, Any], *, backend: str) -> Dict[str, Any]:
    """Check keyword arguments against ``options``; fill in defaults for the missing ones."""
    table = _by_name(options)
    values: Dict[str, Any] = {}
    for name, raw in given.items():
        option = table.get(name)
        if option is None:
            raise _unknown(backend, name, options)
        values[option.name] = option.value(raw, backend=backend, given_as=name)
    for option in options:
        values.setdefault(option.name, option.default)
    return values


def resolve(
    options: Sequence[Option],
    query: str,
    given: Mapping[str, Any],
    *,
    backend: str,
    passthrough: Callable[[str], bool] = lambda name: False,
) -> Tuple[Dict[str, Any], List[Tuple[str, str]]]:
    """Read a URL ``query`` and keyword arguments (which win) into checked option values.

    Returns the values given (defaults not filled in) and the query pairs
    that ``passthrough`` accepted for the driver. Any other unknown name
    raises :class:`~agents_persist.ConfigurationError`.
    """
    table = _by_name(options)
    values: Dict[str, Any] = {}
    rest: List[Tuple[str, str]] = []
    for name, text in parse_qsl(query, keep_blank_values=True):
        option = table.get(name)
        if option is None:
            if not passthrough(name):
                raise _unknown(backend, name, options)
            rest.append((name, text))
            continue
        values[option.name] = option.value(text, backend=backend, text=True, given_as=name)
    for name, raw in given.items():
        option = table.get(name)
        if option is None:
            raise _unknown(backend, name, options)
        values[option.name] = option.value(raw, backend=backend, given_as=name)
    return values, rest
