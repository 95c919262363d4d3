"""A real ``uvicorn --workers 2`` serving the test app; 200 concurrent httpx requests to one thread lose nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import httpx
import pytest

from tests.integrations.support import free_port, serving
from tests.spec import BackendSpec

WORKERS, REQUESTS = 2, 200
START_DEADLINE = 60.0

APP_MODULE = """\
from tests.integrations.fastapi.app import create_app

app = create_app({url!r}, {options!r})
"""


async def _wait_until_up(base: str, process: "subprocess.Popen[bytes]", log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    async with httpx.AsyncClient(base_url=base, timeout=2.0) as client:
        while True:
            if process.poll() is not None:
                pytest.fail(f"uvicorn exited with {process.returncode} before answering:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not answer within {START_DEADLINE}s:\n{log.read_text()[-3000:]}")
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def _hammer(base: str, thread_id: str) -> List[Tuple[int, Dict[str, Any]]]:
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
    async with httpx.AsyncClient(base_url=base, timeout=60.0, limits=limits) as client:

        async def post(i: int) -> Tuple[int, Dict[str, Any]]:
            reply = await client.post(f"/threads/{thread_id}/messages", json={"content": f"m{i}"})
            return reply.status_code, reply.json()

        return await asyncio.gather(*(post(i) for i in range(REQUESTS)))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_uvicorn_2_workers_keeps_all_200_concurrent_posts(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> None:
    spec: BackendSpec = request.getfixturevalue(f"{backend}_spec")
    (tmp_path / "ap_uvicorn_app.py").write_text(APP_MODULE.format(url=spec.url, options=spec.options))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    thread_id = f"{prefix}uvicorn"
    command = [sys.executable, "-m", "uvicorn", "ap_uvicorn_app:app", "--workers", str(WORKERS)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--timeout-graceful-shutdown", "5"]
    with serving(command, tmp_path, "uvicorn") as (process, log):
        asyncio.run(_wait_until_up(base, process, log))
        started = time.monotonic()
        replies = asyncio.run(_hammer(base, thread_id))
        elapsed = time.monotonic() - started

        assert [status for status, _ in replies] == [200] * REQUESTS, [body for status, body in replies if status != 200][:3]
        assert sorted(body["version"] for _, body in replies) == list(range(1, REQUESTS + 1))
        checkpointer = spec.build()
        try:
            state = checkpointer.load(thread_id)
            assert state is not None and state.version == REQUESTS
            assert sorted(m.content for m in state.messages) == sorted(f"m{i}" for i in range(REQUESTS))
            pids = {body["pid"] for _, body in replies}
            retries = sum(body["retries"] for _, body in replies)
            print(
                f"\nuvicorn[{backend}]: {REQUESTS} concurrent POSTs in {elapsed:.2f}s served by {len(pids)} workers, "
                f"{retries} conflict retries; stored {len(state.messages)} messages"
            )
        finally:
            checkpointer.delete(thread_id)
            checkpointer.close()
