"""Process plumbing of the throwaway test servers: ports, waiting, spawning, stopping by PID, atexit."""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar, Union

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


S = TypeVar("S")


def retry_taken_ports(
    make: Callable[[], S],
    launch: Callable[[S], None],
    logs: Callable[[S], Sequence[PathLike | None]],
    attempts: int = START_ATTEMPTS,
) -> S:
    """``launch(make())`` until it starts; try again (a fresh port each time) only if its logs say the port was taken."""
    last: ServerStartError | None = None
    for _ in range(attempts):
        server = make()
        try:
            launch(server)
            return server
        except ServerStartError as exc:
            last = exc
            if not _log_says_addr_in_use(*logs(server)):
                raise
    assert last is not None
    raise last


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
    argv: Sequence[str],
    out_path: Path,
    cwd: PathLike | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process in its own session, stdout+stderr to ``out_path`` (as ``user`` if given, when root)."""
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
            user=user,
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


