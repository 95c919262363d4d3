"""DynamoDbCheckpointer: threads in one DynamoDB table, a head item plus message chunk items.

Per thread a head item and chunk items grouped in *runs*. A save commits by
one conditional write of the head on its write token; ordinary appends put
their chunk items in the same ``TransactWriteItems``; bigger writes put their
chunks under a fresh run first, invisible until the head lists it, and old
runs are deleted after the head moved on. A crash at any point leaves either
the old or the new version readable, never a mix.

The package: this module declares the backend, its options and the public
class; :mod:`.store` holds :class:`DynamoDbStore`, the storage primitives;
:mod:`.layout` the item arithmetic (sizes, keys, runs, the message stream);
:mod:`.writes` the planning and sending of a save's items; :mod:`.table`
table set-up, listing and scanning; :mod:`.client` the boto3 client and the
translation of its errors.
"""

from __future__ import annotations

from typing import Any, Dict, Optional
from urllib.parse import unquote, urlsplit

from ... import options
from ...checkpointer import Checkpointer, store_attribute
from ...errors import ConfigurationError
from ...registry import Backend
from ...urls import redact_url
from .client import DynamoDbClient
from .layout import RESERVED_ATTRIBUTES
from .store import DynamoDbStore

__all__ = ["DynamoDbCheckpointer", "DynamoDbStore", "OPTIONS"]

BACKEND = Backend(
    name="dynamodb",
    target="agents_persist.backends.dynamodb:DynamoDbCheckpointer",
    schemes=("dynamodb",),
    extra="dynamodb",
    summary="DynamoDB: conditional head, chunked log items under the item limit.",
)

DEFAULT_TTL_ATTRIBUTE = "ttl"
DEFAULT_LIST_INDEX = "agents_persist_recent"
RETRY_MODES = ("standard", "adaptive", "legacy")
_TABLE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

OPTIONAL_TEXT = options.Kind("a str or None", options.TEXT.convert, optional=True)


def _table_name(name: str) -> str:
    if not 3 <= len(name) <= 255 or not set(name) <= _TABLE_NAME_CHARS:
        raise ValueError("3-255 of a-z A-Z 0-9 _ . -")
    return name


def _ttl_attribute(name: str) -> str:
    if not name or name in RESERVED_ATTRIBUTES:
        raise ValueError("empty or colliding with the item layout")
    return name


def _list_index(name: str) -> str:
    if not 3 <= len(name) <= 255:
        raise ValueError("3-255 characters")
    return name


def _list_shards(shards: int) -> int:
    if shards > 256:
        raise ValueError("at most 256")
    return shards


OPTIONS = (
    *options.COMMON_OPTIONS,
    options.Option("table_name", options.TEXT, None, "The table (3-255 of a-zA-Z0-9_.-); the URL's path.", check=_table_name),
    options.Option("region_name", OPTIONAL_TEXT, None, "AWS region (None: boto3's default); the URL's host."),
    options.Option("endpoint_url", OPTIONAL_TEXT, None, "Another endpoint (DynamoDB Local, moto, a VPC endpoint)."),
    options.Option("aws_access_key_id", OPTIONAL_TEXT, None, "Explicit credentials; the URL's user name."),
    options.Option("aws_secret_access_key", OPTIONAL_TEXT, None, "Explicit credentials; the URL's password."),
    options.Option("aws_session_token", OPTIONAL_TEXT, None, "Explicit credentials."),
    options.Option("profile_name", OPTIONAL_TEXT, None, "A profile of the shared AWS config files."),
    options.Option("create_table", options.BOOLEAN, False, "Create the table (index, TTL on) if it does not exist."),
    options.Option("ttl_attribute", options.TEXT, DEFAULT_TTL_ATTRIBUTE, "The table's TTL attribute.", check=_ttl_attribute),
    options.Option("list_index", OPTIONAL_TEXT, DEFAULT_LIST_INDEX, "The listing GSI; None scans.", check=_list_index),
    options.Option("list_shards", options.POSITIVE_INT, 4, "Index partitions heads are spread over.", check=_list_shards),
    options.Option("max_connections", options.POSITIVE_INT, 10, "Size of botocore's HTTP connection pool."),
    options.Option("timeout", options.SECONDS, 10.0, "Seconds to connect and to wait for each response."),
    options.Option("connect_timeout", options.OPTIONAL_SECONDS, None, "Overrides timeout for connecting."),
    options.Option("read_timeout", options.OPTIONAL_SECONDS, None, "Overrides timeout for waiting on a response."),
    options.Option("max_attempts", options.POSITIVE_INT, 3, "Attempts per request including the first."),
    options.Option("retry_mode", options.choice(*RETRY_MODES), "standard", "botocore's retry mode."),
)
#: Options a ``dynamodb://`` URL sets in its parts (path, host, user info), not in its query.
URL_PART_OPTIONS = ("table_name", "region_name", "aws_access_key_id", "aws_secret_access_key")
QUERY_OPTIONS = tuple(option for option in OPTIONS if option.name not in URL_PART_OPTIONS)
_TIMEOUTS = ("connect_timeout", "read_timeout")
_SESSION_ARGS = ("region_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "profile_name")


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
    item (``sk = "H"``) holds version, generation, message count, digest,
    the encoded todos/interrupt/metadata, timestamps and the last 32
    idempotency keys applied; messages live in chunk items
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
      strongly consistent but O(table) per call. ``iter_threads`` pages
      through one ``Scan`` in the table's own order (by a hash of the
      thread ID on AWS, not by ID), each thread once.
    * With ``ttl``, chunk items get a TTL of one extra ``ttl`` period; a
      thread saved for longer than that is rewritten once per period so that
      DynamoDB never expires chunks of a live thread.
    * IAM: ``GetItem``, ``Query``, ``PutItem`` (also what
      ``TransactWriteItems`` is authorized by), ``DeleteItem`` and
      ``BatchWriteItem`` on the table; ``Query`` on the index; ``Scan``
      for ``iter_threads`` and ``purge_expired`` (and for listing without
      an index);
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
        max_snapshot_bytes: Largest encoded snapshot a save may write; None: the backend's default.
    """

    store: DynamoDbStore

    table_name = store_attribute("table_name", "The table.")
    region_name = store_attribute("client.region_name", "The AWS region (None until boto3 chose its default).")
    endpoint_url = store_attribute("client.endpoint_url", "The endpoint, if not AWS's.")
    ttl_attribute = store_attribute("ttl_attribute", "The table's TTL attribute.")
    list_index = store_attribute("list_index", "The listing index, or None to scan.")
    list_shards = store_attribute("list_shards", "Index partitions the heads are spread over.")
    max_connections = store_attribute("client.max_connections", "Size of botocore's HTTP pool.")
    connect_timeout = store_attribute("client.connect_timeout", "Seconds to connect.")
    read_timeout = store_attribute("client.read_timeout", "Seconds to wait for each response.")
    max_attempts = store_attribute("client.max_attempts", "Attempts per request including the first.")
    retry_mode = store_attribute("client.retry_mode", "botocore's retry mode.")

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
        list_shards: int = 4,
        max_connections: int = 10,
        timeout: float = 10.0,
        connect_timeout: Optional[float] = None,
        read_timeout: Optional[float] = None,
        max_attempts: int = 3,
        retry_mode: str = "standard",
        ttl: Optional[float] = None,
        max_retries: int = 50,
        max_snapshot_bytes: Optional[int] = None,
    ) -> None:
        given = {
            "ttl": ttl,
            "max_retries": max_retries,
            "max_snapshot_bytes": max_snapshot_bytes,
            "table_name": table_name,
            "region_name": region_name,
            "endpoint_url": endpoint_url,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
            "profile_name": profile_name,
            "create_table": create_table,
            "ttl_attribute": ttl_attribute,
            "list_index": list_index,
            "list_shards": list_shards,
            "max_connections": max_connections,
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_attempts": max_attempts,
            "retry_mode": retry_mode,
        }
        values = options.check(OPTIONS, given, backend="DynamoDB")
        timeouts = {name: values["timeout"] if values[name] is None else values[name] for name in _TIMEOUTS}
        dynamodb = DynamoDbClient(
            values["table_name"],
            client=client,
            endpoint_url=values["endpoint_url"],
            session_args={name: values[name] for name in _SESSION_ARGS},
            max_connections=values["max_connections"],
            max_attempts=values["max_attempts"],
            retry_mode=values["retry_mode"],
            **timeouts,
        )
        store = DynamoDbStore(
            dynamodb,
            ttl_attribute=values["ttl_attribute"],
            list_index=values["list_index"],
            list_shards=values["list_shards"],
            ttl=values["ttl"],
            create_table=values["create_table"],
        )
        super().__init__(store, ttl=ttl, max_retries=max_retries, max_snapshot_bytes=max_snapshot_bytes)

    @classmethod
    def from_url(cls, url: str, **given: Any) -> "DynamoDbCheckpointer":
        """Build from ``dynamodb://[region]/table?endpoint_url=...``.

        The host part is the region (empty: boto3's default region). Query
        options: every option above but ``table_name``, ``region_name`` and
        the key pair (``list_index=`` empty for none). Credentials come from
        boto3's chain (environment, config files, instance role), or from
        ``dynamodb://KEY_ID:SECRET@region/table``. Keyword arguments (also
        ``client=``) override the URL's.
        """
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ConfigurationError(f"invalid DynamoDB URL {redact_url(url)!r}: {exc}") from None
        if parts.scheme.lower() not in BACKEND.schemes:
            raise ConfigurationError(f"not a dynamodb:// URL: {redact_url(url)!r}")
        userinfo, _, region = parts.netloc.rpartition("@")
        table = unquote(parts.path.lstrip("/"))
        if not table or "/" in table:
            raise ConfigurationError(f"the DynamoDB URL names no table: {redact_url(url)!r} (dynamodb://region/table)")
        values: Dict[str, Any] = {}
        if region:
            values["region_name"] = unquote(region)
        if userinfo:
            key_id, _, secret = userinfo.partition(":")
            values["aws_access_key_id"] = unquote(key_id)
            if secret:
                values["aws_secret_access_key"] = unquote(secret)
        query, _ = options.resolve(QUERY_OPTIONS, parts.query, {}, backend="DynamoDB")
        return cls(table, **{**values, **query, **given})
