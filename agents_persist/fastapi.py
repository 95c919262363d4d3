"""FastAPI integration: an :class:`~agents_persist.AsyncCheckpointer` per app, opened by the lifespan.

.. code-block:: python

   from fastapi import FastAPI
   from agents_persist.fastapi import CheckpointerDep, add_error_handlers, lifespan

   app = FastAPI(lifespan=lifespan("redis://localhost:6379/0"))
   add_error_handlers(app)

   @app.post("/threads/{thread_id}/messages")
   async def post(thread_id: str, text: str, acp: CheckpointerDep) -> dict:
       async for attempt in acp.attempts(thread_id):
           async with attempt as state:
               state.messages.append(AgentMessage.user(text))
       return {"version": state.version}

Needs FastAPI (``pip install "agents_persist[fastapi]"``); ``import
agents_persist`` never imports it.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Annotated, Any, AsyncContextManager, AsyncIterator, Callable, Mapping, Optional

try:
    from fastapi import Depends, FastAPI
    from fastapi.responses import JSONResponse
    from starlette.requests import HTTPConnection, Request
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without fastapi
    raise ImportError(
        f'agents_persist.fastapi needs FastAPI ({exc.name} is missing); install it with: pip install "agents_persist[fastapi]"'
    ) from exc

from .aio import AsyncCheckpointer
from .errors import BackendUnavailableError, ConflictError
from .urls import from_url

__all__ = ["STATE_KEY", "CheckpointerDep", "Lifespan", "add_error_handlers", "get_checkpointer", "lifespan", "open_checkpointer"]

#: Attribute of ``app.state`` holding the app's :class:`AsyncCheckpointer`.
STATE_KEY = "agents_persist"
#: What FastAPI's ``lifespan=`` takes: a function of the app returning an async context manager.
Lifespan = Callable[[Any], AsyncContextManager[Any]]


@asynccontextmanager
async def open_checkpointer(
    app: FastAPI, url: Optional[str] = None, *, max_workers: Optional[int] = None, **options: Any
) -> AsyncIterator[AsyncCheckpointer]:
    """Open ``AsyncCheckpointer(from_url(url, **options))`` as ``app.state.agents_persist``; close it on exit.

    For use inside a lifespan of your own (``async with open_checkpointer(app, url):``).
    ``from_url`` runs in a worker thread, so a backend that connects at
    construction does not block the event loop.

    Args:
        app: The application whose ``state`` gets the checkpointer.
        url: The store URL; None means ``from_url()``'s default
            (``$AGENTS_PERSIST_URL``, else SQLite in the working directory).
        max_workers: The adapter's pool size; by default the backend's
            connection pool size (see :class:`~agents_persist.AsyncCheckpointer`).
        **options: Keyword options of ``from_url``.
    """
    checkpointer = await asyncio.to_thread(from_url, url, **options)
    acp = AsyncCheckpointer(checkpointer, max_workers=max_workers)
    setattr(app.state, STATE_KEY, acp)
    try:
        yield acp
    finally:
        if getattr(app.state, STATE_KEY, None) is acp:
            delattr(app.state, STATE_KEY)
        await acp.close()


def lifespan(
    url: Optional[str] = None, *, wrap: Optional[Lifespan] = None, max_workers: Optional[int] = None, **options: Any
) -> Lifespan:
    """A lifespan for ``FastAPI(lifespan=...)`` opening the app's checkpointer on startup, closing it on shutdown.

    Args:
        url: The store URL (see :func:`open_checkpointer`).
        wrap: Your own lifespan, run inside (after the checkpointer opened,
            before it closes); whatever state it yields is passed on.
        max_workers: The adapter's pool size (default: the backend's pool size).
        **options: Keyword options of ``from_url``.
    """

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[Optional[Mapping[str, Any]]]:
        async with open_checkpointer(app, url, max_workers=max_workers, **options):
            if wrap is None:
                yield None
            else:
                async with wrap(app) as state:
                    yield state

    return run


def get_checkpointer(connection: HTTPConnection) -> AsyncCheckpointer:
    """The dependency: the app's :class:`~agents_persist.AsyncCheckpointer` (``acp = Depends(get_checkpointer)``),
    HTTP or WebSocket.

    Raises:
        RuntimeError: The app's lifespan did not open one (pass
            ``lifespan=lifespan(...)`` to the app that serves the route).
    """
    acp = getattr(connection.app.state, STATE_KEY, None)
    if not isinstance(acp, AsyncCheckpointer):
        raise RuntimeError(
            "no agents_persist checkpointer on this app: create it with FastAPI(lifespan=agents_persist.fastapi.lifespan(url))"
        )
    return acp


#: ``acp: CheckpointerDep`` in a route's parameters is ``acp: AsyncCheckpointer = Depends(get_checkpointer)``.
CheckpointerDep = Annotated[AsyncCheckpointer, Depends(get_checkpointer)]


def add_error_handlers(app: FastAPI) -> None:
    """Answer :class:`~agents_persist.ConflictError` with 409 and :class:`~agents_persist.BackendUnavailableError` with 503.

    Bodies carry the thread ID, never the exception's text (which may name
    hosts); the 503 has ``Retry-After: 1`` and ``maybe_applied``.
    """
    app.add_exception_handler(ConflictError, _conflict_response)
    app.add_exception_handler(BackendUnavailableError, _unavailable_response)


async def _conflict_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConflictError)
    return JSONResponse({"error": "conflict", "thread_id": exc.thread_id}, status_code=409)


async def _unavailable_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BackendUnavailableError)
    body = {"error": "storage backend unavailable", "thread_id": exc.thread_id, "maybe_applied": exc.maybe_applied}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
