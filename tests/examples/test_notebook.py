"""examples/notebook.ipynb executed by nbclient; its transcript rendered by headless Chromium.

Set ``AGENTS_PERSIST_SCREENSHOT`` to a path to keep the screenshot (that is how
``docs/_static/notebook-transcript.png`` is made).
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any, Dict, List, Tuple

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    workdir = tmp_path_factory.mktemp("notebook")
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env_path) if p)  # the kernel imports this checkout
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        os.environ["PYTHONPATH"] = env_path
    return nb


def _outputs(nb: Any) -> List[Dict[str, Any]]:
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def _transcript(nb: Any) -> str:
    html = [o["data"]["text/html"] for o in _outputs(nb) if "text/html" in o.get("data", {})]
    transcripts = [h for h in html if 'class="ap-snapshot"' in h]
    assert transcripts, "no snapshot was displayed as HTML"
    return str(transcripts[0])


def test_notebook_runs_without_errors(executed: Any) -> None:
    outputs = _outputs(executed)
    assert outputs
    assert [o for o in outputs if o["output_type"] == "error"] == []
    assert not any(o.get("name") == "stderr" for o in outputs)
    text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    assert "AgentStateSnapshot(thread_id='notebook:alice:report', version=1, messages=3" in text
    assert "version=2, messages=5" in text and "current_interrupt" not in text.split("version=2")[1]


def test_notebook_displays_the_transcript_with_the_pending_approval(executed: Any) -> None:
    html = _transcript(executed)
    assert "thread notebook:alice:report" in html and "version 1" in html
    assert html.count('class="ap-message ') == 3
    assert "Email Bob the weekly report." in html
    assert "<b>send_email</b>" in html and "Weekly report" in html
    assert 'class="ap-interrupt"' in html and "Awaiting human approval" in html
    assert "external email needs approval" in html
    assert "draft the report" in html and "(in_progress)" in html
    plain = [o["data"].get("text/plain", "") for o in _outputs(executed) if "text/html" in o.get("data", {})]
    assert any(p.startswith("AgentStateSnapshot(thread_id='notebook:alice:report', version=1") for p in plain)
    assert any(p.startswith("ThreadPage(threads=1, ids=['notebook:alice:report']") for p in plain)


def _png_info(data: bytes) -> Tuple[int, int, bytes]:
    """Width, height and the decompressed (still filtered) scanlines of a PNG."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def _screenshot(html_file: Path, png: Path, profile: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium missing: run scripts/install-test-deps.sh"
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=900,900", html_file.as_uri(),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # chromium's own helper processes share its session
            process.wait()
    assert process.returncode == 0, output.decode(errors="replace")


def test_transcript_renders_in_headless_chromium(executed: Any, tmp_path: Path) -> None:
    page = tmp_path / "transcript.html"
    page.write_text(f'<!doctype html><meta charset="utf-8"><body style="margin:16px">{_transcript(executed)}</body>')
    png = tmp_path / "transcript.png"
    _screenshot(page, png, tmp_path / "profile")
    data = png.read_bytes()
    width, height, scanlines = _png_info(data)
    assert (width, height) == (900, 900)
    assert len(data) > 5_000, "suspiciously small screenshot"
    assert len(set(scanlines)) > 32, "the screenshot looks blank"  # a blank page filters down to a few byte values
    keep = os.environ.get("AGENTS_PERSIST_SCREENSHOT")
    if keep:
        shutil.copyfile(png, keep)
