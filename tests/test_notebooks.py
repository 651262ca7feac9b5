"""Every notebook in notebooks/ runs top to bottom in a fresh kernel (they are stored as
jupytext percent-format .py files, so diffs stay readable) and its own assertions pass.

With ``JAXRELU_EXECUTED_NOTEBOOKS=DIR`` set (as CI does), the executed notebooks are also
written to DIR, where the documentation build picks them up instead of executing the
notebooks a second time (docs/_ext/jaxrelu_docs.py)."""

import os
import pathlib

import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.py"))


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 7


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_paired_and_names_its_kernel(path):
    jupytext = pytest.importorskip("jupytext")
    meta = jupytext.read(path).metadata
    assert meta.get("kernelspec", {}).get("name") == "python3", f"{path.name}: no kernelspec"
    assert meta.get("jupytext", {}).get("formats") == "ipynb,py:percent", f"{path.name}: unpaired"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline, as for a reader
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    images = sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )
    assert images >= 1, f"{path.name} rendered no plot"
    if out_dir := os.environ.get("JAXRELU_EXECUTED_NOTEBOOKS"):
        pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
        jupytext.write(nb, pathlib.Path(out_dir) / f"{path.stem}.ipynb")
