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
* Every public name appears in the API reference: ``jaxrelu-other-public-names`` documents
  the names of ``jaxrelu.__all__`` that its page does not already document (a new public
  name is never missing; move it into its section when convenient), and
  ``jaxrelu-study-modules`` documents every public module of :mod:`jaxrelu.study` (each
  module's ``__all__``).
* ``docs/architecture.md`` is listed in the navigation once it exists.
* Renderer adjustments for docstrings as they are written. References: one to another
  library (``jax.Array``, ``enum.IntEnum``) is shown as plain text (the build downloads no
  inventories); one through a re-exported or alias path (``jaxrelu.models.Architecture``,
  kept working since 0.2.0) is resolved where the object is documented
  (``jaxrelu.study.models.Architecture``); one relative to a sibling module
  (``limits.MAX_WIDTH``) is looked up as a leading ``.`` would; one to an object that
  exists but has no entry of its own (a private helper, a constant or property without a
  docstring) is shown as text. Only a reference to nothing fails. An attribute docstring that
  opens with a phrase and a colon ("Shape of one image: ...") keeps that phrase as text,
  where napoleon would read it as the attribute's type. A type alias inside a generic
  (``Sequence[ArrayLike]``) is shown by its name, not by Sphinx's repr. Not listed as
  members: a NamedTuple's field aliases (its ``Attributes:`` section describes them) and
  class attributes holding another library's function (a field default like ``print``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
import pkgutil
import re
import shutil

import jupytext
import nbformat
from sphinx.util.docutils import SphinxDirective

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


class OtherPublicNames(SphinxDirective):
    """Documents the names of ``jaxrelu.__all__`` that this page's autodoc directives do not."""

    def run(self):
        import jaxrelu

        page = pathlib.Path(self.env.doc2path(self.env.docname)).read_text()
        listed = set(re.findall(r"\.\. auto\w+:: jaxrelu\.(\w+)", page))
        rest = [n for n in jaxrelu.__all__ if n != "__version__" and n not in listed]
        if not rest:
            return []
        lines = [".. rubric:: Other public names", ""]
        for name in rest:
            obj = getattr(jaxrelu, name)
            kind = "class" if isinstance(obj, type) else "function" if callable(obj) else "data"
            lines += [f".. auto{kind}:: jaxrelu.{name}", ""]
        return self.parse_text_to_nodes("\n".join(lines))


class StudyModules(SphinxDirective):
    """An ``automodule`` section for every public module of :mod:`jaxrelu.study`."""

    def run(self):
        import jaxrelu.study

        lines = []
        for info in sorted(pkgutil.iter_modules(jaxrelu.study.__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                title = f"``jaxrelu.study.{info.name}``"
                lines += [
                    title,
                    "-" * len(title),
                    "",
                    f".. automodule:: jaxrelu.study.{info.name}",
                    "",
                ]
        return self.parse_text_to_nodes("\n".join(lines), allow_section_headings=True)


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


def _is_external(target: str) -> bool:
    top = target.split(".")[0]
    return "." in target and top != "jaxrelu" and importlib.util.find_spec(top) is not None


def _resolve_reference(app, env, node, contnode):
    """A Python reference that did not resolve (see the module docstring)."""
    if node.get("refdomain") != "py":
        return None
    target, domain = node.get("reftarget", ""), env.get_domain("py")
    if _is_external(target):
        return contnode
    obj = _import_path(target) if target.startswith("jaxrelu.") else None
    canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    if obj is not None and canonical.startswith("jaxrelu.") and canonical != target:
        return domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode
        )
    if not target.startswith("jaxrelu.") and not node.get("refspecific"):
        node["refspecific"] = True  # as if written with a leading "."
        found = domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], target, node, contnode
        )
        if found is not None:
            return found
    module = node.get("py:module") or ""
    for path in (target, f"{module}.{target}", f"{module}.{node.get('py:class')}.{target}"):
        if path.startswith("jaxrelu.") and _import_path(path) is not None:
            return contnode  # it exists but has no entry (private, or no docstring): text
    return None


_PROSE_BEFORE_COLON = re.compile(r"^:type: ([A-Z][a-z']* [^`:]*)$")


def _keep_property_phrase(app, what, name, obj, options, lines) -> None:
    """Undo napoleon's reading of "Phrase: description" as "type: description"."""
    if what not in ("property", "attribute", "data"):
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


def _skip_member(app, what, name, obj, skip, options):
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True  # a NamedTuple field: its class's Attributes section describes it
    if what == "class" and callable(obj):
        if not (getattr(obj, "__module__", None) or "").startswith("jaxrelu"):
            return True  # a field whose default is another library's function (echo = print)
    return None


def setup(app):
    app.connect("builder-inited", _copy_notebooks)
    app.connect("source-read", _list_optional_pages)
    app.add_directive("jaxrelu-other-public-names", OtherPublicNames)
    app.add_directive("jaxrelu-study-modules", StudyModules)
    app.connect("missing-reference", _resolve_reference)
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("autodoc-process-docstring", _keep_property_phrase, priority=600)
    app.connect("autodoc-process-signature", _tidy_alias_reprs, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
