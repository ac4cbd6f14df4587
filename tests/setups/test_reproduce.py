"""Reproduction of Figure 1 and Table 1 at reduced size: the paper's qualitative outcomes, and the outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dyn.cli import main


def test_figure1_small_reproduces_the_papers_shape(tmp_path, capsys):
    out = tmp_path / "fig1"
    assert main(["reproduce", "figure1", "--seeds", "3", "--small", "--out", str(out), "--progress"]) == 0
    captured = capsys.readouterr()
    assert "probe_acc" in captured.out and "%|" not in captured.out
    row = next(line for line in captured.out.splitlines() if line.strip().startswith("OOD accuracy, single-modal "))
    assert "paper vs dyn:" in captured.out and "stays ≈ 0.5 (chance)" in row and ("reproduced" in row or "differs (" in row)
    # the outer bar: 3 seeds x 2 modalities, then 3 figures; and the trainers' per-step bars under it
    assert "figure1: 100%|" in captured.err and "9/9" in captured.err
    for name in ("figure1.png", "figure1.svg", "figure1-coefficients.png", "curves.parquet", "summary.csv"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "runs").glob("*.zarr"))) == 6
    s = pd.read_csv(out / "summary.csv").set_index(["metric", "modality"])["mean"]
    # multi-modal OOD probe accuracy clearly above single-modal, which stays near chance
    assert s["probe_acc", "multi"] > s["probe_acc", "single"] + 0.2
    assert s["probe_acc", "single"] < 0.7
    # signal learning higher multi-modal, noise memorization higher single-modal (raw and exact metrics)
    assert s["signal_inner_max", "multi"] > 2 * s["signal_inner_max", "single"]
    assert s["gamma_max", "multi"] > 2 * s["gamma_max", "single"]
    assert s["noise_inner_max", "single"] > s["noise_inner_max", "multi"]
    assert s["rho_max", "single"] > s["rho_max", "multi"]
    # both losses converge
    assert s["loss", "single"] < 0.2 and s["loss", "multi"] < 0.2
    curves = pd.read_parquet(out / "curves.parquet")
    assert set(curves["seed"]) == {0, 1, 2}
    assert curves[curves.metric == "probe_acc"].groupby(["modality", "seed"]).size().min() >= 15


def test_reproduce_refuses_existing_output(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep").write_text("x")
    assert main(["reproduce", "figure1", "--small", "--seeds", "1", "--out", str(tmp_path / "o")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "o" / "keep").read_text() == "x"


def test_table1_small_one_seed_prints_table_and_ablation(tmp_path, capsys):
    """Real handwritten digits from scikit-learn, coloured; one seed prints no spread and no NaN."""
    from dyn.setups.huang2024.colored_digits import DIGITS_NOTES
    from dyn.experiments.huang2024 import DIRECTION_GROUPS, SMALL_GRID, _first_layer
    from dyn.analysis.run import Run

    out = tmp_path / "t1"
    assert main(["reproduce", "table1", "--seeds", "1", "--small", "--out", str(out), "--progress"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    # one bar over every model trained (runs.csv) and the two figures; bars on stderr only
    tasks = len(pd.read_csv(out / "runs.csv")) + 2
    assert f"{tasks}/{tasks}" in captured.err and "100%|" in captured.err and "%|" not in printed
    assert "nan" not in printed.lower() and "±" not in printed
    assert "| 88.43 | 12.68 |" in printed and "| 87.77 | 82.13 |" in printed and "OOD test gap" in printed
    assert "caption colour-word rate q" in printed and "train colour-class correlation p" in printed
    assert printed.startswith((out / "table1.md").read_text())
    table = pd.read_csv(out / "table1.csv")
    assert list(table.columns) == ["modality", "train_acc_mean", "train_acc_std", "test_acc_mean", "test_acc_std",
                                   "paper_train", "paper_test"]
    assert list(table["modality"]) == ["single", "multi"] and table["train_acc_std"].isna().all()
    ablation = pd.read_csv(out / "ablation.csv")
    rates, correlations = SMALL_GRID
    q = ablation[ablation.factor == "caption colour-word rate q"]
    p = ablation[ablation.factor == "train colour-class correlation p"]
    assert list(q["value"]) == list(rates) and set(q["modality"]) == {"multi"}
    assert sorted(zip(p["value"], p["modality"])) == sorted((v, m) for v in correlations for m in ("single", "multi"))
    assert {"test_acc_mean", "colour_follow_mean", "align_shape_mean", "align_colour_mean"} <= set(ablation.columns)
    assert (ablation["seeds"] == 1).all()
    for name in ("directions.png", "directions.svg", "ablation.png", "ablation.svg", "runs.csv", "protocol.json"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "runs").glob("*.zarr"))) == 2  # the default runs are recorded, the ablation is not
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["default"]["notes"] == DIGITS_NOTES and protocol["default"]["epochs"] == 20
    curves = pd.read_parquet(out / "curves.parquet")
    assert set(curves["direction"]) == set(DIRECTION_GROUPS.values())
    ds = Run(out / "runs" / "single-seed0.zarr").site("first")
    noise, rnd = ds["noise_vectors"].values, ds["random_vectors"].values
    assert rnd.shape == noise.shape and np.allclose(np.linalg.norm(rnd, axis=1), np.linalg.norm(noise, axis=1))
    shape = ds["signal_vectors"].values[:10]
    rnd10 = ds["random_signal_vectors"].values
    assert rnd10.shape == shape.shape and np.allclose(np.linalg.norm(rnd10, axis=1), np.linalg.norm(shape, axis=1))
    weights = _first_layer(ds)  # rebuilt from the recorded inner products: the stored weights, exactly
    assert np.allclose(weights[0], ds["weight_init"].values, atol=1e-4)
    assert np.allclose(weights[-1], ds["weight_final"].values, atol=1e-4)


def test_table1_spread_is_printed_only_with_several_seeds():
    from dyn.experiments.huang2024 import _pm

    assert _pm(0.5, float("nan")) == "50.00"
    assert _pm(0.5, 0.0125) == "50.00 ± 1.25"
    assert _pm(61.3, 2.0, 1) == "61.30 ± 2.00"
