"""Sphinx configuration for the perturbscore documentation (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import reference_gen  # noqa: E402

import perturbscore  # noqa: E402

# The API and CLI reference are generated from the code at every build.
reference_gen.generate(HERE)

project = "perturbscore"
author = "perturbscore developers"
copyright = "2026, perturbscore developers"  # noqa: A001
version = release = perturbscore.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",
    "sphinx_copybutton",
    "hooks",
]

# .rst first: autosummary writes its stub pages (reStructuredText) with the first suffix.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
templates_path = ["_templates"]
# results/ and _*.md are included into pages, not pages of their own.
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "_ext", "_templates", "results", "**/_*.md"]
html_static_path = ["_static"]

# MyST
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks: executed at every build on a tiny simulated screen; any error fails the build.
nb_execution_mode = "cache"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_output_stderr = "remove"
nb_merge_streams = True

# API reference
# The generated namespace pages, named explicitly: a page new since the last build gets its stubs too.
autosummary_generate = sorted(str(p.relative_to(HERE)) for p in (HERE / "reference" / "api").glob("*.md"))
autosummary_imported_members = True
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": False}
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # dataclass "Attributes" as fields, not a second description of each attribute
napoleon_use_rtype = True
typehints_defaults = "comma"
always_document_param_types = False
typehints_document_rtype = True
# Names imported only for type checking cannot always be resolved from the signatures of private modules.
suppress_warnings = ["sphinx_autodoc_typehints.forward_reference", "sphinx_autodoc_typehints.guarded_import"]

# HTML
html_theme = "sphinx_book_theme"
html_title = "perturbscore"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "home_page_in_toc": True,
    "use_download_button": True,
}
html_show_sourcelink = False
# Keep "--option" and quotes as typed: the pages quote command lines.
smartquotes = False
