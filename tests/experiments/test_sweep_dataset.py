"""A sweep is one dataset: the theory's result columns in results.parquet (none left null), open_sweep over a sweep
folder and over a plain folder of run stores, and `dyn analyze SWEEP_FOLDER` with its across-runs verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import dyn
from dyn.cli import main
from dyn.experiments.sweep import load_grid, sweep


@pytest.fixture(scope="module")
def label_noise_sweep(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the one_thread fixture: tiny runs are fastest on one thread
    grid = load_grid("huang2025-figure3-small")
    grid["fixed"] = dict(grid["fixed"], steps=60)
    grid["axes"] = {"snr": [0.03, 0.1], "n": [20, 60], "algorithm": ["gd", "label_noise"], "seed": [0]}
    out = tmp_path_factory.mktemp("ln") / "sweep"
    try:
        sweep(grid, out, sequential=True, progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


def test_label_noise_sweep_results_have_no_null_column(label_noise_sweep):
    """Regression: a label-noise sweep's table held null max_gamma/max_rho/ratio/probe_acc and no test error."""
    frame = pd.read_parquet(label_noise_sweep / "results.parquet")
    assert (frame["status"] == "complete").all()
    assert list(frame.columns[frame.isna().all()]) == []
    for col in ("max_gamma", "max_rho", "ratio", "test_error", "test_error_se", "signal_won", "final_loss"):
        assert np.isfinite(frame[col].astype(float)).all(), col
    assert "probe_acc" not in frame  # a column the setup does not define is not written
    assert set(frame["winner"]) <= set(dyn.theory.WINNERS)
    np.testing.assert_allclose(frame["ratio"], frame["max_gamma"] / frame["max_rho"])


def test_open_sweep_is_one_dataset_indexed_by_the_grid(label_noise_sweep):
    ds = dyn.open_sweep(label_noise_sweep)
    assert set(ds.dims) == {"snr", "n", "algorithm", "seed"}
    assert ds.sizes["snr"] == 2 and ds.sizes["n"] == 2 and ds.attrs["setup"] == "huang2025-label-noise"
    err = ds["test_error"].sel(algorithm="gd", seed=0)
    assert err.dims == ("snr", "n") and np.isfinite(err.values).all()
    frame = pd.read_parquet(label_noise_sweep / "results.parquet").set_index("id")
    one = ds.sel(snr=0.1, n=60, algorithm="label_noise", seed=0)
    np.testing.assert_allclose(float(one["test_error"]), frame.loc[str(one["id"].item()), "test_error"])


def test_open_sweep_reads_a_plain_folder_of_runs(label_noise_sweep):
    """Without the grid file the axes are the config fields that differ between the runs (snr enters as mu_norm)."""
    ds = dyn.open_sweep(label_noise_sweep / "runs")
    assert set(ds.dims) == {"mu_norm", "n", "algorithm", "seed"}
    assert int(ds.attrs["runs"]) == 8 and np.isfinite(ds["test_error"]).sum() == 8
    refreshed = dyn.open_sweep(label_noise_sweep, refresh=True)
    np.testing.assert_allclose(refreshed["test_error"].values, dyn.open_sweep(label_noise_sweep)["test_error"].values)


def test_check_transitions_on_a_real_sweep(label_noise_sweep):
    verdicts = dyn.check_transitions(dyn.open_sweep(label_noise_sweep), n_boot=30)
    names = [v.claim for v in verdicts]
    assert "transition.gd.location" in names and "transition.label_noise.collapse" in names
    assert {v.stage for v in verdicts} == {"across runs"}
    for v in verdicts:
        assert v.verdict in ("holds", "violated", "not checkable")
        assert v.verdict != "not checkable" or v.reason


def test_analyze_a_sweep_folder(label_noise_sweep, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["analyze", str(label_noise_sweep), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "transition.gd.location" in text and "across runs:" in text
    for name in ("report.md", "report.html", "transitions.csv", "results.csv", "transition-gd-phase.png",
                 "transition-gd-collapse.png"):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "transitions.csv")
    assert set(table["stage"]) == {"across runs"}


def test_analyze_reads_an_old_table_from_the_stores(label_noise_sweep, tmp_path, capsys):
    """A sweep written before results() existed (no test_error column) is re-read from its stores, unchanged."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(label_noise_sweep, old)
    frame = pd.read_parquet(old / "results.parquet").drop(columns=["test_error", "test_error_se"])
    frame.to_parquet(old / "results.parquet", index=False)
    before = (old / "results.parquet").read_bytes()
    assert main(["analyze", str(old), "--out", str(tmp_path / "rep")]) == 0
    assert (old / "results.parquet").read_bytes() == before
    table = pd.read_csv(tmp_path / "rep" / "results.csv")
    assert np.isfinite(table["test_error"]).all()


def test_analyze_a_sweep_without_complete_runs_exits_2(tmp_path, capsys):
    (tmp_path / "s" / "runs").mkdir(parents=True)
    (tmp_path / "s" / "sweep.json").write_text('{"setup": "huang2024", "axes": {"seed": [0]}}')
    assert main(["analyze", str(tmp_path / "s"), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no complete run stores" in err
    assert not (tmp_path / "rep").exists()


def test_result_row_fills_every_default_column():
    class Fake:
        steps = np.arange(3)
        attrs = {"setup": "x", "config": {"n": 3}}

        def scalar(self, name):
            return np.array([1.0, 0.5, math.nan]) if name == "loss" else None

    class T(dyn.theory.Theory):
        name = "fake"

        def applies_to(self, run):
            return None

        def claims(self, run):
            return []

        def regime(self, run):
            return {"observed_winner": "did not move", "predicted_winner": "signal learning"}

    row = T().results(Fake())
    assert row["winner"] == "did not move" and math.isnan(row["signal_won"]) and row["final_loss"] == 0.5
