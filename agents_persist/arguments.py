"""Checks of call arguments and of update results, shared by the blocking and the async checkpointer."""

from __future__ import annotations

from datetime import datetime
from typing import Optional, Union

from .errors import InvalidArgumentError
from .models import AgentStateSnapshot
from .paging import MAX_LIST_LIMIT

__all__ = [
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "already_applied",
    "checked_result",
    "check_limit",
    "check_idempotency_key",
    "epoch_seconds",
]

MAX_IDEMPOTENCY_KEY_LENGTH = 200


def already_applied(state: AgentStateSnapshot, key: Optional[str]) -> bool:
    """Whether the thread ``state`` was loaded from recorded ``key`` as applied."""
    return key is not None and state.provenance is not None and any(k == key for k, _ in state.provenance.applied)


def checked_result(result: Optional[AgentStateSnapshot], state: AgentStateSnapshot) -> AgentStateSnapshot:
    """What an update function's return value means: None for ``state`` modified in place, else a snapshot."""
    if result is None:
        return state
    if not isinstance(result, AgentStateSnapshot):
        raise InvalidArgumentError(f"update function returned {type(result).__name__}, not a snapshot or None")
    return result


def check_limit(name: str, value: object) -> None:
    """A page size: an int from 1 to 10,000."""
    if type(value) is not int or not 1 <= value <= MAX_LIST_LIMIT:
        raise InvalidArgumentError(f"{name} must be an int from 1 to {MAX_LIST_LIMIT}, not {value!r}")


def check_idempotency_key(key: object) -> None:
    """None, or a non-empty str of at most 200 characters."""
    if key is not None and (type(key) is not str or not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH):
        raise InvalidArgumentError(f"idempotency_key must be a non-empty str of at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters")


def epoch_seconds(name: str, value: Union[datetime, float, int]) -> float:
    """A point in time: a timezone-aware ``datetime``, or seconds since the epoch (int or float)."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidArgumentError(f"{name} must be a timezone-aware datetime, not a naive one ({value!r})")
        return value.timestamp()
    if type(value) not in (int, float) or value != value:
        raise InvalidArgumentError(f"{name} must be a timezone-aware datetime or epoch seconds, not {value!r}")
    return float(value)
