"""The built wheel and sdist ship the server-side code (.lua, .sql) beside the Python that loads it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _data_files() -> set[str]:
    found = {p.relative_to(ROOT).as_posix() for p in (ROOT / "agents_persist").rglob("*") if p.suffix in (".lua", ".sql")}
    return found | {"agents_persist/py.typed"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # Build from a clean copy: a stale *.egg-info/SOURCES.txt in the work tree would list the files for us.
    source = tmp_path_factory.mktemp("source") / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "*.egg-info", "build", "dist", "_build", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    return out


@pytest.mark.slow
def test_wheel_contains_every_server_side_file(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert _data_files() - names == set()
    assert any(name.endswith("schema.sql") for name in names)


@pytest.mark.slow
def test_sdist_contains_every_server_side_file(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert _data_files() - names == set()
