"""Bad inputs of issue 24 (items 9, 10, 11): one line, exit 2, nothing written."""
from __future__ import annotations

import pytest
import torch

import dyn
from dyn.cli import main


@pytest.mark.parametrize("args, message", [
    (["--preset", "huang2024-tiny", "--set", "mu_norm=1e-50"], "mu_norm=1e-50 is too small for float32"),
    (["--preset", "huang2024-tiny", "--set", "sigma_xi=1e-30"], "sigma_xi=1e-30 is too small for float32"),
    (["--preset", "huang2024-tiny", "--set", "dtype=float64", "--set", "mu_norm=1e-200"], "too small for float64"),
])
def test_a_probe_scale_that_would_be_stored_as_zeros_is_refused(tmp_path, capsys, args, message):
    out = tmp_path / "A.zarr"
    assert main(["run", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_small_but_usable_scale_is_accepted():
    assert dyn.Config(mu_norm=1e-10).mu_norm == 1e-10


def test_a_zero_signal_vector_is_refused_at_the_site():
    w = torch.nn.Parameter(torch.randn(3, 5))
    with pytest.raises(dyn.ConfigError, match="signal 'mu' is all zeros"):
        dyn.Site(w, signals={"mu": torch.full((5,), 1e-50)}, noise=torch.randn(4, 5))


@pytest.mark.parametrize("rows", [
    [{"id": "a", "seed": 0, "status": "complete", "winner": "signal learning", "probe_acc": 0.9, "modality": "multi"}],
    [{"id": "a", "n_snr2": 1.0, "status": "failed", "error": "DivergenceError: loss is nan"}],
    [],
])
def test_phase_diagram_of_a_grid_without_its_axis_or_without_finished_runs_is_none(rows):
    """Item 10: a KeyError ('n_snr2', 'winner') after every run had finished."""
    import pandas as pd

    from dyn.experiments.sweep import phase_diagram

    assert phase_diagram(pd.DataFrame(rows), setup="huang2024") is None


def test_a_phase_diagram_over_n_snr2_alone_draws_the_single_modal_panel():
    import pandas as pd

    from dyn.experiments.sweep import phase_diagram

    rows = [{"id": f"r{i}", "n_snr2": x, "status": "complete", "winner": "noise memorization", "probe_acc": 0.6,
             "modality": m} for i, (x, m) in enumerate([(0.5, "single"), (2.0, "single"), (1.0, "multi")])]
    fig = phase_diagram(pd.DataFrame(rows), setup="huang2024")
    assert [ax.get_visible() for ax in fig.axes[:3]] == [False, False, True]


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_sweep_refuses_workers_below_one(tmp_path, capsys, workers):
    """Item 10: --workers 0 was accepted and the sweep waited forever for a worker."""
    with pytest.raises(SystemExit) as exit:  # argparse's one-line usage error
        main(["sweep", "--grid", "phase-diagram", "--out", str(tmp_path / "s"), f"--workers={workers}"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "--workers must be a positive integer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
    from dyn.experiments.sweep import sweep

    with pytest.raises(dyn.ConfigError, match="workers must be a positive integer"):
        sweep("phase-diagram", tmp_path / "s", workers=int(workers))
    assert not (tmp_path / "s").exists()
