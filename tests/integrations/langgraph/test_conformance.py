"""LangGraph's own conformance suite (``langgraph-checkpoint-conformance``) on every backend: all eight capabilities pass."""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import AsyncIterator, Callable

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from agents_persist.langgraph import Checkpointer

ALL_CAPABILITIES = {"put", "put_writes", "get_tuple", "list", "delete_thread", "delete_for_runs", "copy_thread", "prune"}


def test_conformance_suite_passes_every_capability(make_saver: Callable[..., Checkpointer], lg_spec: object) -> None:
    @checkpointer_test(name=f"agents_persist.langgraph.Checkpointer[{lg_spec.name}]")
    async def saver() -> AsyncIterator[Checkpointer]:
        yield make_saver()

    failures: list = []
    def on_result(capability: str, test: str, passed: bool, error: object) -> None:
        if not passed:
            failures.append(f"{capability}.{test}:\n{error}")

    progress = ProgressCallbacks(on_test_result=on_result)
    report = asyncio.run(validate(saver, progress=progress))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report.print_report()
    summary = [line.strip() for line in out.getvalue().splitlines() if line.strip().startswith("Result:")]
    print(f"\n[{lg_spec.name}] {summary[0]}")
    assert not failures, "\n".join(failures)
    assert {name for name, result in report.results.items() if result.detected} == ALL_CAPABILITIES
    assert report.passed_all()
    assert summary == ["Result: FULL (8/8)"]
