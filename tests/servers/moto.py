"""moto_server (DynamoDB) as a child process on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .process import (
    ENV_DYNAMODB_ENDPOINT,
    HOST,
    ExternalServer,
    PathLike,
    ServerStartError,
    _ChildServer,
    _env,
    _register,
    _spawn,
    free_port,
    retry_taken_ports,
    wait_until,
)

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
        return retry_taken_ports(lambda: cls(base, free_port()), lambda s: s._launch(timeout), lambda s: (s.log_path,))

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



def dynamodb_endpoint_or_start(tmpdir: PathLike) -> MotoServer | ExternalServer:
    """``$AGENTS_PERSIST_TEST_DYNAMODB_ENDPOINT`` as an :class:`ExternalServer`, else a new :class:`MotoServer`."""
    url = _env(ENV_DYNAMODB_ENDPOINT)
    return ExternalServer(url, "dynamodb") if url else MotoServer.start(tmpdir)
