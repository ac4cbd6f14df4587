"""Every notebook runs top to bottom on a real Jupyter kernel (small sizes), and is committed without outputs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"01-figure1.ipynb", "02-phase-diagram.ipynb", "03-colored-digits.ipynb",
            "04-instrument-your-own-loop.ipynb", "05-your-own-model.ipynb", "06-label-noise.ipynb",
            "07-benign-overfitting.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    monkeypatch.setenv("DYN_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("DYN_NOTEBOOK_WORK", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        err = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr")
        assert "IProgress" not in err and "TqdmWarning" not in err, err[:300]
        bars = set(re.findall(r"(?:^|[\r\n])([\w .-]+?):\s+\d+%\|", err))
        assert len(bars) <= 1, f"one bar per call in a notebook, got {sorted(bars)}"
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "each notebook shows at least one figure"
