"""A throwaway PostgreSQL 15 cluster: initdb as postgres, pg_ctl on a free port, a watchdog if we die."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from .process import (
    DEFAULT_PG_BIN,
    ENV_POSTGRES_URL,
    HOST,
    ExternalServer,
    PathLike,
    ServerStartError,
    _children_of,
    _env,
    _format_logs,
    _kill_pid,
    _register,
    _stop_popen,
    _unregister,
    _wait_pid_gone,
    free_port,
    pid_alive,
    port_is_open,
    retry_taken_ports,
    wait_until,
)
from .tls import TestCA

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


#: pg_hba.conf of a TLS server: trust on the socket and over TLS, and any TCP connection without TLS refused.
_TLS_HBA = b"""\
local all all trust
hostssl all all 127.0.0.1/32 trust
hostssl all all ::1/128 trust
hostnossl all all 0.0.0.0/0 reject
hostnossl all all ::/0 reject
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
        tls: TestCA | None = None,
    ) -> "PostgresServer":
        """initdb a new cluster and start it on a free port.

        With ``tls``, the server presents that CA's server certificate and
        refuses every TCP connection without TLS (``hostnossl ... reject``),
        so a client that got in certainly used TLS.

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
            if tls is not None:
                server.options += server._install_tls(tls)

            def fresh_port() -> PostgresServer:
                server.port = free_port()  # one data directory, tried on fresh ports
                return server

            return retry_taken_ports(fresh_port, lambda s: s._pg_ctl_start(timeout), lambda s: (s.log_path,))
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

    def _install_tls(self, ca: TestCA) -> list[str]:
        """Copy the server certificate and key where the postgres user may read them; TLS-only pg_hba; the options."""
        files = {"server.crt": ca.server_cert.read_bytes(), "server.key": ca.server_key.read_bytes(), "pg_hba.conf": _TLS_HBA}
        for name, data in files.items():
            path = self.base_dir / name
            path.write_bytes(data)
            os.chmod(path, 0o600)  # postgres refuses a key that others may read
            if self.as_root:
                shutil.chown(path, "postgres", "postgres")
        return [
            "-c", "ssl=on",
            "-c", f"ssl_cert_file={self.base_dir / 'server.crt'}",
            "-c", f"ssl_key_file={self.base_dir / 'server.key'}",
            "-c", f"hba_file={self.base_dir / 'pg_hba.conf'}",
        ]

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



def postgres_url_or_start(tmpdir: PathLike | None = None) -> PostgresServer | ExternalServer:
    """``$AGENTS_PERSIST_TEST_POSTGRES_URL`` as an :class:`ExternalServer`, else a new :class:`PostgresServer`."""
    url = _env(ENV_POSTGRES_URL)
    return ExternalServer(url, "postgres") if url else PostgresServer.start(tmpdir)
