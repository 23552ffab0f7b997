"""Sphinx configuration for the quaterion documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(__file__, "..", "..", "..")))

project = "quaterion"
author = "quaterion contributors"
copyright = "2026, quaterion contributors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
suppress_warnings = ["ref.python"]

html_theme = "furo"
html_title = "quaterion"
exclude_patterns = ["_build"]
