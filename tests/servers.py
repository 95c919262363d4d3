"""Throwaway real servers for the test suite: Redis, Redis Cluster, PostgreSQL, moto.

Every server listens on a free loopback port chosen at start, is waited for
with a deadline (failure raises :class:`ServerStartError` with the tail of its
log, never a skip) and is stopped by PID only. Every started server is also
registered with :mod:`atexit` so that a crashed or aborted test session does
not leave processes behind.

Importable both as ``tests.servers`` and as ``servers`` (no relative imports,
no pytest dependency).

Environment overrides (an external server is used and never stopped):

``AGENTS_PERSIST_TEST_REDIS_URL``, ``AGENTS_PERSIST_TEST_REDIS_CLUSTER_URL``,
``AGENTS_PERSIST_TEST_POSTGRES_URL``, ``AGENTS_PERSIST_TEST_DYNAMODB_ENDPOINT``;
see :func:`redis_url_or_start` and friends.

Tool locations can be overridden with ``AGENTS_PERSIST_TEST_REDIS_SERVER``,
``AGENTS_PERSIST_TEST_REDIS_CLI``, ``AGENTS_PERSIST_TEST_PG_BIN`` (a directory)
and ``AGENTS_PERSIST_TEST_MOTO_SERVER``.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Union

__all__ = [
    "ServerStartError",
    "ExternalServer",
    "RedisServer",
    "RedisCluster",
    "PostgresServer",
    "MotoServer",
    "free_port",
    "wait_until",
    "pid_alive",
    "log_tail",
    "redis_command",
    "stop_all",
    "redis_url_or_start",
    "redis_cluster_url_or_start",
    "postgres_url_or_start",
    "dynamodb_endpoint_or_start",
    "ENV_REDIS_URL",
    "ENV_REDIS_CLUSTER_URL",
    "ENV_POSTGRES_URL",
    "ENV_DYNAMODB_ENDPOINT",
]

PathLike = Union[str, "os.PathLike[str]"]

HOST = "127.0.0.1"

ENV_REDIS_URL = "AGENTS_PERSIST_TEST_REDIS_URL"
ENV_REDIS_CLUSTER_URL = "AGENTS_PERSIST_TEST_REDIS_CLUSTER_URL"
ENV_POSTGRES_URL = "AGENTS_PERSIST_TEST_POSTGRES_URL"
ENV_DYNAMODB_ENDPOINT = "AGENTS_PERSIST_TEST_DYNAMODB_ENDPOINT"

DEFAULT_PG_BIN = "/usr/lib/postgresql/15/bin"
CLUSTER_SLOTS = 16384
START_ATTEMPTS = 5  # fresh ports tried when the chosen one turns out to be taken

_ADDR_IN_USE_MARKERS = ("address already in use", "could not bind", "errno 98")


class ServerStartError(RuntimeError):
    """A server could not be started or did not become ready in time."""


# --------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------

_handed_out_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_port(host: str = HOST) -> int:
    """Return a currently free TCP port on ``host`` (bound socket on port 0).

    A port is never handed out twice by this process, so several servers
    started back to back cannot be given the same one. Another process may
    still grab it before the server binds: starters retry on a fresh port.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with _ports_lock:
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise ServerStartError("could not find a free port")


def port_is_open(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: PathLike | None, max_lines: int = 40, max_chars: int = 6000) -> str:
    """Return the last lines of a log file ('' if it is missing)."""
    if path is None:
        return ""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    text = data[-max_chars * 2 :].decode("utf-8", "replace")
    lines = text.splitlines()[-max_lines:]
    return "\n".join(lines)[-max_chars:]


def _format_logs(logs: Iterable[PathLike | None]) -> str:
    parts = []
    for path in logs:
        tail = log_tail(path)
        if path is not None:
            parts.append(f"--- tail of {path} ---\n{tail or '(empty)'}")
    return "\n".join(parts)


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    interval: float = 0.02,
    logs: Sequence[PathLike | None] = (),
    alive: Callable[[], bool] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns a truthy value, which is returned.

    Exceptions raised by ``predicate`` count as "not yet". On timeout, or as
    soon as ``alive()`` returns False (the server process died), raise
    :class:`ServerStartError` naming ``what``, the last exception seen and the
    tails of ``logs``.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            last_exc = exc
        if alive is not None and not alive():
            reason = "the process exited"
            break
        if time.monotonic() >= deadline:
            reason = f"timed out after {timeout:.1f}s"
            break
        time.sleep(interval)
    msg = f"{what}: {reason}"
    if last_exc is not None:
        msg += f" (last error: {last_exc!r})"
    details = _format_logs(logs)
    if details:
        msg += "\n" + details
    raise ServerStartError(msg)


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` names a live (non-zombie) process."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    # state is the first field after the ")" closing the command name
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc; empty without procfs)."""
    kids: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return kids
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(entry))
    return kids


def _kill_pid(pid: int | None, sig: int = signal.SIGKILL) -> None:
    if pid is None or pid <= 0:
        return
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_pid_gone(pid: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _stop_popen(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to a child by PID, escalate to SIGKILL, and reap it."""
    if proc is None or proc.poll() is not None:
        return
    _kill_pid(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_pid(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _log_says_addr_in_use(*logs: PathLike | None) -> bool:
    text = "\n".join(log_tail(p, max_lines=80) for p in logs).lower()
    return any(marker in text for marker in _ADDR_IN_USE_MARKERS)


# Children die with the test process even on SIGKILL (Linux PR_SET_PDEATHSIG).
# Only used for servers spawned from the main thread: the signal fires when the
# *thread* that forked the child exits.
try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
    _PRCTL: Any = _LIBC.prctl
except (OSError, AttributeError):  # pragma: no cover - non-Linux
    _PRCTL = None
_PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _spawn(
    argv: Sequence[str], out_path: Path, cwd: PathLike | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process in its own session, stdout+stderr to ``out_path``."""
    preexec = _set_pdeathsig if (_PRCTL is not None and threading.current_thread() is threading.main_thread()) else None
    with open(out_path, "ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=preexec,
        )


def _find_exe(env_var: str, name: str, extra: Sequence[PathLike] = ()) -> str:
    override = os.environ.get(env_var)
    if override:
        return override
    for candidate in extra:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ServerStartError(
        f"{name} not found (set {env_var} or run scripts/install-test-deps.sh)"
    )


# --------------------------------------------------------------------------
# atexit backstop
# --------------------------------------------------------------------------

_registry: list[Any] = []
_registry_lock = threading.Lock()
_OWNER_PID = os.getpid()


def _register(server: Any) -> None:
    with _registry_lock:
        if server not in _registry:
            _registry.append(server)


def _unregister(server: Any) -> None:
    with _registry_lock:
        if server in _registry:
            _registry.remove(server)


def stop_all() -> None:
    """Stop (and clean up) every server this process started and did not stop."""
    if os.getpid() != _OWNER_PID:
        return  # a forked child must not kill its parent's servers
    with _registry_lock:
        servers = list(reversed(_registry))
    for server in servers:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        cleanup = getattr(server, "cleanup", None)
        if cleanup is not None:
            try:
                cleanup()
            except Exception:  # noqa: BLE001
                pass
    with _registry_lock:
        _registry.clear()


atexit.register(stop_all)


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


# --------------------------------------------------------------------------
# External (env-provided) servers
# --------------------------------------------------------------------------


class ExternalServer:
    """A server given by an environment variable; never started or stopped here."""

    managed = False
    pid: int | None = None

    def __init__(self, url: str, kind: str) -> None:
        self.url = url
        self.kind = kind
        self.startup_nodes: list[tuple[str, int]] = _parse_hostports(url)
        first = self.startup_nodes[0] if self.startup_nodes else (HOST, 0)
        self.host, self.port = first

    @property
    def endpoint_url(self) -> str:
        """Same as ``url`` (DynamoDB naming)."""
        return self.url

    def stop(self) -> None:
        """No-op: external servers are not ours to stop."""

    def cleanup(self) -> None:
        """No-op."""

    def _unmanaged(self, *_: Any, **__: Any) -> None:
        raise RuntimeError(
            f"{self.kind} server {self.url} is external (from the environment): "
            "it cannot be restarted or killed; skip tests that need that when .managed is False"
        )

    restart = start_again = kill = _unmanaged

    def __repr__(self) -> str:
        return f"ExternalServer({self.kind!r}, {self.url!r})"


def _parse_hostports(url: str) -> list[tuple[str, int]]:
    """``scheme://[user@]h1:p1,h2:p2/db`` -> [(h1, p1), (h2, p2)] (best effort)."""
    rest = url.split("://", 1)[-1]
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    nodes: list[tuple[str, int]] = []
    for item in rest.split(","):
        item = item.strip()
        if not item:
            continue
        host, _, port = item.rpartition(":")
        if host and port.isdigit():
            nodes.append((host.strip("[]"), int(port)))
        else:
            nodes.append((item, 0))
    return nodes


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


class _ChildServer:
    """A server run as our own child process (``self.proc``), stopped by its PID."""

    proc: subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int | None:
        """PID of the running server, None when stopped."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID (SIGKILL after ``timeout``), then reap. Idempotent."""
        _stop_popen(self.proc, timeout=timeout)
        _unregister(self)

    def kill(self) -> None:
        """SIGKILL by PID (simulates a crash) and reap."""
        _stop_popen(self.proc, sig=signal.SIGKILL)
        _unregister(self)


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
        last: ServerStartError | None = None
        for _attempt in range(1 if port else START_ATTEMPTS):
            chosen = port or free_port()
            directory = Path(tempfile.mkdtemp(prefix=f"{name}-{chosen}-", dir=base))
            server = cls(directory, chosen, extra_args, name)
            try:
                server._launch(timeout)
                return server
            except ServerStartError as exc:
                last = exc
                if not _log_says_addr_in_use(server.log_path, server.out_path):
                    raise
        assert last is not None
        raise last

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
    last: ServerStartError | None = None
    for _ in range(START_ATTEMPTS):
        port, bus = free_port(), free_port()
        server = RedisServer(node_dir, port, [*args, "--cluster-port", str(bus)], name="node")
        try:
            server._launch(timeout)
            server.bus_port = bus  # type: ignore[attr-defined]
            return server
        except ServerStartError as exc:
            last = exc
            if not _log_says_addr_in_use(server.log_path, server.out_path):
                raise
    assert last is not None
    raise last


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------


# Watchdog for the (daemonized) postmaster: it blocks reading a pipe whose
# write end only the test process holds. When that process dies in any way,
# even SIGKILL, the read returns EOF and the watchdog kills the postmaster
# (checked by its command line) and its children by PID, then removes the files.
_PG_WATCHDOG = r"""
import os, signal, shutil, sys, time
base, data = sys.argv[1], sys.argv[2]
try:
    while sys.stdin.buffer.read(65536):
        pass
except Exception:
    pass
def ppid_of(pid):
    try:
        return int(open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[1])
    except Exception:
        return None
try:
    pid = int(open(os.path.join(data, "postmaster.pid")).readline())
    cmdline = open("/proc/%d/cmdline" % pid, "rb").read()
except Exception:
    pid, cmdline = None, b""
if pid and data.encode() in cmdline:
    kids = [int(e) for e in os.listdir("/proc") if e.isdigit() and ppid_of(e) == pid]
    for p in [pid] + kids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    def alive(p):
        try:
            return open("/proc/%d/stat" % p).read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except Exception:
            return False
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
shutil.rmtree(base, ignore_errors=True)
"""


def _pg_bin() -> Path:
    return Path(os.environ.get("AGENTS_PERSIST_TEST_PG_BIN") or DEFAULT_PG_BIN)


class PostgresServer:
    """A throwaway PostgreSQL cluster (trust auth, no fsync) started with ``pg_ctl``.

    Attributes: ``url`` (``postgresql://postgres@127.0.0.1:P/postgres``),
    ``host``, ``port``, ``user``, ``dbname``, ``dsn`` (libpq key=value),
    ``pid`` (postmaster, None when stopped), ``base_dir`` (root of everything,
    removed by :meth:`cleanup`), ``data_dir``, ``socket_dir``, ``log_path``,
    ``managed``.

    As root, ``initdb``/``pg_ctl`` run via ``runuser -u postgres --`` and the
    files live under a dedicated ``tempfile.mkdtemp()`` (mode 0755, owned by
    postgres) because pytest's tmp dirs are 0700 root.
    """

    managed = True
    user = "postgres"
    dbname = "postgres"

    def __init__(self, base_dir: Path, port: int, options: Sequence[str]) -> None:
        self.host = HOST
        self.port = port
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir
        self.log_path = base_dir / "postgres.log"
        self.options = list(options)
        self.bin = _pg_bin()
        self._pid: int | None = None
        self.as_root = os.geteuid() == 0
        self._watchdog: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        tmpdir: PathLike | None = None,
        *,
        timeout: float = 60.0,
        max_connections: int = 200,
        extra_options: Sequence[str] = (),
    ) -> "PostgresServer":
        """initdb a new cluster and start it on a free port.

        ``tmpdir`` is used as the parent only when not running as root (root's
        pytest tmp dirs are not traversable by the postgres user); otherwise
        the system temp dir is used. Call :meth:`cleanup` (or rely on atexit)
        to remove the files.
        """
        as_root = os.geteuid() == 0
        parent = None if (as_root or tmpdir is None) else str(tmpdir)
        base = Path(tempfile.mkdtemp(prefix="agents-persist-pg-", dir=parent))
        options = [
            "-c", "listen_addresses=" + HOST,
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", f"max_connections={max_connections}",
            *extra_options,
        ]
        server = cls(base, 0, options)
        _register(server)
        server._start_watchdog()
        try:
            if not (server.bin / "initdb").exists():
                raise ServerStartError(
                    f"{server.bin}/initdb not found (set AGENTS_PERSIST_TEST_PG_BIN or run scripts/install-test-deps.sh)"
                )
            if as_root:
                os.chmod(base, 0o755)
                shutil.chown(base, "postgres", "postgres")
            server._initdb(timeout)
            last: ServerStartError | None = None
            for _ in range(START_ATTEMPTS):
                server.port = free_port()
                try:
                    server._pg_ctl_start(timeout)
                    return server
                except ServerStartError as exc:
                    last = exc
                    if not _log_says_addr_in_use(server.log_path):
                        raise
            assert last is not None
            raise last
        except BaseException:
            server.stop()
            server.cleanup()
            raise

    # -- commands ---------------------------------------------------------------
    def _cmd(self, *argv: str) -> list[str]:
        if self.as_root:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            return [runuser, "-u", "postgres", "--", *argv]
        return list(argv)

    def _run(self, argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess[bytes]:
        env = dict(os.environ)
        env.pop("PGDATA", None)
        env["LC_ALL"] = "C"
        try:
            res = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                cwd=self.base_dir,
                env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerStartError(f"{what} timed out after {timeout}s\n{_format_logs([self.log_path])}") from exc
        return res

    def _initdb(self, timeout: float) -> None:
        argv = self._cmd(
            str(self.bin / "initdb"),
            "-D", str(self.data_dir),
            "-U", self.user,
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        res = self._run(argv, timeout, "initdb")
        (self.base_dir / "initdb.out").write_bytes(res.stdout + res.stderr)
        if res.returncode != 0:
            raise ServerStartError(
                f"initdb failed (rc={res.returncode}): "
                + (res.stdout + res.stderr).decode("utf-8", "replace")[-4000:]
            )

    def _pg_ctl_start(self, timeout: float) -> None:
        opts = " ".join([f"-p {self.port}", f"-k {self.socket_dir}", *self.options])
        argv = self._cmd(
            str(self.bin / "pg_ctl"),
            "-D", str(self.data_dir),
            "-l", str(self.log_path),
            "-w", "-t", str(int(timeout)),
            "-o", opts,
            "start",
        )
        res = self._run(argv, timeout + 10, "pg_ctl start")
        if res.returncode != 0:
            self._pid = self._read_postmaster_pid()
            self._kill_tree()
            raise ServerStartError(
                f"pg_ctl start on port {self.port} failed (rc={res.returncode}): "
                + (res.stdout + res.stderr).decode("utf-8", "replace")[-2000:]
                + "\n" + _format_logs([self.log_path])
            )
        self._pid = self._read_postmaster_pid()
        wait_until(
            lambda: port_is_open(self.port),
            timeout,
            f"postgres on {self.host}:{self.port}",
            logs=[self.log_path],
            alive=lambda: pid_alive(self._pid),
        )

    def _read_postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first.strip())
        except (OSError, IndexError, ValueError):
            return None

    def _kill_tree(self) -> None:
        """SIGKILL the postmaster and its children by PID; wait until gone."""
        pid = self._pid
        if pid is None:
            return
        kids = _children_of(pid)
        _kill_pid(pid, signal.SIGKILL)
        for kid in kids + _children_of(pid):
            _kill_pid(kid, signal.SIGKILL)
        _wait_pid_gone(pid, 10)
        for kid in kids:
            _wait_pid_gone(kid, 5)

    # -- state -------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:P/postgres``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def dsn(self) -> str:
        """libpq key=value connection string."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    @property
    def pid(self) -> int | None:
        """Postmaster PID, None when stopped."""
        return self._pid if pid_alive(self._pid) else None

    @property
    def running(self) -> bool:
        """True while the postmaster is alive."""
        return self.pid is not None

    # -- lifecycle -----------------------------------------------------------
    def stop(self, mode: str = "immediate", timeout: float = 10.0) -> None:
        """``pg_ctl -m MODE stop``; falls back to SIGKILL of the postmaster PID. Idempotent.

        ``immediate`` (default) is a crash-like stop; committed data survives
        (WAL replay on the next start). Use ``mode="fast"`` for a clean shutdown.
        """
        pid = self._pid if self._pid is not None else self._read_postmaster_pid()
        self._pid = pid
        if pid_alive(pid) and self.data_dir.exists():
            argv = self._cmd(
                str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w",
                "-t", str(int(timeout)), "stop",
            )
            try:
                self._run(argv, timeout + 5, "pg_ctl stop")
            except ServerStartError:
                pass
        if pid_alive(pid):
            self._kill_tree()
        else:
            # backends notice postmaster death quickly; make sure none linger
            for kid in _children_of(pid) if pid else []:
                _kill_pid(kid, signal.SIGKILL)
        self._pid = None

    def kill(self) -> None:
        """SIGKILL the postmaster and its children (simulated crash)."""
        if self._pid is None:
            self._pid = self._read_postmaster_pid()
        self._kill_tree()
        self._pid = None

    def _remove_stale_lock(self) -> None:
        """Delete postmaster.pid / the socket lock file if their PID is gone or a zombie.

        After a SIGKILL the postmaster is reparented to PID 1, which may reap it
        late; postgres treats a zombie PID as alive and refuses to start.
        """
        for lock in (self.data_dir / "postmaster.pid", self.socket_dir / f".s.PGSQL.{self.port}.lock"):
            try:
                stale = int(lock.read_text().splitlines()[0].strip())
            except (OSError, IndexError, ValueError):
                continue
            if not pid_alive(stale):
                try:
                    lock.unlink()
                except FileNotFoundError:
                    pass

    def start_again(self, timeout: float = 60.0) -> None:
        """Start the existing data directory again on the same port."""
        if self.running:
            return
        _register(self)
        self._remove_stale_lock()
        self._pg_ctl_start(timeout)

    def restart(self, mode: str = "immediate", timeout: float = 60.0) -> None:
        """:meth:`stop` then :meth:`start_again` (same port, same data)."""
        self.stop(mode=mode)
        self.start_again(timeout)

    def cleanup(self) -> None:
        """Stop if needed and delete the whole base directory. Idempotent."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        _stop_popen(self._watchdog, sig=signal.SIGKILL)
        _unregister(self)

    def _start_watchdog(self) -> None:
        """Spawn the process that cleans up if this (test) process dies abruptly."""
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _PG_WATCHDOG, str(self.base_dir), str(self.data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def __repr__(self) -> str:
        return f"PostgresServer(url={self.url!r}, pid={self.pid})"


# --------------------------------------------------------------------------
# moto (DynamoDB)
# --------------------------------------------------------------------------


def _moto_argv() -> list[str]:
    override = os.environ.get("AGENTS_PERSIST_TEST_MOTO_SERVER")
    if override:
        return [override]
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


class MotoServer(_ChildServer):
    """``moto_server`` (all AWS services, DynamoDB included) as a child process.

    Attributes: ``url`` / ``endpoint_url`` (``http://127.0.0.1:P``), ``host``,
    ``port``, ``pid``, ``log_path``, ``region``, ``managed``.
    """

    managed = True
    region = "us-east-1"

    def __init__(self, directory: Path, port: int) -> None:
        self.host = HOST
        self.port = port
        self.dir = directory
        self.log_path = directory / f"moto-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, tmpdir: PathLike, *, timeout: float = 30.0) -> "MotoServer":
        """Start ``moto_server -H 127.0.0.1 -p P`` and wait until HTTP answers."""
        base = Path(tmpdir)
        base.mkdir(parents=True, exist_ok=True)
        last: ServerStartError | None = None
        for _ in range(START_ATTEMPTS):
            server = cls(base, free_port())
            try:
                server._launch(timeout)
                return server
            except ServerStartError as exc:
                last = exc
                if not _log_says_addr_in_use(server.log_path):
                    raise
        assert last is not None
        raise last

    def _argv(self) -> list[str]:
        """The command that serves moto on ``self.host:self.port``; subclasses may swap it."""
        return [*_moto_argv(), "-H", self.host, "-p", str(self.port)]

    def _launch(self, timeout: float) -> None:
        env = dict(os.environ)
        env.setdefault("AWS_DEFAULT_REGION", self.region)
        self.proc = _spawn(self._argv(), self.log_path, cwd=self.dir, env=env)
        _register(self)
        proc = self.proc
        try:
            wait_until(
                self._answers,
                timeout,
                f"{type(self).__name__} on {self.host}:{self.port} (pid {proc.pid})",
                interval=0.05,
                logs=[self.log_path],
                alive=lambda: proc.poll() is None,
            )
        except ServerStartError:
            self.stop()
            raise

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/moto-api/", timeout=1) as resp:
                return int(resp.status) < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except (urllib.error.URLError, OSError):
            return False

    @property
    def url(self) -> str:
        """``http://127.0.0.1:P``."""
        return f"http://{self.host}:{self.port}"

    endpoint_url = url


    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("dynamodb", **kw)`` (dummy credentials)."""
        return {
            "endpoint_url": self.url,
            "region_name": self.region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def reset(self) -> None:
        """Drop all moto state (tables, items): ``POST /moto-api/reset``."""
        req = urllib.request.Request(self.url + "/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()


    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again on the same port (all state is lost)."""
        self.stop()
        self._launch(timeout)

    start_again = restart

    def __repr__(self) -> str:
        return f"MotoServer(url={self.url!r}, pid={self.pid})"


# --------------------------------------------------------------------------
# env override helpers
# --------------------------------------------------------------------------


def redis_url_or_start(tmpdir: PathLike) -> RedisServer | ExternalServer:
    """``$AGENTS_PERSIST_TEST_REDIS_URL`` as an :class:`ExternalServer`, else a new :class:`RedisServer`."""
    url = _env(ENV_REDIS_URL)
    return ExternalServer(url, "redis") if url else RedisServer.start(tmpdir)


def redis_cluster_url_or_start(tmpdir: PathLike) -> RedisCluster | ExternalServer:
    """``$AGENTS_PERSIST_TEST_REDIS_CLUSTER_URL`` (``.startup_nodes`` parsed from it), else a new :class:`RedisCluster`."""
    url = _env(ENV_REDIS_CLUSTER_URL)
    return ExternalServer(url, "redis-cluster") if url else RedisCluster.start(tmpdir)


def postgres_url_or_start(tmpdir: PathLike | None = None) -> PostgresServer | ExternalServer:
    """``$AGENTS_PERSIST_TEST_POSTGRES_URL`` as an :class:`ExternalServer`, else a new :class:`PostgresServer`."""
    url = _env(ENV_POSTGRES_URL)
    return ExternalServer(url, "postgres") if url else PostgresServer.start(tmpdir)


def dynamodb_endpoint_or_start(tmpdir: PathLike) -> MotoServer | ExternalServer:
    """``$AGENTS_PERSIST_TEST_DYNAMODB_ENDPOINT`` as an :class:`ExternalServer`, else a new :class:`MotoServer`."""
    url = _env(ENV_DYNAMODB_ENDPOINT)
    return ExternalServer(url, "dynamodb") if url else MotoServer.start(tmpdir)
