"""Issue 22.3: controls that say "more than chance" — random signals and random directions recorded in the run, a
shuffled-label run when given — with the margin, and a statement per site that can say "not above chance"."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dyn
from dyn.analysis.controls import controls, statement
from dyn.record import probes


def _train(path, x, y, site_fn, steps=30):
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 2, bias=False)
    site = site_fn(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    with dyn.Recorder(path, {"w": site}, optimizer=opt) as rec:
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)


def _data(seed=0, n=60, d=20):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, d, generator=g)
    x[:, 0] += 3.0 * (2 * y - 1)
    return x, y


def test_signal_learning_clearly_above_random_signal_and_shuffled_labels(tmp_path):
    x, y = _data()
    _train(tmp_path / "real.zarr", x, y, lambda m: probes.site_for(m, x, y))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    _train(tmp_path / "shuffled.zarr", x, y[perm], lambda m: probes.site_for(m, x, y))
    table = controls(tmp_path / "real.zarr", shuffled=tmp_path / "shuffled.zarr")
    sig = table[table["quantity"] == "signal learning"].set_index("control")
    assert sig.loc["random signal", "margin"] > 2 and sig.loc["shuffled labels", "margin"] > 2
    line = statement(table, "w")
    assert line.startswith("site w: signal learning clearly above chance") and "shuffled labels" in line


def test_a_random_signal_is_not_above_chance(tmp_path):
    """The check can fail: the 'signal' is itself a random direction, compared with 20 other random directions."""
    x, y = _data()
    g = torch.Generator().manual_seed(5)
    fake = torch.randn(x.shape[1], generator=g)
    ctl = torch.randn(20, x.shape[1], generator=g)
    ctl = ctl / ctl.norm(dim=1, keepdim=True) * fake.norm()
    _train(tmp_path / "f.zarr", x, y, lambda m: dyn.Site(m.weight, signals={"fake": fake}, noise=x,
                                                          extra={"random_signal": ("random_signal", ctl)}))
    table = controls(tmp_path / "f.zarr")
    row = table[table["control"] == "random signal"].iloc[0]
    assert row["margin"] < 1 and not row["above"]
    assert "signal learning not above chance" in statement(table, "w")


def test_missing_controls_and_sites(tmp_path):
    x, y = _data()
    _train(tmp_path / "bare.zarr", x, y, lambda m: dyn.Site(m.weight, signals={"mu": x[0]}, noise=x), steps=3)
    assert controls(tmp_path / "bare.zarr").empty
    assert statement(controls(tmp_path / "bare.zarr"), "w") == "site w: no control recorded or given"
    w = torch.nn.Parameter(torch.zeros(2, 20))
    with dyn.Recorder(tmp_path / "other.zarr", {"v": dyn.Site(w, signals={"mu": x[0]}, noise=x)}) as rec:
        rec.step()
    with pytest.raises(dyn.StoreError, match="no site 'w'"):
        controls(tmp_path / "bare.zarr", shuffled=tmp_path / "other.zarr")
