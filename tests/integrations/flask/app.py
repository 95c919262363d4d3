"""The app factory the Flask tests use, in-process (test client) and under gunicorn."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from agents_persist import AgentMessage, AgentStateSnapshot, BackendUnavailableError, ConflictError
from agents_persist.flask import AgentsPersist

persist = AgentsPersist()


def create_app(url: Optional[str], options: Optional[Dict[str, Any]] = None, *, error_handlers: bool = False) -> Flask:
    """An app on ``url``: POST appends a message to a thread through ``persist.checkpointer.update``."""
    app = Flask(__name__)
    if url is not None:
        app.config["AGENTS_PERSIST_URL"] = url
    app.config["AGENTS_PERSIST_OPTIONS"] = dict(options or {})
    persist.init_app(app, error_handlers=error_handlers)

    @app.get("/health")
    def health() -> ResponseReturnValue:
        # "built": whether this process already holds a checkpointer (a fresh --preload worker must not).
        return jsonify({"pid": os.getpid(), "built": app.extensions["agents_persist"].checkpointer is not None})

    @app.post("/threads/<path:thread_id>/messages")
    def add_message(thread_id: str) -> ResponseReturnValue:
        content = (request.get_json(silent=True) or {}).get("content", "")

        def add(state: AgentStateSnapshot) -> None:
            state.messages.append(AgentMessage.user(content))

        stored = persist.checkpointer.update(thread_id, add)
        return jsonify({"version": stored.version, "count": len(stored.messages), "pid": os.getpid()})

    @app.get("/threads/<path:thread_id>")
    def show(thread_id: str) -> ResponseReturnValue:
        state = persist.checkpointer.load(thread_id)
        if state is None:
            return jsonify({"error": "not found"}), 404
        return jsonify({"version": state.version, "count": len(state.messages)})

    @app.post("/conflict/<path:thread_id>")
    def conflict(thread_id: str) -> ResponseReturnValue:
        raise ConflictError("version 3 expected, 4 stored", thread_id=thread_id, expected_version=3, actual_version=4)

    @app.post("/unavailable/<path:thread_id>")
    def unavailable(thread_id: str) -> ResponseReturnValue:
        raise BackendUnavailableError(
            "redis://:hunter2@db.internal:6379 timed out", thread_id=thread_id, maybe_applied=True
        )

    return app
