"""Driver errors become library errors in one place per backend, through one mechanism.

A backend writes one *classifier*: given a driver exception, it returns the
:class:`~agents_persist.errors.AgentsPersistError` to raise instead (server
down, timeout, permission, bad configuration) or None to let it propagate.
:func:`translated` applies it around a block; errors of the library itself
pass through untouched. Secrets in the driver's text never reach the raised
error or its chained cause (see :mod:`agents_persist.redaction`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from .errors import AgentsPersistError
from .redaction import safe_cause, scrub_error

__all__ = ["Classifier", "translated"]

Classifier = Callable[[Exception], Optional[AgentsPersistError]]


@contextmanager
def translated(classify: Classifier) -> Iterator[None]:
    """Raise ``classify(exc)`` (chained to ``exc``) for any exception of the block it recognises."""
    try:
        yield
    except AgentsPersistError:
        raise
    except Exception as exc:
        error = classify(exc)
        if error is None:
            raise
        # Driver text may quote a DSN or an option: the message and the chained cause shown are scrubbed.
        raise scrub_error(error) from safe_cause(exc)
