"""The Flask extension with Flask's test client, on every contract backend."""

from __future__ import annotations

from typing import Any, Iterator, Tuple

import pytest
from flask import Flask
from flask.testing import FlaskClient

from agents_persist import AgentMessage, AgentStateSnapshot, ConfigurationError, InMemoryCheckpointer
from agents_persist.flask import AgentsPersist
from tests.integrations.flask.app import create_app, persist
from tests.integrations.support import expected_contents, hammer
from tests.spec import BackendSpec

THREADS, REQUESTS = 8, 25


def _cleanup(app: Flask, prefix: str) -> None:
    try:
        cp = persist.get_checkpointer(app)
        for info in list(cp.iter_threads(prefix)):
            cp.delete(info.thread_id)
    finally:
        persist.close(app)


@pytest.fixture
def app(backend_spec: BackendSpec, prefix: str) -> Iterator[Flask]:
    """The test app on each contract backend (memory: ``memory://``); threads under ``prefix`` deleted afterwards."""
    application = create_app(backend_spec.url, backend_spec.options)
    try:
        yield application
    finally:
        _cleanup(application, prefix)


def test_one_thread_hammered_by_8_threads_keeps_every_message(app: Flask, prefix: str) -> None:
    thread_id = f"{prefix}hammered"
    def post(client: FlaskClient, content: str) -> Tuple[int, Any]:
        response = client.post(f"/threads/{thread_id}/messages", json={"content": content})
        return response.status_code, response.get_json() if response.status_code == 200 else response.get_data(as_text=True)

    results, failures = hammer(app.test_client, post, THREADS, REQUESTS)
    assert failures == []
    total = THREADS * REQUESTS
    assert sorted(r["version"] for r in results) == list(range(1, total + 1))  # each commit one version, none lost
    assert all(r["count"] == r["version"] for r in results)
    assert app.test_client().get(f"/threads/{thread_id}").get_json() == {"version": total, "count": total}
    with app.app_context():
        state = persist.checkpointer.load(thread_id)
    assert state is not None and len(state.messages) == total
    assert sorted(m.content for m in state.messages) == expected_contents(THREADS, REQUESTS)


def test_checkpointer_is_lazy_per_app_and_not_closed_per_request(app: Flask, prefix: str) -> None:
    assert app.extensions["agents_persist"].checkpointer is None  # init_app opens nothing
    client = app.test_client()
    assert client.post(f"/threads/{prefix}a/messages", json={"content": "x"}).status_code == 200
    built = app.extensions["agents_persist"].checkpointer
    assert built is not None and not built.closed
    assert client.post(f"/threads/{prefix}a/messages", json={"content": "y"}).status_code == 200
    with app.app_context():
        assert persist.checkpointer is built
    assert not built.closed
    persist.close(app)
    assert built.closed and app.extensions["agents_persist"].checkpointer is None
    persist.close(app)  # idempotent
    with app.app_context():
        assert persist.checkpointer is not built  # a later use builds a new one


def test_one_extension_serves_several_apps() -> None:
    first, second = create_app("memory://"), create_app("memory://")
    try:
        with first.app_context():
            a = persist.checkpointer
        with second.app_context():
            b = persist.checkpointer
        assert isinstance(a, InMemoryCheckpointer) and isinstance(b, InMemoryCheckpointer) and a is not b
    finally:
        persist.close(first)
        persist.close(second)
    assert a.closed and b.closed


def test_constructor_form_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_PERSIST_URL", "memory://")
    app = Flask(__name__)
    ext = AgentsPersist(app)
    assert app.config["AGENTS_PERSIST_URL"] is None and app.config["AGENTS_PERSIST_OPTIONS"] == {}
    try:
        assert isinstance(ext.checkpointer, InMemoryCheckpointer)  # from_url's default: the environment variable
    finally:
        ext.close()
    with pytest.raises(RuntimeError, match="no app"):
        _ = AgentsPersist().checkpointer
    with pytest.raises(RuntimeError, match="not initialised"):
        AgentsPersist().get_checkpointer(Flask("other"))


def test_bad_options_raise_configuration_error() -> None:
    app = create_app("memory://")
    app.config["AGENTS_PERSIST_OPTIONS"] = ["ttl", 3]
    with pytest.raises(ConfigurationError, match="AGENTS_PERSIST_OPTIONS"):
        persist.get_checkpointer(app)


def test_error_handlers_when_opted_in() -> None:
    app = create_app("memory://", error_handlers=True)
    client = app.test_client()
    conflict = client.post("/conflict/t1")
    assert conflict.status_code == 409
    assert conflict.get_json() == {"error": "conflict", "thread_id": "t1"}
    unavailable = client.post("/unavailable/t2")
    assert unavailable.status_code == 503
    assert unavailable.get_json() == {"error": "storage backend unavailable", "thread_id": "t2", "maybe_applied": True}
    assert unavailable.headers["Retry-After"] == "1"
    body = unavailable.get_data(as_text=True)
    assert "hunter2" not in body and "redis://" not in body and "db.internal" not in body


def test_error_handlers_from_the_constructor() -> None:
    app = Flask(__name__)
    AgentsPersist(app, error_handlers=True)

    @app.post("/c")
    def c() -> str:
        from agents_persist import ConflictError

        raise ConflictError("x", thread_id="t")

    assert app.test_client().post("/c").status_code == 409


def test_error_handlers_are_not_registered_without_opting_in() -> None:
    app = create_app("memory://")
    app.testing = False  # a 500 page instead of the exception propagating
    assert app.error_handler_spec == {}  # nothing registered at all
    assert app.test_client().post("/conflict/t1").status_code == 500
    assert app.test_client().post("/unavailable/t1").status_code == 500


def test_flask_cli_group_lists_shows_and_deletes(sqlite_spec: BackendSpec, prefix: str) -> None:
    app = create_app(sqlite_spec.url, sqlite_spec.options)
    thread_id = f"{prefix}cli"
    try:
        with app.app_context():
            persist.checkpointer.save(thread_id, AgentStateSnapshot(messages=[AgentMessage.user("hello from flask")]))
        runner = app.test_cli_runner()
        listed = runner.invoke(args=["agents-persist", "list", "--prefix", prefix])
        assert listed.exit_code == 0, listed.output
        assert f"{thread_id}\tversion 1\t1 messages" in listed.output
        shown = runner.invoke(args=["agents-persist", "show", thread_id])
        assert shown.exit_code == 0 and "hello from flask" in shown.output
        deleted = runner.invoke(args=["agents-persist", "delete", thread_id])
        assert deleted.exit_code == 0 and f"deleted {thread_id!r}" in deleted.output
        missing = runner.invoke(args=["agents-persist", "show", thread_id])
        assert missing.exit_code == 3 and "not found" in missing.output  # 3: not found (docs/cli.rst)
        group_help = runner.invoke(args=["agents-persist", "--help"]).output
        assert all(name in group_help for name in ("list", "export", "import", "copy", "stats", "doctor", "purge-expired"))
        exported = runner.invoke(args=["agents-persist", "export", "--prefix", prefix])
        assert exported.exit_code == 0, exported.output
    finally:
        _cleanup(app, prefix)
