"""The redis-py client of a Redis store: built from a URL (standalone or cluster) or given; scripts called by SHA.

Nothing here imports redis-py at import time: :func:`import_redis` does when
a checkpointer is built, so that the registry can import this package
without the driver installed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from types import TracebackType
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Type
from urllib.parse import parse_qsl, unquote, urlsplit

from ...errors import CheckpointerClosedError, ConfigurationError
from ...redaction import forget, redact_url, remember, url_secrets
from ...resources import read_text

__all__ = [
    "RedisConnection",
    "Script",
    "WRITE",
    "DELETE",
    "INDEX_TOUCH",
    "INDEX_FIX",
    "INDEX_IDS",
    "import_redis",
    "reply_text",
    "parse_nodes",
    "SCHEMES",
    "CLUSTER_SCHEMES",
    "SENTINEL_SCHEMES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 50
DEFAULT_PORT = 6379
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
SCHEMES = ("redis", "rediss", *CLUSTER_SCHEMES, *SENTINEL_SCHEMES)
#: Reply prefixes of Redis errors that mean "cannot serve now", not "bad request".
UNAVAILABLE_REPLIES = ("LOADING", "BUSY", "MASTERDOWN", "MISCONF", "NOREPLICAS", "OOM", "READONLY", "CLUSTERDOWN", "TRYAGAIN")
#: redis-py functions that run before a command is sent: taking a pooled
#: connection, connecting, the handshake. An error raised in one of them
#: never carried the request to the server.
_BEFORE_SENDING = frozenset(
    {"get_connection", "make_connection", "connect", "connect_check_health", "_connect", "on_connect", "on_connect_check_health"}
)


class Script:
    """A Lua script of ``scripts/``, called by SHA1 and re-sent whole when the server lost it."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = read_text(__package__, f"scripts/{name}")
        self.sha = hashlib.sha1(self.source.encode("utf-8"), usedforsecurity=False).hexdigest()


WRITE = Script("write.lua")
DELETE = Script("delete.lua")
INDEX_TOUCH = Script("index_touch.lua")
INDEX_FIX = Script("index_fix.lua")
INDEX_IDS = Script("index_ids.lua")


def import_redis() -> Any:
    """The redis module (with ``redis.cluster`` and ``redis.sentinel``), or :class:`ConfigurationError` naming the extra."""
    try:
        import redis
        import redis.cluster
        import redis.sentinel
    except ImportError as exc:
        raise ConfigurationError("RedisCheckpointer needs the redis package: pip install agents_persist[redis]") from exc
    return redis


def reply_text(exc: BaseException) -> str:
    """The error text without redis-py's pipeline annotation, which quotes the command (snapshot bytes)."""
    text = str(exc)
    marker = " of pipeline caused error: "
    return text.split(marker, 1)[1] if marker in text else text


def parse_nodes(hosts: str) -> List[Tuple[str, int]]:
    """``h1:p1,[::1]:p2,h3`` -> [(host, port), ...] (port defaults to 6379)."""
    nodes: List[Tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = item.partition(":")
        if not host or (port and not port.isdigit()):
            raise ConfigurationError(f"invalid Redis Cluster node {item!r}")
        nodes.append((host, int(port) if port else DEFAULT_PORT))
    if not nodes:
        raise ConfigurationError("a redis+cluster:// URL needs at least one host:port")
    return nodes


def _check_database(url: str) -> None:
    """Refuse a database path that is not a number (redis-py would silently use database 0)."""
    path = unquote(urlsplit(url).path)
    if path not in ("", "/") and not (path[1:].isdigit() and path[1:].isascii()):
        raise ConfigurationError(f"the database of a Redis URL is a number (redis://host:6379/3), not {path[1:]!r}")


def _check_tls_options(url: str, *, tls: bool) -> None:
    """Refuse ``ssl_*`` options without TLS (redis-py would fail on first use with an untyped ``TypeError``)."""
    if tls:
        return
    names = sorted({name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True) if name.startswith("ssl_")})
    if names:
        raise ConfigurationError(f"the Redis URL options {', '.join(names)} need TLS: use rediss:// (or rediss+cluster://)")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or while handling, each once."""
    seen = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]


def _raised_before_sending(exc: BaseException, redis_dir: str) -> bool:
    """Whether ``exc`` was raised while redis-py was still getting a connection ready."""
    tb: Optional[TracebackType] = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name in _BEFORE_SENDING and code.co_filename.startswith(redis_dir):
            return True
        tb = tb.tb_next
    return False


def _cluster_url_kwargs(redis: Any, url: str) -> Dict[str, Any]:
    """RedisCluster arguments for ``redis+cluster://[user:pw@]h:p,h:p[/0][?query]``."""
    parts = urlsplit(url)
    if parts.path not in ("", "/", "/0"):
        raise ConfigurationError("Redis Cluster has only database 0; drop the path from the URL")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = parse_nodes(hosts)
    tls = parts.scheme.lower().startswith("rediss")
    host, port = nodes[0]
    netloc = (userinfo + "@" if userinfo else "") + (f"[{host}]" if ":" in host else host) + f":{port}"
    # RedisCluster(url=...) parses credentials and TLS options like redis-py
    # always does, and builds its node pools from them (pool class included).
    return {
        "url": f"{'rediss' if tls else 'redis'}://{netloc}/0" + (f"?{parts.query}" if parts.query else ""),
        "startup_nodes": [redis.cluster.ClusterNode(h, p) for h, p in nodes[1:]],
        "connection_pool_class": redis.BlockingConnectionPool,
        "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
    }


def _sentinel_client(redis: Any, url: str, common: Dict[str, Any]) -> Any:
    """A ``redis.Redis`` on the current primary of ``redis+sentinel://[user:pw@]h:p,h:p/<service>[/db][?query]``.

    The sentinels are asked for the primary's address whenever a connection
    is opened, and a connection that finds its server demoted (``READONLY``)
    is dropped, so after a failover the next calls reach the new primary.
    Credentials and the query's redis-py options are the Redis servers';
    the sentinels are asked without credentials, with the same timeouts.
    """
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = parse_nodes(hosts)
    path = [unquote(p) for p in parts.path.split("/")[1:] if p]
    if not path or len(path) > 2 or (len(path) == 2 and not (path[1].isdigit() and path[1].isascii())):
        raise ConfigurationError(
            "a redis+sentinel:// URL names the service after the hosts: redis+sentinel://h:p,h:p/<service>[/<db>]"
        )
    tls = parts.scheme.lower().startswith("rediss")
    credentials = userinfo + "@" if userinfo else ""
    server_url = f"{'rediss' if tls else 'redis'}://{credentials}sentinel-managed/{path[1] if len(path) > 1 else 0}"
    kwargs = redis.connection.parse_url(server_url + (f"?{parts.query}" if parts.query else ""))
    for key in ("host", "port", "connection_class"):
        kwargs.pop(key, None)
    if tls:
        kwargs["connection_class"] = redis.sentinel.SentinelManagedSSLConnection
    kwargs.update(common, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    timeouts = {"socket_timeout": common["socket_timeout"], "socket_connect_timeout": common["socket_connect_timeout"]}
    sentinel = redis.sentinel.Sentinel(nodes, sentinel_kwargs=timeouts, **timeouts)
    pool_class = type("SentinelBlockingConnectionPool", (redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool), {})
    return sentinel.master_for(path[0], connection_pool_class=pool_class, **kwargs)


class RedisConnection:
    """One redis-py client (standalone or cluster) over a bounded pool, and script calls on it.

    Built from a URL it owns its client: a ``BlockingConnectionPool`` with
    redis-py's own retries off (so no call outlives ``timeout``), or a
    ``RedisCluster`` built on first use (creating one already talks to the
    nodes). A given client is used as it is and never closed.

    Fork safety: redis-py's pools notice a new process ID and open fresh
    connections by themselves, leaving the parent's sockets alone; only the
    lock guarding the lazy cluster build is renewed in a child.

    Args:
        url: A ``redis://``, ``rediss://``, ``redis+cluster://`` or
            ``rediss+cluster://`` URL whose query holds only redis-py's options.
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster`` instead of ``url``.
        timeout: Seconds to wait for a reply or a free connection (default 5).
        connect_timeout: Seconds to connect (default: ``timeout``).
        max_connections: Most connections open at once, per node (default 50).
    """

    def __init__(
        self,
        *,
        url: Optional[str] = None,
        client: Any = None,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        max_connections: Optional[int] = None,
    ) -> None:
        self.redis = redis = import_redis()
        if (url is None) == (client is None):
            raise ConfigurationError("pass either a Redis url or a client, not both or neither")
        self.url = url
        self._secrets = remember(url_secrets(url)) if url is not None else ()
        self._lock = threading.Lock()
        self._closed = False
        self._loaded: Set[str] = set()  # SHAs of scripts this process has run (so a NOSCRIPT means it was lost)
        self._client: Any = None  # redis-py's client types are too loose to be useful here
        self._cluster_kwargs: Optional[Dict[str, Any]] = None
        self._owns_client = client is None
        self.cluster = False
        self.timeout: Optional[float] = None
        self.connect_timeout: Optional[float] = None
        self.max_connections: Optional[int] = None
        self._down_errors: Tuple[Type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.ClusterError,
            redis.exceptions.RedisClusterException,
            redis.exceptions.TryAgainError,
            redis.exceptions.ReadOnlyError,
            redis.exceptions.OutOfMemoryError,
            redis.exceptions.InvalidResponse,
            OSError,
        )
        #: Errors of talking to the server (rather than of a request it refused).
        self._io_errors: Tuple[Type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.InvalidResponse,
            OSError,
        )
        self._redis_dir = os.path.dirname(redis.__file__) + os.sep
        if client is not None:
            self._use_client(client, timeout, connect_timeout, max_connections)
        else:
            assert url is not None
            self._open(url, timeout, connect_timeout, max_connections)

    def _use_client(
        self, client: Any, timeout: Optional[float], connect_timeout: Optional[float], max_connections: Optional[int]
    ) -> None:
        redis = self.redis
        if max_connections is not None or timeout is not None or connect_timeout is not None:
            raise ConfigurationError("max_connections and timeouts belong to the client you pass; set them there")
        if not isinstance(client, (redis.Redis, redis.cluster.RedisCluster)):
            raise ConfigurationError(f"client must be a redis.Redis or RedisCluster, not {type(client).__name__}")
        if client.get_encoder().decode_responses:
            raise ConfigurationError("the Redis client must use decode_responses=False: snapshots are bytes")
        self.cluster = isinstance(client, redis.cluster.RedisCluster)
        self._client = client

    def _open(self, url: str, timeout: Optional[float], connect_timeout: Optional[float], max_connections: Optional[int]) -> None:
        redis = self.redis
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.connect_timeout = self.timeout if connect_timeout is None else connect_timeout
        self.max_connections = DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections
        scheme = url.split("://", 1)[0].lower()
        if scheme not in SCHEMES:
            raise ConfigurationError(f"not a Redis URL: {redact_url(url)!r}")
        self.cluster = scheme in CLUSTER_SCHEMES
        _check_tls_options(url, tls=scheme.startswith("rediss"))
        common = {
            "max_connections": self.max_connections,
            "timeout": self.timeout,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.connect_timeout,
            "decode_responses": False,
        }
        try:
            if scheme in SENTINEL_SCHEMES:
                self._client = _sentinel_client(redis, url, common)
                return
            if not self.cluster:
                _check_database(url)
            if self.cluster:
                self._cluster_kwargs = {**_cluster_url_kwargs(redis, url), **common}
            else:
                kwargs = redis.connection.parse_url(url)
                kwargs.update(common, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
                self._client = redis.Redis(connection_pool=redis.BlockingConnectionPool(**kwargs))
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None

    @property
    def where(self) -> str:
        """Where the server is, for messages: the URL without secrets, or "the given client"."""
        return redact_url(self.url) if self.url is not None else "the given client"

    def describe(self) -> str:
        """``'redis://...'`` (redacted) or ``client=<type>``, for ``repr``."""
        return repr(redact_url(self.url)) if self.url is not None else f"client={type(self._client).__name__}"

    def client(self) -> Any:
        """The redis-py client, building the cluster client on first use."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                if self._closed:
                    raise CheckpointerClosedError("RedisCheckpointer is closed")
                assert self._cluster_kwargs is not None
                kwargs = dict(self._cluster_kwargs)
                kwargs["startup_nodes"] = list(kwargs["startup_nodes"])
                try:
                    self._client = self.redis.cluster.RedisCluster(**kwargs)
                except (TypeError, ValueError) as exc:
                    raise ConfigurationError(f"invalid Redis Cluster options: {exc}") from None
            return self._client

    def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` by SHA; if the server does not have it, send the source (which caches it).

        A missing script is normal on first use (DEBUG); only one this process
        had run before means the server lost its cache (INFO: a restart, a
        failover, ``SCRIPT FLUSH``, or a cluster node not used before).
        """
        client = self.client()
        exceptions = self.redis.exceptions
        try:
            result = client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except exceptions.NoScriptError:
            if script.sha in self._loaded:
                logger.info("Redis lost script %s from its script cache (restart, failover, flush); resending it", script.name)
            else:
                logger.debug("loading Redis script %s", script.name)
            self._loaded.add(script.sha)
            return client.execute_command("EVAL", script.source, len(keys), *keys, *args)
        except exceptions.ResponseError:
            self._loaded.add(script.sha)  # the script ran and answered with an error (a conflict, say)
            raise
        self._loaded.add(script.sha)
        return result

    def is_down(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the server cannot serve now (rather than a bad request)."""
        if isinstance(exc, self._down_errors):
            return True
        return isinstance(exc, self.redis.exceptions.ResponseError) and reply_text(exc).startswith(UNAVAILABLE_REPLIES)

    def may_have_sent(self, exc: BaseException) -> bool:
        """Whether the request that failed with ``exc`` may have reached the server (and run there).

        False only when it provably did not: the server refused it with an
        error reply, or the failure came while taking a pooled connection,
        connecting or in the handshake (no free connection, connection
        refused, connect timeout). A lost or late reply, a dropped
        connection or a garbled answer leave it open, also when redis-py
        raised another error while handling one of them (a cluster
        refreshing its slots). Socket errors redis-py wrapped in one of its
        own count by the wrapper, whose traceback shows where it came from.
        """
        exceptions = self.redis.exceptions
        if any(isinstance(error, exceptions.ReadOnlyError) for error in _chain(exc)):
            return False  # a demoted primary refused it (redis-py's Sentinel pool turns that into a ConnectionError)
        return any(
            (error is exc or isinstance(error, exceptions.RedisError))
            and isinstance(error, self._io_errors)
            and not isinstance(error, exceptions.ResponseError)
            and not _raised_before_sending(error, self._redis_dir)
            for error in _chain(exc)
        )

    def close(self) -> None:
        """Close the client if it was built here; a given client is left alone."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            forget(self._secrets)
            self._secrets = ()
        if client is None or not self._owns_client:
            return
        if self.cluster:
            # RedisCluster.close() releases its node clients but leaves their pools' sockets open
            # (until garbage collection): disconnect every node's pool, the startup nodes' too.
            nodes = [*client.get_nodes(), *client.nodes_manager.startup_nodes.values()]
            client.close()
            for node in nodes:
                if node.redis_connection is not None:
                    node.redis_connection.connection_pool.disconnect()
        else:
            client.connection_pool.disconnect()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it
