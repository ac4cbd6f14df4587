"""Sweeps in batches: same results as one run per task, fallback to lone runs, progress bar, dashboard line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dyn
from dyn.experiments.sweep import batches, expand, load_grid, run_batch, sweep
from dyn.store import read_attrs

GRID = Path(__file__).parents[1] / "data" / "tiny-grid.toml"
COMPARE = ["id", "status", "winner", "predicted", "at_step", "modality", "seed", "mu_norm", "mu_tilde_norm", "eta"]
CLOSE = ["max_gamma", "max_rho", "ratio", "probe_acc"]


def test_batches_group_equal_shapes_and_split_for_the_workers():
    specs = expand(load_grid(GRID))  # 4 single-modal + 8 multi-modal runs
    groups = batches(specs, size=32, workers=1)
    assert sorted(len(g) for g in groups) == [4, 8]
    for group in groups:
        assert len({s["config"]["modality"] for s in group}) == 1
    assert sorted(len(g) for g in batches(specs, size=3, workers=1)) == [2, 2, 2, 3, 3]
    assert sorted(len(g) for g in batches(specs, size=32, workers=3)) == [1, 1, 2, 2, 3, 3]
    assert len(batches(specs, size=1)) == len(specs)
    assert sorted(s["id"] for g in batches(specs, size=5, workers=2) for s in g) == sorted(s["id"] for s in specs)
    with pytest.raises(dyn.ConfigError, match="batch size"):
        batches(specs, size=0)


def test_batched_sweep_gives_the_rows_of_one_run_per_task(tmp_path):
    grid = load_grid(GRID)
    old = sweep(grid, tmp_path / "old", sequential=True, batch=1, progress=False)
    new = sweep(grid, tmp_path / "new", sequential=True, progress=False)
    assert len(new) == 12 and (new["status"] == "complete").all()
    assert list(new.columns) == list(old.columns)
    pd.testing.assert_frame_equal(new[COMPARE], old[COMPARE])
    np.testing.assert_allclose(new[CLOSE].to_numpy(float), old[CLOSE].to_numpy(float), rtol=1e-4, atol=1e-6)
    assert all(read_attrs(p).get("batched") in (4, 8) for p in new["store"])
    assert not any("batched" in read_attrs(p) for p in old["store"])
    again = sweep(grid, tmp_path / "new", sequential=True, progress=False)  # resume: everything read back
    assert again["reused"].all()
    pd.testing.assert_frame_equal(again[COMPARE], new[COMPARE])


def test_runs_the_batch_trainer_cannot_take_run_alone(tmp_path):
    grid = load_grid(GRID)
    grid["fixed"]["redraw_eps"] = True  # not batchable: every run is its own task
    grid["axes"] = {"modality": ["single"], "seed": [0, 1]}
    specs = expand(grid)
    assert [len(g) for g in batches(specs)] == [1, 1]
    rows = sweep(grid, tmp_path / "s", sequential=True, progress=False)
    assert (rows["status"] == "complete").all()
    assert not any("batched" in read_attrs(p) for p in rows["store"])


def test_a_refused_batch_falls_back_to_lone_runs(tmp_path):
    grid = load_grid(GRID)
    grid["axes"] = {"d": [30, 31], "modality": ["single"]}  # two shapes forced into one batch: refused
    specs = expand(grid)
    with pytest.raises(dyn.ConfigError, match="runs differ in d"):
        dyn.setups.base.get_setup("huang2024").train_batch(
            [dyn.Config.from_dict(s["config"]) for s in specs], [tmp_path / "x0.zarr", tmp_path / "x1.zarr"])
    rows = run_batch(specs, str(tmp_path))
    assert [r["status"] for r in rows] == ["complete", "complete"]
    assert [r["id"] for r in rows] == [s["id"] for s in specs]
    assert not any("batched" in read_attrs(r["store"]) for r in rows)


def test_a_diverging_run_in_a_batch_is_a_failed_row(tmp_path):
    grid = load_grid(GRID)
    grid["axes"] = {"eta": [0.05, 1e9], "modality": ["multi"], "seed": [0]}
    rows = {r["eta"] if "eta" in r else None: r for r in run_batch(expand(grid), str(tmp_path))}
    assert rows[0.05]["status"] == "complete"
    assert rows[1e9]["status"] == "failed" and rows[1e9]["error"].startswith("DivergenceError:")
    assert read_attrs(rows[1e9]["store"])["status"] == "diverged"


def test_progress_bar_over_runs(tmp_path, capsys):
    grid = load_grid(GRID)
    grid["axes"] = {"seed": [0, 1, 2]}
    sweep(grid, tmp_path / "a", sequential=True, progress=True)
    err = capsys.readouterr().err
    assert "sweep:" in err and "0/3" in err and "run/s" in err
    sweep(grid, tmp_path / "b", sequential=True, progress=False)
    assert "0/3" not in capsys.readouterr().err


def test_local_cluster_says_where_its_dashboard_is(tmp_path, capsys):
    grid = load_grid(GRID)
    grid["axes"] = {"seed": [0, 1]}
    rows = sweep(grid, tmp_path / "s", workers=1, progress=False)
    assert (rows["status"] == "complete").all()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Dask dashboard:")]
    assert len(lines) == 1
    if importlib.util.find_spec("bokeh") is None:
        assert rows.attrs["dashboard"] is None and "bokeh" in lines[0]
    else:
        assert rows.attrs["dashboard"].startswith("http://127.0.0.1:") and rows.attrs["dashboard"] in lines[0]
