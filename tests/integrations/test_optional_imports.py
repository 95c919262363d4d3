"""Every integration is optional: ``import agents_persist`` never imports its framework, and a missing one names the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

INTEGRATIONS = ["flask", "django", "celery", "langgraph"]


def test_importing_agents_persist_imports_no_framework() -> None:
    code = (
        "import sys, agents_persist, agents_persist.cli\n"
        f"imported = [name for name in {INTEGRATIONS!r} if name in sys.modules]\n"
        "assert not imported, imported\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("framework", INTEGRATIONS)
def test_import_without_the_framework_names_the_extra(framework: str) -> None:
    code = (
        f"import sys; sys.modules[{framework!r}] = None\n"
        f"try:\n    import agents_persist.{framework}\nexcept ImportError as exc:\n    print(exc)\n"
        "else:\n    raise SystemExit('no ImportError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert f'pip install "agents_persist[{framework}]"' in result.stdout
