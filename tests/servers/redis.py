"""Throwaway redis-server and 3-master Redis Cluster, with a minimal RESP client for readiness checks."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlencode

from .process import (
    CLUSTER_SLOTS,
    ENV_REDIS_CLUSTER_URL,
    ENV_REDIS_URL,
    HOST,
    START_ATTEMPTS,
    ExternalServer,
    PathLike,
    ServerStartError,
    _ChildServer,
    _env,
    _find_exe,
    _format_logs,
    _register,
    _spawn,
    _unregister,
    free_port,
    port_is_open,
    retry_taken_ports,
    wait_until,
)
from .tls import TestCA

# --------------------------------------------------------------------------
# Minimal RESP client (readiness checks without depending on redis-py)
# --------------------------------------------------------------------------


class RespError(Exception):
    """An error reply from Redis."""


def _read_reply(f: Any) -> Any:
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed by redis")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [_read_reply(f) for _ in range(n)]
    raise ConnectionError(f"unexpected RESP reply {line!r}")


def redis_command(port: int, *args: str | bytes | int, host: str = HOST, timeout: float = 2.0) -> Any:
    """Send one command to Redis on a fresh connection and return the reply."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        with sock.makefile("rb") as f:
            return _read_reply(f)


def _redis_info(port: int, section: str) -> dict[str, str]:
    cmd = ("CLUSTER", "INFO") if section == "cluster" else ("INFO", section)
    raw = redis_command(port, *cmd)
    out: dict[str, str] = {}
    for line in raw.decode().splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            out[key] = value.strip()
    return out



class RedisServer(_ChildServer):
    """A standalone ``redis-server`` child process without persistence.

    Attributes: ``url`` (``redis://127.0.0.1:P/0``), ``host``, ``port``,
    ``pid`` (None when stopped), ``dir``, ``log_path`` (redis logfile),
    ``out_path`` (stdout/stderr: config errors land here), ``managed``.
    """

    managed = True

    def __init__(self, directory: Path, port: int, extra_args: Sequence[str] = (), name: str = "redis") -> None:
        self.host = HOST
        self.port = port
        self.dir = directory
        self.name = name
        self.extra_args = list(extra_args)
        self.log_path = directory / f"{name}-{port}.log"
        self.out_path = directory / f"{name}-{port}.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exe = _find_exe("AGENTS_PERSIST_TEST_REDIS_SERVER", "redis-server")

    # -- construction -----------------------------------------------------
    @classmethod
    def start(
        cls,
        tmpdir: PathLike,
        *,
        extra_args: Sequence[str] = (),
        timeout: float = 15.0,
        name: str = "redis",
        port: int | None = None,
    ) -> "RedisServer":
        """Start a server in a new subdirectory of ``tmpdir`` and wait for PING."""
        base = Path(tmpdir)
        base.mkdir(parents=True, exist_ok=True)

        def make() -> "RedisServer":
            chosen = port or free_port()
            return cls(Path(tempfile.mkdtemp(prefix=f"{name}-{chosen}-", dir=base)), chosen, extra_args, name)

        return retry_taken_ports(
            make, lambda s: s._launch(timeout), lambda s: (s.log_path, s.out_path), 1 if port else START_ATTEMPTS
        )

    def _argv(self) -> list[str]:
        return [
            self.exe,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.log_path),
            "--enable-debug-command", "local",
            *self.extra_args,
        ]

    def _launch(self, timeout: float) -> None:
        self.proc = _spawn(self._argv(), self.out_path, cwd=self.dir)
        _register(self)
        proc = self.proc
        try:
            wait_until(
                lambda: redis_command(self.port, "PING", timeout=0.5) == "PONG",
                timeout,
                f"redis-server on {self.host}:{self.port} (pid {proc.pid})",
                logs=(self.log_path, self.out_path),
                alive=lambda: proc.poll() is None,
            )
        except ServerStartError:
            self.stop()
            raise

    # -- state --------------------------------------------------------------
    @property
    def url(self) -> str:
        """``redis://127.0.0.1:P/0``."""
        return f"redis://{self.host}:{self.port}/0"


    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.pid is not None

    def ping(self) -> bool:
        """True if the server answers PING now."""
        try:
            return bool(redis_command(self.port, "PING", timeout=0.5) == "PONG")
        except (OSError, RespError):
            return False

    # -- lifecycle ------------------------------------------------------------

    def restart(self, timeout: float = 15.0) -> None:
        """Stop if running, then start again on the same port and directory."""
        self.stop()
        wait_until(
            lambda: not port_is_open(self.port),
            5.0,
            f"port {self.port} to be released",
        )
        self._launch(timeout)

    start_again = restart

    def __repr__(self) -> str:
        return f"RedisServer(url={self.url!r}, pid={self.pid})"


class TlsRedisServer(RedisServer):
    """A standalone Redis that also serves TLS on ``tls_port``, with a certificate of a :class:`~.tls.TestCA`.

    The plain ``port`` stays open on loopback for readiness checks and test
    plumbing (``redis_command``); clients of the test use :attr:`url`, which
    is TLS only and verifies the server certificate against the CA.
    Clients are not asked for a certificate (``tls-auth-clients no``).
    """

    tls_port: int
    ca: TestCA

    @classmethod
    def start_tls(
        cls, tmpdir: PathLike, ca: TestCA, *, extra_args: Sequence[str] = (), timeout: float = 15.0
    ) -> "TlsRedisServer":
        """Start with ``--tls-port`` on a second free port and wait for PING (on the plain port)."""
        base = Path(tmpdir)
        base.mkdir(parents=True, exist_ok=True)

        def make() -> "TlsRedisServer":
            port, tls_port = free_port(), free_port()
            args = [
                "--tls-port", str(tls_port),
                "--tls-cert-file", str(ca.server_cert),
                "--tls-key-file", str(ca.server_key),
                "--tls-ca-cert-file", str(ca.cert),
                "--tls-auth-clients", "no",
                *extra_args,
            ]
            server = cls(Path(tempfile.mkdtemp(prefix=f"redis-tls-{tls_port}-", dir=base)), port, args, "redis-tls")
            server.tls_port, server.ca = tls_port, ca
            return server

        return retry_taken_ports(make, lambda s: s._launch(timeout), lambda s: (s.log_path, s.out_path))

    @property
    def url(self) -> str:
        """``rediss://127.0.0.1:TLS_PORT/0?ssl_ca_certs=<CA file>``: TLS, the certificate and host name verified."""
        return f"rediss://{self.host}:{self.tls_port}/0?{urlencode({'ssl_ca_certs': str(self.ca.cert)})}"

    def __repr__(self) -> str:
        return f"TlsRedisServer(url={self.url!r}, pid={self.pid})"


class RedisCluster:
    """Three (by default) Redis masters, no replicas, all 16384 slots assigned.

    Attributes: ``url`` (``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...``),
    ``startup_nodes`` (list of ``(host, port)``), ``nodes`` (the
    :class:`RedisServer` objects), ``ports``, ``pids``, ``dir``, ``managed``.
    Each node gets an explicit free cluster-bus port (``--cluster-port``), so
    the usual port+10000 rule does not apply.
    """

    managed = True

    def __init__(self, directory: Path, nodes: list[RedisServer]) -> None:
        self.dir = directory
        self.nodes = nodes
        self.host = HOST

    @classmethod
    def start(
        cls,
        tmpdir: PathLike,
        *,
        masters: int = 3,
        timeout: float = 30.0,
        node_timeout_ms: int = 5000,
        extra_args: Sequence[str] = (),
    ) -> "RedisCluster":
        """Start ``masters`` nodes, join them with ``redis-cli --cluster create``, wait for ok."""
        base = Path(tmpdir)
        base.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="redis-cluster-", dir=base))
        cli = _find_exe("AGENTS_PERSIST_TEST_REDIS_CLI", "redis-cli")
        nodes: list[RedisServer] = []
        cluster = cls(directory, nodes)
        try:
            for i in range(masters):
                node_dir = directory / f"node{i}"
                node_dir.mkdir()
                args = [
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout", str(node_timeout_ms),
                    *extra_args,
                ]
                nodes.append(_start_cluster_node(node_dir, args, timeout))
            _register(cluster)
            addrs = [f"{n.host}:{n.port}" for n in nodes]
            try:
                res = subprocess.run(
                    [cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired as exc:
                raise ServerStartError(
                    f"redis-cli --cluster create timed out\n{_format_logs(n.log_path for n in nodes)}"
                ) from exc
            (directory / "cluster-create.out").write_bytes(res.stdout + res.stderr)
            if res.returncode != 0:
                raise ServerStartError(
                    f"redis-cli --cluster create failed (rc={res.returncode}):\n"
                    + (res.stdout + res.stderr).decode("utf-8", "replace")[-4000:]
                    + "\n" + _format_logs(n.log_path for n in nodes)
                )
            cluster.wait_ready(timeout)
            return cluster
        except BaseException:
            cluster.stop()
            raise

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every node reports ``cluster_state:ok``, knows every node and sees all slots."""
        wait_until(
            self._ready,
            timeout,
            f"redis cluster {self.url} to reach cluster_state:ok",
            interval=0.05,
            logs=[n.log_path for n in self.nodes],
        )

    def _ready(self) -> bool:
        expected = len(self.nodes)
        for node in self.nodes:
            info = _redis_info(node.port, "cluster")
            if (
                info.get("cluster_state") != "ok"
                or int(info.get("cluster_slots_assigned", 0)) != CLUSTER_SLOTS
                or int(info.get("cluster_known_nodes", 0)) != expected
            ):
                return False
            covered = sum(int(r[1]) - int(r[0]) + 1 for r in redis_command(node.port, "CLUSTER", "SLOTS"))
            if covered != CLUSTER_SLOTS:
                return False
        return True

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``[(host, port), ...]`` of every node."""
        return [(n.host, n.port) for n in self.nodes]

    @property
    def ports(self) -> list[int]:
        """Client ports of the nodes."""
        return [n.port for n in self.nodes]

    @property
    def pids(self) -> list[int | None]:
        """PIDs of the nodes (None for stopped ones)."""
        return [n.pid for n in self.nodes]

    @property
    def pid(self) -> int | None:
        """PID of the first node (for symmetry with the other servers)."""
        return self.nodes[0].pid if self.nodes else None

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3``."""
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.startup_nodes)

    def stop(self) -> None:
        """Stop every node by PID. Idempotent."""
        for node in self.nodes:
            node.stop()
        _unregister(self)

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()
        _unregister(self)

    def restart(self, timeout: float = 30.0) -> None:
        """Restart every node on the same ports (nodes.conf keeps the topology); wait for ok."""
        self.stop()
        for node in self.nodes:
            node.restart(timeout)
        _register(self)
        self.wait_ready(timeout)

    start_again = restart

    def __repr__(self) -> str:
        return f"RedisCluster(url={self.url!r}, pids={self.pids})"


def _start_cluster_node(node_dir: Path, args: list[str], timeout: float) -> RedisServer:
    """Start one cluster node with a free client port and a free bus port."""

    def make() -> RedisServer:
        bus = free_port()
        server = RedisServer(node_dir, free_port(), [*args, "--cluster-port", str(bus)], name="node")
        server.bus_port = bus  # type: ignore[attr-defined]
        return server

    return retry_taken_ports(make, lambda s: s._launch(timeout), lambda s: (s.log_path, s.out_path))



def redis_url_or_start(tmpdir: PathLike) -> RedisServer | ExternalServer:
    """``$AGENTS_PERSIST_TEST_REDIS_URL`` as an :class:`ExternalServer`, else a new :class:`RedisServer`."""
    url = _env(ENV_REDIS_URL)
    return ExternalServer(url, "redis") if url else RedisServer.start(tmpdir)


def redis_cluster_url_or_start(tmpdir: PathLike) -> RedisCluster | ExternalServer:
    """``$AGENTS_PERSIST_TEST_REDIS_CLUSTER_URL`` (``.startup_nodes`` parsed from it), else a new :class:`RedisCluster`."""
    url = _env(ENV_REDIS_CLUSTER_URL)
    return ExternalServer(url, "redis-cluster") if url else RedisCluster.start(tmpdir)


class RedisSentinelGroup:
    """A Redis primary, one replica and three Sentinels (quorum 2) watching them as ``service``.

    Attributes: ``url`` (``redis+sentinel://127.0.0.1:S1,...:S3/<service>``),
    ``servers`` (the two :class:`RedisServer`, in start order: the first was
    the primary), ``sentinels`` (the three Sentinel processes, as
    :class:`RedisServer` objects on their own ports), ``service``, ``managed``.
    Failure detection is quick for tests (``down-after-milliseconds``
    ``down_after_ms``, ``failover-timeout`` ``failover_timeout_ms``).
    """

    managed = True

    def __init__(self, directory: Path, service: str) -> None:
        self.dir = directory
        self.service = service
        self.host = HOST
        self.servers: list[RedisServer] = []
        self.sentinels: list[_SentinelProcess] = []

    @classmethod
    def start(
        cls,
        tmpdir: PathLike,
        *,
        service: str = "agents",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 2000,
        extra_args: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> "RedisSentinelGroup":
        """Start primary, replica (waits until it is in sync) and sentinels (wait until each knows both)."""
        base = Path(tmpdir)
        base.mkdir(parents=True, exist_ok=True)
        group = cls(Path(tempfile.mkdtemp(prefix="redis-sentinel-", dir=base)), service)
        _register(group)
        try:
            extra_args = ["--repl-diskless-sync-delay", "0", *extra_args]  # a replica syncs at once, not after 5 s
            primary = RedisServer.start(group.dir, extra_args=extra_args, timeout=timeout, name="primary")
            group.servers.append(primary)
            replica_args = ["--replicaof", primary.host, str(primary.port), *extra_args]
            group.servers.append(RedisServer.start(group.dir, extra_args=replica_args, timeout=timeout, name="replica"))
            wait_until(
                lambda: _redis_info(group.servers[1].port, "replication").get("master_link_status") == "up",
                timeout,
                "the replica to sync with the primary",
                logs=[s.log_path for s in group.servers],
            )
            # Each sentinel is told about the replica and the others up front (``known-*`` lines, as Sentinel
            # writes them itself), instead of discovering them from hello messages every 2 s.
            peers = [(free_port(), os.urandom(20).hex()) for _ in range(3)]
            replica = group.servers[1]
            for port, myid in peers:
                known = f"sentinel known-replica {service} {HOST} {replica.port}\n" + "".join(
                    f"sentinel known-sentinel {service} {HOST} {p} {i}\n" for p, i in peers if p != port
                )
                config = _sentinel_config(group.dir, port, service, primary.port, down_after_ms, failover_timeout_ms)
                config += f"sentinel myid {myid}\n" + known
                group.sentinels.append(_SentinelProcess.start_sentinel(group.dir, port, config, timeout))
            wait_until(group._sentinels_agree, timeout, "the sentinels to see the primary and its replica", interval=0.05,
                       logs=[s.log_path for s in group.sentinels])
            return group
        except BaseException:
            group.stop()
            raise

    def _sentinels_agree(self) -> bool:
        primary = self.servers[0].port
        for sentinel in self.sentinels:
            info = redis_command(sentinel.port, "SENTINEL", "MASTER", self.service)
            fields = dict(zip(info[::2], info[1::2]))
            if int(fields[b"port"]) != primary or int(fields[b"num-slaves"]) < 1 or int(fields[b"num-other-sentinels"]) < 2:
                return False
        return True

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/<service>``."""
        return "redis+sentinel://" + ",".join(f"{s.host}:{s.port}" for s in self.sentinels) + f"/{self.service}"

    def primary_port(self) -> int:
        """The port the first sentinel that answers names as the primary now."""
        for sentinel in self.sentinels:
            try:
                return int(redis_command(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)[1])
            except (OSError, RespError, TypeError):
                continue
        raise ServerStartError("no sentinel answers")

    def primary(self) -> RedisServer:
        """The server the sentinels name as the primary."""
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def failover(self) -> None:
        """``SENTINEL FAILOVER <service>`` on the first sentinel (a coordinated switch, no process dies)."""
        redis_command(self.sentinels[0].port, "SENTINEL", "FAILOVER", self.service)

    def wait_primary_other_than(self, port: int, timeout: float = 30.0) -> RedisServer:
        """Wait until the sentinels name another primary and it accepts writes (role master); return it."""

        def switched() -> bool:
            new = self.primary_port()
            return new != port and _redis_info(new, "replication").get("role") == "master"

        wait_until(switched, timeout, f"a failover away from port {port}", interval=0.05,
                   logs=[s.log_path for s in self.sentinels])
        return self.primary()

    def stop(self) -> None:
        """Stop every process by PID. Idempotent."""
        for node in [*self.sentinels, *self.servers]:
            node.stop()
        _unregister(self)

    def __repr__(self) -> str:
        return f"RedisSentinelGroup(url={self.url!r}, servers={self.servers})"


def _sentinel_config(directory: Path, port: int, service: str, primary_port: int, down_after_ms: int, failover_ms: int) -> str:
    return (
        f"port {port}\nbind {HOST}\ndaemonize no\ndir {directory}\nlogfile {directory / f'sentinel-{port}.log'}\n"
        f"sentinel monitor {service} {HOST} {primary_port} 2\n"
        f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
        f"sentinel failover-timeout {service} {failover_ms}\n"
        f"sentinel parallel-syncs {service} 1\n"
    )


class _SentinelProcess(RedisServer):
    """One ``redis-sentinel`` with a config file of its own (Sentinel rewrites it); started and stopped as a RedisServer."""

    def __init__(self, directory: Path, port: int, config: str) -> None:
        super().__init__(directory, port, (), name="sentinel")
        self.config_path = directory / f"sentinel-{port}.conf"
        self.config = config
        self.exe = _find_exe("AGENTS_PERSIST_TEST_REDIS_SENTINEL", "redis-sentinel")

    @classmethod
    def start_sentinel(cls, directory: Path, port: int, config: str, timeout: float) -> "_SentinelProcess":
        """Start on ``port`` (chosen by the caller, who wrote it into ``config`` and the peers' configs)."""
        server = cls(directory, port, config)
        server._launch(timeout)
        return server

    def _argv(self) -> list[str]:
        return [self.exe, str(self.config_path)]

    def _launch(self, timeout: float) -> None:
        self.config_path.write_text(self.config)
        super()._launch(timeout)
