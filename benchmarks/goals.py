"""The goal table of a benchmark run: one row per workload and backend, a ratio against its floor, the goal, met or not.

:class:`Results` collects the rows (and the series of the plot) of one run;
it renders them as a plain-text table for the terminal, as Markdown and as
reStructuredText for the docs, and round-trips through JSON so that the
files of a recorded run are all generated from one ``results.json``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

import msgspec

__all__ = ["Row", "Series", "Results"]


class Row(msgspec.Struct):
    """One measured comparison: ``library`` against ``floor`` (medians of the same run, interleaved).

    ``unit`` is ``"µs"`` (latency: the ratio is library / floor, lower is
    better) or ``"ops/s"`` (throughput: the ratio is library / floor, higher
    is better). ``goal`` is ``"<= 1.2"``-like, or None for a row shown for
    reference only.
    """

    workload: str
    backend: str
    library: str
    floor: str
    library_value: float
    floor_value: float
    unit: str
    goal: Optional[str] = None
    samples: int = 0

    @property
    def ratio(self) -> float:
        return self.library_value / self.floor_value if self.floor_value else float("inf")

    @property
    def met(self) -> Optional[bool]:
        if self.goal is None:
            return None
        op, target = self.goal.split()
        return self.ratio <= float(target) if op == "<=" else self.ratio >= float(target)

    def goal_text(self) -> str:
        if self.goal is None:
            return "(reference)"
        op, target = self.goal.split()
        return f"{'≤' if op == '<=' else '≥'} {target}x"

    def met_text(self) -> str:
        return {None: "—", True: "yes", False: "NO"}[self.met]

    def value_text(self, value: float) -> str:
        return f"{value:,.0f} ops/s" if self.unit == "ops/s" else f"{value:,.1f} µs"


class Series(msgspec.Struct):
    """One line of the plot: save latency (µs, median per bin) against history length, for one backend."""

    backend: str
    label: str
    points: List[Tuple[int, float]]
    kind: str = "library"  # or "floor"


HEADERS = ("workload", "backend", "library", "floor", "ratio", "goal", "met")


class Results(msgspec.Struct):
    """Everything one run measured, and how it was run."""

    title: str
    settings: Dict[str, Any] = {}
    rows: List[Row] = []
    series: List[Series] = []
    notes: List[str] = []

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def cells(self) -> List[Tuple[str, ...]]:
        out: List[Tuple[str, ...]] = []
        for row in self.rows:
            library = f"{row.library}: {row.value_text(row.library_value)}"
            floor = f"{row.floor}: {row.value_text(row.floor_value)}"
            out.append((row.workload, row.backend, library, floor, f"{row.ratio:.2f}x", row.goal_text(), row.met_text()))
        return out

    def summary(self) -> str:
        goals = [row for row in self.rows if row.met is not None]
        met = sum(1 for row in goals if row.met)
        return f"{met} of {len(goals)} goals met"

    # ------------------------------------------------------------------ renderings

    def render_text(self) -> str:
        """An aligned plain-text table for the terminal."""
        rows = [HEADERS, *self.cells()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
        lines = [self.title, ""]
        for index, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines += ["", self.summary(), *self.notes]
        return "\n".join(lines)

    def render_markdown(self) -> str:
        """A GitHub-flavoured Markdown table."""

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        lines = [f"**{self.title}**", "", line(HEADERS), "|---|---|---|---|---:|---|---|"]
        lines += [line(cells) for cells in self.cells()]
        lines += ["", self.summary() + ".", *(f"- {note}" for note in self.notes)]
        return "\n".join(lines) + "\n"

    def render_rst(self) -> str:
        """A ``list-table`` for ``.. include::`` in the docs."""
        lines = [f".. list-table:: {self.title}", "   :header-rows: 1", "   :widths: 14 9 28 28 7 8 5", ""]
        for cells in [HEADERS, *self.cells()]:
            first, *rest = (_rst_escape(cell) for cell in cells)
            lines.append(f"   * - {first}")
            lines += [f"     - {cell}" for cell in rest]
        lines += ["", self.summary() + ".", ""]
        lines += [f"* {_rst_escape(note)}" for note in self.notes]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> str:
        return json.dumps(msgspec.to_builtins(self), indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Results":
        return msgspec.json.decode(text.encode(), type=cls)


def _rst_escape(text: str) -> str:
    for char in ("\\", "*", "`", "|", "_"):
        text = text.replace(char, "\\" + char)
    return "\\" + text if text.startswith("(") else text  # "(a) ..." would start an enumerated list
