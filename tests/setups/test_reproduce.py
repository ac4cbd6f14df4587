"""Reproduction of Figure 1 at reduced size: the paper's qualitative outcomes over several seeds."""

from __future__ import annotations

import pandas as pd

from dyn.cli import main


def test_figure1_small_reproduces_the_papers_shape(tmp_path, capsys):
    out = tmp_path / "fig1"
    assert main(["reproduce", "figure1", "--seeds", "3", "--small", "--out", str(out), "--quiet"]) == 0
    assert "probe_acc" in capsys.readouterr().out
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


def test_table1_colored_digits_small(tmp_path, capsys):
    """Real handwritten digits from scikit-learn, coloured: multi-modal generalises to reversed colours better."""
    from dyn.setups.huang2024.colored_digits import make_colored_digits

    data = make_colored_digits(0)
    train_match = (data.colour_train == data.class_train).float().mean().item()
    test_match = (data.colour_test == data.class_test).float().mean().item()
    assert 0.72 < train_match < 0.86 and test_match < 0.1  # correlation 0.775 (+ chance) in train, broken in test
    noise = (data.y_train != data.class_train).float().mean().item()
    assert 0.06 < noise < 0.14
    out = tmp_path / "t1"
    assert main(["reproduce", "table1", "--seeds", "2", "--small", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "paper: 88.43 / 12.68" in printed and "paper: 87.77 / 82.13" in printed
    table = pd.read_csv(out / "table1.csv").set_index("modality")
    assert table.loc["multi", "test_acc_mean"] > table.loc["single", "test_acc_mean"] + 5
    assert (out / "directions.png").stat().st_size > 0 and len(list((out / "runs").glob("*.zarr"))) == 4
    curves = pd.read_parquet(out / "curves.parquet")
    assert set(curves["direction"]) == {"shape", "colour", "noise"}
