"""A throwaway certificate authority for the TLS test servers, made with the ``openssl`` command.

:func:`make_test_ca` writes a self-signed CA and one server certificate
signed by it, valid for ``127.0.0.1``, ``::1`` and ``localhost`` (subject
alternative names, so hostname verification passes on loopback), plus a
second, unrelated CA that signed nothing (to check that clients really
verify). Keys are unencrypted; nothing here is fit for anything but tests.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .process import PathLike, ServerStartError, _find_exe

__all__ = ["TestCA", "make_test_ca"]

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost
"""


@dataclass(frozen=True)
class TestCA:
    """Files of a test CA: ``cert`` (the CA certificate clients trust), ``server_cert`` / ``server_key``
    (for 127.0.0.1 and localhost), ``other_cert`` (a CA that signed nothing here)."""

    __test__ = False  # not a pytest test class

    dir: Path
    cert: Path
    key: Path
    server_cert: Path
    server_key: Path
    other_cert: Path


def _openssl(*args: str, cwd: Path) -> None:
    exe = _find_exe("AGENTS_PERSIST_TEST_OPENSSL", "openssl")
    try:
        res = subprocess.run([exe, *args], cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise ServerStartError(f"openssl {args[0]} timed out") from exc
    if res.returncode != 0:
        raise ServerStartError(f"openssl {' '.join(args)} failed: {(res.stdout + res.stderr).decode('utf-8', 'replace')[-2000:]}")


def _self_signed(directory: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", subject,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )


def make_test_ca(directory: PathLike) -> TestCA:
    """Create the CA, the server certificate and the unrelated CA in ``directory`` (about 50 ms)."""
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    _self_signed(base, "ca", "/CN=agents_persist test CA")
    _self_signed(base, "other-ca", "/CN=agents_persist unrelated CA")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=base,
    )
    (base / "server.ext").write_text(_SERVER_EXTENSIONS)
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=base,
    )
    return TestCA(base, base / "ca.crt", base / "ca.key", base / "server.crt", base / "server.key", base / "other-ca.crt")
