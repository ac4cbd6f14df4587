"""Reproductions of Huang, Han et al. 2025 (Figures 2 and 3) and the optimizer comparison, at seconds-long sizes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dyn.cli import main
from dyn.errors import ConfigError
from dyn.experiments.sweep import load_grid
from dyn.setups.huang2025_label_noise import LabelNoiseConfig, train, with_snr
from dyn.experiments.huang2025_label_noise import figure3, optimizer_configs, race_boundary
from dyn.theory.huang2025_label_noise.quantities import Params

pytestmark = pytest.mark.usefixtures("one_thread")




def test_figure2_small_reproduces_the_papers_shape(tmp_path, capsys, monkeypatch):
    out = tmp_path / "fig2"
    monkeypatch.setenv("DYN_PROGRESS", "1")  # bars wanted everywhere, but --quiet hides them
    assert main(["reproduce", "figure2", "--seeds", "2", "--small", "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "%|" not in captured.err
    assert "paper vs dyn:" in text and "label-noise GD: ratio below standard GD's" in text and "ratio" in text
    assert "differs" not in text.split("paper vs dyn:")[1], text  # the small version reproduces every finding
    for name in ("figure2.png", "figure2.svg", "curves.parquet", "summary.csv"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "runs").glob("*.zarr"))) == 4
    s = pd.read_csv(out / "summary.csv").set_index(["metric", "algorithm"])["mean"]
    # standard GD: loss near zero, noise memorization far above signal learning, test accuracy near chance
    assert s["loss", "gd"] < 0.01
    assert s["ratio", "gd"] > 10
    assert s["test_acc", "gd"] < 0.65
    # label-noise GD: loss stays Theta(1), signal learning wins, generalizes
    assert s["loss", "label_noise"] > 0.05
    assert s["ratio", "label_noise"] < 1
    assert s["test_acc", "label_noise"] > 0.9
    curves = pd.read_parquet(out / "curves.parquet")
    assert set(curves["seed"]) == {0, 1}
    assert {"ratio", "raw_ratio", "gamma_max", "rho_max", "loss", "loss_noisy", "test_acc"} <= set(curves["metric"])


def test_snr_axis_and_race_boundary():
    cfg = LabelNoiseConfig()
    assert math.isclose(with_snr(cfg, 0.05).snr, 0.05, rel_tol=1e-12)
    with pytest.raises(ConfigError, match="snr must be a positive number"):
        with_snr(cfg, -1.0)
    snrs = np.array([0.03, 0.05, 0.1])
    nstar = race_boundary(cfg, snrs)
    assert np.all(np.diff(nstar) < 0)
    for s, n in zip(snrs, nstar):  # the boundary separates the theory's own predictions
        for factor, noise_first in ((0.9, True), (1.1, False)):
            conf = with_snr(cfg, float(s)).replace(n=min(int(n * factor), cfg.d - 1)).to_dict()
            if conf["n"] == cfg.d - 1:
                continue
            assert Params.from_config(conf).race_prediction()["noise_first"] is noise_first


def test_figure3_on_a_tiny_grid_resumes_and_draws(tmp_path):
    grid = load_grid("huang2025-figure3-small")
    grid["axes"] = {"snr": [0.03, 0.1], "n": [20], "algorithm": ["gd", "label_noise"], "seed": [0]}
    out = tmp_path / "fig3"
    table = figure3(out, grid=grid, sequential=True).set_index(["algorithm", "snr"])["mean"]
    assert table["label_noise", 0.1] > 0.9  # label-noise GD generalizes at the higher SNR
    assert table["gd", 0.1] < 0.7  # standard GD does not
    for name in ("figure3.png", "figure3.svg", "figure3.csv", "results.parquet"):
        assert (out / name).stat().st_size > 0
    again = figure3(out, grid=grid, sequential=True)  # resumes: every run read back, same numbers
    assert pd.read_parquet(out / "results.parquet")["reused"].all()
    assert np.allclose(again.set_index(["algorithm", "snr"])["mean"].loc[table.index], table)
    bad = dict(grid, axes={"n": [20], "algorithm": ["gd"]})
    with pytest.raises(ConfigError, match="missing: snr"):
        figure3(tmp_path / "bad", grid=bad, sequential=True)


def test_optimizer_field_validation_and_resume_refusal(tmp_path):
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        LabelNoiseConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="momentum must lie in"):
        LabelNoiseConfig(momentum=1.0)
    cfg = LabelNoiseConfig(d=40, n=8, n_test=20, m=4, steps=5, population_draws=0, optimizer="adam", eta=0.01)
    with pytest.raises(ConfigError, match="resume is only supported for optimizer 'gd'"):
        train(cfg, tmp_path / "r.zarr", resume=True)


def test_optimizers_change_the_trajectory_on_the_same_data(tmp_path):
    import dyn

    base = LabelNoiseConfig(d=60, n=10, n_test=50, m=4, steps=8, eta=0.5, sigma0=0.05, population_draws=0)
    configs = optimizer_configs(base)
    assert {c.seed for c in configs.values()} == {0} and configs["momentum"].optimizer == "momentum"
    finals = {}
    for name in ("gd", "momentum", "adam"):
        path = tmp_path / f"{name}.zarr"
        train(configs[name], path)
        run = dyn.Run(path)
        assert run.attrs["optimizer"] == configs[name].optimizer
        finals[name] = run.site("pos")["noise_inner"].values
    assert np.array_equal(finals["gd"][0], finals["adam"][0])  # same data and initialisation
    from dyn.theory.huang2025_label_noise import LabelNoiseTheory

    with pytest.raises(ConfigError, match="trained with optimizer 'adam'"):  # refused, never silently judged
        dyn.compare(tmp_path / "adam.zarr", LabelNoiseTheory())
    assert len(dyn.compare(tmp_path / "gd.zarr", LabelNoiseTheory())) > 0
    for name in ("momentum", "adam"):
        assert not np.allclose(finals[name][-1], finals["gd"][-1], rtol=1e-3, atol=1e-6)


def test_reproduce_optimizers_small(tmp_path, capsys):
    out = tmp_path / "opt"
    assert main(["reproduce", "optimizers", "--small", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Adam" in text and "label-noise GD" in text
    table = pd.read_csv(out / "optimizers.csv").set_index("optimizer")
    assert list(table.index) == ["gd", "label_noise", "momentum", "adam", "adam_label_noise"]
    assert table.loc["gd", "winner"] == "noise memorization"
    assert table.loc["label_noise", "winner"] == "signal learning"
    assert table.loc["label_noise", "test_acc"] > table.loc["gd", "test_acc"] + 0.3
    for name in ("optimizers.png", "optimizers.svg", "curves.parquet"):
        assert (out / name).stat().st_size > 0
