"""The docs' reference: every public name documented once, under the name users import it by; nitpicky stays on.

The Sphinx build itself (nitpicky, -W) runs in scripts/test.sh; these checks are the cheap part that
tells why a cross reference would break: a public object missing, or documented twice under two names.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any, Dict, List, Tuple

import agents_persist

DOCS = Path(__file__).resolve().parents[1] / "docs"
_OBJECT = re.compile(r"^\.\. (?:auto|py:)(?:class|exception|function|data)::\s+(\S+)", re.M)
_AUTOMODULE = re.compile(r"^\.\. automodule::\s+(\S+)\n((?:[ \t]+:[^\n]*\n)*)", re.M)
PUBLIC = [name for name in agents_persist.__all__ if name != "__version__"]


def _rst_texts() -> List[str]:
    return [p.read_text() for p in sorted(DOCS.rglob("*.rst")) if not {"_build", "_generated"} & set(p.parts)]


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _documented() -> List[Tuple[str, Any]]:
    """(name documented under, object) for every object directive and every automodule member."""
    found = []
    for text in _rst_texts():
        found += [(dotted, _resolve(dotted)) for dotted in _OBJECT.findall(text)]
        for module_name, options in _AUTOMODULE.findall(text):
            members = re.search(r":members:(.*)", options)
            if members is None:
                continue
            module = importlib.import_module(module_name)
            names = [n.strip() for n in members.group(1).split(",") if n.strip()] or list(getattr(module, "__all__", []))
            found += [(f"{module_name}.{n}", getattr(module, n)) for n in names]
    return found


def test_every_public_name_is_documented_once_under_agents_persist() -> None:
    documented = _documented()
    names = [dotted for dotted, _ in documented]
    assert [n for n in PUBLIC if f"agents_persist.{n}" not in names] == []
    by_object: Dict[int, List[str]] = {}
    for dotted, obj in documented:
        by_object.setdefault(id(obj), []).append(dotted)
    public_ids = {id(getattr(agents_persist, n)) for n in PUBLIC}
    assert {i: d for i, d in by_object.items() if i in public_ids and len(d) > 1} == {}


def _conf_assignments() -> Dict[str, ast.expr]:
    tree = ast.parse((DOCS / "conf.py").read_text())
    return {
        t.id: node.value for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    }


def test_conf_is_nitpicky_and_never_ignores_our_own_names() -> None:
    conf = _conf_assignments()
    assert ast.literal_eval(conf["nitpicky"]) is True
    assert "suppress_warnings" not in conf
    assert "nitpick_ignore" not in conf or ast.literal_eval(conf["nitpick_ignore"]) == []
    ours = [f"agents_persist.{n}" for n in PUBLIC] + ["agents_persist.errors.ConflictError", "agents_persist.planning.backoff"]
    for _role, pattern in ast.literal_eval(conf["nitpick_ignore_regex"]):
        assert [name for name in ours if re.fullmatch(pattern, name)] == [], pattern
