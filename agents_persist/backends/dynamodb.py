"""DynamoDbCheckpointer: threads in one DynamoDB table, a head item plus message chunk items.

The layout (see :mod:`agents_persist.backends.dynamodb_items`): per thread a
head item and chunk items grouped in *runs*. A save commits by one
conditional write of the head on its write token; ordinary appends put their
chunk items in the same ``TransactWriteItems``; bigger writes put their
chunks under a fresh run first, invisible until the head lists it, and old
runs are deleted after the head moved on. A crash at any point leaves either
the old or the new version readable, never a mix.
"""

from __future__ import annotations

import logging
import math
import os
import random
import secrets
import threading
import time
import zlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from ..base import Checkpointer, PlannedWrite, PrefixMismatch, StoredThread
from ..codec import EMPTY_DIGEST
from ..errors import (
    AgentsPersistError,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    CorruptSnapshotError,
    SnapshotTooLargeError,
)
from ..models import ThreadInfo
from ..registry import Backend
from ..urls import redact_url
from .dynamodb_items import (
    A_COUNT,
    A_DIGEST,
    A_EXPIRES,
    A_HEAD,
    A_HEAD_RUN,
    A_KEEP,
    A_PAYLOAD,
    A_RUNS,
    A_SHARD,
    A_TOKEN,
    A_UPDATED,
    A_VERSION,
    CHUNK_PAYLOAD_BYTES,
    HEAD_SK,
    MAX_ITEM_BYTES,
    PK,
    SK,
    HeadState,
    Item,
    Run,
    chunk_prefix,
    chunk_sk,
    encode_runs,
    head_from_item,
    item_size,
    new_run_id,
    pack_messages,
    run_created_at,
    run_keys,
    run_of_sk,
    split_payload,
    unpack_messages,
)

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

__all__ = ["DynamoDbCheckpointer"]

BACKEND = Backend(
    name="dynamodb",
    target="agents_persist.backends.dynamodb:DynamoDbCheckpointer",
    schemes=("dynamodb",),
    extra="dynamodb",
    summary="DynamoDB: conditional head, chunked log items under the item limit.",
)

logger = logging.getLogger(__name__)

DEFAULT_TTL_ATTRIBUTE = "ttl"
DEFAULT_LIST_INDEX = "agents_persist_recent"
DEFAULT_LIST_SHARDS = 4
DEFAULT_MAX_CONNECTIONS = 10
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 3
RETRY_MODES = ("standard", "adaptive", "legacy")

#: AWS limits of one TransactWriteItems call are 100 items and 4 MB; the library stays below.
TRANSACTION_MAX_ITEMS = 100
TRANSACTION_MAX_BYTES = 3_500_000
#: A head item bigger than this moves its encoded head into a run of chunk items.
HEAD_ITEM_TARGET_BYTES = 350_000
#: Appends add chunk items to the thread's open run; at this many it is compacted into one sealed run.
OPEN_RUN_MAX_CHUNKS = 32
#: A log of more runs than this is rewritten whole on the next save (packed into few items).
MAX_RUNS = 64
#: BatchWriteItem takes at most 25 requests.
BATCH_WRITE_MAX = 25
BATCH_WRITE_ROUNDS = 10
#: Conditional-write attempts of one save before giving up with ConflictError.
WRITE_ATTEMPTS = 12
#: Consistent reads of one load before giving up while the thread keeps being rewritten.
READ_ATTEMPTS = 12
TRANSACTION_CONFLICT_RETRIES = 5
#: A save that writes chunks outside a transaction must commit within this many seconds ...
WRITE_DEADLINE_SECONDS = 600.0
#: ... so unreferenced runs older than this are left over by crashed writers and may be deleted.
ORPHAN_GRACE_SECONDS = 3600.0
HEAD_CACHE_SIZE = 4096
TABLE_READY_TIMEOUT = 120.0

_CONDITION_FAILED = "ConditionalCheckFailedException"
_TRANSACTION_CANCELED = "TransactionCanceledException"
_TRANSACTION_CONFLICT = "TransactionConflictException"
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
_IAM_ACTIONS = {
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
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: Attribute names of the layout, which ttl_attribute must not reuse.
_RESERVED_ATTRIBUTES = frozenset(
    {PK, SK, A_VERSION, A_COUNT, A_DIGEST, A_HEAD, A_HEAD_RUN, A_UPDATED, A_EXPIRES, A_TOKEN, A_RUNS, A_KEEP, A_SHARD, A_PAYLOAD}
)
_TABLE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class _StaleHead(Exception):
    """The head changed under a planned write; carries the current head item if DynamoDB returned it."""

    def __init__(self, item: Optional[Item]) -> None:
        super().__init__("head changed")
        self.item = item


class _Cached(NamedTuple):
    head: Optional[HeadState]
    orphans: Tuple[str, ...]


class _Plan(NamedTuple):
    items: List[Item]  # chunk items still to write
    head_item: Item
    head: HeadState  # the head as it will be stored
    garbage: List[Run]  # runs no longer referenced once this commits
    transactional: bool  # items and head fit one TransactWriteItems
    new_runs: List[Run]  # fresh runs among ``items`` (may be written before the head)


class _Scratch:
    """Runs one save wrote outside a transaction; reused by its retries, deleted unless committed."""

    def __init__(self) -> None:
        self.reusable: Dict[str, Tuple[Run, List[Item]]] = {}
        self.written: Dict[str, Run] = {}
        self.committed = False


def _error_code(exc: "ClientError") -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"URL option {name}={value!r} is not a boolean")


class DynamoDbCheckpointer(Checkpointer):
    """Stores threads in one DynamoDB table; every save is one atomic compare-and-set.

    Guarantees: a save commits by one conditional write of the thread's head
    item (ordinary appends: one ``TransactWriteItems`` holding the new chunk
    items and the head), so it is all-or-nothing and never overwrites a
    version it did not see. Loads use strongly consistent reads and return
    one committed version whole, even while other processes save or crash
    half-way. Expired threads are never returned, although DynamoDB's TTL
    deletes them only eventually.

    Layout: partition key ``thread_id`` (S), sort key ``sk`` (S). The head
    item (``sk = "H"``) holds version, message count, digest, the encoded
    todos/interrupt/metadata and timestamps; messages live in chunk items
    (``sk = "c<run>:<seq>"``) that pack many encoded messages, up to
    350,000 bytes each, so a 1,000-message thread saved at once is one or
    two items. An append adds one small chunk item; every 32 appends are
    compacted into one, and a log of more than 64 such runs is packed anew.
    Every item is checked against AWS's 409,600-byte limit (attribute names
    included) before it is sent; a message bigger than one item spans
    several.

    Limits:

    * A save whose new data exceeds one transaction (100 items, 4 MB) writes
      its chunks first and then commits the head; it must finish within 10
      minutes. Chunks left behind by crashed writers are ignored and deleted
      an hour later (on a later save or delete of the thread).
    * ``list_threads`` queries the sparse index ``list_index`` (default
      ``agents_persist_recent``): eventually consistent, a just-saved thread
      may appear a moment later. ``list_index=None`` scans the table instead:
      strongly consistent but O(table) per call.
    * With ``ttl``, chunk items get a TTL of one extra ``ttl`` period; a
      thread saved for longer than that is rewritten once per period so that
      DynamoDB never expires chunks of a live thread.
    * IAM: ``GetItem``, ``Query``, ``PutItem`` (also what
      ``TransactWriteItems`` is authorized by), ``DeleteItem`` and
      ``BatchWriteItem`` on the table; ``Query`` on the index; ``Scan``
      for ``purge_expired`` (and for listing without an index);
      ``CreateTable``, ``DescribeTable``, ``DescribeTimeToLive`` and
      ``UpdateTimeToLive`` for ``create_table=True``.

    Args:
        table_name: The table (3-255 characters of ``a-zA-Z0-9_.-``).
        client: An existing ``boto3.client("dynamodb")`` to use (never closed
            here). Otherwise a client is built the standard boto3 way from
            the arguments below, the environment and the shared config files.
        region_name: AWS region.
        endpoint_url: Another endpoint (DynamoDB Local, moto, a VPC endpoint).
        aws_access_key_id: Explicit credentials (default: boto3's chain).
        aws_secret_access_key: Explicit credentials.
        aws_session_token: Explicit credentials.
        profile_name: A profile of the shared AWS config files.
        create_table: Create the table (on-demand billing, the listing
            index, TTL enabled on ``ttl_attribute``) if it does not exist.
            Meant for development; production tables belong in
            infrastructure code.
        ttl_attribute: Name of the table's TTL attribute.
        list_index: Name of the global secondary index ``list_threads``
            queries, or None to scan the table.
        list_shards: Index partitions the heads are spread over (a table-wide
            setting: every checkpointer on the table must use the same value,
            which may only ever grow).
        max_connections: Size of botocore's HTTP pool (``max_pool_connections``).
        timeout: Seconds to connect and to wait for each response.
        connect_timeout: Overrides ``timeout`` for connecting.
        read_timeout: Overrides ``timeout`` for waiting on a response.
        max_attempts: Attempts per request including the first (botocore
            ``total_max_attempts``). An unreachable endpoint raises
            :class:`BackendUnavailableError` after at most about
            ``max_attempts * (connect_timeout + read_timeout)`` plus backoff.
        retry_mode: botocore retry mode: ``standard``, ``adaptive`` or ``legacy``.
        ttl: Seconds a thread lives after its last save; None keeps threads.
        max_retries: Retries of ``update`` after a conflict.
    """

    url_schemes = ("dynamodb",)

    #: Stream bytes per chunk item and the library's transaction budget; tests shrink them to get
    #: many items, and the large-write path, from little data.
    _chunk_payload_bytes = CHUNK_PAYLOAD_BYTES
    _transaction_max_bytes = TRANSACTION_MAX_BYTES

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        region_name: Optional[str] = None,
        endpoint_url: Optional[str] = None,
        aws_access_key_id: Optional[str] = None,
        aws_secret_access_key: Optional[str] = None,
        aws_session_token: Optional[str] = None,
        profile_name: Optional[str] = None,
        create_table: bool = False,
        ttl_attribute: str = DEFAULT_TTL_ATTRIBUTE,
        list_index: Optional[str] = DEFAULT_LIST_INDEX,
        list_shards: int = DEFAULT_LIST_SHARDS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: Optional[float] = None,
        read_timeout: Optional[float] = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_mode: str = "standard",
        ttl: Optional[float] = None,
        max_retries: int = 50,
    ) -> None:
        super().__init__(ttl=ttl, max_retries=max_retries)
        try:
            import boto3  # noqa: F401
            import botocore  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError(
                "DynamoDbCheckpointer needs boto3; install it with: pip install agents_persist[dynamodb]"
            ) from exc
        if not isinstance(table_name, str) or not 3 <= len(table_name) <= 255 or not set(table_name) <= _TABLE_NAME_CHARS:
            raise ConfigurationError(f"invalid DynamoDB table name {table_name!r} (3-255 of a-z A-Z 0-9 _ . -)")
        if not isinstance(ttl_attribute, str) or not ttl_attribute or ttl_attribute in _RESERVED_ATTRIBUTES:
            raise ConfigurationError(f"ttl_attribute {ttl_attribute!r} is empty or collides with the item layout")
        if list_index is not None and (not isinstance(list_index, str) or not 3 <= len(list_index) <= 255):
            raise ConfigurationError(f"invalid list_index {list_index!r}")
        if type(list_shards) is not int or not 1 <= list_shards <= 256:
            raise ConfigurationError(f"list_shards must be an int from 1 to 256, not {list_shards!r}")
        if type(max_connections) is not int or max_connections < 1:
            raise ConfigurationError(f"max_connections must be a positive int, not {max_connections!r}")
        if type(max_attempts) is not int or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an int >= 1, not {max_attempts!r}")
        if retry_mode not in RETRY_MODES:
            raise ConfigurationError(f"retry_mode must be one of {RETRY_MODES}, not {retry_mode!r}")
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
        self.table_name = table_name
        self.ttl_attribute = ttl_attribute
        self.list_index = list_index
        self.list_shards = list_shards
        self.max_connections = max_connections
        self.connect_timeout = float(connect_timeout if connect_timeout is not None else timeout)
        self.read_timeout = float(read_timeout if read_timeout is not None else timeout)
        self.max_attempts = max_attempts
        self.retry_mode = retry_mode
        self.endpoint_url = endpoint_url
        self._session_args = {
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
            "region_name": region_name,
            "profile_name": profile_name,
        }
        self._owns_client = client is None
        self._client_obj: Any = client
        self._client_pid = os.getpid()
        self._client_lock = threading.Lock()
        self._heads: "OrderedDict[str, _Cached]" = OrderedDict()
        self._heads_mutex = threading.Lock()
        self.region_name = region_name if client is None else client.meta.region_name
        if create_table:
            self._create_table()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "DynamoDbCheckpointer":
        """Build from ``dynamodb://[region]/table?endpoint_url=...``.

        The host part is the region (empty: boto3's default region). Query
        options: ``endpoint_url``, ``create_table``, ``ttl_attribute``,
        ``list_index`` (empty for none), ``list_shards``, ``max_connections``,
        ``timeout``, ``connect_timeout``, ``read_timeout``, ``max_attempts``,
        ``retry_mode``, ``profile_name``, ``ttl``. Credentials come from
        boto3's chain (environment, config files, instance role), or from
        ``dynamodb://KEY_ID:SECRET@region/table``. Keyword ``options``
        override the URL's.
        """
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ConfigurationError(f"invalid DynamoDB URL {redact_url(url)!r}: {exc}") from None
        if parts.scheme.lower() not in cls.url_schemes:
            raise ConfigurationError(f"not a dynamodb:// URL: {redact_url(url)!r}")
        userinfo, _, region = parts.netloc.rpartition("@")
        table = unquote(parts.path.lstrip("/"))
        if not table or "/" in table:
            raise ConfigurationError(f"the DynamoDB URL names no table: {redact_url(url)!r} (dynamodb://region/table)")
        parsed: Dict[str, Any] = {}
        if region:
            parsed["region_name"] = unquote(region)
        if userinfo:
            key_id, _, secret = userinfo.partition(":")
            parsed["aws_access_key_id"] = unquote(key_id)
            if secret:
                parsed["aws_secret_access_key"] = unquote(secret)
        converters: Dict[str, Callable[[str], Any]] = {
            "endpoint_url": str,
            "ttl_attribute": str,
            "retry_mode": str,
            "profile_name": str,
            "aws_session_token": str,
            "list_index": lambda v: v or None,
            "create_table": lambda v: _parse_bool("create_table", v),
            "list_shards": int,
            "max_connections": int,
            "max_attempts": int,
            "timeout": float,
            "connect_timeout": float,
            "read_timeout": float,
            "ttl": float,
        }
        unknown = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            convert = converters.get(name)
            if convert is None:
                unknown.append(name)
                continue
            try:
                parsed[name] = convert(value)
            except ValueError:
                raise ConfigurationError(f"URL option {name}={value!r} has the wrong type") from None
        if unknown:
            raise ConfigurationError(f"unknown dynamodb URL options: {sorted(unknown)}")
        parsed.update(options)
        return cls(table, **parsed)

    def _describe(self) -> str:
        text = f"{self.table_name!r}, region_name={self.region_name!r}"
        if self.endpoint_url:
            text += f", endpoint_url={redact_url(self.endpoint_url)!r}"
        return text

    # ------------------------------------------------------------------ client

    def _build_client(self) -> Any:
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
            session = boto3.session.Session(**{k: v for k, v in self._session_args.items() if v is not None})
            client = session.client("dynamodb", endpoint_url=self.endpoint_url, config=config)
        except BotoCoreError as exc:
            raise ConfigurationError(f"cannot build a DynamoDB client for table {self.table_name!r}: {exc}") from exc
        if self.region_name is None:
            self.region_name = client.meta.region_name
        return client

    def _client(self) -> Any:
        """The boto3 client of this process (a forked child builds its own)."""
        client = self._client_obj
        if client is not None and self._client_pid == os.getpid():
            return client
        with self._client_lock:
            if self._client_pid != os.getpid():
                self._forget_parent_client()
            if self._client_obj is None:
                self._client_obj = self._build_client()
                self._client_pid = os.getpid()
            return self._client_obj

    def _forget_parent_client(self) -> None:
        """In a forked child: never touch the parent's sockets."""
        self._client_pid = os.getpid()
        if self._owns_client:
            self._client_obj = None
            return
        # A caller's client: drop its inherited connection pool; it reconnects on next use.
        http_session = getattr(getattr(self._client_obj, "_endpoint", None), "http_session", None)
        close = getattr(http_session, "close", None)
        if close is not None:
            close()

    def _after_fork(self) -> None:
        self._client_lock = threading.Lock()
        self._forget_parent_client()
        with_content = OrderedDict(self._heads)
        self._heads_mutex = threading.Lock()
        self._heads = with_content

    def _close(self) -> None:
        if self._owns_client and self._client_obj is not None and self._client_pid == os.getpid():
            self._client_obj.close()
        self._client_obj = None if self._owns_client else self._client_obj

    def _call(self, operation: str, expect: Tuple[str, ...] = (), **kwargs: Any) -> Dict[str, Any]:
        """Run one client call; driver errors become the library's (codes in ``expect`` are re-raised)."""
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        client = self._client()
        try:
            return getattr(client, operation)(**kwargs)  # type: ignore[no-any-return]
        except ClientError as exc:
            code = _error_code(exc)
            if code in expect:
                raise
            raise self._translate(operation, code, exc) from exc
        except (ConnectionError, HTTPClientError) as exc:
            where = redact_url(self.endpoint_url) if self.endpoint_url else f"region {self.region_name}"
            raise BackendUnavailableError(
                f"DynamoDB ({where}) did not answer {_IAM_ACTIONS.get(operation, operation)} on table "
                f"{self.table_name!r}: {type(exc).__name__}"
            ) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise ConfigurationError(f"no usable AWS credentials for DynamoDB table {self.table_name!r}: {exc}") from exc

    def _translate(self, operation: str, code: str, exc: "ClientError") -> AgentsPersistError:
        action = _IAM_ACTIONS.get(operation, operation)
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

    # ------------------------------------------------------------------ table set-up

    def _create_table(self) -> None:
        """Create the table if missing (on-demand, listing index, TTL on), then check its key schema."""
        attributes = [{"AttributeName": PK, "AttributeType": "S"}, {"AttributeName": SK, "AttributeType": "S"}]
        request: Dict[str, Any] = {
            "TableName": self.table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
            "AttributeDefinitions": attributes,
        }
        if self.list_index is not None:
            attributes += [
                {"AttributeName": A_SHARD, "AttributeType": "N"},
                {"AttributeName": A_UPDATED, "AttributeType": "N"},
            ]
            request["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": self.list_index,
                    "KeySchema": [
                        {"AttributeName": A_SHARD, "KeyType": "HASH"},
                        {"AttributeName": A_UPDATED, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": [A_VERSION, A_COUNT, A_EXPIRES]},
                }
            ]
        from botocore.exceptions import ClientError

        try:
            self._call("create_table", expect=("ResourceInUseException",), **request)
            logger.info("created DynamoDB table %r", self.table_name)
        except ClientError:
            pass  # it exists already
        deadline = time.monotonic() + TABLE_READY_TIMEOUT
        while True:
            table = self._call("describe_table", TableName=self.table_name)["Table"]
            indexes = table.get("GlobalSecondaryIndexes") or []
            if table.get("TableStatus") == "ACTIVE" and all(i.get("IndexStatus", "ACTIVE") == "ACTIVE" for i in indexes):
                break
            if time.monotonic() > deadline:
                raise BackendUnavailableError(f"DynamoDB table {self.table_name!r} did not become ACTIVE in time")
            time.sleep(0.2)
        keys = {k["AttributeName"]: k["KeyType"] for k in table.get("KeySchema", [])}
        if keys != {PK: "HASH", SK: "RANGE"}:
            raise ConfigurationError(
                f"DynamoDB table {self.table_name!r} has key schema {keys}; this backend needs "
                f"{PK!r} (HASH, S) and {SK!r} (RANGE, S)"
            )
        if self.list_index is not None and self.list_index not in {i["IndexName"] for i in indexes}:
            raise ConfigurationError(
                f"DynamoDB table {self.table_name!r} has no index {self.list_index!r} for list_threads; "
                "add it (see the docs) or pass list_index=None to scan the table instead"
            )
        ttl = self._call("describe_time_to_live", TableName=self.table_name).get("TimeToLiveDescription", {})
        status, attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
        if status in ("ENABLED", "ENABLING"):
            if attribute != self.ttl_attribute:
                logger.warning(
                    "DynamoDB table %r expires items by %r, not by ttl_attribute=%r",
                    self.table_name,
                    attribute,
                    self.ttl_attribute,
                )
            return
        self._call(
            "update_time_to_live",
            TableName=self.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": self.ttl_attribute},
        )

    # ------------------------------------------------------------------ small helpers

    def _key(self, thread_id: str, sk: str) -> Item:
        return {PK: {"S": thread_id}, SK: {"S": sk}}

    def _shard(self, thread_id: str) -> int:
        return zlib.crc32(thread_id.encode("utf-8")) % self.list_shards

    def _cached(self, thread_id: str) -> Optional[_Cached]:
        with self._heads_mutex:
            return self._heads.get(thread_id)

    def _remember(self, thread_id: str, head: Optional[HeadState], orphans: Sequence[str] = ()) -> None:
        if head is not None and head.inline_head is not None:
            head = head._replace(inline_head=None)
        with self._heads_mutex:
            self._heads[thread_id] = _Cached(head, tuple(orphans))
            self._heads.move_to_end(thread_id)
            if len(self._heads) > HEAD_CACHE_SIZE:
                self._heads.popitem(last=False)

    @staticmethod
    def _is_orphan(run_id: Optional[str], now: float) -> bool:
        created = run_created_at(run_id) if run_id else None
        return created is not None and now - created > ORPHAN_GRACE_SECONDS

    def _stale_chunks(self, chunk_sks: Iterable[str], head: Optional[HeadState], now: float) -> List[str]:
        """Chunk items no head references whose run is old enough to be a crashed writer's."""
        referenced = {run.run_id for run in head.all_runs()} if head is not None else set()
        return [sk for sk in chunk_sks if run_of_sk(sk) not in referenced and self._is_orphan(run_of_sk(sk), now)]

    def _query_items(self, thread_id: str, **extra: Any) -> List[Item]:
        """Every item of the thread's partition, strongly consistent, following pages."""
        request: Dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": PK},
            "ExpressionAttributeValues": {":pk": {"S": thread_id}},
            "ConsistentRead": True,
        }
        for name, value in extra.items():
            if isinstance(value, dict) and isinstance(request.get(name), dict):
                request[name] = {**request[name], **value}
            else:
                request[name] = value
        items: List[Item] = []
        while True:
            page = self._call("query", **request)
            items.extend(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items
            request["ExclusiveStartKey"] = last

    def _get_head(self, thread_id: str) -> Optional[HeadState]:
        page = self._call("get_item", TableName=self.table_name, Key=self._key(thread_id, HEAD_SK), ConsistentRead=True)
        item = page.get("Item")
        return None if item is None else head_from_item(item, thread_id)

    # ------------------------------------------------------------------ reads

    def _read(self, thread_id: str) -> Optional[StoredThread]:
        seen_token: Optional[str] = None
        for _ in range(READ_ATTEMPTS):
            head_item: Optional[Item] = None
            chunks: Dict[str, bytes] = {}
            for item in self._query_items(thread_id):
                sk = item[SK]["S"]
                if sk == HEAD_SK:
                    head_item = item
                elif A_PAYLOAD in item:
                    chunks[sk] = item[A_PAYLOAD]["B"]
            now = time.time()
            head = head_from_item(head_item, thread_id) if head_item is not None else None
            orphans = self._stale_chunks(chunks, head, now)
            if head is None or self._is_expired(head.expires_at, now):
                self._remember(thread_id, head, orphans)
                return None
            try:
                stream = b"".join([chunks[sk] for sk in run_keys(head.runs)])
                if head.inline_head is not None:
                    head_blob = head.inline_head
                elif head.head_run is not None:
                    head_blob = b"".join([chunks[sk] for sk in run_keys([head.head_run])])
                else:
                    raise CorruptSnapshotError(f"thread {thread_id!r}: the head item holds no head", thread_id=thread_id)
            except KeyError as missing:
                # Read committed, not snapshot: a concurrent save may have replaced the head and
                # removed its old chunks between our pages. The same head twice means real damage.
                if head.token == seen_token:
                    raise CorruptSnapshotError(
                        f"thread {thread_id!r}: chunk item {missing.args[0]!r} listed by version {head.version} is missing",
                        thread_id=thread_id,
                    ) from None
                seen_token = head.token
                continue
            messages = unpack_messages(stream, head.message_count, thread_id)
            self._remember(thread_id, head, orphans)
            return StoredThread(
                version=head.version,
                head=head_blob,
                messages=messages,
                message_count=head.message_count,
                digest=head.digest,
                updated_at=head.updated_at,
                expires_at=head.expires_at,
            )
        raise BackendUnavailableError(
            f"thread {thread_id!r} was rewritten during each of {READ_ATTEMPTS} consistent reads; try again",
            thread_id=thread_id,
        )

    def _read_version(self, thread_id: str) -> int:
        page = self._call(
            "get_item",
            TableName=self.table_name,
            Key=self._key(thread_id, HEAD_SK),
            ConsistentRead=True,
            ProjectionExpression="#v, #x",
            ExpressionAttributeNames={"#v": A_VERSION, "#x": A_EXPIRES},
        )
        item = page.get("Item")
        if item is None:
            return 0
        expires_at = float(item[A_EXPIRES]["N"]) if A_EXPIRES in item else None
        return 0 if self._is_expired(expires_at) else int(item[A_VERSION]["N"])

    def _read_run(self, thread_id: str, run: Run) -> bytes:
        """The stream of one run; raises _StaleHead if its chunks are gone (the head moved on)."""
        items = self._query_items(
            thread_id,
            KeyConditionExpression="#pk = :pk AND begins_with(#sk, :run)",
            ExpressionAttributeNames={"#sk": SK},
            ExpressionAttributeValues={":run": {"S": chunk_prefix(run.run_id)}},
        )
        chunks = {item[SK]["S"]: item[A_PAYLOAD]["B"] for item in items if A_PAYLOAD in item}
        try:
            return b"".join([chunks[sk] for sk in run_keys([run])])
        except KeyError:
            raise _StaleHead(None) from None

    # ------------------------------------------------------------------ writes

    def _write(self, thread_id: str, write: PlannedWrite) -> int:
        now = write.updated_at
        stream = pack_messages(write.messages)
        cached = self._cached(thread_id)
        orphans: Tuple[str, ...] = ()
        fresh = False
        head: Optional[HeadState]
        if cached is not None:
            head, orphans = cached.head, cached.orphans
        elif write.expected_version in (None, 0) and len(stream) + len(write.head) < self._transaction_max_bytes // 2:
            head = None  # optimistic: a new thread; a failed condition returns the real head
        else:
            head, fresh = self._get_head(thread_id), True
        scratch = _Scratch()
        try:
            for _ in range(WRITE_ATTEMPTS):
                live = head is not None and not self._is_expired(head.expires_at, now)
                failure = self._precondition(thread_id, write, head if live else None)
                if failure is not None:
                    if fresh:
                        raise failure
                    head, fresh = self._get_head(thread_id), True
                    continue
                plan = None
                try:
                    plan = self._layout(thread_id, write, head, live, stream, scratch, now, allow_open=True)
                    self._commit(thread_id, plan, head, live, now, scratch)
                except _StaleHead as stale:
                    head = head_from_item(stale.item, thread_id) if stale.item else self._get_head(thread_id)
                    fresh = True
                    if plan is None or head is None or head.token != plan.head.token:
                        continue
                    # botocore retried a request whose first attempt had committed (its
                    # response was lost): the head found is our own write, so this save landed.
                scratch.committed = True
                self._remember(thread_id, plan.head)
                kept = {run.run_id for run in plan.head.all_runs()}
                unused = [run for run in scratch.written.values() if run.run_id not in kept]
                self._collect(thread_id, plan.garbage + unused, orphans)
                return plan.head.version
            raise ConflictError(
                f"thread {thread_id!r}: gave up after {WRITE_ATTEMPTS} attempts, other writers kept changing it",
                thread_id=thread_id,
                expected_version=write.expected_version,
                actual_version=head.version if head is not None else 0,
            )
        finally:
            if not scratch.committed and scratch.written:
                self._collect(thread_id, scratch.written.values(), ())

    def _precondition(self, thread_id: str, write: PlannedWrite, live: Optional[HeadState]) -> Optional[Exception]:
        """The error ``write`` must raise against the live head ``live`` (None: missing or expired), if any."""
        version = live.version if live is not None else 0
        if write.expected_version is not None and write.expected_version != version:
            return self._conflict(thread_id, write.expected_version, version)
        if write.append_from is None:
            return None
        count, digest = (live.message_count, live.digest) if live is not None else (0, EMPTY_DIGEST)
        if (count, digest) != (write.append_from, write.base_digest):
            return PrefixMismatch(thread_id)
        if live is not None and self._needs_rewrite(live, write):
            return PrefixMismatch(thread_id)  # the base class then rewrites the log, packed into few items
        return None

    def _needs_rewrite(self, head: HeadState, write: PlannedWrite) -> bool:
        """Whether an append must become a rewrite: too many runs, or chunk TTLs no longer cover the thread."""
        if not head.runs:
            return False
        if len(head.runs) >= MAX_RUNS:
            return True
        if write.expires_at is None:
            return head.keep_until is not None
        return head.keep_until is None or head.keep_until < write.expires_at

    def _chunk_ttl(self, expires_at: Optional[float]) -> Optional[int]:
        """TTL of chunk items: one ``ttl`` past the head's, so DynamoDB never drops a live thread's chunks."""
        if expires_at is None or self.ttl is None:
            return None
        return math.ceil(expires_at + self.ttl)

    def _chunk_item(self, thread_id: str, run_id: str, seq: int, payload: bytes, chunk_ttl: Optional[int]) -> Item:
        item: Item = {PK: {"S": thread_id}, SK: {"S": chunk_sk(run_id, seq)}, A_PAYLOAD: {"B": payload}}
        if chunk_ttl is not None:
            item[self.ttl_attribute] = {"N": str(chunk_ttl)}
        return self._checked(item, thread_id)

    def _new_run(self, thread_id: str, data: bytes, now: float, chunk_ttl: Optional[int]) -> Tuple[Run, List[Item]]:
        run_id = new_run_id(now)
        pieces = split_payload(data, self._chunk_payload_bytes)
        return Run(run_id, len(pieces)), [
            self._chunk_item(thread_id, run_id, seq, piece, chunk_ttl) for seq, piece in enumerate(pieces)
        ]

    def _checked(self, item: Item, thread_id: str) -> Item:
        size = item_size(item)
        if size > MAX_ITEM_BYTES:
            raise SnapshotTooLargeError(
                f"thread {thread_id!r}: a DynamoDB item would be {size} bytes, over the {MAX_ITEM_BYTES}-byte limit",
                thread_id=thread_id,
            )
        return item

    def _layout(
        self,
        thread_id: str,
        write: PlannedWrite,
        head: Optional[HeadState],
        live: bool,
        stream: bytes,
        scratch: _Scratch,
        now: float,
        allow_open: bool,
    ) -> _Plan:
        """Lay out one save: the chunk items to write, the new head, and the runs that become garbage.

        Appends go to the thread's *open* run (new keys of an open run are
        only ever written inside a transaction, so they never pre-exist);
        everything else goes to fresh runs, which are invisible until the
        head lists them and so may be written before the head commits.
        """
        chunk_ttl = self._chunk_ttl(write.expires_at)
        garbage: List[Run] = []
        items: List[Item] = []
        new_runs: List[Run] = []
        uses_open = False
        if head is not None and live and write.append_from is not None:
            runs, open_last = list(head.runs), head.open_run
            # The earliest chunk TTL: _needs_rewrite made sure both are None or both set when runs exist.
            keep_until = (
                chunk_ttl if not runs or head.keep_until is None or chunk_ttl is None else min(head.keep_until, chunk_ttl)
            )
            last = runs[-1] if runs else None
            pieces = split_payload(stream, self._chunk_payload_bytes)
            small = len(stream) <= self._transaction_max_bytes // 2 and len(pieces) <= OPEN_RUN_MAX_CHUNKS
            if not stream:
                pass
            elif allow_open and small and open_last and last is not None:
                if last.chunks + len(pieces) <= OPEN_RUN_MAX_CHUNKS:
                    items += [
                        self._chunk_item(thread_id, last.run_id, last.chunks + i, piece, chunk_ttl)
                        for i, piece in enumerate(pieces)
                    ]
                    runs[-1] = Run(last.run_id, last.chunks + len(pieces))
                    uses_open = True
                else:
                    # The open run is full: compact it and the new messages into one sealed run.
                    run, run_items = self._new_run(thread_id, self._read_run(thread_id, last) + stream, now, chunk_ttl)
                    items += run_items
                    new_runs.append(run)
                    garbage.append(last)
                    runs[-1], open_last = run, False
            elif allow_open and small:
                run, run_items = self._new_run(thread_id, stream, now, chunk_ttl)
                items += run_items
                runs.append(run)
                open_last = uses_open = True
            else:
                run, run_items = self._data_run(thread_id, stream, now, chunk_ttl, scratch)
                items += run_items
                new_runs.append(run)
                runs.append(run)
                open_last = False
        else:
            if head is not None:
                garbage += head.runs
            runs, open_last, keep_until = [], False, chunk_ttl
            if stream:
                run, run_items = self._data_run(thread_id, stream, now, chunk_ttl, scratch)
                items += run_items
                new_runs.append(run)
                runs.append(run)
        if head is not None and head.head_run is not None:
            garbage.append(head.head_run)

        new_head = HeadState(
            token=secrets.token_hex(8),
            version=(head.version if head is not None and live else 0) + 1,
            message_count=write.message_count,
            digest=write.digest,
            updated_at=write.updated_at,
            expires_at=write.expires_at,
            runs=tuple(runs),
            open_run=open_last,
            keep_until=keep_until if runs else None,
            head_run=None,
            inline_head=write.head,
        )
        head_item = self._head_item(thread_id, new_head)
        if item_size(head_item) > HEAD_ITEM_TARGET_BYTES:
            # The encoded head is too big to sit inline: it gets a run of its own, rewritten per save.
            head_run, run_items = scratch.reusable.get("head") or self._new_run(thread_id, write.head, now, chunk_ttl)
            scratch.reusable["head"] = (head_run, run_items)
            items += run_items
            new_runs.append(head_run)
            new_head = new_head._replace(head_run=head_run, inline_head=None)
            head_item = self._head_item(thread_id, new_head)
        self._checked(head_item, thread_id)
        to_write = [item for item in items if run_of_sk(item[SK]["S"]) not in scratch.written]
        transactional = len(to_write) + 1 <= TRANSACTION_MAX_ITEMS and (
            sum(item_size(item) for item in to_write) + item_size(head_item) <= self._transaction_max_bytes
        )
        if not transactional and uses_open:
            return self._layout(thread_id, write, head, live, stream, scratch, now, allow_open=False)
        return _Plan(to_write, head_item, new_head, garbage, transactional, new_runs)

    def _data_run(
        self, thread_id: str, stream: bytes, now: float, chunk_ttl: Optional[int], scratch: _Scratch
    ) -> Tuple[Run, List[Item]]:
        """A sealed run holding exactly this save's new messages, reused by the save's retries."""
        found = scratch.reusable.get("data")
        if found is None:
            found = self._new_run(thread_id, stream, now, chunk_ttl)
            scratch.reusable["data"] = found
        return found

    def _head_item(self, thread_id: str, head: HeadState) -> Item:
        item: Item = {
            PK: {"S": thread_id},
            SK: {"S": HEAD_SK},
            A_VERSION: {"N": str(head.version)},
            A_COUNT: {"N": str(head.message_count)},
            A_DIGEST: {"B": head.digest},
            A_UPDATED: {"N": repr(head.updated_at)},
            A_TOKEN: {"S": head.token},
            A_SHARD: {"N": str(self._shard(thread_id))},
        }
        if head.expires_at is not None:
            item[A_EXPIRES] = {"N": repr(head.expires_at)}
            item[self.ttl_attribute] = {"N": str(math.ceil(head.expires_at))}
        if head.runs:
            item[A_RUNS] = {"S": encode_runs(head.runs, head.open_run)}
        if head.keep_until is not None:
            item[A_KEEP] = {"N": str(head.keep_until)}
        if head.head_run is not None:
            item[A_HEAD_RUN] = {"S": encode_runs([head.head_run], False)}
        if head.inline_head is not None:
            item[A_HEAD] = {"B": head.inline_head}
        return item

    def _head_condition(
        self, base: Optional[HeadState], live: bool, now: float
    ) -> Tuple[str, Dict[str, str], Dict[str, Dict[str, str]]]:
        """The head write's condition: exactly the head the plan was built on is still there."""
        if base is None:
            return "attribute_not_exists(#sk)", {"#sk": SK}, {}
        values = {":w": {"S": base.token}}
        if not live:
            return "#w = :w", {"#w": A_TOKEN}, values
        values[":now"] = {"N": repr(now)}
        return "#w = :w AND (attribute_not_exists(#x) OR #x > :now)", {"#w": A_TOKEN, "#x": A_EXPIRES}, values

    def _commit(self, thread_id: str, plan: _Plan, base: Optional[HeadState], live: bool, now: float, scratch: _Scratch) -> None:
        """Write the plan; raises _StaleHead if the head is no longer ``base``."""
        from botocore.exceptions import ClientError

        condition, names, values = self._head_condition(base, live, now)
        head_put: Dict[str, Any] = {
            "TableName": self.table_name,
            "Item": plan.head_item,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if values:
            head_put["ExpressionAttributeValues"] = values
        if plan.transactional and plan.items:
            actions = [{"Put": {"TableName": self.table_name, "Item": item}} for item in plan.items]
            self._transact(actions + [{"Put": head_put}])
            return
        if plan.items:
            # Too big for one transaction: fresh runs first (invisible until the head lists them).
            scratch.written.update((run.run_id, run) for run in plan.new_runs)
            self._batch_write(thread_id, [{"PutRequest": {"Item": item}} for item in plan.items])
        self._check_deadline(thread_id, scratch)
        try:
            self._call("put_item", expect=(_CONDITION_FAILED,), **head_put)
        except ClientError as exc:
            raise _StaleHead(exc.response.get("Item")) from None

    def _check_deadline(self, thread_id: str, scratch: _Scratch) -> None:
        """Refuse to commit runs older than the deadline: a sweeper may already treat them as orphans."""
        for run in scratch.written.values():
            created = run_created_at(run.run_id)
            if created is not None and time.time() - created > WRITE_DEADLINE_SECONDS:
                raise BackendUnavailableError(
                    f"thread {thread_id!r}: the save took over {WRITE_DEADLINE_SECONDS:g}s; nothing was committed",
                    thread_id=thread_id,
                )

    def _transact(self, actions: List[Dict[str, Any]]) -> None:
        from botocore.exceptions import ClientError

        for attempt in range(TRANSACTION_CONFLICT_RETRIES):
            try:
                self._call("transact_write_items", expect=(_TRANSACTION_CANCELED, _TRANSACTION_CONFLICT), TransactItems=actions)
                return
            except ClientError as exc:
                reasons = exc.response.get("CancellationReasons") or []
                codes = [str(reason.get("Code") or "None") for reason in reasons]
                if reasons and codes[-1] == "ConditionalCheckFailed":
                    raise _StaleHead(reasons[-1].get("Item")) from None
                if _error_code(exc) == _TRANSACTION_CONFLICT or "TransactionConflict" in codes:
                    time.sleep(random.uniform(0, 0.01 * 2**attempt))
                    continue
                failed = sorted({code for code in codes if code != "None"}) or [_error_code(exc)]
                if any("throttl" in code.lower() or "throughput" in code.lower() for code in failed):
                    raise BackendUnavailableError(f"DynamoDB throttled a save to table {self.table_name!r}: {failed}") from exc
                if any("size" in code.lower() for code in failed):
                    raise SnapshotTooLargeError(f"DynamoDB refused a save to table {self.table_name!r}: {failed}") from exc
                raise AgentsPersistError(f"DynamoDB cancelled a save to table {self.table_name!r}: {failed}") from exc
        raise _StaleHead(None)

    def _batch_write(self, thread_id: str, requests: List[Dict[str, Any]]) -> None:
        """BatchWriteItem in groups of 25, retrying unprocessed requests with backoff."""
        for start in range(0, len(requests), BATCH_WRITE_MAX):
            pending = requests[start : start + BATCH_WRITE_MAX]
            for round_ in range(BATCH_WRITE_ROUNDS):
                page = self._call("batch_write_item", RequestItems={self.table_name: pending})
                pending = page.get("UnprocessedItems", {}).get(self.table_name, [])
                if not pending:
                    break
                time.sleep(random.uniform(0, min(1.0, 0.02 * 2**round_)))
            else:
                raise BackendUnavailableError(
                    f"DynamoDB kept {len(pending)} writes of thread {thread_id!r} unprocessed (throttled)",
                    thread_id=thread_id,
                )

    def _collect(self, thread_id: str, runs: Iterable[Run], extra_keys: Iterable[str]) -> None:
        """Delete chunk items no committed head references any more; failures only cost space."""
        keys = sorted(set(run_keys(runs)) | set(extra_keys))
        if not keys:
            return
        try:
            self._batch_write(thread_id, [{"DeleteRequest": {"Key": self._key(thread_id, sk)}} for sk in keys])
        except AgentsPersistError as exc:
            logger.warning("could not delete %d stale chunk items of thread %r: %s", len(keys), thread_id, exc)

    def _delete_head_if_unchanged(self, thread_id: str, head: HeadState) -> bool:
        """Delete the head item if it is still ``head`` (its write token); False if it was saved meanwhile."""
        from botocore.exceptions import ClientError

        try:
            self._call(
                "delete_item",
                expect=(_CONDITION_FAILED,),
                TableName=self.table_name,
                Key=self._key(thread_id, HEAD_SK),
                ConditionExpression="#w = :w",
                ExpressionAttributeNames={"#w": A_TOKEN},
                ExpressionAttributeValues={":w": {"S": head.token}},
            )
        except ClientError:
            return False
        return True

    def _delete(self, thread_id: str) -> bool:
        cached = self._cached(thread_id)
        known_orphans = cached.orphans if cached is not None else ()
        names = {"#pk": PK, "#sk": SK, "#w": A_TOKEN, "#v": A_VERSION, "#x": A_EXPIRES, "#r": A_RUNS, "#hr": A_HEAD_RUN}
        for _ in range(WRITE_ATTEMPTS):
            items = self._query_items(thread_id, ProjectionExpression=", ".join(names), ExpressionAttributeNames=names)
            head_items = [item for item in items if item[SK]["S"] == HEAD_SK]
            head = head_from_item(head_items[0], thread_id) if head_items else None
            now = time.time()
            stale = self._stale_chunks([item[SK]["S"] for item in items if item[SK]["S"] != HEAD_SK], head, now)
            if head is None:
                self._remember(thread_id, None)
                self._collect(thread_id, [], [*stale, *known_orphans])
                return False
            if not self._delete_head_if_unchanged(thread_id, head) and self._get_head(thread_id) is not None:
                continue  # saved meanwhile: delete what is there now
            # Deleted: by us, or by our own request retried by botocore after a lost response.
            self._remember(thread_id, None)
            self._collect(thread_id, head.all_runs(), [*stale, *known_orphans])
            return not self._is_expired(head.expires_at, now)
        raise ConflictError(f"thread {thread_id!r}: other writers kept saving it during delete", thread_id=thread_id)

    # ------------------------------------------------------------------ listing and expiry

    def _list_threads(
        self, prefix: Optional[str], limit: int, after: Optional[Tuple[float, str]], now: float
    ) -> List[ThreadInfo]:
        if self.list_index is None:
            rows = self._scan_heads(prefix, now, expired=False)
        else:
            rows = []
            for shard in range(self.list_shards):
                rows += self._list_shard(shard, prefix, limit, after, now)
        if after is not None:
            rows = [row for row in rows if (row[0], row[1]) < after]
        rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
        return [
            self._thread_info(tid, version, updated, count, expires) for updated, tid, version, count, expires in rows[:limit]
        ]

    def _list_shard(
        self, shard: int, prefix: Optional[str], limit: int, after: Optional[Tuple[float, str]], now: float
    ) -> List[Tuple[float, str, int, int, Optional[float]]]:
        """Newest heads of one index shard, at least ``limit`` of them when there are that many."""
        from botocore.exceptions import ClientError

        names = {"#ls": A_SHARD, "#x": A_EXPIRES}
        values: Dict[str, Dict[str, str]] = {":ls": {"N": str(shard)}, ":now": {"N": repr(now)}}
        key_condition = "#ls = :ls"
        if after is not None:
            key_condition += " AND #u <= :after"
            names["#u"] = A_UPDATED
            values[":after"] = {"N": repr(after[0])}
        filters = "(attribute_not_exists(#x) OR #x > :now)"
        if prefix is not None:
            filters += " AND begins_with(#pk, :prefix)"
            names["#pk"] = PK
            values[":prefix"] = {"S": prefix}
        request: Dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": self.list_index,
            "KeyConditionExpression": key_condition,
            "FilterExpression": filters,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": min(max(limit, 25), 1000),
        }
        rows: List[Tuple[float, str, int, int, Optional[float]]] = []
        while True:
            try:
                page = self._call("query", expect=("ValidationException",), **request)
            except ClientError as exc:
                raise ConfigurationError(
                    f"cannot query index {self.list_index!r} of DynamoDB table {self.table_name!r} "
                    f"({exc.response.get('Error', {}).get('Message')}); create it (see the docs) or pass "
                    "list_index=None to scan the table"
                ) from exc
            for item in page.get("Items", []):
                row = self._row(item)
                if after is None or (row[0], row[1]) < after:
                    rows.append(row)
            last = page.get("LastEvaluatedKey")
            if not last:
                return rows
            if len(rows) >= limit:
                rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
                if float(last[A_UPDATED]["N"]) < rows[limit - 1][0]:
                    return rows  # everything further down the index is older than what we keep
            request["ExclusiveStartKey"] = last

    @staticmethod
    def _row(item: Item) -> Tuple[float, str, int, int, Optional[float]]:
        return (
            float(item[A_UPDATED]["N"]),
            item[PK]["S"],
            int(item[A_VERSION]["N"]),
            int(item[A_COUNT]["N"]),
            float(item[A_EXPIRES]["N"]) if A_EXPIRES in item else None,
        )

    def _scan_heads(self, prefix: Optional[str], now: float, expired: bool) -> List[Tuple[float, str, int, int, Optional[float]]]:
        """Scan the whole table for head items (O(table)); live ones, or with ``expired`` the expired ones."""
        names = {"#pk": PK, "#sk": SK, "#v": A_VERSION, "#n": A_COUNT, "#u": A_UPDATED, "#x": A_EXPIRES}
        values: Dict[str, Dict[str, str]] = {":head": {"S": HEAD_SK}, ":now": {"N": repr(now)}}
        filters = "#sk = :head AND " + ("#x <= :now" if expired else "(attribute_not_exists(#x) OR #x > :now)")
        if prefix is not None:
            filters += " AND begins_with(#pk, :prefix)"
            values[":prefix"] = {"S": prefix}
        request: Dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": filters,
            "ProjectionExpression": "#pk, #v, #n, #u, #x",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        rows = []
        while True:
            page = self._call("scan", **request)
            rows += [self._row(item) for item in page.get("Items", [])]
            last = page.get("LastEvaluatedKey")
            if not last:
                return rows
            request["ExclusiveStartKey"] = last

    def _purge_expired(self, now: float) -> int:
        purged = 0
        for _, thread_id, _, _, _ in self._scan_heads(None, now, expired=True):
            with self._locks.hold(thread_id):
                head = self._get_head(thread_id)
                if head is None or not self._is_expired(head.expires_at, now):
                    continue
                if not self._delete_head_if_unchanged(thread_id, head):
                    continue  # saved again meanwhile
                self._remember(thread_id, None)
                self._collect(thread_id, head.all_runs(), ())
                purged += 1
        return purged
