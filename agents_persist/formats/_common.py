"""Helpers shared by the format converters: plain dicts from SDK objects, per-format extra fields."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Mapping, Optional

from ..errors import InvalidArgumentError
from ..models import ToolCall, decode_arguments

__all__ = ["plain", "as_mapping", "leftover", "extra_of", "with_extra", "merged", "optional_str", "call_from_raw"]


def plain(value: Any) -> Any:
    """``value`` with every SDK object (anything with ``model_dump()``) inside it replaced by its dict."""
    kind = type(value)
    if kind is dict:
        return {key: plain(v) for key, v in value.items()}
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
    if value is None or kind in (str, int, float, bool):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            dumped = dump(mode="json", exclude_unset=True)
        except TypeError:  # a model_dump() without pydantic's keywords
            dumped = dump()
        return plain(dumped)
    if isinstance(value, Mapping):
        return {key: plain(v) for key, v in value.items()}
    return value  # left for the codec to refuse by name when saved


def as_mapping(data: Any, what: str) -> Dict[str, Any]:
    """``data`` (a mapping or an SDK object) as a plain dict, or :class:`InvalidArgumentError`."""
    value = plain(data)
    if type(value) is not dict:
        raise InvalidArgumentError(f"{what} must be a dict or an object with model_dump(), not {type(data).__name__}")
    return value


def leftover(data: Mapping[str, Any], known: Iterable[str]) -> Dict[str, Any]:
    """The keys of ``data`` not in ``known``, in order."""
    skip = set(known)
    return {key: value for key, value in data.items() if key not in skip}


def extra_of(extra: Mapping[str, Any], fmt: str) -> Dict[str, Any]:
    """The fields kept for format ``fmt`` in a message's ``extra`` (empty if none)."""
    value = extra.get(fmt) if extra else None
    if value is None:
        return {}
    if type(value) is not dict:
        raise InvalidArgumentError(f"extra[{fmt!r}] must be a dict, not {type(value).__name__}")
    return value


def with_extra(fields: Dict[str, Any], fmt: str) -> Dict[str, Any]:
    """``{fmt: fields}`` or ``{}``: the ``extra`` of a message read from format ``fmt``."""
    return {fmt: fields} if fields else {}


def merged(data: Dict[str, Any], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """``data`` with the kept ``extra`` fields added (a modelled field always wins)."""
    for key, value in extra.items():
        data.setdefault(key, value)
    return data


def optional_str(data: Mapping[str, Any], key: str, what: str) -> Optional[str]:
    """``data[key]`` if it is a str, None if absent or None; anything else is refused."""
    value = data.get(key)
    if value is not None and type(value) is not str:
        raise InvalidArgumentError(f"{what} {key!r} must be a str, not {type(value).__name__}")
    return value


def call_from_raw(call_id: Any, name: Any, raw: str) -> ToolCall:
    """A call from an argument string as the model sent it.

    ``raw_arguments`` is kept unless it is exactly ``json.dumps(arguments)``,
    the string :meth:`ToolCall.to_openai` writes for decoded arguments anyway:
    the common case stores (and compares) the decoded form alone.
    """
    arguments = decode_arguments(raw, call_id)
    kept = None if json.dumps(arguments) == raw else raw
    return ToolCall(id=call_id, name=name, arguments=arguments, raw_arguments=kept)
