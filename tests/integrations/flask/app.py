"""The Flask tests' app: the routes of examples/flask_app.py, plus the few only the tests need."""

from __future__ import annotations

from typing import Any, Dict, Optional

from flask import Flask
from flask.typing import ResponseReturnValue

from agents_persist import BackendUnavailableError, ConflictError
from examples.flask_app import persist, threads

__all__ = ["create_app", "persist"]


def create_app(url: Optional[str], options: Optional[Dict[str, Any]] = None, *, error_handlers: bool = False) -> Flask:
    """An app on ``url`` serving the example's blueprint; its error handlers only when asked for."""
    app = Flask(__name__)
    app.config["AGENTS_PERSIST_URL"] = url
    app.config["AGENTS_PERSIST_OPTIONS"] = dict(options or {})
    persist.init_app(app, error_handlers=error_handlers)
    app.register_blueprint(threads)

    @app.post("/conflict/<path:thread_id>")
    def conflict(thread_id: str) -> ResponseReturnValue:
        raise ConflictError("version 3 expected, 4 stored", thread_id=thread_id, expected_version=3, actual_version=4)

    @app.post("/unavailable/<path:thread_id>")
    def unavailable(thread_id: str) -> ResponseReturnValue:
        raise BackendUnavailableError(
            "redis://:hunter2@db.internal:6379 timed out", thread_id=thread_id, maybe_applied=True
        )

    return app
