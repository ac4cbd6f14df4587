"""Issue 22.1: the pre-flight estimate refuses a recording that does not fit, in one line, before writing anything;
the conv helpers' default probe count fits; the CNN on all 1,797 digits records and analyses with the defaults."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dyn
from dyn.analysis.coefficients import coefficients
from dyn.record import budget, probes
from tests.digits import cnn, digits, train_recorded


def _conv_site(n_patches: int) -> dyn.Site:
    w = torch.nn.Parameter(torch.randn(8, 9))
    return dyn.Site(w, signals={"mu": torch.ones(9)}, noise=torch.randn(n_patches, 9))


def test_estimate_matches_the_written_store(tmp_path):
    """The store estimate is within 25% of the bytes on disk (uncompressed float32 chunks)."""
    site = _conv_site(20_000)
    with dyn.Recorder(tmp_path / "s.zarr", {"conv": site}, steps=20) as rec:
        for _ in range(20):
            rec.step()
    written = sum(f.stat().st_size for f in (tmp_path / "s.zarr").rglob("*") if f.is_file())
    est = rec.budget[0].store
    assert 0.75 < written / est < 1.25, (written, est)
    assert rec.budget[0].probes == 20_001


@pytest.mark.parametrize("limit", ["max_memory_bytes", "max_store_bytes"])
def test_refusal_is_one_line_with_numbers_and_fixes_and_writes_nothing(tmp_path, limit):
    site = _conv_site(76_800)
    path = tmp_path / "big.zarr"
    with pytest.raises(dyn.ConfigError) as err:
        dyn.Recorder(path, {"conv": site}, steps=500, **{limit: 10**8})
    msg = str(err.value)
    assert "\n" not in msg and "76,801 probes" in msg and "100.0 MB" in msg
    assert "per_image" in msg and "max_samples" in msg and "every=" in msg and "fewer layers" in msg
    assert not path.exists()


def test_the_same_recording_under_the_limit_is_accepted(tmp_path):
    """The check can pass: recording every 10th of 500 steps brings the same site's store under 200 MB, accepted
    under a 200 MB store limit and a 20 GB memory limit."""
    site = _conv_site(76_800)
    est = budget.estimate("conv", site, budget.recorded_steps(500, dyn.every(10)))
    assert est.store < 2e8
    rec = dyn.Recorder(tmp_path / "ok.zarr", {"conv": site}, steps=500, every=10, max_store_bytes=2 * 10**8,
                       max_memory_bytes=20 * 10**9)
    rec.open()
    rec.close()


def test_available_memory_is_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "available_memory", lambda: 10**6)
    with pytest.raises(dyn.ConfigError, match="exceeds the available memory 1.0 MB"):
        dyn.Recorder(tmp_path / "m.zarr", {"conv": _conv_site(10_000)})
    assert not (tmp_path / "m.zarr").exists()


def test_cnn_on_all_digits_records_and_analyses_with_the_defaults(tmp_path):
    """The issue's new user: sites_for(model, [conv, linear], x, y) with no per_image. The conv site gets ~10,000
    patches (not 115,008), the 384-input linear layer its 1,797 samples; no Gram matrix is stored for either."""
    x, y = digits()
    model = cnn(filters=8)
    sites = probes.sites_for(model, ["1", "4"], x, y)
    conv, lin = sites["l1"], sites["l4"]
    assert 10_000 <= conv.noise.shape[0] <= 11_000 and "per_image='auto'" in conv.attrs["patches"]
    assert lin.noise.shape[0] == 1797
    train_recorded(tmp_path / "cnn.zarr", model, sites, x, y, steps=4, snapshots=False)
    tree = dyn.open(tmp_path / "cnn.zarr")
    for name in ("l1", "l4"):
        ds = tree[name].to_dataset()
        assert "gram" not in ds
        c = coefficients(ds)
        assert c.attrs["method"] == "projection" and np.isfinite(c["rho"].values).all()
    size = sum(f.stat().st_size for f in (tmp_path / "cnn.zarr").rglob("*") if f.is_file())
    assert size < 20e6, size  # the 115,008-patch Gram matrix alone would be 106 GB
