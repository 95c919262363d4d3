"""Flask integration: one checkpointer per app, opt-in JSON error handlers, a ``flask agents-persist`` command.

.. code-block:: python

   from agents_persist.flask import AgentsPersist

   persist = AgentsPersist()

   def create_app():
       app = Flask(__name__)
       app.config["AGENTS_PERSIST_URL"] = "redis://localhost:6379/0"
       persist.init_app(app, error_handlers=True)
       return app

   # in a view: persist.checkpointer.update(thread_id, fn)

Needs Flask (``pip install "agents_persist[flask]"``); ``import agents_persist``
never imports it.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .extras import missing_extra

try:
    import click
    from flask import Flask, Response, current_app, has_app_context, jsonify
    from flask.cli import AppGroup
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without flask
    raise missing_extra("agents_persist.flask", "Flask", "flask", exc) from exc

from . import cli
from .checkpointer import Checkpointer
from .errors import BackendUnavailableError, ConfigurationError, ConflictError
from .urls import from_url

__all__ = ["AgentsPersist", "EXTENSION_KEY", "URL_KEY", "OPTIONS_KEY"]

#: Key of the app's entry in ``app.extensions``.
EXTENSION_KEY = "agents_persist"
#: Config key of the store URL; None (the default) means ``from_url()``'s default.
URL_KEY = "AGENTS_PERSIST_URL"
#: Config key of a dict of keyword options for ``from_url``.
OPTIONS_KEY = "AGENTS_PERSIST_OPTIONS"


class _AppState:
    """What the extension keeps per app in ``app.extensions["agents_persist"]``."""

    def __init__(self, extension: "AgentsPersist") -> None:
        self.extension = extension
        self.checkpointer: Optional[Checkpointer] = None
        self.lock = threading.Lock()


class AgentsPersist:
    """The Flask extension: ``AgentsPersist(app)`` or ``ext = AgentsPersist(); ext.init_app(app)``.

    One extension object may serve several apps; each app gets its own
    checkpointer, built by ``from_url(app.config["AGENTS_PERSIST_URL"],
    **app.config["AGENTS_PERSIST_OPTIONS"])`` on first use in a process
    (never in :meth:`init_app`, so a ``gunicorn --preload`` master that
    never touches it forks without open connections). The checkpointer is a
    connection pool: it is not closed per request or per app context, only
    by :meth:`close`.

    Args:
        app (Optional[flask.Flask]): An app to initialise now (optional).
        error_handlers: Register the JSON error handlers (409 for
            :class:`~agents_persist.ConflictError`, 503 for
            :class:`~agents_persist.BackendUnavailableError`) on the apps
            this extension is initialised on, unless ``init_app`` says
            otherwise.
    """

    def __init__(self, app: Optional[Flask] = None, *, error_handlers: bool = False) -> None:
        self.error_handlers = error_handlers
        self.app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, error_handlers: Optional[bool] = None) -> None:
        """Set up ``app``: config defaults, its ``app.extensions`` entry, the CLI group, and maybe the error handlers.

        Opens nothing. Calling it again for the same app only adds the
        error handlers if asked to.

        Args:
            app: The Flask application.
            error_handlers: Register the JSON error handlers on this app;
                None (the default) uses the constructor's ``error_handlers``.
        """
        app.config.setdefault(URL_KEY, None)
        app.config.setdefault(OPTIONS_KEY, {})
        if EXTENSION_KEY not in app.extensions:
            app.extensions[EXTENSION_KEY] = _AppState(self)
            app.cli.add_command(_command_group())
        if self.error_handlers if error_handlers is None else error_handlers:
            app.register_error_handler(ConflictError, _conflict_response)
            app.register_error_handler(BackendUnavailableError, _unavailable_response)

    @property
    def checkpointer(self) -> Checkpointer:
        """The checkpointer of the current app (``flask.current_app``), built on first use.

        Outside an app context, the app given to the constructor (if any) is used.

        Raises:
            RuntimeError: No app context and no app given to the constructor,
                or the app was not initialised with this extension.
        """
        return self.get_checkpointer()

    def get_checkpointer(self, app: Optional[Flask] = None) -> Checkpointer:
        """The checkpointer of ``app`` (default: the current app), built on first use in this process.

        A closed one (see :meth:`close`) is replaced by a new one.

        Raises:
            ConfigurationError: The app's URL or options are invalid.
        """
        app = self._app(app)
        state = _state(app)
        with state.lock:
            if state.checkpointer is None or state.checkpointer.closed:
                url, options = _config(app)
                state.checkpointer = from_url(url, **options)
            return state.checkpointer

    def close(self, app: Optional[Flask] = None) -> None:
        """Close the checkpointer of ``app`` (default: the current app) if one was built; idempotent.

        A later use builds a new one. Call it when the app is done (in tests,
        or before a worker exits); it is never called per request.
        """
        state = _state(self._app(app))
        with state.lock:
            checkpointer, state.checkpointer = state.checkpointer, None
        if checkpointer is not None:
            checkpointer.close()

    def _app(self, app: Optional[Flask]) -> Flask:
        if app is not None:
            return app
        if has_app_context():
            return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]
        if self.app is not None:
            return self.app
        raise RuntimeError("AgentsPersist: no app given, no app context and no app passed to AgentsPersist(app)")


def _state(app: Flask) -> _AppState:
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, _AppState):
        raise RuntimeError(f"the app {app.name!r} was not initialised with AgentsPersist.init_app")
    return state


def _config(app: Flask) -> Tuple[Optional[str], Dict[str, Any]]:
    url = app.config.get(URL_KEY)
    options = app.config.get(OPTIONS_KEY) or {}
    if url is not None and not isinstance(url, str):
        raise ConfigurationError(f"{URL_KEY} must be a str, not {type(url).__name__}")
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"{OPTIONS_KEY} must be a dict of from_url options, not {type(options).__name__}")
    return url, dict(options)


# ---------------------------------------------------------------- error handlers


def _conflict_response(exc: ConflictError) -> Tuple[Response, int]:
    """409: the thread changed under a compare-and-set save (no URL, no message text from the backend)."""
    return jsonify({"error": "conflict", "thread_id": exc.thread_id}), 409


def _unavailable_response(exc: BackendUnavailableError) -> Tuple[Response, int, Dict[str, str]]:
    """503: the store could not be reached; the exception's message (which may name hosts) is not sent."""
    current_app.logger.warning("agents_persist: storage backend unavailable (thread %r)", exc.thread_id)
    body = {"error": "storage backend unavailable", "thread_id": exc.thread_id, "maybe_applied": exc.maybe_applied}
    return jsonify(body), 503, {"Retry-After": "1"}


# ---------------------------------------------------------------- CLI

_SUBCOMMANDS = {
    "list": "List stored threads, newest first (--prefix, --limit, --cursor).",
    "show": "Print one thread's stored state (THREAD [--json]).",
    "delete": "Delete one thread (THREAD).",
    "demo": "Run the demo conversation against the app's store.",
    "export": "Write every thread as JSON Lines (--prefix, --output).",
    "import": "Create threads from JSON Lines (--input, --force).",
    "copy": "Copy every thread between two stores (--from URL --to URL [--prefix]).",
    "purge-expired": "Delete expired threads now.",
    "stats": "Count threads and messages.",
    "doctor": "Check connectivity, schema and a round trip, in plain words.",
}
_GROUP: Optional[AppGroup] = None


def _run_cli(subcommand: str, args: Sequence[str]) -> None:
    """Run ``agents_persist.cli.main`` with the current app's URL (``--url`` goes before the subcommand)."""
    url, _ = _config(current_app)
    argv = (["--url", url] if url is not None else []) + [subcommand, *args]
    code = cli.main(argv)
    if code:
        raise click.exceptions.Exit(code)


def _make_subcommand(group: AppGroup, name: str, help_text: str) -> None:
    @group.command(name, help=help_text, add_help_option=False, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: Tuple[str, ...]) -> None:
        _run_cli(name, args)


def _command_group() -> AppGroup:
    """The ``flask agents-persist`` group (one shared by every app; each command uses the current app's URL)."""
    global _GROUP
    if _GROUP is None:
        group = AppGroup("agents-persist", help="Inspect the app's agents_persist store (the agents-persist command).")
        for name, help_text in _SUBCOMMANDS.items():
            _make_subcommand(group, name, help_text)
        _GROUP = group
    return _GROUP
