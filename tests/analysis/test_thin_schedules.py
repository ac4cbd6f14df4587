"""Issue 22.5: long runs — log-spaced and warm-up-dense schedules, and thinning on read that never hides the first
and last steps or a spike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dyn
from dyn.analysis.thin import thin_indices
from dyn.record.schedules import log_spaced, warmup


@pytest.mark.parametrize("where", [1, 2, 777, 4999, 9998])
def test_thinning_keeps_ends_and_any_spike(where):
    rng = np.random.default_rng(where)
    v = rng.normal(size=(10_000, 3)) * 0.01
    v[where, 1] = -40.0  # a one-step spike in one of three curves
    idx = thin_indices(v, max_points=200)
    assert len(idx) <= 202 and idx[0] == 0 and idx[-1] == 9999 and where in idx
    assert np.all(np.diff(idx) > 0)


def test_even_stride_can_hide_a_spike_min_max_cannot():
    """The check can fail: the old even stride (every 50th step) drops the spike that min-max keeps."""
    v = np.zeros(10_000)
    v[1234] = 9.0
    assert 1234 not in thin_indices(len(v), max_points=200) and 1234 in thin_indices(v, max_points=200)


def test_long_run_with_log_spaced_schedule_records_and_verifies(tmp_path):
    w = torch.nn.Parameter(torch.randn(3, 6))
    site = dyn.Site(w, signals={"mu": torch.ones(6)}, noise=torch.randn(4, 6))
    with dyn.Recorder(tmp_path / "l.zarr", {"h": site}, every=log_spaced(10, dense=20), steps=3000) as rec:
        for _ in range(3000):
            with torch.no_grad():
                w.add_(1e-3)
            rec.step()
    steps = dyn.open(tmp_path / "l.zarr")["step"].values
    assert list(steps[:21]) == list(range(21)) and steps[-1] == 3000
    assert 21 + 10 * 2 <= len(steps) <= 21 + 10 * 2.3 + 2  # ~10 per decade from 20 to 3000
    assert rec.budget[0].store > 0
    check = {c.name: c for c in dyn.verify(tmp_path / "l.zarr")}["steps"]
    assert check.ok, check.detail


def test_warmup_schedule_then_every_k():
    s = warmup(50, then=25)
    got = [t for t in range(1, 201) if s(t)]
    assert got[:50] == list(range(1, 51)) and got[50:] == [75, 100, 125, 150, 175, 200]
    with pytest.raises(dyn.ConfigError):
        warmup(10, then=0)
    with pytest.raises(dyn.ConfigError):
        log_spaced(0)
