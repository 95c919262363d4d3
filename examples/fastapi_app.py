"""A FastAPI app: POST a user's message to a conversation, GET the conversation back, all async.

Run it from a clone, after ``pip install -e ".[fastapi]" uvicorn``::

    python examples/fastapi_app.py                                # uvicorn on 127.0.0.1:8000
    uvicorn --app-dir examples fastapi_app:app --workers 2        # two processes

    curl -X POST 127.0.0.1:8000/threads/alice/messages -H "Content-Type: application/json" -d '{"content": "hi"}'
    curl 127.0.0.1:8000/threads/alice

The store is ``$AGENTS_PERSIST_URL`` (``redis://...``, ``postgresql://...``), else the
embedded ``sqlite:///agents_persist.db`` in the working directory.
"""

from __future__ import annotations

import os
from typing import Any, Dict

from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel

from agents_persist import AgentMessage
from agents_persist.fastapi import CheckpointerDep, add_error_handlers, lifespan

router = APIRouter()


class Message(BaseModel):
    content: str = ""


@router.post("/threads/{thread_id}/messages")
async def add_message(thread_id: str, message: Message, acp: CheckpointerDep) -> Dict[str, Any]:
    async for attempt in acp.attempts(thread_id):  # the block runs again if another request saved first
        async with attempt as state:
            state.messages.append(AgentMessage.user(message.content))
            # your agent answers here: state.messages.append(AgentMessage.assistant(await model(state)))
    return {"version": state.version, "count": len(state.messages), "pid": os.getpid(), "retries": attempt.number}


@router.get("/threads/{thread_id}")
async def show(thread_id: str, acp: CheckpointerDep) -> Dict[str, Any]:
    state = await acp.load(thread_id)
    if state is None:
        raise HTTPException(404, "not found")
    return {"version": state.version, "count": len(state.messages)}


app = FastAPI(lifespan=lifespan())  # opens the store on startup, closes it on shutdown
add_error_handlers(app)  # ConflictError -> 409, BackendUnavailableError -> 503
app.include_router(router)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app)
