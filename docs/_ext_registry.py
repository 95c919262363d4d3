"""Sphinx extension: tables generated from the backend registry and each backend's declared OPTIONS.

``docs/_generated/backends.rst`` lists every built-in backend (schemes, extra,
class); ``docs/_generated/options-<name>.rst`` lists a backend's options with
their kinds, defaults and help. Backend pages include them, so the docs can
never disagree with what ``from_url`` accepts.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Dict, List

from agents_persist import registry

GENERATED = Path(__file__).parent / "_generated"


def _text(help_text: str) -> str:
    """Plain help text as reStructuredText: a word ending in ``_`` would read as a link."""
    return re.sub(r"(\w)_(?=\W|$)", r"\1\\_", help_text)


def _table(header: List[str], rows: List[List[str]]) -> str:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append("   * - " + row[0])
        lines.extend("     - " + cell for cell in row[1:])
    return "\n".join(lines) + "\n"


def _built_in() -> List[registry.Backend]:
    return [b for b in registry.backends() if b.target.startswith("agents_persist.backends.")]


def write_tables(app: Any = None) -> None:
    """Write the generated reStructuredText files (called when the build starts)."""
    GENERATED.mkdir(exist_ok=True)
    rows = [
        [
            f":doc:`{b.name} </backends/{b.name}>`",
            ", ".join(f"``{s}://``" for s in b.schemes),
            f"``pip install agents_persist[{b.extra}]``" if b.extra else "(core)",
            f":class:`~agents_persist.{b.class_name}`",
            b.summary,
        ]
        for b in _built_in()
    ]
    (GENERATED / "backends.rst").write_text(_table(["backend", "URL schemes", "install", "class", "what for"], rows))
    for backend in _built_in():
        module = importlib.import_module(backend.target.partition(":")[0])
        options = getattr(module, "OPTIONS", ())
        option_rows = [
            [
                f"``{o.name}``" + (" (also " + ", ".join(f"``{a}``" for a in o.aliases) + ")" if o.aliases else ""),
                o.kind.what,
                f"``{o.default!r}``",
                _text(o.help or ""),
            ]
            for o in options
        ]
        (GENERATED / f"options-{backend.name}.rst").write_text(
            _table(["option", "value", "default", "meaning"], option_rows) if option_rows else "(no options)\n"
        )


def setup(app: Any) -> Dict[str, Any]:
    app.connect("builder-inited", write_tables)
    return {"parallel_read_safe": True}
