"""The SQL interface: the docs' example queries, run as shown on data saved through the library; the read-only role.

The SQL comes from ``docs/backends/postgres/*.sql``, the very files the docs
include; each ``-- name:`` section runs with ``search_path`` set to a schema of
this module's own, as the docs run it in ``public``.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from agents_persist import AgentMessage, AgentStateSnapshot, HitlInterrupt, PostgresCheckpointer, TodoItem, ToolCall
from tests.backends.postgres.helpers import Server, admin
from tests.fixtures.postgres import drop_schema, unique_schema

DOCS = Path(__file__).resolve().parents[3] / "docs" / "backends" / "postgres"
_SECTION = re.compile(r"^-- name: (\w+)\n(.*?)^-- end$", re.M | re.S)


def sections(filename: str) -> Dict[str, str]:
    """The ``-- name:`` sections of a docs SQL file, as the docs show them."""
    return {name: body for name, body in _SECTION.findall((DOCS / filename).read_text())}


EXAMPLES = sections("examples.sql")
OLD = 3 * 24 * 3600.0


def _conversations() -> Dict[str, AgentStateSnapshot]:
    return {
        "cust-42/support": AgentStateSnapshot(
            messages=[
                AgentMessage.user("I want a refund for order 1001"),
                AgentMessage.assistant(
                    None, tool_calls=[ToolCall(id="call_1", name="issue_refund", arguments={"order": 1001, "amount": 25.5})]
                ),
                AgentMessage.tool({"status": "refunded", "amount": 25.5}, tool_call_id="call_1"),
                AgentMessage.assistant("Your refund of 25.50 is on its way."),
            ],
            todos=[TodoItem("confirm the refund by email", status="in_progress")],
            current_interrupt=HitlInterrupt(
                tool_name="issue_refund", tool_args={"order": 1002, "amount": 99}, call_id="call_2", policy_note="over 50"
            ),
            metadata={"customer_id": "cust-42", "channel": "chat"},
        ),
        "cust-7/sales": AgentStateSnapshot(
            messages=[
                AgentMessage.user("Do you ship to Zürich?"),
                AgentMessage.assistant("Yes, in 3 days."),
                AgentMessage.user("Great, thanks"),
            ],
            metadata={"customer_id": "cust-7"},
        ),
        "cust-9/archived": AgentStateSnapshot(
            messages=[AgentMessage.user("hello"), AgentMessage.assistant("hi")], metadata={"customer_id": "cust-9"}
        ),
    }


@pytest.fixture(scope="module")
def store(postgres_server: Server) -> Iterator[Dict[str, Any]]:
    """A schema of this module with the three conversations (``cust-9/archived`` last saved 3 days ago)."""
    schema = unique_schema("sqlif_")
    cp = PostgresCheckpointer(postgres_server.url, schema=schema)
    try:
        for thread_id, state in _conversations().items():
            cp.save(thread_id, state)
        with admin(postgres_server.url) as cursor:  # backdate one thread, as if saved 3 days ago
            cursor.execute(
                sql.SQL("UPDATE {} SET updated_at = updated_at - %s, created_at = created_at - %s WHERE thread_id = %s").format(
                    sql.Identifier(schema, "agents_persist")
                ),
                (OLD, OLD, "cust-9/archived"),
            )
        yield {"url": postgres_server.url, "schema": schema, "cp": cp}
    finally:
        cp.close()
        drop_schema(postgres_server.url, schema)


@contextmanager
def analyst_cursor(url: str, schema: str, role: str = "") -> Iterator[Any]:
    """A cursor with ``search_path`` set to ``schema`` (as the docs' examples assume), optionally as ``role``."""
    conn = psycopg2.connect(url, connect_timeout=5, options=f"-c search_path={schema}")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            if role:
                cursor.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            yield cursor
    finally:
        conn.close()


def run(cursor: Any, name: str) -> List[Any]:
    cursor.execute(EXAMPLES[name])
    return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def test_every_example_is_tested() -> None:
    tested = {name[len("test_example_") :] for name in globals() if name.startswith("test_example_")}
    assert set(EXAMPLES) - {"create_search_index", "create_metadata_index"} == tested


def test_example_active_last_24_hours(store: Dict[str, Any]) -> None:
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        rows = run(cursor, "active_last_24_hours")
    assert [(thread_id, count) for thread_id, count, _ in rows] == [("cust-7/sales", 3), ("cust-42/support", 4)]
    assert all(abs(updated.timestamp() - time.time()) < 600 for *_, updated in rows)


def test_example_by_message_count(store: Dict[str, Any]) -> None:
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        assert run(cursor, "by_message_count") == [("cust-42/support", 4), ("cust-7/sales", 3), ("cust-9/archived", 2)]


def test_example_search_ilike(store: Dict[str, Any]) -> None:
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        assert run(cursor, "search_ilike") == [
            ("cust-42/support", 0, "user", "I want a refund for order 1001"),
            ("cust-42/support", 3, "assistant", "Your refund of 25.50 is on its way."),
        ]


def _plan(cursor: Any, query: str) -> str:
    cursor.execute("SET enable_seqscan = off")
    cursor.execute("EXPLAIN " + query)
    plan = "\n".join(row[0] for row in cursor.fetchall())
    cursor.execute("RESET enable_seqscan")
    return plan


def test_example_search_full_text(store: Dict[str, Any]) -> None:
    expected = [
        ("cust-42/support", 0, "user", "I want a refund for order 1001"),
        ("cust-42/support", 3, "assistant", "Your refund of 25.50 is on its way."),
    ]
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        assert run(cursor, "search_full_text") == expected
    with analyst_cursor(store["url"], store["schema"]) as owner:  # the optional index, as the owner creates it
        run(owner, "create_search_index")
        try:
            assert "agents_persist_log_search_idx" in _plan(owner, EXAMPLES["search_full_text"])
            assert run(owner, "search_full_text") == expected
        finally:
            owner.execute("DROP INDEX agents_persist_log_search_idx")


def test_example_by_metadata_key(store: Dict[str, Any]) -> None:
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        assert run(cursor, "by_metadata_key") == [("cust-42/support", 1, 4)]
        run(cursor, "create_metadata_index")
        try:
            assert "agents_persist_customer_idx" in _plan(cursor, EXAMPLES["by_metadata_key"])
            assert run(cursor, "by_metadata_key") == [("cust-42/support", 1, 4)]
        finally:
            cursor.execute("DROP INDEX agents_persist_customer_idx")


def test_example_tool_calls_by_name(store: Dict[str, Any]) -> None:
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        assert run(cursor, "tool_calls_by_name") == [("cust-42/support", 1, "call_1", {"order": 1001, "amount": 25.5})]


def test_example_storage_per_thread(store: Dict[str, Any]) -> None:
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        rows = run(cursor, "storage_per_thread")
    assert [row[:2] for row in rows] == [("cust-42/support", 4), ("cust-7/sales", 3), ("cust-9/archived", 2)]
    assert all(200 < row[2] < 4000 and row[3] == f"{row[2]} bytes" for row in rows), rows


def test_example_pending_approvals(store: Dict[str, Any]) -> None:
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        assert run(cursor, "pending_approvals") == [("cust-42/support", "issue_refund", {"order": 1002, "amount": 99}, "over 50")]


def test_example_rows_of_one_thread(postgres_server: Server) -> None:
    """delete() removes every row of the thread: the query of the docs counts none afterwards."""
    schema = unique_schema("sqlif_del_")
    try:
        with PostgresCheckpointer(postgres_server.url, schema=schema) as cp:
            state = _conversations()["cust-42/support"]
            cp.save("cust-42/support", state)
            for i in range(40):  # several log rows, merged ones too
                cp.append("cust-42/support", [AgentMessage.user(f"more {i}")])
            with analyst_cursor(postgres_server.url, schema) as cursor:
                assert run(cursor, "rows_of_one_thread")[0][:2] == (1, 44)
                assert run(cursor, "rows_of_one_thread")[0][3] > 1
                assert cp.delete("cust-42/support")
                assert run(cursor, "rows_of_one_thread") == [(0, 0, 0, 0)]
    finally:
        drop_schema(postgres_server.url, schema)


def test_the_views_show_each_message_and_the_head_in_full(store: Dict[str, Any]) -> None:
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        cursor.execute(
            "SELECT seq, role, content, content_json, tool_calls, tool_call_id, name, metadata FROM agents_persist_messages"
            " WHERE thread_id = 'cust-42/support' ORDER BY seq"
        )
        assert [tuple(row) for row in cursor.fetchall()] == [
            (0, "user", "I want a refund for order 1001", None, [], None, None, {}),
            (
                1,
                "assistant",
                None,
                None,
                [{"id": "call_1", "name": "issue_refund", "arguments": {"order": 1001, "amount": 25.5}}],
                None,
                None,
                {},
            ),
            (2, "tool", None, {"status": "refunded", "amount": 25.5}, [], "call_1", None, {}),
            (3, "assistant", "Your refund of 25.50 is on its way.", None, [], None, None, {}),
        ]
        cursor.execute(
            "SELECT version, todos, metadata, created_at <= updated_at, expires_at FROM agents_persist_threads"
            " WHERE thread_id = 'cust-42/support'"
        )
        assert cursor.fetchone() == (
            1,
            [{"content": "confirm the refund by email", "status": "in_progress", "id": None}],
            {"customer_id": "cust-42", "channel": "chat"},
            True,
            None,
        )


# ---------------------------------------------------------------------------------------------- read-only role

GRANTS = sections("grants.sql")["analyst_role"]


def test_the_analyst_role_runs_every_example_and_cannot_write(store: Dict[str, Any]) -> None:
    role = f"ap_analyst_{store['schema'][-12:]}"
    grants = GRANTS.replace("agents_persist_analyst", role).replace("public", store["schema"])
    with admin(store["url"]) as cursor:
        cursor.execute(grants)
    try:
        with analyst_cursor(store["url"], store["schema"], role) as cursor:
            for name in EXAMPLES:
                if name.startswith("create_") or name == "rows_of_one_thread":
                    continue
                assert run(cursor, name), name
            for statement in (
                "DELETE FROM agents_persist_threads",
                "UPDATE agents_persist_messages SET role = 'x'",
                "INSERT INTO agents_persist_threads (thread_id) VALUES ('x')",
                "SELECT * FROM agents_persist",
                "SELECT * FROM agents_persist_log",
                "DELETE FROM agents_persist_log",
                "SELECT agents_persist_delete('cust-42/support', 0)",
                "CREATE TABLE agents_persist_extra (x int)",
            ):
                with pytest.raises(psycopg2.Error) as raised:
                    cursor.execute(statement)
                assert isinstance(
                    raised.value,
                    (
                        psycopg2.errors.InsufficientPrivilege,
                        psycopg2.errors.ObjectNotInPrerequisiteState,
                        psycopg2.errors.FeatureNotSupported,
                    ),
                ), (statement, raised.value)
        with analyst_cursor(store["url"], store["schema"]) as cursor:
            assert run(cursor, "by_message_count")[0] == ("cust-42/support", 4)
    finally:
        with admin(store["url"]) as cursor:
            cursor.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role)))


# ---------------------------------------------------------------------------------------------- fidelity

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)
_json = st.recursive(
    _json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8
)


def _nul_free(value: Any) -> Any:
    """What the mirror shows for ``value``: U+0000 in strings becomes U+FFFD (PostgreSQL text cannot hold it)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_nul_free(v) for v in value]
    if isinstance(value, dict):
        return {_nul_free(k): _nul_free(v) for k, v in value.items()}
    return value


def _numbers_as_json(value: Any) -> Any:
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal) if value is not None else None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_json, metadata=st.dictionaries(st.text(max_size=4), _json, max_size=3))
def test_loads_are_byte_identical_and_the_views_show_the_same_values(store: Dict[str, Any], content: Any, metadata: Any) -> None:
    from agents_persist import codec

    cp: PostgresCheckpointer = store["cp"]
    message = AgentMessage.tool(content, tool_call_id="c\x00", metadata=metadata)
    state = AgentStateSnapshot(messages=[message, AgentMessage.user("x")], metadata={"m": metadata})
    cp.save("fidelity", state, force=True)
    loaded = cp.load("fidelity")
    assert loaded is not None
    assert codec.encode_messages(loaded.messages) == codec.encode_messages(state.messages)
    assert codec.encode_head(loaded) == codec.encode_head(state)
    with analyst_cursor(store["url"], store["schema"]) as cursor:
        cursor.execute(
            "SELECT content, content_json::text, tool_call_id, metadata::text FROM agents_persist_messages"
            " WHERE thread_id = 'fidelity' AND seq = 0"
        )
        text, content_json, tool_call_id, shown_metadata = cursor.fetchone()
        cursor.execute("SELECT metadata::text FROM agents_persist_threads WHERE thread_id = 'fidelity'")
        (head_metadata,) = cursor.fetchone()
    expected = _nul_free(content)
    if isinstance(content, str):
        assert (text, content_json) == (expected, None)
    elif content is None:
        assert (text, content_json) == (None, None)
    else:  # jsonb numbers are numeric: compared as decimals (1 and 1.0 are equal, -0.0 reads as 0.0)
        assert text is None and json.loads(content_json, parse_float=Decimal, parse_int=Decimal) == _numbers_as_json(expected)
    assert tool_call_id == "c\ufffd"
    assert json.loads(shown_metadata, parse_float=Decimal, parse_int=Decimal) == _numbers_as_json(_nul_free(metadata))
    assert json.loads(head_metadata, parse_float=Decimal, parse_int=Decimal) == _numbers_as_json({"m": _nul_free(metadata)})


# ---------------------------------------------------------------------------------------------- retention


def test_delete_inactive_removes_only_threads_not_saved_since_in_batches_and_skips_locked_ones(
    pg_url: str, fresh_schema: str
) -> None:
    from tests.backends.postgres.helpers import row_locks

    with PostgresCheckpointer(pg_url, schema=fresh_schema) as cp:
        for i in range(25):
            cp.save(f"old-{i:02d}", AgentStateSnapshot(messages=[AgentMessage.user("x")]))
        cutoff = time.time()
        time.sleep(0.01)
        cp.save("fresh", AgentStateSnapshot(messages=[AgentMessage.user("y")]))
        with row_locks(pg_url, fresh_schema, ["old-00"]):  # a save holds old-00: skipped, never waited for
            start = time.monotonic()
            assert cp.delete_inactive(cutoff, batch_size=10) == 24
            assert time.monotonic() - start < 5
        assert [info.thread_id for info in cp.iter_threads()] == ["fresh", "old-00"]
        assert cp.delete_inactive(cutoff) == 1
        assert [info.thread_id for info in cp.iter_threads()] == ["fresh"]
        with admin(pg_url) as cursor:
            cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(fresh_schema, "agents_persist_log")))
            assert cursor.fetchone() == (1,)
