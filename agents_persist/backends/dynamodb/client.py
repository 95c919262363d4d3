"""The boto3 client of a DynamoDB store: built lazily, one per process, and its errors classified once.

:class:`DynamoDbClient` builds the ``boto3`` client from the checkpointer's
settings (or wraps one the caller passed in), runs every API call through
:func:`~agents_persist.translate.translated` with :meth:`DynamoDbClient.classify`,
and drops inherited connections in a forked child through
:mod:`agents_persist.runtime.forking`. Importing this module never imports boto3.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, Dict, Optional, Tuple

from ...errors import AgentsPersistError, BackendUnavailableError, ConfigurationError, SnapshotTooLargeError
from ...runtime import forking
from ...translate import translated
from ...urls import redact_url
from .layout import PK, SK

__all__ = ["DynamoDbClient", "error_code", "require_boto3"]

_ACCESS_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
    }
)
_UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionInProgressException",
    }
)
#: The IAM action each client call needs (TransactWriteItems is authorized per item: PutItem).
IAM_ACTIONS = {
    "get_item": "GetItem",
    "query": "Query",
    "scan": "Scan",
    "put_item": "PutItem",
    "delete_item": "DeleteItem",
    "batch_write_item": "BatchWriteItem",
    "transact_write_items": "PutItem",
    "create_table": "CreateTable",
    "describe_table": "DescribeTable",
    "describe_time_to_live": "DescribeTimeToLive",
    "update_time_to_live": "UpdateTimeToLive",
}


def require_boto3() -> None:
    """Raise :class:`ConfigurationError` naming the extra to install if boto3 is missing."""
    try:
        import boto3  # noqa: F401
        import botocore  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "DynamoDbCheckpointer needs boto3; install it with: pip install agents_persist[dynamodb]"
        ) from exc


def error_code(exc: Any) -> str:
    """The ``Error.Code`` of a botocore ``ClientError``."""
    return str(exc.response.get("Error", {}).get("Code", ""))


class DynamoDbClient:
    """One boto3 DynamoDB client per process for one table, and the translation of its errors.

    Args:
        table_name: The table, named in error messages.
        client: A caller's ``boto3.client("dynamodb")``: used, never closed.
        endpoint_url: Another endpoint (DynamoDB Local, moto, a VPC endpoint).
        session_args: ``boto3.session.Session`` arguments (region, credentials, profile); None ones are left out.
        max_connections: botocore's ``max_pool_connections``.
        connect_timeout: Seconds to connect.
        read_timeout: Seconds to wait for each response.
        max_attempts: botocore's ``total_max_attempts``.
        retry_mode: botocore's retry mode.
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: Any,
        endpoint_url: Optional[str],
        session_args: Dict[str, Optional[str]],
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        max_attempts: int,
        retry_mode: str,
    ) -> None:
        require_boto3()
        self.table_name = table_name
        self.endpoint_url = endpoint_url
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.retry_mode = retry_mode
        self._session_args = {name: value for name, value in session_args.items() if value is not None}
        self.region_name: Optional[str] = session_args.get("region_name") if client is None else client.meta.region_name
        self._owns_client = client is None
        self._client: Any = client
        self._mutex = threading.Lock()
        forking.register(self)

    def describe(self) -> str:
        """Table, region and endpoint for ``repr`` (credentials never appear)."""
        text = f"{self.table_name!r}, region_name={self.region_name!r}"
        if self.endpoint_url:
            text += f", endpoint_url={redact_url(self.endpoint_url)!r}"
        return text

    def get(self) -> Any:
        """The boto3 client of this process, built on first use."""
        client = self._client
        if client is not None:
            return client
        with self._mutex:
            if self._client is None:
                self._client = self._build()
            return self._client

    def _build(self) -> Any:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"total_max_attempts": self.max_attempts, "mode": self.retry_mode},
            max_pool_connections=self.max_connections,
        )
        try:
            session = boto3.session.Session(**self._session_args)
            client = session.client("dynamodb", endpoint_url=self.endpoint_url, config=config)
        except BotoCoreError as exc:
            raise ConfigurationError(f"cannot build a DynamoDB client for table {self.table_name!r}: {exc}") from exc
        if self.region_name is None:
            self.region_name = client.meta.region_name
        return client

    def call(self, operation: str, expect: Tuple[str, ...] = (), **kwargs: Any) -> Dict[str, Any]:
        """Run one client call; driver errors become the library's, except ``ClientError`` codes in ``expect``."""
        client = self.get()
        with translated(partial(self.classify, operation, expect)):
            return getattr(client, operation)(**kwargs)  # type: ignore[no-any-return]

    def classify(self, operation: str, expect: Tuple[str, ...], exc: Exception) -> Optional[AgentsPersistError]:
        """The library error for a botocore error of ``operation`` (None: re-raise it as it is)."""
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        action = IAM_ACTIONS.get(operation, operation)
        table = self.table_name
        if isinstance(exc, ClientError):
            code = error_code(exc)
            return None if code in expect else self._client_error(action, code, exc)
        if isinstance(exc, (ConnectionError, HTTPClientError)):
            where = redact_url(self.endpoint_url) if self.endpoint_url else f"region {self.region_name}"
            return BackendUnavailableError(f"DynamoDB ({where}) did not answer {action} on table {table!r}: {type(exc).__name__}")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigurationError(f"no usable AWS credentials for DynamoDB table {table!r}: {exc}")
        return None

    def _client_error(self, action: str, code: str, exc: Any) -> AgentsPersistError:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        table = self.table_name
        if code == "ResourceNotFoundException":
            return ConfigurationError(
                f"DynamoDB table {table!r} does not exist in region {self.region_name!r} ({message}); create it "
                "(see the DynamoDbCheckpointer docs) or pass create_table=True"
            )
        if code in _ACCESS_CODES or status == 403:
            return ConfigurationError(
                f"DynamoDB denied {action} on table {table!r}: the credentials need the IAM action "
                f"dynamodb:{action} on it ({code}: {message[:300]})"
            )
        if code in _UNAVAILABLE_CODES or status >= 500:
            return BackendUnavailableError(f"DynamoDB {action} on table {table!r} failed: {code}: {message}")
        if code == "ValidationException" and "size" in message.lower():
            return SnapshotTooLargeError(f"DynamoDB refused an item of table {table!r}: {message}")
        if code == "ValidationException":
            return ConfigurationError(
                f"DynamoDB rejected {action} on table {table!r}: {message} (the table needs partition key "
                f"{PK!r} (S) and sort key {SK!r} (S); see the DynamoDbCheckpointer docs)"
            )
        return AgentsPersistError(f"DynamoDB {action} on table {table!r} failed: {code}: {message}")

    def close(self) -> None:
        """Close the client if this object built it (a caller's client stays open)."""
        if self._owns_client:
            client, self._client = self._client, None
            if client is not None:
                client.close()

    def _after_fork_in_child(self) -> None:
        """In a forked child: never touch the parent's sockets."""
        self._mutex = threading.Lock()
        if self._owns_client:
            self._client = None  # the child builds its own on first use
            return
        # A caller's client: drop its inherited connection pool; it reconnects on next use.
        http_session = getattr(getattr(self._client, "_endpoint", None), "http_session", None)
        close = getattr(http_session, "close", None)
        if close is not None:
            close()
