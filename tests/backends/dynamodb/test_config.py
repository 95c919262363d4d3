"""Construction and configuration errors: URLs, missing tables, key schemas, denied IAM actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents_persist import (
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


def test_denied_action_raises_configuration_error_naming_table_and_iam_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto enforces IAM after its first N requests: set up a user allowed to read but not to write."""
    import json

    import boto3

    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "4")
    server = SerializedMotoServer.start(tmp_path)
    monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
    try:
        admin = {"endpoint_url": server.endpoint_url, "region_name": "us-east-1", **CREDENTIALS}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"], "Resource": "*"}],
        }
        iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps(policy))
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
        cp = from_url(
            dynamodb_url(server, table),
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            list_index=None,
        )
        try:
            assert cp.load("t") is None  # GetItem/Query are allowed
            with pytest.raises(ConfigurationError, match=rf"{table}.*dynamodb:PutItem"):
                cp.save("t", AgentStateSnapshot())
            with pytest.raises(ConfigurationError, match=rf"{table}.*dynamodb:Scan"):
                cp.list_threads()
            assert key["SecretAccessKey"] not in repr(cp)
        finally:
            cp.close()
    finally:
        server.stop()
