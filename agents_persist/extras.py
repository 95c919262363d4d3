"""The one wording of "an optional integration's framework is missing" (``pip install "agents_persist[extra]"``)."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(module: str, framework: str, extra: str, exc: ImportError) -> ImportError:
    """The :class:`ImportError` to raise when importing ``module`` failed for want of ``framework``."""
    return ImportError(
        f'{module} needs {framework} ({exc.name} is missing); install it with: pip install "agents_persist[{extra}]"'
    )
