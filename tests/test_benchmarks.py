"""The benchmark command and the memory soak run and produce well-formed output (never a timing assertion)."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import pytest

from agents_persist import InMemoryCheckpointer, SqliteCheckpointer
from benchmarks import run, soak
from benchmarks.goals import Results

# matplotlib (the bench extra) and docutils (Sphinx's, the docs extra) are installed by scripts/test.sh:
# a missing one fails here rather than skipping.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    assert run.main(["--quick", "--backends", "memory,sqlite", "--out", str(out)]) == 0
    return out


def test_quick_run_writes_every_file(quick_run: Path) -> None:
    assert sorted(path.name for path in quick_run.iterdir()) == sorted(run.FILES)


def test_results_hold_a_finite_ratio_per_workload_and_backend(quick_run: Path) -> None:
    results = Results.from_json((quick_run / "results.json").read_text(encoding="utf-8"))
    for letter in "abcef":
        backends = {row.backend for row in results.rows if row.workload.startswith(f"({letter})")}
        assert backends == {"memory", "sqlite"}, letter
    for row in results.rows:
        assert row.library_value > 0 and row.floor_value > 0 and math.isfinite(row.ratio), row
        assert row.met is None or isinstance(row.met, bool)
    assert {series.backend for series in results.series} == {"memory", "sqlite"}
    assert all(len(series.points) >= 3 for series in results.series)


def test_png_is_a_plot(quick_run: Path) -> None:
    data = (quick_run / "save-latency.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    assert width >= 400 and height >= 300
    assert len(data) > 10_000  # lines and labels, not a blank canvas


def test_markdown_table_has_one_line_per_row(quick_run: Path) -> None:
    results = Results.from_json((quick_run / "results.json").read_text(encoding="utf-8"))
    lines = [line for line in (quick_run / "results.md").read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    assert lines[0].startswith("| workload | backend |") and lines[1].startswith("|---")
    assert len(lines) == 2 + len(results.rows)
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines[2:])


def test_rst_table_parses_without_warnings(quick_run: Path) -> None:
    from docutils import core as docutils_core
    from docutils import nodes

    results = Results.from_json((quick_run / "results.json").read_text(encoding="utf-8"))
    text = (quick_run / "results.rst").read_text(encoding="utf-8")
    warnings = io.StringIO()
    doctree = docutils_core.publish_doctree(
        text, settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": warnings}
    )
    assert warnings.getvalue() == "" and list(doctree.findall(nodes.system_message)) == []
    (table,) = list(doctree.findall(nodes.table))
    body_rows = list(table.findall(nodes.row))[1:]
    assert len(body_rows) == len(results.rows)
    # Every cell is plain text: "(a) ..." must not have become an enumerated list, "*" no emphasis.
    assert [row.children[0].astext() for row in body_rows] == [row.workload for row in results.rows]


def test_render_rewrites_the_files_from_results_json(quick_run: Path) -> None:
    before = {name: (quick_run / name).read_text(encoding="utf-8") for name in ("results.md", "results.rst")}
    assert run.main(["--render", str(quick_run)]) == 0
    assert {name: (quick_run / name).read_text(encoding="utf-8") for name in before} == before


# The soak script runs 100,000 threads; the suite runs enough to fill every bounded cache (4,096 entries) past its size.
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_memory_stays_bounded_over_many_threads(backend: str, tmp_path: Path) -> None:
    if backend == "memory":
        cp = InMemoryCheckpointer()
    else:
        cp = SqliteCheckpointer(str(tmp_path / "soak.db"), synchronous="NORMAL")
    try:
        report = soak.soak(cp, backend, threads=6000, messages=50, batch=500)
    finally:
        cp.close()
    assert report.growth_mb < 50, report.render()
    assert report.trace[-1][0] == 6000
