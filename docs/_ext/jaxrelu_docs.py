"""Sphinx glue for jaxrelu's docs: the notebook reader, the API coverage check and the
architecture page's place in the navigation.

* Notebooks are jupytext percent-format ``.py`` files in ``notebooks/``. At the start of a
  build they and ``notebooks/README.md`` are copied to ``docs/notebooks/`` (ignored by git
  through a ``.gitignore`` written there; a symbolic link would not do, since links between
  pages are resolved through real paths). :func:`read_notebook` parses them; when
  ``JAXRELU_EXECUTED_NOTEBOOKS`` names a directory holding an executed copy with the same
  cells (``tests/test_notebooks.py`` writes them there when the variable is set, as CI
  does), that copy is shown and not executed again. Otherwise the build executes the
  notebook.
* Every public name of :mod:`jaxrelu` must appear in the API reference: a name in
  ``jaxrelu.__all__`` that no page documents is a warning, hence an error in strict builds.
* ``docs/architecture.md`` is listed in the navigation once it exists.
* Two renderer adjustments for docstrings as they are written: a cross-reference through a
  re-exported or alias path (``jaxrelu.models.Architecture``, kept working since 0.2.0) is
  resolved to where the object is documented (``jaxrelu.study.models.Architecture``); and a
  property docstring that opens with a phrase and a colon ("Shape of one image: ...") keeps
  that phrase as text, where napoleon would read it as the property's type. A type alias
  inside a generic (``Sequence[ArrayLike]``) is shown by its name, not by Sphinx's repr.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import re
import shutil

import jupytext
import nbformat
from sphinx.util import logging

logger = logging.getLogger(__name__)

EXECUTED_DIR_ENV = "JAXRELU_EXECUTED_NOTEBOOKS"
OPTIONAL_PAGES = ("architecture",)  # listed in index.md's toctree only when the file exists
NOTEBOOK_FILES = ("README.md", "[0-9][0-9]_*.py")


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def read_notebook(text: str, **_: object) -> nbformat.NotebookNode:
    """Parse a percent-format notebook; return its executed copy if one is available."""
    nb = jupytext.reads(text, fmt="py:percent")
    executed_dir = os.environ.get(EXECUTED_DIR_ENV)
    if executed_dir:
        for path in sorted(pathlib.Path(executed_dir).glob("*.ipynb")):
            executed = nbformat.read(path, as_version=4)
            if _cells(executed) == _cells(nb):
                executed.metadata.setdefault("mystnb", {})["execution_mode"] = "off"
                return executed
    return nb


def _copy_notebooks(app) -> None:
    """Mirror notebooks/ into docs/notebooks/ (copies keep their times: incremental builds
    redo only what changed)."""
    source = pathlib.Path(app.srcdir).parent / "notebooks"
    target = pathlib.Path(app.srcdir) / "notebooks"
    target.mkdir(exist_ok=True)
    (target / ".gitignore").write_text("# copied from notebooks/ by the docs build\n*\n")
    wanted = {p.name: p for pattern in NOTEBOOK_FILES for p in source.glob(pattern)}
    for old in target.iterdir():
        if old.name != ".gitignore" and old.name not in wanted:
            old.unlink()
    for name, src in wanted.items():
        dst = target / name
        if not dst.exists() or dst.stat().st_mtime != src.stat().st_mtime:
            shutil.copy2(src, dst)


def _list_optional_pages(app, docname: str, source: list[str]) -> None:
    if docname != "index":
        return
    for page in OPTIONAL_PAGES:
        if not (pathlib.Path(app.srcdir) / f"{page}.md").exists():
            source[0] = source[0].replace(f"\n{page}\n", "\n")


def _check_api_coverage(app, env) -> None:
    import jaxrelu

    documented = env.get_domain("py").objects
    for name in jaxrelu.__all__:
        if name != "__version__" and f"jaxrelu.{name}" not in documented:
            logger.warning(
                f"jaxrelu.{name} is public (jaxrelu.__all__) but not in the API reference: "
                "add it to docs/api/toolkit.md"
            )


def _import_path(dotted: str) -> object | None:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _resolve_alias(app, env, node, contnode):
    """A Python reference that did not resolve: retry with the object's canonical name."""
    if node.get("refdomain") != "py" or not node.get("reftarget", "").startswith("jaxrelu."):
        return None
    obj = _import_path(node["reftarget"])
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if obj is None or not module or not qualname:
        return None
    canonical = f"{module}.{qualname}"
    if canonical == node["reftarget"]:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode
    )


_PROSE_BEFORE_COLON = re.compile(r"^:type: ([A-Z][a-z]+ [^`:]*)$")


def _keep_property_phrase(app, what, name, obj, options, lines) -> None:
    """Undo napoleon's reading of "Phrase: description" as "type: description"."""
    if what != "property":
        return
    for i, line in enumerate(lines):
        match = _PROSE_BEFORE_COLON.match(line)
        if match:
            del lines[i]
            first = next(j for j, text in enumerate(lines) if text.strip())
            lines[first] = f"{match.group(1)}: {lines[first]}"
            return


_ALIAS_REPR = re.compile(r"TypeAliasForwardRef\('([^']*)'\)")


def _tidy_alias_reprs(app, what, name, obj, options, signature, return_annotation) -> None:
    annotations = app.env.current_document.autodoc_annotations.get(name, {})
    for key, value in annotations.items():
        annotations[key] = _ALIAS_REPR.sub(r"\1", value)


def setup(app):
    app.connect("builder-inited", _copy_notebooks)
    app.connect("source-read", _list_optional_pages)
    app.connect("env-check-consistency", _check_api_coverage)
    app.connect("missing-reference", _resolve_alias)
    app.connect("autodoc-process-docstring", _keep_property_phrase, priority=600)
    app.connect("autodoc-process-signature", _tidy_alias_reprs, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
