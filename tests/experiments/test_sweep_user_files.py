"""A sweep never replaces or deletes what a user changed or added (issue 24, items 1 and 2): its tables and figures
are hashed like a report's files, and a user's zarr group inside one of its run stores is the user's."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dyn.cli import main

GRID = 'preset = "huang2024-tiny"\n[fixed]\nsteps = 10\n[axes]\nn_snr2 = [0.5]\nmodality = ["single"]\n'


@pytest.fixture
def swept(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    out = tmp_path / "s"
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--sequential", "--quiet"]) == 0
    return grid, out


@pytest.mark.parametrize("name", ["results.csv", "phase-diagram.svg", "results.parquet", "sweep.json"])
def test_overwrite_and_rerun_refuse_a_sweep_file_the_user_changed(swept, capsys, name):
    grid, out = swept
    with open(out / name, "ab") as f:
        f.write(b"\n")  # the user's edit
    edited = (out / name).read_bytes()
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--sequential", "--quiet", "--overwrite"]) == 2
    assert f"{name} (changed since dyn wrote it)" in capsys.readouterr().err
    if name != "sweep.json":  # an edited sweep.json is refused as another grid's, also with one line
        assert main(["sweep", "--grid", str(grid), "--out", str(out), "--sequential", "--quiet"]) == 2
        assert f"{name}, changed since dyn wrote it" in capsys.readouterr().err
    assert (out / name).read_bytes() == edited


def test_overwrite_replaces_an_unchanged_sweep(swept, capsys):
    grid, out = swept
    before = (out / "results.csv").read_text()
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--sequential", "--quiet", "--overwrite"]) == 0
    assert (out / "results.csv").read_text().splitlines()[0] == before.splitlines()[0]


def test_a_users_group_in_a_sweeps_run_store_is_kept(swept, capsys):
    grid, out = swept
    store = next((out / "runs").iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"n": ("k", np.arange(5.0))}).to_zarr(store, mode="a", group="mine")
    files = sorted(p for p in (store / "mine").rglob("*") if p.is_file())
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--sequential", "--quiet", "--overwrite"]) == 2
    assert "which dyn did not write" in capsys.readouterr().err
    assert sorted(p for p in (store / "mine").rglob("*") if p.is_file()) == files
