"""Observability: log levels and messages, and OpenTelemetry spans and metrics, without content or passwords."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    AsyncCheckpointer,
    BackendUnavailableError,
    ConflictError,
    InMemoryCheckpointer,
    SqliteCheckpointer,
    from_url,
    telemetry,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "very secret words"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    telemetry.uninstrument()
    telemetry.configure()


@pytest.fixture
def otel() -> Iterator[Tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    telemetry.instrument(tracer_provider, MeterProvider(metric_readers=[reader]))
    yield exporter, reader


def _two_on_one_file(tmp_path: Path) -> Tuple[SqliteCheckpointer, SqliteCheckpointer]:
    path = tmp_path / "shared.db"
    return SqliteCheckpointer(path, synchronous="NORMAL"), SqliteCheckpointer(path, synchronous="NORMAL")


def _racing_update(cp: SqliteCheckpointer, other: SqliteCheckpointer, thread_id: str, **kwargs: Any) -> Any:
    """An update whose first attempts lose to another checkpointer's save (one conflict per ``races``)."""
    races = kwargs.pop("races", 1)
    calls: List[int] = []

    def add(state: AgentStateSnapshot) -> None:
        calls.append(1)
        if len(calls) <= races:
            other.append(thread_id, [AgentMessage.user(SECRET)])
        state.messages.append(AgentMessage.assistant(SECRET))

    return cp.update(thread_id, add, **kwargs)


def test_conflict_retries_log_debug_and_giving_up_a_warning_without_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cp, other = _two_on_one_file(tmp_path)
    with cp, other, caplog.at_level(logging.DEBUG, logger="agents_persist"):
        cp.save("t", AgentStateSnapshot(messages=[AgentMessage.user(SECRET)]))
        _racing_update(cp, other, "t", races=2)
        retries = [r for r in caplog.records if "conflicted; retry" in r.getMessage()]
        assert [(r.levelno, r.name) for r in retries] == [(logging.DEBUG, "agents_persist.telemetry")] * 2
        caplog.clear()
        with pytest.raises(ConflictError):
            _racing_update(cp, other, "t", races=10, max_retries=1)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "gave up after 1 retries" in warnings[0].getMessage()
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_slow_calls_warn_over_the_threshold_only(caplog: pytest.LogCaptureFixture) -> None:
    with InMemoryCheckpointer() as cp, caplog.at_level(logging.DEBUG, logger="agents_persist.telemetry"):
        cp.save("t", AgentStateSnapshot(messages=[AgentMessage.user(SECRET)]))  # default 1 s: nothing
        assert caplog.records == []
        telemetry.configure(slow_call_seconds=0)
        cp.load("t")
        cp.update("t", lambda s: None)  # runs the caller's code: only its load and save are checked
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == [logging.WARNING] * 3
    assert [m.split(" took ")[0] for _, m in lines] == ["load on memory", "load on memory", "save on memory"]
    assert all(SECRET not in m and "'t'" not in m for _, m in lines)
    with pytest.raises(ValueError):
        telemetry.configure(slow_call_seconds=-1)


def test_no_password_in_logs_or_spans_when_the_server_is_down(
    caplog: pytest.LogCaptureFixture, otel: Tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    exporter, _ = otel
    cp = from_url("redis://:hunter2@127.0.0.1:1/0", timeout=0.5)
    with cp, caplog.at_level(logging.DEBUG):
        with pytest.raises(BackendUnavailableError):
            cp.save("t", AgentStateSnapshot())
    (span,) = exporter.get_finished_spans()
    assert span.name == "agents_persist.save" and span.attributes is not None
    assert span.attributes["agents_persist.outcome"] == "unavailable"
    assert span.attributes["error.type"] == "BackendUnavailableError"
    assert "hunter2" not in repr(dict(span.attributes)) + repr(span.events) + str(span.status.description)
    assert all("hunter2" not in r.getMessage() for r in caplog.records)


def _attributes(span: ReadableSpan) -> Dict[str, Any]:
    return dict(span.attributes or {})


def test_spans_and_metrics_for_save_load_and_a_retried_update(
    tmp_path: Path, otel: Tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    exporter, reader = otel
    cp, other = _two_on_one_file(tmp_path)
    with cp, other:
        cp.save("t", AgentStateSnapshot(messages=[AgentMessage.user(SECRET)]))
        cp.load("t")
        _racing_update(cp, other, "t")
    spans = exporter.get_finished_spans()
    by_name: Dict[str, List[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert sorted(by_name) == ["agents_persist.append", "agents_persist.load", "agents_persist.save", "agents_persist.update"]
    (update,) = by_name["agents_persist.update"]
    attributes = _attributes(update)
    assert attributes["agents_persist.operation"] == "update" and attributes["agents_persist.backend"] == "sqlite"
    assert attributes["agents_persist.outcome"] == "ok" and attributes["agents_persist.retries"] == 1
    # each attempt's load and compare-and-set save are the update's children; the racing append is not
    for name, outcomes in [("agents_persist.load", ["ok", "ok"]), ("agents_persist.save", ["conflict", "ok"])]:
        children = [s for s in by_name[name] if s.parent is not None]
        assert [_attributes(s)["agents_persist.outcome"] for s in children] == outcomes
        assert all(s.parent.span_id == update.context.span_id for s in children)  # type: ignore[union-attr]
    first_save = by_name["agents_persist.save"][0]
    assert first_save.parent is None and _attributes(first_save)["agents_persist.bytes_written"] > 0
    assert _attributes(by_name["agents_persist.save"][-1])["agents_persist.bytes_written"] > 0
    assert all(SECRET not in repr(_attributes(s)) and "'t'" not in repr(_attributes(s)) for s in spans)

    metrics = {m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"agents_persist.operation.duration", "agents_persist.retries", "agents_persist.conflicts"} <= set(metrics)
    durations: Dict[str, int] = {}
    for point in metrics["agents_persist.operation.duration"].data.data_points:
        operation = dict(point.attributes or {})["agents_persist.operation"]
        durations[operation] = durations.get(operation, 0) + point.count
    assert durations["update"] == 1 and durations["save"] == 3 and durations["load"] == 3
    assert sum(p.value for p in metrics["agents_persist.retries"].data.data_points) == 1
    points = metrics["agents_persist.conflicts"].data.data_points
    conflicts = {dict(p.attributes or {})["agents_persist.outcome"]: p.value for p in points}
    assert conflicts == {"conflict": 1}  # the update's save that lost (the update itself succeeded)


def test_async_attempts_are_one_transaction_span_with_their_retries(
    tmp_path: Path, otel: Tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    exporter, _ = otel
    path = tmp_path / "a.db"

    async def main() -> None:
        async with AsyncCheckpointer(SqliteCheckpointer(path)) as acp, AsyncCheckpointer(SqliteCheckpointer(path)) as other:
            async for attempt in acp.attempts("t"):
                async with attempt as state:
                    if attempt.number == 0:
                        await other.append("t", [AgentMessage.user(SECRET)])
                    state.messages.append(AgentMessage.user(SECRET))

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    (transaction,) = [s for s in spans if s.name == "agents_persist.transaction"]
    assert _attributes(transaction)["agents_persist.retries"] == 1
    assert _attributes(transaction)["agents_persist.outcome"] == "ok"
    saves = [s for s in spans if s.name == "agents_persist.save"]
    # both attempts' saves ran in the pool, yet are children of the loop's span
    assert len(saves) == 2 and all(s.parent is not None and s.parent.span_id == transaction.context.span_id for s in saves)
    assert [_attributes(s)["agents_persist.outcome"] for s in saves] == ["conflict", "ok"]


def test_uninstrumented_calls_never_import_opentelemetry() -> None:
    code = (
        "import sys, agents_persist\n"
        "from agents_persist import telemetry\n"
        "cp = agents_persist.InMemoryCheckpointer()\n"
        "cp.save('t', agents_persist.AgentStateSnapshot()); cp.update('t', lambda s: None)\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), 'imported opentelemetry'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
