"""The FastAPI tests' app: the routes of examples/fastapi_app.py on a given store, plus the few only the tests need."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, Optional

from fastapi import FastAPI

from agents_persist import BackendUnavailableError, ConflictError
from agents_persist.fastapi import CheckpointerDep, add_error_handlers, lifespan
from examples.fastapi_app import router


def create_app(url: Optional[str], options: Optional[Dict[str, Any]] = None, *, events: Optional[list] = None) -> FastAPI:
    """An app on ``url`` with the example's routes; ``events`` records what a lifespan of the user's own saw."""

    @asynccontextmanager
    async def mine(app: FastAPI) -> AsyncIterator[Dict[str, Any]]:
        if events is not None:
            events.append(("start", hasattr(app.state, "agents_persist")))
        yield {"greeting": "hi"}
        if events is not None:
            events.append(("stop", hasattr(app.state, "agents_persist")))

    app = FastAPI(lifespan=lifespan(url, wrap=mine, **(options or {})))
    add_error_handlers(app)
    app.include_router(router)

    @app.get("/health")
    async def health(acp: CheckpointerDep) -> Dict[str, Any]:
        return {"pid": os.getpid(), "max_workers": acp.max_workers}

    @app.post("/conflict/{thread_id}")
    async def conflict(thread_id: str) -> None:
        raise ConflictError("version 3 expected, 4 stored", thread_id=thread_id, expected_version=3, actual_version=4)

    @app.post("/unavailable/{thread_id}")
    async def unavailable(thread_id: str) -> None:
        raise BackendUnavailableError("redis://:hunter2@db.internal:6379 timed out", thread_id=thread_id, maybe_applied=True)

    return app
