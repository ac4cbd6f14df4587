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
