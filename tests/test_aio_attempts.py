"""``async for attempt in acp.attempts(tid)``: transaction re-run on conflicts from other checkpointers only."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import List

import pytest

from agents_persist import AgentMessage, AsyncCheckpointer, ConflictError, SqliteCheckpointer

TASKS = 100


def _sqlite(path: Path) -> AsyncCheckpointer:
    return AsyncCheckpointer(SqliteCheckpointer(path, synchronous="NORMAL"))


def test_one_adapter_serializes_100_concurrent_transactions_without_a_conflict(tmp_path: Path) -> None:
    async def main() -> None:
        async with _sqlite(tmp_path / "one.db") as acp:

            async def turn(i: int) -> None:
                async with acp.transaction("t") as state:
                    state.messages.append(AgentMessage.user(f"m{i}"))

            await asyncio.gather(*(turn(i) for i in range(TASKS)))  # a ConflictError would fail the gather
            state = await acp.load("t")
            assert state is not None and state.version == TASKS
            assert sorted(m.content for m in state.messages) == sorted(f"m{i}" for i in range(TASKS))

    asyncio.run(main())


def test_attempts_land_all_200_changes_from_two_checkpointers_on_one_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shared.db"
    runs: List[int] = []

    async def main() -> None:
        async with _sqlite(path) as first, _sqlite(path) as second:

            async def turn(acp: AsyncCheckpointer, name: str) -> None:
                async for attempt in acp.attempts("t"):
                    async with attempt as state:
                        runs.append(attempt.number)
                        state.messages.append(AgentMessage.user(name))

            tasks = [turn(first, f"a{i}") for i in range(TASKS)] + [turn(second, f"b{i}") for i in range(TASKS)]
            await asyncio.gather(*tasks)
            state = await first.load("t")
            assert state is not None and state.version == 2 * TASKS
            expected = [f"a{i}" for i in range(TASKS)] + [f"b{i}" for i in range(TASKS)]
            assert sorted(m.content for m in state.messages) == sorted(expected)

    with caplog.at_level(logging.DEBUG, logger="agents_persist.telemetry"):
        asyncio.run(main())
    retried = sum(1 for n in runs if n > 0)
    assert retried > 0, "two checkpointers on one file should have conflicted at least once"
    retry_lines = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retry_lines) == retried and all(r.levelno == logging.DEBUG for r in retry_lines)
    assert all("a1" not in r.getMessage() for r in caplog.records)  # never message content


def test_attempts_give_up_after_max_retries_and_other_errors_end_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "g.db"

    async def main() -> None:
        async with _sqlite(path) as acp, _sqlite(path) as other:
            await acp.append("t", [AgentMessage.user("x")])
            runs = 0
            with pytest.raises(ConflictError):
                async for attempt in acp.attempts("t", max_retries=2):
                    async with attempt as state:
                        runs += 1
                        await other.append("t", [AgentMessage.user("y")])  # always beats this attempt
                        state.messages.append(AgentMessage.user("z"))
            assert runs == 3
            runs = 0
            with pytest.raises(ValueError):
                async for attempt in acp.attempts("t"):
                    async with attempt:
                        runs += 1
                        raise ValueError("boom")
            assert runs == 1
            with pytest.raises(RuntimeError, match="async with"):
                async for _attempt in acp.attempts("t"):
                    pass

    with caplog.at_level(logging.DEBUG, logger="agents_persist.telemetry"):
        asyncio.run(main())
    levels = [r.levelno for r in caplog.records if r.name == "agents_persist.telemetry"]
    assert levels == [logging.DEBUG, logging.DEBUG, logging.WARNING]
    assert "gave up after 2 retries" in caplog.records[-1].getMessage()
