"""PgBouncer in transaction pooling mode in front of a PostgreSQL server, as a child process on a free port.

PgBouncer refuses to run as root, so as root it runs as the ``postgres``
user from a directory of its own under the system temp dir (root's pytest
tmp dirs are not traversable by that user). It hands every client
transaction to whichever server connection is free (``pool_mode =
transaction``) with fewer server connections than clients
(``default_pool_size``), so anything a client leaves in its session (SET,
prepared statements, advisory locks, temp tables, LISTEN) shows up in
another client's transactions, as in production.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping

from .process import (
    HOST,
    PathLike,
    ServerStartError,
    _ChildServer,
    _find_exe,
    _register,
    _spawn,
    _unregister,
    free_port,
    port_is_open,
    retry_taken_ports,
    wait_until,
)

__all__ = ["PgBouncer"]


class PgBouncer(_ChildServer):
    """``pgbouncer`` (transaction mode, trust auth) forwarding every database to ``upstream_host:upstream_port``.

    Attributes: ``host``, ``port``, ``pid``, ``dir``, ``log_path``, ``config_path``,
    ``pool_size`` (server connections per database and user), ``managed``;
    :meth:`url` builds client URLs.
    """

    managed = True

    def __init__(self, directory: Path, port: int, upstream_host: str, upstream_port: int, pool_size: int,
                 settings: Mapping[str, str]) -> None:
        self.host = HOST
        self.port = port
        self.dir = directory
        self.upstream = (upstream_host, upstream_port)
        self.pool_size = pool_size
        self.settings = dict(settings)
        self.log_path = directory / f"pgbouncer-{port}.log"
        self.out_path = directory / f"pgbouncer-{port}.out"
        self.config_path = directory / f"pgbouncer-{port}.ini"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exe = _find_exe("AGENTS_PERSIST_TEST_PGBOUNCER", "pgbouncer", ["/usr/sbin/pgbouncer"])
        self.user = "postgres" if os.geteuid() == 0 else None

    @classmethod
    def start(
        cls,
        upstream_host: str,
        upstream_port: int,
        *,
        users: Mapping[str, str] | None = None,
        pool_size: int = 5,
        settings: Mapping[str, str] | None = None,
        timeout: float = 15.0,
        tmpdir: PathLike | None = None,
    ) -> "PgBouncer":
        """Write the config (``users``: name -> password, default ``postgres`` without one) and wait for the port."""
        parent = None if (os.geteuid() == 0 or tmpdir is None) else str(tmpdir)
        base = Path(tempfile.mkdtemp(prefix="agents-persist-pgbouncer-", dir=parent))
        if os.geteuid() == 0:
            os.chmod(base, 0o755)
            shutil.chown(base, "postgres", "postgres")
        userlist = "".join(f'"{name}" "{password}"\n' for name, password in (users or {"postgres": ""}).items())
        (base / "userlist.txt").write_text(userlist)

        def make() -> "PgBouncer":
            return cls(base, free_port(), upstream_host, upstream_port, pool_size, settings or {})

        try:
            return retry_taken_ports(make, lambda s: s._launch(timeout), lambda s: (s.log_path, s.out_path))
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise

    def _config(self) -> str:
        host, port = self.upstream
        settings = {
            "listen_addr": self.host,
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "userlist.txt"),
            "pool_mode": "transaction",
            "default_pool_size": str(self.pool_size),
            "max_client_conn": "1000",
            "logfile": str(self.log_path),
            "admin_users": "postgres",
            **self.settings,
        }
        body = "".join(f"{key} = {value}\n" for key, value in settings.items())
        return f"[databases]\n* = host={host} port={port}\n\n[pgbouncer]\n{body}"

    def _launch(self, timeout: float) -> None:
        self.config_path.write_text(self._config())
        for path in (self.config_path, self.dir / "userlist.txt"):
            if self.user is not None:
                shutil.chown(path, self.user, self.user)
        self.proc = _spawn([self.exe, str(self.config_path)], self.out_path, cwd=self.dir, user=self.user)
        _register(self)
        proc = self.proc
        try:
            wait_until(
                lambda: port_is_open(self.port),
                timeout,
                f"pgbouncer on {self.host}:{self.port} (pid {proc.pid})",
                logs=(self.log_path, self.out_path),
                alive=lambda: proc.poll() is None,
            )
        except ServerStartError:
            self.stop()
            raise

    def url(self, user: str = "postgres", dbname: str = "postgres") -> str:
        """``postgresql://user@127.0.0.1:P/dbname`` through the pooler."""
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def cleanup(self) -> None:
        """Stop by PID and remove the directory. Idempotent."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        _unregister(self)

    def __repr__(self) -> str:
        return f"PgBouncer(port={self.port}, upstream={self.upstream}, pid={self.pid})"
