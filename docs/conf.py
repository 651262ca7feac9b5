"""Sphinx configuration for jaxrelu's documentation site.

Build (README, "Build the docs"): ``pip install -e ".[docs]"`` then
``sphinx-build -W --keep-going -n -b html docs build/docs``: warnings are errors, and with
``-n`` every cross-reference that does not resolve is one. Why Sphinx: docs/contributing.md.
"""

import os
import pathlib
import sys

from jaxrelu import __version__

sys.path.insert(0, str(pathlib.Path(__file__).parent / "_ext"))

project = "jaxrelu"
author = "jaxrelu developers"
copyright = "jaxrelu developers, Apache-2.0"
release = __version__
version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' Google-style sections
    "sphinx.ext.mathjax",
    "myst_nb",  # Markdown pages (MyST) and notebooks
    "jaxrelu_docs",  # docs/_ext: notebook reader, API coverage check, architecture page
]

# Pages are MyST Markdown; the notebooks are jupytext percent-format .py files, copied from
# notebooks/ into docs/notebooks/ (git-ignored) and read by docs/_ext/jaxrelu_docs.py, which
# reuses executed copies from the test run when given.
source_suffix = {".md": "myst-nb", ".py": "myst-nb"}
nb_custom_formats = {".py": "jaxrelu_docs.read_notebook"}
exclude_patterns = [
    "_build",
    "_ext",
    "conf.py",
    "reproduce/results.json",
    "reproduce/collapse-sweep.json",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks: executed during the build (cells that raise fail it), unless the executed copy
# from the test run is reused (it has every output already).
nb_execution_mode = "auto"
os.environ.pop("MPLBACKEND", None)  # the kernels inherit it; Agg would keep plots off the pages
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# API reference: autodoc with the docstrings' own (Google) style, type hints in the
# descriptions, members in source order.
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_type_aliases = {"ArrayLike": "jax.typing.ArrayLike"}
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
add_module_names = False
python_use_unqualified_type_names = True

# Strict (-n): jaxrelu's own references must resolve. References into other libraries have
# no inventory to resolve against (nothing is downloaded at build time): module-qualified
# ones are shown as plain text by docs/_ext/jaxrelu_docs.py, and the bare names that type
# hints leave (builtins, typing, the short forms of JAX/NumPy/optax types) are listed here.
nitpick_ignore_regex = [
    (r"py:.*", r"(int|float|str|bool|dict|list|tuple|None|NoneType|object|type|bytes|complex)"),
    (r"py:.*", r"(Any|Callable|Sequence|Mapping|Iterable|Iterator|Literal|PathLike|Path)"),
    (r"py:.*", r"(ArrayLike|Array|ndarray|dtype|GradientTransformation|Schedule|PRNGKey)"),
]

html_theme = "furo"
html_title = f"jaxrelu {__version__}"
html_static_path: list[str] = []
html_show_sourcelink = False
