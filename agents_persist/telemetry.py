"""Observability: slow-call warnings through :mod:`logging`, and optional OpenTelemetry spans and metrics.

The policy layer (:class:`~agents_persist.Checkpointer`, and the async
adapter's ``update``/``attempts``) wraps each public operation in
:class:`operation`; no backend knows about it. Until :func:`instrument` is
called, the recorder only reads a clock on entry and exit to warn about calls
slower than ``slow_call_seconds`` (:func:`configure`; ``None`` removes even
that), and never imports opentelemetry.

.. code-block:: python

   from agents_persist import telemetry
   telemetry.instrument()          # spans + metrics from the global OTel providers
   telemetry.configure(slow_call_seconds=0.5)

Spans are named ``agents_persist.<operation>`` with the attributes
``agents_persist.operation``, ``agents_persist.backend``,
``agents_persist.outcome`` (``ok``, ``conflict``, ``unavailable``, ``error``),
``agents_persist.retries`` and ``agents_persist.bytes_written`` (saves and
appends); an exception sets ``error.type`` to its class name. Thread IDs,
contents and URLs are never recorded.
"""

from __future__ import annotations

import functools
import logging
import time
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Callable, Dict, Optional, Type, TypeVar, cast

from .errors import BackendUnavailableError, ConflictError

__all__ = ["configure", "instrument", "uninstrument", "operation", "traced", "conflicted", "wrote", "SPAN_PREFIX"]

logger = logging.getLogger(__name__)

SPAN_PREFIX = "agents_persist."
F = TypeVar("F", bound=Callable[..., Any])

_slow_call_seconds: Optional[float] = 1.0
_otel: Optional["_Otel"] = None
_current: "ContextVar[Optional[operation]]" = ContextVar("agents_persist_operation", default=None)
_backend_names: Dict[type, str] = {}


def configure(*, slow_call_seconds: Optional[float] = 1.0) -> None:
    """Set the threshold above which an operation logs a WARNING (default 1 s); None turns the check off."""
    global _slow_call_seconds
    if slow_call_seconds is not None and (isinstance(slow_call_seconds, bool) or not slow_call_seconds >= 0):
        raise ValueError(f"slow_call_seconds must be a number >= 0 or None, not {slow_call_seconds!r}")
    _slow_call_seconds = slow_call_seconds


def instrument(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Record a span and metrics for every operation from now on (needs ``pip install "agents_persist[otel]"``).

    Args:
        tracer_provider: An OpenTelemetry ``TracerProvider``; default the global one.
        meter_provider: An OpenTelemetry ``MeterProvider``; default the global one.

    Raises:
        ImportError: opentelemetry-api is not installed.
    """
    global _otel
    _otel = _Otel(tracer_provider, meter_provider)


def uninstrument() -> None:
    """Stop recording spans and metrics (back to the no-op recorder)."""
    global _otel
    _otel = None


def conflicted(what: str, thread_id: str, attempt: int, max_retries: int) -> bool:
    """After a conflict on ``attempt`` (0 first) of ``what``: True to retry (DEBUG, counted), False to give up (WARNING)."""
    if attempt >= max_retries:
        logger.warning("%s of thread %r gave up after %d retries on conflicts", what, thread_id, attempt)
        return False
    logger.debug("%s of thread %r conflicted; retry %d", what, thread_id, attempt + 1)
    current = _current.get() if _otel is not None else None
    if current is not None:
        current.retries += 1
    return True


def wrote(head: bytes, messages: Any) -> None:
    """Note the bytes a write sent (head and message blobs); costs nothing unless instrumented."""
    current = _current.get() if _otel is not None else None
    if current is not None:
        current.bytes_written += len(head) + sum(len(blob) for blob in messages)


class operation:
    """Context manager around one public operation: times it, and with :func:`instrument` records a span.

    Args:
        name: The operation (``"save"``, ``"update"``, ...).
        checkpointer: The checkpointer doing it (its class names the backend).
        check_slow: Warn when it takes over ``slow_call_seconds``; off for
            operations that run the caller's code (``update``, ``transaction``),
            whose storage calls are checked one by one.
    """

    __slots__ = ("name", "checkpointer", "check_slow", "retries", "bytes_written", "_start", "_span", "_token", "_scope")

    def __init__(self, name: str, checkpointer: object, *, check_slow: bool = True) -> None:
        self.name = name
        self.checkpointer = checkpointer
        self.check_slow = check_slow
        self.retries = 0
        self.bytes_written = 0
        self._span: Any = None

    def __enter__(self) -> "operation":
        self._start = time.perf_counter()
        otel = _otel
        if otel is not None:
            self._span = otel.tracer.start_span(SPAN_PREFIX + self.name, attributes=self.attributes(None))
            self._scope = otel.use_span(self._span)
            self._scope.__enter__()
            self._token = _current.set(self)
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        elapsed = time.perf_counter() - self._start
        slow = _slow_call_seconds
        if slow is not None and elapsed > slow and self.check_slow:
            _warn_slow(self.name, self.checkpointer, elapsed, slow)
        span = self._span
        if span is None:
            return
        self._span = None
        _current.reset(self._token)
        self._scope.__exit__(None, None, None)
        otel = _otel
        outcome = _outcome(exc)
        span.set_attribute("agents_persist.outcome", outcome)
        span.set_attribute("agents_persist.retries", self.retries)
        if self.bytes_written:
            span.set_attribute("agents_persist.bytes_written", self.bytes_written)
        if exc is not None:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(_error_status())
        span.end()
        if otel is not None:
            attributes = self.attributes(outcome)
            otel.duration.record(elapsed, attributes)
            if outcome == "conflict":
                otel.conflicts.add(1, attributes)
            if self.retries:
                otel.retries.add(self.retries, attributes)
            if self.bytes_written:
                otel.bytes_written.add(self.bytes_written, attributes)

    def attributes(self, outcome: Optional[str]) -> Dict[str, Any]:
        """The attributes of this operation's span and measurements (no thread ID, no content)."""
        found: Dict[str, Any] = {
            "agents_persist.operation": self.name,
            "agents_persist.backend": backend_name(self.checkpointer),
        }
        if outcome is not None:
            found["agents_persist.outcome"] = outcome
        return found


def traced(name: str, *, check_slow: bool = True) -> Callable[[F], F]:
    """Decorate a checkpointer method as operation ``name``; with the check off and no OTel, a bare call."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _otel is not None:
                with operation(name, self, check_slow=check_slow):
                    return method(self, *args, **kwargs)
            slow = _slow_call_seconds
            if slow is None or not check_slow:
                return method(self, *args, **kwargs)
            start = time.perf_counter()  # the no-op recorder: a clock read either side, nothing else
            try:
                return method(self, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                if elapsed > slow:
                    _warn_slow(name, self, elapsed, slow)

        return cast(F, wrapper)

    return decorate


def _warn_slow(name: str, checkpointer: object, elapsed: float, slow: float) -> None:
    logger.warning("%s on %s took %.3fs (slow_call_seconds=%g)", name, backend_name(checkpointer), elapsed, slow)


def backend_name(checkpointer: object) -> str:
    """The registry name of ``checkpointer``'s backend (``"redis"``), else its class name."""
    cls = type(checkpointer)
    name = _backend_names.get(cls)
    if name is None:
        from . import registry

        backend = registry.checkpointer_classes().get(cls.__name__)
        name = _backend_names[cls] = backend.name if backend is not None else cls.__name__
    return name


def _outcome(exc: Optional[BaseException]) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, ConflictError):
        return "conflict"
    if isinstance(exc, BackendUnavailableError):
        return "unavailable"
    return "error"


def _error_status() -> Any:
    from opentelemetry.trace import Status, StatusCode

    return Status(StatusCode.ERROR)


class _Otel:
    """The tracer and instruments :func:`instrument` made."""

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        try:
            from opentelemetry import metrics, trace
        except ImportError as exc:
            raise ImportError(
                'agents_persist.telemetry.instrument() needs opentelemetry-api: pip install "agents_persist[otel]"'
            ) from exc
        from . import __version__

        self.use_span = functools.partial(trace.use_span, end_on_exit=False)
        self.tracer = trace.get_tracer("agents_persist", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("agents_persist", __version__, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "agents_persist.operation.duration", unit="s", description="Duration of checkpointer operations"
        )
        self.conflicts = meter.create_counter(
            "agents_persist.conflicts", unit="{conflict}", description="Operations refused by a version conflict"
        )
        self.retries = meter.create_counter("agents_persist.retries", unit="{retry}", description="Retries after conflicts")
        self.bytes_written = meter.create_counter("agents_persist.bytes_written", unit="By", description="Bytes sent by writes")
