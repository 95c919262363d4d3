"""A Flask agent backend: POST a user's message to a conversation, GET the conversation back.

Run it from a clone, after ``pip install -e ".[flask]"`` (gunicorn for the second line)::

    python examples/flask_app.py                                        # Flask's server, 127.0.0.1:5000
    gunicorn -w 4 --preload --chdir examples "flask_app:create_app()"   # 4 workers, 127.0.0.1:8000

    curl -X POST 127.0.0.1:5000/threads/alice/messages -H "Content-Type: application/json" -d '{"content": "hi"}'
    curl 127.0.0.1:5000/threads/alice

The store is ``$AGENTS_PERSIST_URL`` (``redis://...``, ``postgresql://...``), else the
embedded ``sqlite:///agents_persist.db`` in the working directory.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from flask import Blueprint, Flask, abort, request

from agents_persist import AgentMessage, AgentStateSnapshot
from agents_persist.flask import AgentsPersist

persist = AgentsPersist()
threads = Blueprint("threads", __name__)


@threads.post("/threads/<path:thread_id>/messages")
def add_message(thread_id: str) -> Dict[str, Any]:
    content = (request.get_json(silent=True) or {}).get("content", "")

    def turn(state: AgentStateSnapshot) -> None:  # run again if another worker saved the thread meanwhile
        state.messages.append(AgentMessage.user(content))
        # your agent answers here, in the same update: state.messages.append(AgentMessage.assistant(...))

    stored = persist.checkpointer.update(thread_id, turn)
    return {"version": stored.version, "count": len(stored.messages), "pid": os.getpid()}


@threads.get("/threads/<path:thread_id>")
def show(thread_id: str) -> Dict[str, Any]:
    state = persist.checkpointer.load(thread_id)
    if state is None:
        abort(404)
    return {"version": state.version, "count": len(state.messages)}


def create_app(url: Optional[str] = None, options: Optional[Dict[str, Any]] = None) -> Flask:
    """The app on ``url`` (None: ``$AGENTS_PERSIST_URL``, else ``sqlite:///agents_persist.db``)."""
    app = Flask(__name__)
    app.config["AGENTS_PERSIST_URL"] = url
    app.config["AGENTS_PERSIST_OPTIONS"] = dict(options or {})
    persist.init_app(app, error_handlers=True)  # ConflictError -> 409, BackendUnavailableError -> 503
    app.register_blueprint(threads)
    return app


if __name__ == "__main__":
    create_app().run()
