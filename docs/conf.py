"""Sphinx configuration of the normstats documentation.

Build it with ``python -m sphinx -W -b html docs docs/_build/html`` (after ``pip install ".[docs]"``); the test
suite builds it the same way, warnings as errors, so a broken cross-reference fails CI.
"""

from __future__ import annotations

import normstats

project = "normstats"
author = "the normstats developers"
copyright = "2026, the normstats developers"
release = normstats.__version__
version = release

extensions = [
    "myst_parser",  # the pages are Markdown (MyST), like the README they grew out of
    "sphinx.ext.autodoc",  # the Python API from its docstrings
    "sphinx.ext.napoleon",
    "sphinx_click",  # the command line from the click commands themselves
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}
# docstrings cross-reference private helpers in ``:func:`~normstats.networks.run.check_inits``` style; those
# targets are not part of the published API pages
nitpicky = False
suppress_warnings = ["myst.xref_missing"]

html_theme = "pydata_sphinx_theme"
html_title = f"normstats {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": True,
}
