"""The agent of examples/langgraph_agent.py (a stand-in model, a tool node, an approval interrupt), for the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

_PATH = Path(__file__).resolve().parents[3] / "examples" / "langgraph_agent.py"
_SPEC = importlib.util.spec_from_file_location("examples_langgraph_agent", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
example = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = example
_SPEC.loader.exec_module(example)


def build(checkpointer: Any) -> Any:
    """The example's compiled graph persisting through ``checkpointer``."""
    return example.build(checkpointer)


def said(text: str) -> str:
    """What the stand-in model answers to a message that is not about the weather."""
    return f"AIMessage:You said {text!r}; ask me about the weather."
