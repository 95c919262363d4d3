"""Sphinx configuration; ``tox -e docs`` and scripts/test.sh build with warnings as errors."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("."))

import agents_persist  # noqa: E402

project = "agents_persist"
author = "agents_persist developers"
release = agents_persist.__version__
version = release
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.intersphinx", "_ext_registry"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Standard-library names (datetime.datetime, os.PathLike, logging, ...) link to
# docs.python.org through an inventory read from disk: the build has no network.
# Debian's python3.11-doc ships it (scripts/install-test-deps.sh installs it);
# elsewhere point AGENTS_PERSIST_PYTHON_INV at any Python 3.11 objects.inv.
_PYTHON_INV_CANDIDATES = [
    os.environ.get("AGENTS_PERSIST_PYTHON_INV", ""),
    "/usr/share/doc/python3.11/html/objects.inv",
]
_python_inv = next((p for p in _PYTHON_INV_CANDIDATES if p and os.path.isfile(p)), None)
if _python_inv is None:
    raise RuntimeError(
        "docs/conf.py: no local Python objects.inv (tried "
        + ", ".join(repr(p) for p in _PYTHON_INV_CANDIDATES if p)
        + "); install it with `apt-get install python3.11-doc` (scripts/install-test-deps.sh does)"
        " or set AGENTS_PERSIST_PYTHON_INV to the path of a Python 3.11 objects.inv"
    )
intersphinx_mapping = {"python": ("https://docs.python.org/3.11", _python_inv)}
html_theme = "alabaster"
exclude_patterns = ["_build", "_generated", "_static/benchmarks"]  # _static/benchmarks: included by benchmarks.rst

# Every cross reference must resolve (-W makes a dangling one fail the build).
# The only exceptions are third-party objects whose Sphinx inventories cannot
# be fetched offline; nothing under agents_persist.* may ever be listed here.
nitpicky = True
nitpick_ignore_regex = [
    # msgspec: the data model's base class (shown as "Bases: msgspec.Struct").
    ("py:class", r"msgspec\..*"),
    # Flask, FastAPI and Starlette: the app, connection and Depends types in the
    # signatures of agents_persist.flask and agents_persist.fastapi.
    ("py:class", r"(flask|fastapi|starlette)\..*"),
    # redis-py and psycopg2: the client and pool a caller may hand to
    # RedisCheckpointer and PostgresCheckpointer.
    ("py:class", r"(redis|psycopg2)\..*"),
    # LangGraph: BaseCheckpointSaver, RunnableConfig, Checkpoint, CheckpointTuple, ... in the signatures of
    # agents_persist.langgraph.Checkpointer (RunnableConfig is langchain_core's).
    ("py:class", r"langgraph\..*"),
    ("py:class", r"langchain_core\..*"),
    # The OpenAI Agents SDK: SessionSettings and TResponseInputItem in the
    # signatures of agents_persist.openai_agents.Session (no intersphinx inventory).
    ("py:class", r"agents\..*"),
]
