"""Every integration is optional: ``import agents_persist`` never imports its framework, and a missing one names the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

INTEGRATIONS = ["flask", "django", "celery", "langgraph"]
#: Integrations whose module is named after neither the framework's package nor the extra: (module, package, extra).
NAMED_APART = [("openai_agents", "agents", "openai-agents")]


def test_importing_agents_persist_imports_no_framework() -> None:
    code = (
        "import sys, agents_persist, agents_persist.cli\n"
        f"imported = [name for name in {INTEGRATIONS + [package for _, package, _ in NAMED_APART]!r} if name in sys.modules]\n"
        "assert not imported, imported\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


CASES = [(name, name, name) for name in INTEGRATIONS] + NAMED_APART


@pytest.mark.parametrize(("module", "package", "extra"), CASES, ids=[module for module, _, _ in CASES])
def test_import_without_the_framework_names_the_extra(module: str, package: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"
        f"try:\n    import agents_persist.{module}\nexcept ImportError as exc:\n    print(exc)\n"
        "else:\n    raise SystemExit('no ImportError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert f'pip install "agents_persist[{extra}]"' in result.stdout
