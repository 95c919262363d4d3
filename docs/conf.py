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
intersphinx_mapping: dict = {}
html_theme = "alabaster"
exclude_patterns = ["_build", "_generated"]
nitpicky = False
suppress_warnings = ["ref.python"]
