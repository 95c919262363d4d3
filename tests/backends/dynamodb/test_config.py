"""Construction and configuration errors: URLs, missing tables, key schemas, denied IAM actions."""

from __future__ import annotations

import itertools
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from agents_persist import (
    AgentMessage,
    AgentStateSnapshot,
    ConfigurationError,
    DynamoDbCheckpointer,
    from_url,
)
from tests.fixtures.dynamodb import (
    CREDENTIALS,
    AnyMotoServer,
    SerializedMotoServer,
    dynamodb_url,
    unique_table,
)


def test_from_url_reads_region_table_endpoint_credentials_and_options(dynamodb_server: AnyMotoServer) -> None:
    table = unique_table("url")
    url = (
        f"dynamodb://testing:s3cr3t-value@us-east-1/{table}?endpoint_url={dynamodb_server.endpoint_url}"
        "&create_table=true&list_index=&max_connections=3&timeout=2.5&max_attempts=2&retry_mode=adaptive"
        "&ttl_attribute=expires&ttl=30"
    )
    cp = from_url(url)
    try:
        assert isinstance(cp, DynamoDbCheckpointer)
        assert (cp.table_name, cp.region_name, cp.endpoint_url) == (table, "us-east-1", dynamodb_server.endpoint_url)
        assert (cp.list_index, cp.max_connections, cp.read_timeout, cp.max_attempts) == (None, 3, 2.5, 2)
        assert (cp.retry_mode, cp.ttl_attribute, cp.ttl) == ("adaptive", "expires", 30.0)
        assert cp.store.client.get().meta.config.max_pool_connections == 3
        assert "s3cr3t" not in repr(cp) and table in repr(cp)
        cp.save("t", AgentStateSnapshot(metadata={"ok": 1}))
        loaded = cp.load("t")
        assert loaded is not None and loaded.metadata == {"ok": 1}
        cp.delete("t")
    finally:
        cp.close()
    for bad in (
        f"dynamodb://us-east-1/{table}?no_such_option=1",
        "dynamodb://us-east-1/",
        "dynamodb://us-east-1/ab",
        f"dynamodb://us-east-1/{table}?create_table=maybe",
        f"dynamodb://us-east-1/{table}?max_connections=many",
    ):
        with pytest.raises(ConfigurationError):
            from_url(bad, **CREDENTIALS)


def test_missing_table_raises_configuration_error_naming_it(dynamodb_server: AnyMotoServer) -> None:
    cp = from_url(dynamodb_url(dynamodb_server, "agents_persist_no_such_table"), **CREDENTIALS)
    try:
        for call in (lambda: cp.load("t"), lambda: cp.save("t", AgentStateSnapshot()), lambda: cp.list_threads()):
            with pytest.raises(ConfigurationError, match="agents_persist_no_such_table"):
                call()
    finally:
        cp.close()


def test_create_table_refuses_a_table_with_another_key_schema(dynamodb_server: AnyMotoServer, dynamodb_client: Any) -> None:
    table = unique_table("schema")
    dynamodb_client.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    try:
        with pytest.raises(ConfigurationError, match="key schema"):
            from_url(dynamodb_url(dynamodb_server, table), create_table=True, **CREDENTIALS)
    finally:
        dynamodb_client.delete_table(TableName=table)


def _documented_actions() -> List[str]:
    """The actions of the IAM policy docs/backends/dynamodb.rst says every checkpointer needs (its first JSON block)."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "backends" / "dynamodb.rst").read_text()
    lines = text.split(".. code-block:: json", 1)[1].splitlines()[2:]
    body = list(itertools.takewhile(lambda line: line.startswith("   ") or not line.strip(), lines))
    actions: List[str] = json.loads("\n".join(body))["Statement"][0]["Action"]
    return actions


@contextmanager
def _user_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, actions: List[str]) -> Iterator[Tuple[Any, str, Dict[str, str]]]:
    """A moto server enforcing IAM, a table on it, and the credentials of a user allowed only ``actions``."""
    import boto3

    # moto enforces IAM after its first N requests: the user and the table are set up within them.
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "4")
    server = SerializedMotoServer.start(tmp_path)
    monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
    try:
        admin = {"endpoint_url": server.endpoint_url, "region_name": "us-east-1", **CREDENTIALS}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="agent")
        key = iam.create_access_key(UserName="agent")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
        iam.put_user_policy(UserName="agent", PolicyName="agent", PolicyDocument=json.dumps(policy))
        table = unique_table("iam")
        boto3.client("dynamodb", **admin).create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "thread_id", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "thread_id", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
        )
        yield server, table, {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
    finally:
        server.stop()


def test_denied_action_raises_configuration_error_naming_table_and_iam_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _user_with(tmp_path, monkeypatch, ["dynamodb:GetItem", "dynamodb:Query"]) as (server, table, key):
        cp = from_url(dynamodb_url(server, table), list_index=None, **key)
        try:
            assert cp.load("t") is None  # GetItem/Query are allowed
            with pytest.raises(ConfigurationError, match=rf"{table}.*dynamodb:PutItem"):
                cp.save("t", AgentStateSnapshot())
            with pytest.raises(ConfigurationError, match=rf"{table}.*dynamodb:Scan"):
                cp.list_threads()
            assert key["aws_secret_access_key"] not in repr(cp)
        finally:
            cp.close()


def test_the_documented_policy_allows_every_save_load_append_and_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails on the policy documented before: a save too big for one transaction registers its runs by UpdateItem."""
    # AWS authorizes a TransactWriteItems by the actions of its items (PutItem here); moto asks for one of its own.
    actions = [*_documented_actions(), "dynamodb:TransactWriteItems"]
    with _user_with(tmp_path, monkeypatch, actions) as (server, table, key):
        cp = from_url(dynamodb_url(server, table), list_index=None, **key)
        assert isinstance(cp, DynamoDbCheckpointer)
        cp.store.planner.chunk_payload_bytes = 2_000  # many chunk items per save ...
        cp.store.planner.transaction_max_bytes = 8_000  # ... and a big save outside one transaction
        try:
            history = [AgentMessage.user(f"message {i} " + "x" * 300) for i in range(10)]
            assert cp.save("t", AgentStateSnapshot(messages=history)) == 1
            assert cp.append("t", [AgentMessage.assistant("ok")]) == 2
            state = cp.load("t")
            assert state is not None and [m.content for m in state.messages] == [m.content for m in history] + ["ok"]
            state.messages = [AgentMessage.user(f"rewritten {i} " + "y" * 300) for i in range(60)]
            assert cp.save("t", state) == 3  # a rewrite bigger than the transaction budget: runs registered first
            assert [m.content for m in cp.load_messages("t", 58, None)] == [f"rewritten {i} " + "y" * 300 for i in (58, 59)]
            assert cp.delete("t") and cp.load("t") is None
        finally:
            cp.close()
