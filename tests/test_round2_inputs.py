"""Bad inputs of issue 24 (items 9, 10, 11): one line, exit 2, nothing written."""
from __future__ import annotations

import numpy as np
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


def test_a_signal_stored_as_zeros_is_named_at_the_site():
    """A scale that float32 stores as zeros is named where the site is made (a warning: a class mean of blank conv
    patches is a legitimate zero signal, and verify fails the undefined decomposition it leads to)."""
    w = torch.nn.Parameter(torch.randn(3, 5))
    with pytest.warns(UserWarning, match="signal 'mu' is the zero vector"):
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


@pytest.mark.parametrize("text, message", [
    (b"\xff\xfe preset", "not a UTF-8 text file"),
    (b'preset = "huang2024-tiny"\nfixed = 3\n[axes]\nseed = [0]\n', "[fixed] must be a table"),
])
def test_grid_files_that_are_not_utf8_or_have_a_scalar_fixed_exit_2(tmp_path, capsys, text, message):
    """Item 9: a UnicodeDecodeError / TypeError traceback (exit 1)."""
    grid = tmp_path / "g.toml"
    grid.write_bytes(text)
    assert main(["sweep", "--grid", str(grid), "--out", str(tmp_path / "s"), "--sequential"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


def test_a_preset_file_that_is_not_utf8_exits_2(tmp_path, capsys):
    preset = tmp_path / "p.toml"
    preset.write_bytes(b"[config]\nd = 5 # \xe9\n")
    assert main(["run", "--preset", str(preset), "--out", str(tmp_path / "A.zarr")]) == 2
    err = capsys.readouterr().err
    assert "not a UTF-8 text file" in err and len(err.strip().splitlines()) == 1


def test_analyze_of_a_store_with_random_bytes_in_a_chunk_names_it(tmp_path, capsys):
    """Item 9: 'All-NaN slice' traceback; the chunk's checksum now names it."""
    path = tmp_path / "run.zarr"
    dyn.train(dyn.Config(d=30, n=6, m=3, steps=4), path)
    chunk = path / "h" / "noise_inner" / "c.0.0.0"
    chunk.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, chunk.stat().st_size, dtype=np.uint8)))
    assert main(["analyze", str(path), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "h/noise_inner chunk c.0.0.0 has a checksum" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()
