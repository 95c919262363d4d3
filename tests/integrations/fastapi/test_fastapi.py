"""agents_persist.fastapi in-process: lifespan opens/closes, the dependency, error handlers, every contract backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agents_persist import AsyncCheckpointer
from agents_persist.fastapi import STATE_KEY, CheckpointerDep, lifespan
from tests.integrations.fastapi.app import create_app
from tests.spec import BackendSpec

ROOT = Path(__file__).resolve().parents[3]


def test_routes_on_every_backend(backend_spec: BackendSpec, prefix: str) -> None:
    events: list = []
    app = create_app(backend_spec.url, backend_spec.options, events=events)
    thread_id = f"{prefix}fa"
    with TestClient(app) as client:
        acp = getattr(app.state, STATE_KEY)
        assert isinstance(acp, AsyncCheckpointer)
        assert client.get("/health").json()["max_workers"] == acp.max_workers
        for i in range(3):
            reply = client.post(f"/threads/{thread_id}/messages", json={"content": f"m{i}"})
            assert reply.status_code == 200 and reply.json()["version"] == i + 1
        assert client.get(f"/threads/{thread_id}").json() == {"version": 3, "count": 3}
        assert client.get(f"/threads/{prefix}none").status_code == 404
    # the user's lifespan ran inside ours: the checkpointer was there at its start and stop
    assert events == [("start", True), ("stop", True)]
    assert not hasattr(app.state, STATE_KEY) and acp.checkpointer.closed
    cleanup = backend_spec.build()
    try:
        cleanup.delete(thread_id)
    finally:
        cleanup.close()


def test_pool_is_sized_from_the_backend_and_options_pass_through(tmp_path: Path) -> None:
    app = FastAPI(lifespan=lifespan(f"sqlite:///{tmp_path / 'a.db'}", max_workers=3, synchronous="NORMAL"))
    with TestClient(app):
        acp = getattr(app.state, STATE_KEY)
        assert acp.max_workers == 3 and acp.checkpointer.store.synchronous == "NORMAL"
    app = FastAPI(lifespan=lifespan("memory://"))
    with TestClient(app):
        assert getattr(app.state, STATE_KEY).max_workers == 8  # no pool: the adapter's default


def test_error_handlers_answer_409_and_503_without_backend_text(tmp_path: Path) -> None:
    with TestClient(create_app(f"sqlite:///{tmp_path / 'e.db'}")) as client:
        reply = client.post("/conflict/t1")
        assert reply.status_code == 409 and reply.json() == {"error": "conflict", "thread_id": "t1"}
        reply = client.post("/unavailable/t2")
        assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
        assert reply.json() == {"error": "storage backend unavailable", "thread_id": "t2", "maybe_applied": True}
        assert "hunter2" not in reply.text


def test_the_dependency_without_the_lifespan_says_what_to_do() -> None:
    app = FastAPI()

    @app.get("/")
    async def route(acp: CheckpointerDep) -> str:
        return "never"

    with TestClient(app, raise_server_exceptions=True) as client, pytest.raises(RuntimeError, match="lifespan"):
        client.get("/")


def test_import_agents_persist_does_not_import_fastapi() -> None:
    code = "import sys, agents_persist; assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
