"""RedisCheckpointer: threads in Redis or Redis Cluster, one atomic Lua script per save.

Every thread is a small head hash plus a list of encoded messages, both
hash-tagged by the thread ID so that they live in one cluster slot. A save is
one ``EVALSHA`` of :data:`WRITE_SCRIPT`: version check, append to (or rewrite
of) the log, head and expiry, all atomic. A load is one ``MULTI``/``EXEC``
round trip. A sorted set scored by update time serves ``list_threads``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..base import Checkpointer, PlannedWrite, PrefixMismatch, StoredThread
from ..codec import DIGEST_SIZE
from ..errors import BackendUnavailableError, ConfigurationError, CorruptSnapshotError
from ..models import ThreadInfo
from ..registry import Backend
from ..urls import redact_url

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster

    RedisClient = Union[Redis, RedisCluster]

__all__ = ["RedisCheckpointer", "DEFAULT_KEY_PREFIX"]

BACKEND = Backend(
    name="redis",
    target="agents_persist.backends.redis:RedisCheckpointer",
    schemes=("redis", "rediss", "redis+cluster", "rediss+cluster"),
    extra="redis",
    summary="Redis or Redis Cluster: one atomic Lua script per save.",
)

logger = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX = "agents:"
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 50
DEFAULT_PORT = 6379
#: Hash tag of the two index sorted sets; no escaped thread ID can produce it
#: (an escaped ID has ``%`` only in ``%25``, ``%7B`` and ``%7D``).
INDEX_TAG = "{%index}"
#: Thread IDs read from the index per round trip while listing (grows up to the max).
LIST_BATCH = 64
MAX_LIST_BATCH = 4096
#: Index entries of expired threads a save removes on the way (standalone only).
CLEANUP_PER_SAVE = 16
#: A save that writes a whole log of at least this many messages (a new thread
#: or a rewrite) first pushes them to a staging list, which the save script
#: then renames into place: the bulk never passes through Lua, which costs the
#: single-threaded server several times more CPU (and Lua garbage later).
STAGE_MIN_MESSAGES = 32
#: A staging list left behind by a client that died mid-save expires after this.
STAGE_TTL_MS = 60_000
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
#: Our own URL query options, with the redis-py spellings they also accept.
URL_OPTIONS = {
    "key_prefix": ("key_prefix", str),
    "ttl": ("ttl", float),
    "timeout": ("timeout", float),
    "socket_timeout": ("timeout", float),
    "connect_timeout": ("connect_timeout", float),
    "socket_connect_timeout": ("connect_timeout", float),
    "max_connections": ("max_connections", int),
    "max_retries": ("max_retries", int),
}
#: Reply prefixes of Redis errors that mean "cannot serve now", not "bad request".
UNAVAILABLE_REPLIES = ("LOADING", "BUSY", "MASTERDOWN", "MISCONF", "NOREPLICAS", "OOM", "READONLY", "CLUSTERDOWN", "TRYAGAIN")

#: One save, atomically (see :class:`~agents_persist.base.PlannedWrite`).
#: KEYS: head, log, a fresh staging key [, index by update time, index by
#: expiry: standalone only].
#: ARGV: expected version or '', append position or '' (rewrite), base digest,
#: message count, digest, head blob, updated_at, expires_at or '', expiry in
#: ms or '', thread ID, number of staged messages or '', then the new encoded
#: messages (none when staged).
#: Returns {1, new version}, {0, current version} on a version conflict,
#: {2, current version} when the stored prefix is not the expected one, or
#: {3, current version} when the staging list is not what was sent.
WRITE_SCRIPT = """
local head, log, stage = KEYS[1], KEYS[2], KEYS[3]
local staged = ARGV[11] ~= ''
local now = tonumber(ARGV[7])
local stored = redis.call('HMGET', head, 'v', 'n', 'd', 'e')
local version, count, digest = 0, 0, string.rep('\\0', DIGEST_SIZE)
if stored[1] and not (stored[4] and tonumber(stored[4]) <= now) then
  version, count, digest = tonumber(stored[1]), tonumber(stored[2]), stored[3]
end
local status = 1
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= version then
  status = 0
elseif ARGV[2] ~= '' and (tonumber(ARGV[2]) ~= count or ARGV[3] ~= digest or redis.call('LLEN', log) ~= count) then
  status = 2
elseif staged and redis.call('LLEN', stage) ~= tonumber(ARGV[11]) then
  status = 3
end
if status ~= 1 then
  if staged then
    redis.call('DEL', stage)
  end
  return {status, version}
end
if not staged and #ARGV >= 12 then
  -- A rewrite builds its new log aside: the first write is then one that
  -- Redis refuses when out of memory, before anything changed.
  local target = log
  if ARGV[2] == '' then
    target, staged = stage, true
  end
  for i = 12, #ARGV, 1000 do
    redis.call('RPUSH', target, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end
if staged then
  redis.call('RENAME', stage, log)
elseif ARGV[2] == '' then
  redis.call('DEL', log)
end
redis.call('HSET', head, 'v', version + 1, 'n', ARGV[4], 'd', ARGV[5], 'h', ARGV[6], 'u', ARGV[7])
if ARGV[8] ~= '' then
  redis.call('HSET', head, 'e', ARGV[8])
  redis.call('PEXPIREAT', head, ARGV[9])
  redis.call('PEXPIREAT', log, ARGV[9])
else
  redis.call('HDEL', head, 'e')
  redis.call('PERSIST', head)
  redis.call('PERSIST', log)
end
if #KEYS == 5 then
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[10])
  if ARGV[8] ~= '' then
    redis.call('ZADD', KEYS[5], ARGV[8], ARGV[10])
  else
    redis.call('ZREM', KEYS[5], ARGV[10])
  end
  local gone = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', ARGV[7], 'LIMIT', 0, CLEANUP_PER_SAVE)
  if #gone > 0 then
    redis.call('ZREM', KEYS[4], unpack(gone))
    redis.call('ZREM', KEYS[5], unpack(gone))
  end
end
return {1, version + 1}
""".replace("DIGEST_SIZE", str(DIGEST_SIZE)).replace("CLEANUP_PER_SAVE", str(CLEANUP_PER_SAVE))

#: Delete one thread. KEYS: head, log [, the two indexes: standalone only].
#: ARGV: now, thread ID. Returns {1 if it was live else 0, its updated_at or nil}.
DELETE_SCRIPT = """
local stored = redis.call('HMGET', KEYS[1], 'u', 'e')
redis.call('DEL', KEYS[1], KEYS[2])
if #KEYS == 4 then
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZREM', KEYS[4], ARGV[2])
end
if not stored[1] then
  return {0}
end
if stored[2] and tonumber(stored[2]) <= tonumber(ARGV[1]) then
  return {0, stored[1]}
end
return {1, stored[1]}
"""

#: Cluster only, after a successful save: record it in the indexes unless a
#: newer save already did. KEYS: index by update time, index by expiry.
#: ARGV: thread ID, updated_at, expires_at or ''.
INDEX_TOUCH_SCRIPT = """
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if current and tonumber(current) > tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
"""

#: Repair index entries found stale, each only if its score is still the one
#: seen (so a concurrent save always wins). KEYS: index by update time, index
#: by expiry. ARGV: groups of (op, thread ID, seen score, new score or ''):
#: 'r' removes if the update-time score is the seen one, 's' sets that score,
#: 'x' removes if the expiry score is the seen one, 'e' sets or ('') removes
#: the expiry entry. Returns {entries removed, entries changed in all}.
INDEX_FIX_SCRIPT = """
local removed, changed = 0, 0
for i = 1, #ARGV, 4 do
  local op, member, seen, new = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local key = KEYS[1]
  if op == 'x' or op == 'e' then key = KEYS[2] end
  local current = redis.call('ZSCORE', key, member)
  if current and tonumber(current) == seen then
    changed = changed + 1
    if op == 'r' or op == 'x' then
      redis.call('ZREM', KEYS[1], member)
      redis.call('ZREM', KEYS[2], member)
      removed = removed + 1
    elseif new == '' then
      redis.call('ZREM', key, member)
    else
      redis.call('ZADD', key, new, member)
    end
  end
end
return {removed, changed}
"""


class _Script:
    """A Lua script called by SHA1, re-sent whole when the server lost it (restart, failover)."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()


_WRITE = _Script(WRITE_SCRIPT)
_DELETE = _Script(DELETE_SCRIPT)
_INDEX_TOUCH = _Script(INDEX_TOUCH_SCRIPT)
_INDEX_FIX = _Script(INDEX_FIX_SCRIPT)


def _import_redis() -> Any:
    try:
        import redis
        import redis.cluster
    except ImportError as exc:
        raise ConfigurationError("RedisCheckpointer needs the redis package: pip install agents_persist[redis]") from exc
    return redis


def _escape_tag(thread_id: str) -> str:
    """Make ``thread_id`` safe inside a hash tag: no ``{``/``}``, reversible (``%`` escapes)."""
    if "%" in thread_id or "{" in thread_id or "}" in thread_id:
        return thread_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return thread_id


def _reply_text(exc: BaseException) -> str:
    """The error text without redis-py's pipeline annotation, which quotes the command (snapshot bytes)."""
    text = str(exc)
    marker = " of pipeline caused error: "
    return text.split(marker, 1)[1] if marker in text else text


def _split_options(query: str) -> Tuple[Dict[str, Any], str]:
    """Take our own options out of a URL query; return them and the rest for redis-py."""
    ours: Dict[str, Any] = {}
    rest: List[Tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        option = URL_OPTIONS.get(name)
        if option is None:
            rest.append((name, value))
            continue
        target, kind = option
        try:
            ours[target] = kind(value)
        except ValueError:
            raise ConfigurationError(f"invalid value for {name!r} in the Redis URL") from None
    return ours, urlencode(rest)


def _parse_nodes(hosts: str) -> List[Tuple[str, int]]:
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
                                  h (todos/interrupt/metadata), u (updated_at), e (expires_at)
        agents:{<id>}:log         list of encoded messages, in order
        agents:{%index}:updated   sorted set: thread ID -> updated_at (for list_threads)
        agents:{%index}:expires   sorted set: thread ID -> expires_at (threads with a TTL)

    A whole new log of many messages is first pushed to a staging list in the
    thread's slot (same round trip), which the save script renames into place.

    Limits:

    * The two index sets live in their own slot. On a standalone server the
      save script updates them atomically; in Redis Cluster a second round
      trip after the save does (a save is then two round trips), and
      ``list_threads`` checks every entry against the thread's head, skips
      deleted or expired threads and repairs stale entries. A process dying
      between the two steps leaves a thread out of ``list_threads`` until its
      next save.
    * ``list_threads`` with a ``prefix`` filters on the client: it may read
      the whole index. Use one ``key_prefix`` per tenant to keep indexes small.
    * Expired threads vanish from Redis by themselves; their index entries go
      as saves pass by (standalone), when ``list_threads`` meets them, or by
      :meth:`purge_expired`, which clusters with a TTL should call now and then.
    * TTL and expiry checks use the clients' clocks; keep them in sync (NTP).
    * A call that fails with :class:`BackendUnavailableError` after sending
      a save may or may not have stored it (the reply was lost): load to see.
      redis-py's own retries are off so that no call outlives ``timeout``.
    * Use a ``maxmemory-policy`` of ``noeviction`` or ``volatile-*``: evicting
      a thread's log but not its head would lose messages (a save then
      rewrites the log, a load raises :class:`CorruptSnapshotError`).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS),
            ``redis+cluster://host:port,host:port`` or ``rediss+cluster://``.
            Query options: ``key_prefix``, ``ttl``, ``timeout``,
            ``connect_timeout``, ``max_connections`` and redis-py's own
            (``ssl_ca_certs``, ``ssl_cert_reqs``, ...).
        client: An existing ``redis.Redis`` or ``redis.cluster.RedisCluster``
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

    Raises:
        ConfigurationError: Bad URL or options, or redis-py is not installed.
    """

    url_schemes = ("redis", "rediss", "redis+cluster", "rediss+cluster")

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
    ) -> None:
        super().__init__(ttl=ttl, max_retries=max_retries)
        self._redis_module = redis = _import_redis()
        if not isinstance(key_prefix, str) or "{" in key_prefix or "}" in key_prefix:
            raise ConfigurationError(f"key_prefix must be a str without '{{' or '}}', not {key_prefix!r}")
        if (url is None) == (client is None):
            raise ConfigurationError("pass either a Redis url or a client, not both or neither")
        self.key_prefix = key_prefix
        self._index_keys = (f"{key_prefix}{INDEX_TAG}:updated", f"{key_prefix}{INDEX_TAG}:expires")
        self._url = url
        self._client_lock = threading.Lock()
        self._client: Any = None  # redis-py's client types are too loose to be useful here
        self._cluster_kwargs: Optional[Dict[str, Any]] = None
        self._owns_client = client is None
        self._down_errors: Tuple[Type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.ClusterError,
            redis.exceptions.RedisClusterException,
            redis.exceptions.TryAgainError,
            redis.exceptions.ReadOnlyError,
            redis.exceptions.OutOfMemoryError,
            OSError,
        )
        if client is not None:
            if max_connections is not None or timeout is not None or connect_timeout is not None:
                raise ConfigurationError("max_connections and timeouts belong to the client you pass; set them there")
            if not isinstance(client, (redis.Redis, redis.cluster.RedisCluster)):
                raise ConfigurationError(f"client must be a redis.Redis or RedisCluster, not {type(client).__name__}")
            if client.get_encoder().decode_responses:
                raise ConfigurationError("the Redis client must use decode_responses=False: snapshots are bytes")
            self.cluster = isinstance(client, redis.cluster.RedisCluster)
            self._client = client
            self.timeout: Optional[float] = None
            self.connect_timeout: Optional[float] = None
            self.max_connections: Optional[int] = None
            return
        assert url is not None
        self.timeout = float(timeout) if timeout is not None else DEFAULT_TIMEOUT
        self.connect_timeout = float(connect_timeout) if connect_timeout is not None else self.timeout
        self.max_connections = DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections
        if not self.timeout > 0 or not self.connect_timeout > 0:
            raise ConfigurationError("timeout and connect_timeout must be positive")
        if type(self.max_connections) is not int or self.max_connections < 1:
            raise ConfigurationError(f"max_connections must be an int >= 1, not {self.max_connections!r}")
        scheme = url.split("://", 1)[0].lower()
        if scheme not in self.url_schemes:
            raise ConfigurationError(f"not a Redis URL: {redact_url(url)!r}")
        if _split_options(urlsplit(url).query)[0]:
            raise ConfigurationError("options in the URL query need RedisCheckpointer.from_url(); or pass them as arguments")
        self.cluster = scheme in CLUSTER_SCHEMES
        common = {
            "max_connections": self.max_connections,
            "timeout": self.timeout,
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.connect_timeout,
            "decode_responses": False,
        }
        try:
            if self.cluster:
                # Built on first use: creating a RedisCluster already talks to the nodes.
                self._cluster_kwargs = {**self._cluster_url_kwargs(url), **common}
            else:
                kwargs = redis.connection.parse_url(url)
                kwargs.update(common, retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
                pool = redis.BlockingConnectionPool(**kwargs)
                self._client = redis.Redis(connection_pool=pool)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"invalid Redis URL {redact_url(url)!r}: {exc}") from None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "RedisCheckpointer":
        """Build from ``redis://``, ``rediss://``, ``redis+cluster://h:p,h:p`` or ``rediss+cluster://``.

        Query options ``key_prefix``, ``ttl``, ``timeout``, ``connect_timeout``
        and ``max_connections`` (also ``socket_timeout`` and
        ``socket_connect_timeout``) become constructor arguments; keyword
        ``options`` win over them. Other query options go to redis-py.
        """
        parts = urlsplit(url)
        ours, rest = _split_options(parts.query)
        for name, value in ours.items():
            options.setdefault(name, value)
        return cls(parts._replace(query=rest).geturl(), **options)

    def _cluster_url_kwargs(self, url: str) -> Dict[str, Any]:
        """RedisCluster arguments for ``redis+cluster://[user:pw@]h:p,h:p[/0][?query]``."""
        redis = self._redis_module
        parts = urlsplit(url)
        if parts.path not in ("", "/", "/0"):
            raise ConfigurationError("Redis Cluster has only database 0; drop the path from the URL")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        nodes = _parse_nodes(hosts)
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

    def _describe(self) -> str:
        if self._url is not None:
            where = repr(redact_url(self._url))
        else:
            where = f"client={type(self._client).__name__}"
        return f"{where}, key_prefix={self.key_prefix!r}, ttl={self.ttl!r}"

    # ------------------------------------------------------------------ connections

    def _redis(self) -> Any:
        """The client, building the cluster client on first use."""
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                self._check_open()
                assert self._cluster_kwargs is not None
                kwargs = dict(self._cluster_kwargs)
                kwargs["startup_nodes"] = list(kwargs["startup_nodes"])
                try:
                    self._client = self._redis_module.cluster.RedisCluster(**kwargs)
                except self._down_errors as exc:
                    raise self._unavailable(exc) from exc
                except (TypeError, ValueError) as exc:
                    raise ConfigurationError(f"invalid Redis Cluster options: {exc}") from None
            return self._client

    def _unavailable(self, exc: BaseException, thread_id: Optional[str] = None) -> BackendUnavailableError:
        where = redact_url(self._url) if self._url is not None else "the given client"
        return BackendUnavailableError(
            f"Redis ({where}) is unavailable: {type(exc).__name__}: {_reply_text(exc)}", thread_id=thread_id
        )

    def _is_down(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the server cannot serve now (rather than a bad request)."""
        if isinstance(exc, self._down_errors):
            return True
        return isinstance(exc, self._redis_module.exceptions.ResponseError) and _reply_text(exc).startswith(UNAVAILABLE_REPLIES)

    @contextmanager
    def _translated(self, thread_id: Optional[str] = None) -> Iterator[None]:
        """Turn errors meaning "the server cannot serve now" into :class:`BackendUnavailableError`."""
        try:
            yield
        except Exception as exc:
            if self._is_down(exc):
                raise self._unavailable(exc, thread_id) from exc
            raise

    def _script(self, script: _Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` by SHA; if the server lost its script cache, send the source (which caches it)."""
        client = self._redis()
        try:
            return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._redis_module.exceptions.NoScriptError:
            logger.info("Redis lost its script cache (restart or failover); sending the script again")
            return client.execute_command("EVAL", script.source, len(keys), *keys, *args)

    def _keys(self, thread_id: str) -> Tuple[str, str]:
        """Head and log keys of ``thread_id``, hash-tagged by the (escaped) thread ID."""
        base = f"{self.key_prefix}{{{_escape_tag(thread_id)}}}"
        return base + ":head", base + ":log"

    def _after_fork(self) -> None:
        # redis-py's pools notice the new PID and open fresh connections by
        # themselves, leaving the parent's sockets alone; only our lock is reset.
        self._client_lock = threading.Lock()

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is None or not self._owns_client:
            return
        if self.cluster:
            client.close()
        else:
            client.connection_pool.disconnect()

    # ------------------------------------------------------------------ primitives

    def _read(self, thread_id: str) -> Optional[StoredThread]:
        head_key, log_key = self._keys(thread_id)
        with self._translated(thread_id):
            pipe = self._redis().pipeline(transaction=True)
            pipe.hmget(head_key, "v", "n", "d", "h", "u", "e")
            pipe.lrange(log_key, 0, -1)
            fields, messages = pipe.execute()
        version, count, digest, head, updated_at, expires_at = fields
        if version is None:
            return None
        try:
            return StoredThread(
                int(version),
                head,
                messages,
                int(count),
                digest,
                float(updated_at),
                float(expires_at) if expires_at is not None else None,
            )
        except (TypeError, ValueError) as exc:
            raise CorruptSnapshotError(f"thread {thread_id!r}: the stored head is corrupt: {exc}", thread_id=thread_id) from exc

    def _read_version(self, thread_id: str) -> int:
        head_key, _ = self._keys(thread_id)
        with self._translated(thread_id):
            version, expires_at = self._redis().hmget(head_key, "v", "e")
        if version is None or (expires_at is not None and self._is_expired(float(expires_at))):
            return 0
        return int(version)

    def _write(self, thread_id: str, write: PlannedWrite) -> int:
        head_key, log_key = self._keys(thread_id)
        expires_at = write.expires_at
        updated_at = repr(write.updated_at)
        expires = repr(expires_at) if expires_at is not None else ""
        args = [
            "" if write.expected_version is None else write.expected_version,
            "" if write.append_from is None else write.append_from,
            write.base_digest,
            write.message_count,
            write.digest,
            write.head,
            updated_at,
            expires,
            math.ceil(expires_at * 1000) if expires_at is not None else "",
            thread_id,
        ]
        indexes = () if self.cluster else self._index_keys
        with self._translated(thread_id):
            status = None
            if len(write.messages) >= STAGE_MIN_MESSAGES and not write.append_from:
                status, version = self._write_staged(log_key, (head_key, log_key), indexes, args, write.messages)
            if status is None or status == 3:
                # Only a rewrite builds its log aside; an append names the log as its (unused) stage.
                stage = self._stage_key(log_key) if write.append_from is None else log_key
                keys = (head_key, log_key, stage, *indexes)
                status, version = self._script(_WRITE, keys, (*args, "", *write.messages))
        if status == 0:
            raise self._conflict(thread_id, write.expected_version, int(version))
        if status == 2:
            raise PrefixMismatch(thread_id)
        if self.cluster:
            self._index_step(thread_id, _INDEX_TOUCH, (thread_id, updated_at, expires))
        return int(version)

    def _write_staged(
        self, log_key: str, keys: Tuple[str, str], indexes: Tuple[str, ...], args: List[Any], messages: List[bytes]
    ) -> Tuple[Optional[int], int]:
        """Push a whole new log to a staging list and run the save script on it, in one round trip.

        The script alone decides: it renames the staging list into place only
        if it holds exactly ``messages``, and deletes it otherwise. Returns its
        (status, version); status None means the server lost its script
        cache, and the caller then saves inline (which reloads the script).
        """
        stage = self._stage_key(log_key)
        pipe = self._redis().pipeline(transaction=False)
        pipe.rpush(stage, *messages)
        pipe.pexpire(stage, STAGE_TTL_MS)
        pipe.execute_command("EVALSHA", _WRITE.sha, len(keys) + 1 + len(indexes), *keys, stage, *indexes, *args, len(messages))
        result = pipe.execute(raise_on_error=False)[-1]
        if isinstance(result, self._redis_module.exceptions.NoScriptError):
            self._redis().delete(stage)
            return None, 0
        if isinstance(result, Exception):
            raise result
        return int(result[0]), int(result[1])

    @staticmethod
    def _stage_key(log_key: str) -> str:
        """A fresh staging key in the log's hash slot (one per save, so concurrent saves never share)."""
        return f"{log_key}:stage:{os.urandom(8).hex()}"

    def _index_step(self, thread_id: str, script: _Script, args: Sequence[Any]) -> None:
        """Cluster: update the index after the thread's own script succeeded (best effort)."""
        try:
            self._script(script, self._index_keys, args)
        except Exception as exc:
            if not self._is_down(exc):
                raise
            # The thread itself is stored (or deleted); only listing lags behind.
            logger.warning("thread %r is stored but the Redis index could not be updated: %s", thread_id, exc)

    def _delete(self, thread_id: str) -> bool:
        keys: Tuple[str, ...] = self._keys(thread_id)
        if not self.cluster:
            keys += self._index_keys
        with self._translated(thread_id):
            result = self._script(_DELETE, keys, (repr(time.time()), thread_id))
        if self.cluster and len(result) > 1:
            self._index_step(thread_id, _INDEX_FIX, ("r", thread_id, result[1], ""))
        return bool(result[0])

    def _list_threads(
        self, prefix: Optional[str], limit: int, after: Optional[Tuple[float, str]], now: float
    ) -> List[ThreadInfo]:
        with self._translated():
            return self._scan_index(prefix, limit, after, now)

    def _scan_index(self, prefix: Optional[str], limit: int, after: Optional[Tuple[float, str]], now: float) -> List[ThreadInfo]:
        """Walk the update-time index newest first, checking each entry against its head.

        The head is the truth: missing or expired threads are skipped and their
        entries removed, entries whose score differs from the head's
        ``updated_at`` are listed by the head's time and repaired. A thread is
        emitted only once no unread entry can sort before it. Entries with
        equal scores are always read as a whole group and ordered here by
        ``(updated_at, thread_id)``: Python's str order is the UTF-8 byte
        order Redis uses for ties, so paging never depends on where a batch ends.
        """
        client = self._redis()
        index = self._index_keys[0]
        found: List[ThreadInfo] = []
        pending: List[Tuple[float, str, ThreadInfo]] = []
        fixes: List[Any] = []
        bound = after  # everything emitted sorts strictly below this
        upper = "+inf" if after is None else repr(after[0])
        batch = min(max(LIST_BATCH, 2 * limit), MAX_LIST_BATCH)
        while len(found) < limit:
            rows = client.zrevrangebyscore(index, upper, "-inf", start=0, num=batch, withscores=True)
            exhausted = len(rows) < batch
            edge = -math.inf
            if not exhausted:
                # Take the whole group of equal scores at the edge, then go on below it.
                edge = rows[-1][1]
                ties = client.zrevrangebyscore(index, repr(edge), repr(edge), withscores=True)
                rows = [row for row in rows if row[1] != edge] + ties
                upper = "(" + repr(edge)
            candidates: List[Tuple[str, bytes, float]] = []
            for member, score in rows:
                try:
                    thread_id = member.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if prefix is None or thread_id.startswith(prefix):
                    candidates.append((thread_id, member, score))
            if candidates:
                pipe = client.pipeline(transaction=False)
                for thread_id, _, _ in candidates:
                    pipe.hmget(self._keys(thread_id)[0], "v", "n", "u", "e")
                for (thread_id, member, score), (version, count, updated, expires) in zip(candidates, pipe.execute()):
                    if version is None or (expires is not None and float(expires) <= now):
                        fixes += ("r", member, repr(score), "")
                        continue
                    try:
                        updated_at = float(updated)
                        info = self._thread_info(
                            thread_id, int(version), updated_at, int(count), float(expires) if expires is not None else None
                        )
                    except (TypeError, ValueError) as exc:
                        raise CorruptSnapshotError(
                            f"thread {thread_id!r}: the stored head is corrupt: {exc}", thread_id=thread_id
                        ) from exc
                    if updated_at != score:
                        fixes += ("s", member, repr(score), updated)
                    if bound is None or (updated_at, thread_id) < bound:
                        pending.append((updated_at, thread_id, info))
                    # else: saved while we were listing, so it moved before the cursor
            pending.sort(key=lambda item: (item[0], item[1]))
            while pending and len(found) < limit and pending[-1][0] >= edge:
                updated_at, thread_id, info = pending.pop()
                found.append(info)
                bound = (updated_at, thread_id)
            if exhausted:
                break
            batch = min(batch * 2, MAX_LIST_BATCH)
        if fixes:
            self._script(_INDEX_FIX, self._index_keys, fixes)
        return found

    def _purge_expired(self, now: float) -> int:
        """Remove index entries of expired threads (Redis deletes their keys by itself)."""
        client = self._redis()
        expiry_index = self._index_keys[1]
        removed = 0
        with self._translated():
            while True:
                rows = client.zrangebyscore(expiry_index, "-inf", repr(now), start=0, num=MAX_LIST_BATCH, withscores=True)
                if not rows:
                    break
                pipe = client.pipeline(transaction=False)
                for member, _ in rows:
                    pipe.hmget(self._keys(member.decode("utf-8", "replace"))[0], "v", "e")
                fixes: List[Any] = []
                for (member, score), (version, expires) in zip(rows, pipe.execute()):
                    if version is None or (expires is not None and float(expires) <= now):
                        fixes += ("x", member, repr(score), "")
                    else:  # a newer save changed or dropped the TTL: correct the entry
                        fixes += ("e", member, repr(score), expires if expires is not None else "")
                gone, changed = self._script(_INDEX_FIX, self._index_keys, fixes)
                removed += int(gone)
                if len(rows) < MAX_LIST_BATCH or not changed:
                    break
        return removed
