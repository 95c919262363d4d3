"""The boto3 client of a DynamoDB store: built lazily, one per process, and its errors classified once.

:class:`DynamoDbClient` builds the ``boto3`` client from the checkpointer's
settings (or wraps one the caller passed in), runs every API call through
:func:`~agents_persist.translate.translated` with :meth:`DynamoDbClient.classify`,
and drops inherited connections in a forked child through
:mod:`agents_persist.runtime.forking`. Importing this module never imports boto3.

It also tells whether a failed call may have changed the table: botocore
reports every HTTP attempt of a call (its retries too) on the
``needs-retry`` event, and an attempt that failed before its request was
sent (connection refused, connect timeout) cannot have; any other failure
(a read timeout, a connection closed while waiting, a 5xx answer) may have.
A :class:`~agents_persist.errors.BackendUnavailableError` from a call that
commits (:data:`COMMITTING_OPERATIONS`) carries ``maybe_applied`` accordingly.

A response cut short (a dropped connection) is never parsed: botocore
neither enforces ``Content-Length`` nor sees a header block cut at end of
stream, so :func:`response_complete` checks every response before it is
parsed; an incomplete one raises ``ConnectionClosedError`` (not retried by
botocore; the request reached the server).
"""

from __future__ import annotations

import random
import threading
import time
import zlib
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from ...errors import AgentsPersistError, BackendUnavailableError, ConfigurationError, SnapshotTooLargeError
from ...redaction import forget, install_log_filter, is_secret_name, redact_url, remember, url_secrets
from ...runtime import forking
from ...translate import translated
from .layout import PK, SK

__all__ = [
    "DynamoDbClient",
    "COMMITTING_OPERATIONS",
    "error_code",
    "maybe_applied_once",
    "require_boto3",
    "wait_before_unprocessed_retry",
]

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
_MAYBE = {True: " (the request may have been applied)", False: ""}
#: The IAM action each client call needs (TransactWriteItems is authorized per item: PutItem).
IAM_ACTIONS = {
    "get_item": "GetItem",
    "query": "Query",
    "scan": "Scan",
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "batch_write_item": "BatchWriteItem",
    "batch_get_item": "BatchGetItem",
    "transact_write_items": "PutItem",
    "create_table": "CreateTable",
    "describe_table": "DescribeTable",
    "describe_time_to_live": "DescribeTimeToLive",
    "update_time_to_live": "UpdateTimeToLive",
}


#: The loggers of the drivers a DynamoDB client calls, which get :class:`~agents_persist.redaction.RedactingFilter`.
DRIVER_LOGGERS = ("botocore", "boto3", "urllib3")

#: The calls that can commit a save or a delete (the conditional write of a head item). The others read,
#: or write chunk items no committed head lists yet: a failure of those never changes what a load returns.
COMMITTING_OPERATIONS = frozenset({"put_item", "delete_item", "transact_write_items"})


def response_complete(response_dict: Dict[str, Any]) -> bool:
    """Whether botocore's ``response_dict`` holds a whole response: its ``x-amz-crc32``, else ``Content-Length``, agrees."""
    body = response_dict.get("body")
    if not isinstance(body, (bytes, bytearray)):
        return True  # a stream: not read here
    headers = response_dict.get("headers") or {}
    checksum = headers.get("x-amz-crc32")
    if checksum is not None:
        return checksum.isdigit() and zlib.crc32(body) & 0xFFFFFFFF == int(checksum)
    length = headers.get("content-length")
    if length is not None:
        return length.isdigit() and int(length) == len(body)
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _status(exc: Any) -> int:
    """The HTTP status of a botocore ``ClientError``."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _may_have_reached(exc: Optional[BaseException], status: int) -> bool:
    """Whether an attempt that failed with ``exc`` (or got HTTP ``status``) may have been applied by DynamoDB."""
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ProxyConnectionError

    if exc is not None:
        # Only these are raised before a byte of the request was sent; an SSL error may come mid-stream.
        return not isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError))
    return status >= 500


@contextmanager
def maybe_applied_once(landed: Callable[[], bool], thread_id: str) -> Iterator[None]:
    """Make a ``BackendUnavailableError`` say ``maybe_applied`` once ``landed()``: an earlier request may have been applied.

    For example, a commit whose first attempt's answer was lost and whose
    retry found its condition failed (our own first attempt may have
    landed): if a later request of the same save fails, its error must not
    claim that nothing was written.
    """
    try:
        yield
    except BackendUnavailableError as exc:
        if exc.maybe_applied or not landed():
            raise
        message = f"{exc} (an earlier request may have been applied)"
        raise BackendUnavailableError(message, thread_id=thread_id, maybe_applied=True) from exc


def wait_before_unprocessed_retry(round_: int) -> None:
    """Sleep before re-sending what a batch call left unprocessed (throttling): full jitter, at most 1 s."""
    time.sleep(random.uniform(0, min(1.0, 0.02 * 2**round_)))


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
        credentials = [value for name, value in self._session_args.items() if is_secret_name(name)]
        self._secrets = remember([*credentials, *(url_secrets(endpoint_url) if endpoint_url else [])])
        self.region_name: Optional[str] = session_args.get("region_name") if client is None else client.meta.region_name
        self._owns_client = client is None
        self._client: Any = None
        self._mutex = threading.Lock()
        self._calls = threading.local()  # .reached: an attempt of this thread's current call may have been applied
        self._hook_id = f"agents_persist-{id(self)}"
        if client is not None:
            self._client = self._hooked(client)
            install_log_filter(*DRIVER_LOGGERS)
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
                self._client = self._hooked(self._build())
            return self._client

    def _hooked(self, client: Any) -> Any:
        """``client`` with this object's hook on its ``needs-retry`` event (once per client and object)."""
        client.meta.events.register("needs-retry.dynamodb", self._on_attempt, unique_id=self._hook_id)
        client.meta.events.register("before-parse.dynamodb", self._on_response, unique_id=self._hook_id + "-parse")
        return client

    def _on_response(self, response_dict: Dict[str, Any], **_: Any) -> None:
        """Before botocore parses a response: one cut short raises (as a connection closed mid-answer would)."""
        if response_complete(response_dict):
            return
        from botocore.exceptions import ConnectionClosedError

        self._calls.reached = True  # the server answered, so it ran the request
        raise ConnectionClosedError(endpoint_url=redact_url(self.endpoint_url) if self.endpoint_url else "DynamoDB")

    def _on_attempt(self, caught_exception: Optional[BaseException] = None, response: Any = None, **_: Any) -> None:
        """After every HTTP attempt: note whether it may have been applied (returns None: botocore decides on retries)."""
        status = int(getattr(response[0], "status_code", 0) or 0) if response else 0
        if _may_have_reached(caught_exception, status):
            self._calls.reached = True

    def maybe_reached(self) -> bool:
        """Whether an attempt of this thread's last call may have been applied without a definite answer."""
        return bool(getattr(self._calls, "reached", False))

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
        # botocore logs every signed request at DEBUG, the session token among its headers.
        install_log_filter(*DRIVER_LOGGERS)
        return client

    def call(self, operation: str, expect: Tuple[str, ...] = (), **kwargs: Any) -> Dict[str, Any]:
        """Run one client call; driver errors become the library's, except ``ClientError`` codes in ``expect``."""
        client = self.get()
        self._calls.reached = False
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
            applied = operation in COMMITTING_OPERATIONS and (self.maybe_reached() or _may_have_reached(None, _status(exc)))
            return None if code in expect else self._client_error(action, code, exc, applied)
        applied = operation in COMMITTING_OPERATIONS and (self.maybe_reached() or _may_have_reached(exc, 0))
        if isinstance(exc, (ConnectionError, HTTPClientError)):
            where = redact_url(self.endpoint_url) if self.endpoint_url else f"region {self.region_name}"
            return BackendUnavailableError(
                f"DynamoDB ({where}) did not answer {action} on table {table!r}: {type(exc).__name__}{_MAYBE[applied]}",
                maybe_applied=applied,
            )
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigurationError(f"no usable AWS credentials for DynamoDB table {table!r}: {exc}")
        return None

    def _client_error(self, action: str, code: str, exc: Any, applied: bool) -> AgentsPersistError:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        status = _status(exc)
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
            return BackendUnavailableError(
                f"DynamoDB {action} on table {table!r} failed: {code}: {message}{_MAYBE[applied]}", maybe_applied=applied
            )
        if code == "ValidationException" and "size" in message.lower():
            return SnapshotTooLargeError(f"DynamoDB refused an item of table {table!r}: {message}")
        if code == "ValidationException":
            return ConfigurationError(
                f"DynamoDB rejected {action} on table {table!r}: {message} (the table needs partition key "
                f"{PK!r} (S) and sort key {SK!r} (S); see the DynamoDbCheckpointer docs)"
            )
        return AgentsPersistError(f"DynamoDB {action} on table {table!r} failed: {code}: {message}")

    def close(self) -> None:
        """Close the client if this object built it (a caller's client stays open, without our hook)."""
        forget(self._secrets)
        self._secrets = ()
        if self._owns_client:
            client, self._client = self._client, None
            if client is not None:
                client.close()
        elif self._client is not None:
            self._client.meta.events.unregister("needs-retry.dynamodb", unique_id=self._hook_id)
            self._client.meta.events.unregister("before-parse.dynamodb", unique_id=self._hook_id + "-parse")

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
