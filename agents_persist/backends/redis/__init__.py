"""RedisCheckpointer: threads in Redis or Redis Cluster, one atomic Lua script per save.

The package: ``store.py`` (:class:`RedisStore`, the primitives), ``index.py``
(the indexes by update time, expiry and ID), ``client.py`` (the redis-py client and script
calls), ``layout.py`` (key names) and ``scripts/*.lua`` (what runs in Redis).
Importing it never imports redis-py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union
from urllib.parse import urlencode, urlsplit

from ... import options
from ...checkpointer import Checkpointer, store_attribute
from ...errors import ConfigurationError
from ...registry import Backend
from .client import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, RedisConnection
from .store import RedisStore

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster

    RedisClient = Union[Redis, RedisCluster]

__all__ = ["RedisCheckpointer", "RedisStore", "DEFAULT_KEY_PREFIX", "OPTIONS", "REDIS_PY_URL_OPTIONS"]

BACKEND = Backend(
    name="redis",
    target="agents_persist.backends.redis:RedisCheckpointer",
    schemes=("redis", "rediss", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"),
    extra="redis",
    summary="Redis or Redis Cluster: one atomic Lua script per save.",
)

DEFAULT_KEY_PREFIX = "agents:"


def _no_braces(key_prefix: str) -> str:
    if "{" in key_prefix or "}" in key_prefix:
        raise ValueError("without '{' or '}'")
    return key_prefix


_OPTIONAL_POSITIVE_INT = options.Kind("an int >= 1 or None", options.POSITIVE_INT.convert, optional=True)

OPTIONS = (
    *options.COMMON_OPTIONS,
    options.Option("key_prefix", options.TEXT, DEFAULT_KEY_PREFIX, "Prepended to every key.", check=_no_braces),
    options.Option(
        "timeout",
        options.OPTIONAL_SECONDS,
        None,
        f"Seconds to wait for a reply or a free connection (default {DEFAULT_TIMEOUT:g}).",
        aliases=("socket_timeout",),
    ),
    options.Option(
        "connect_timeout",
        options.OPTIONAL_SECONDS,
        None,
        "Seconds to establish a connection (default: timeout).",
        aliases=("socket_connect_timeout",),
    ),
    options.Option(
        "max_connections",
        _OPTIONAL_POSITIVE_INT,
        None,
        f"Most connections open at once, per node in a cluster (default {DEFAULT_MAX_CONNECTIONS}).",
    ),
)
_OWN_OPTIONS = OPTIONS[len(options.COMMON_OPTIONS) :]

#: redis-py's own URL query options (``redis.connection.parse_url`` hands them
#: to its connections) that a Redis URL may carry. Retry options are not among
#: them (retries are off so that no call outlives ``timeout``), nor those this
#: backend sets itself (``decode_responses``, the timeouts, ``max_connections``).
REDIS_PY_URL_OPTIONS = frozenset(
    {
        "db",
        "username",
        "password",
        "client_name",
        "lib_name",
        "lib_version",
        "health_check_interval",
        "socket_keepalive",
        "socket_read_size",
        "protocol",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_ciphers",
        "ssl_min_version",
    }
)


def _redis_py_option(name: str) -> bool:
    return name in REDIS_PY_URL_OPTIONS


class RedisCheckpointer(Checkpointer):
    """Stores threads in Redis or Redis Cluster; every save is one atomic server-side script.

    Guarantees: a save checks the version, appends only the new messages (or
    rewrites the log), stores the head and sets the expiry in one Lua script
    on the thread's hash slot, so it is atomic in Redis Cluster too and no
    reader ever sees half of it. A load reads head and log in one
    ``MULTI``/``EXEC`` round trip. Connections come from a bounded pool (one
    per node in a cluster); a forked child opens its own.

    Key layout (``key_prefix`` defaults to ``agents:``; ``<id>`` is the thread
    ID with ``%``, ``{`` and ``}`` percent-escaped so that the hash tag holds
    exactly the thread ID)::

        agents:{<id>}:head        hash: v (version), n (message count), d (digest),
                                  h (todos/interrupt/metadata), u (updated_at), e (expires_at),
                                  g (generation), a (applied idempotency keys)
        agents:{<id>}:log         list of entries of encoded messages, in order
        agents:{<id>}:pos         string: where each message ends (the index of partial reads)
        agents:{%index}:updated   sorted set: thread ID -> updated_at (for list_threads)
        agents:{%index}:expires   sorted set: thread ID -> expires_at (threads with a TTL)
        agents:{%index}:ids       sorted set: thread ID -> 0, walked by ID (for iter_threads)

    A whole new log of many messages is first pushed to a staging list in the
    thread's slot (same round trip), which the save script renames into place.

    Limits:

    * The index sets live in their own slot. On a standalone server the
      save script updates them atomically; in Redis Cluster a second round
      trip after the save does (a save is then two round trips), and
      ``list_threads`` and ``iter_threads`` check every entry against the
      thread's head, skip deleted or expired threads and repair stale
      entries. A process dying between the two steps leaves a new thread out
      of both until its next save.
    * Threads saved before the index by ID existed are copied into it by
      the first ``iter_threads`` that notices (it compares the sizes of the
      update-time and ID indexes on every page).
    * ``list_threads`` with a ``prefix`` filters on the client: it may read
      the whole index. Use one ``key_prefix`` per tenant to keep indexes small.
    * Expired threads vanish from Redis by themselves; their index entries go
      as saves pass by (standalone), when ``list_threads`` meets them, or by
      :meth:`~agents_persist.Checkpointer.purge_expired`, which clusters with a TTL should call now and then.
    * TTL and expiry checks use the clients' clocks; keep them in sync (NTP).
    * A change that fails with :class:`BackendUnavailableError` after its
      request may have reached the server carries ``maybe_applied=True``: it
      may or may not be stored (the reply was lost). Repeat it with its
      ``idempotency_key``, or load to see. redis-py's own retries are off so
      that no call outlives ``timeout``.
    * Use a ``maxmemory-policy`` of ``noeviction`` or ``volatile-*``: evicting
      a thread's log but not its head would lose messages (a save then
      rewrites the log, a load raises :class:`CorruptSnapshotError`).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS),
            ``redis+cluster://host:port,host:port`` or ``rediss+cluster://``,
            ``redis+sentinel://host:port,host:port/<service>[/<db>]`` or
            ``rediss+sentinel://`` (the primary Sentinel names, found again after a failover).
            Its query may hold redis-py's own options
            (:data:`~agents_persist.backends.redis.REDIS_PY_URL_OPTIONS`: ``ssl_ca_certs``,
            ``ssl_cert_reqs``, ...); the options below go in the query only
            with :meth:`from_url`.
        client (Optional[redis.Redis | redis.cluster.RedisCluster]): An existing ``redis.Redis`` or ``redis.cluster.RedisCluster``
            (with ``decode_responses=False``) instead of ``url``; it is
            never closed here, and its own timeouts and retries apply.
        key_prefix: Prepended to every key; must not contain ``{`` or ``}``.
        ttl: Seconds a thread lives after its last save; None keeps threads.
        max_connections: Most connections open at once (per node in a
            cluster; default 50); callers beyond that wait up to ``timeout``.
        timeout: Seconds a command may wait for its reply, and for a free
            pooled connection, before :class:`BackendUnavailableError`
            (default 5).
        connect_timeout: Seconds to establish a connection (default: ``timeout``).
        max_retries: Retries of ``update`` after a conflict.
        max_snapshot_bytes: Largest encoded snapshot a save may write; None: the backend's default.

    Raises:
        ConfigurationError: Bad URL or options, or redis-py is not installed.
    """

    store: RedisStore

    def __init__(
        self,
        url: Optional[str] = None,
        *,
        client: Optional["RedisClient"] = None,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        ttl: Optional[float] = None,
        max_connections: Optional[int] = None,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        max_retries: int = 50,
        max_snapshot_bytes: Optional[int] = None,
    ) -> None:
        given = {
            "ttl": ttl,
            "max_retries": max_retries,
            "max_snapshot_bytes": max_snapshot_bytes,
            "key_prefix": key_prefix,
            "timeout": timeout,
            "connect_timeout": connect_timeout,
            "max_connections": max_connections,
        }
        values = options.check(OPTIONS, given, backend="Redis")
        if url is not None:
            in_query, _ = options.resolve(OPTIONS, urlsplit(url).query, {}, backend="Redis", passthrough=_redis_py_option)
            if in_query:
                raise ConfigurationError("options in the URL query need RedisCheckpointer.from_url(); or pass them as arguments")
        connection = RedisConnection(
            url=url,
            client=client,
            timeout=values["timeout"],
            connect_timeout=values["connect_timeout"],
            max_connections=values["max_connections"],
        )
        super().__init__(
            RedisStore(connection, values["key_prefix"]),
            ttl=values["ttl"],
            max_retries=values["max_retries"],
            max_snapshot_bytes=values["max_snapshot_bytes"],
        )

    @classmethod
    def from_url(cls, url: str, **given: Any) -> "RedisCheckpointer":
        """Build from ``redis://``, ``rediss://``, ``redis+cluster://h:p,h:p`` or ``rediss+cluster://``.

        Query options ``key_prefix``, ``ttl``, ``timeout``, ``connect_timeout``,
        ``max_connections`` and ``max_retries`` (also ``socket_timeout`` and
        ``socket_connect_timeout``) become constructor arguments; keyword
        arguments win over them. redis-py's own options
        (:data:`~agents_persist.backends.redis.REDIS_PY_URL_OPTIONS`) go to redis-py; any other is refused.
        """
        parts = urlsplit(url)
        values, rest = options.resolve(OPTIONS, parts.query, given, backend="Redis", passthrough=_redis_py_option)
        return cls(parts._replace(query=urlencode(rest)).geturl(), **values)

    key_prefix = store_attribute("key_prefix", "Prepended to every key.")
    cluster = store_attribute("cluster", "True for Redis Cluster.")
    timeout = store_attribute(
        "connection.timeout", "Seconds to wait for a reply or a free connection (None with a given client)."
    )
    connect_timeout = store_attribute(
        "connection.connect_timeout", "Seconds to establish a connection (None with a given client)."
    )
    max_connections = store_attribute(
        "connection.max_connections", "Most connections open at once, per node (None with a given client)."
    )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store.describe()}, ttl={self.ttl!r})"
