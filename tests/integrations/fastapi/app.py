"""The app factory the FastAPI tests use, in-process (TestClient) and under uvicorn."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, Optional

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from agents_persist import AgentMessage, BackendUnavailableError, ConflictError
from agents_persist.fastapi import CheckpointerDep, add_error_handlers, lifespan


class Message(BaseModel):
    content: str = ""


def create_app(url: Optional[str], options: Optional[Dict[str, Any]] = None, *, events: Optional[list] = None) -> FastAPI:
    """An app on ``url``: POST appends a message through ``acp.attempts`` (retried on other processes' saves)."""

    @asynccontextmanager
    async def mine(app: FastAPI) -> AsyncIterator[Dict[str, Any]]:
        if events is not None:
            events.append(("start", hasattr(app.state, "agents_persist")))
        yield {"greeting": "hi"}
        if events is not None:
            events.append(("stop", hasattr(app.state, "agents_persist")))

    app = FastAPI(lifespan=lifespan(url, wrap=mine, **(options or {})))
    add_error_handlers(app)

    @app.get("/health")
    async def health(acp: CheckpointerDep) -> Dict[str, Any]:
        return {"pid": os.getpid(), "max_workers": acp.max_workers}

    @app.post("/threads/{thread_id}/messages")
    async def add_message(thread_id: str, message: Message, acp: CheckpointerDep) -> Dict[str, Any]:
        async for attempt in acp.attempts(thread_id):
            async with attempt as state:
                state.messages.append(AgentMessage.user(message.content))
        return {"version": state.version, "count": len(state.messages), "pid": os.getpid(), "retries": attempt.number}

    @app.get("/threads/{thread_id}")
    async def show(thread_id: str, acp: CheckpointerDep) -> Dict[str, Any]:
        state = await acp.load(thread_id)
        if state is None:
            raise HTTPException(404, "not found")
        return {"version": state.version, "count": len(state.messages)}

    @app.post("/conflict/{thread_id}")
    async def conflict(thread_id: str) -> None:
        raise ConflictError("version 3 expected, 4 stored", thread_id=thread_id, expected_version=3, actual_version=4)

    @app.post("/unavailable/{thread_id}")
    async def unavailable(thread_id: str) -> None:
        raise BackendUnavailableError("redis://:hunter2@db.internal:6379 timed out", thread_id=thread_id, maybe_applied=True)

    return app
