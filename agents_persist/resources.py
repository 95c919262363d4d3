"""Server-side code shipped as package data (``.lua``, ``.sql``), read with :mod:`importlib.resources`."""

from __future__ import annotations

from importlib import resources
from typing import List

__all__ = ["read_text", "sql_statements"]


def read_text(package: str, name: str) -> str:
    """The text of the data file ``name`` inside ``package``."""
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def sql_statements(text: str) -> List[str]:
    """Split a plain SQL script (no procedural bodies) into statements, dropping ``--`` comments."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]
