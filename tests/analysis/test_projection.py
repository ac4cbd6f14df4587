"""Coefficients on any basis: the projection against numpy.linalg.lstsq and brute-force span coverage from saved
weights; the cases that broke on real data (n + K > d, class-mean signals, few conv patches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dyn
from dyn.analysis.coefficients import coefficients, reconstruction_residual, recording_error
from dyn.record import probes
from tests.digits import cnn, digits, mlp, train_recorded


def _brute(ds, weights, rcond=1e-6):
    """Min-norm least squares of W(t) - W(0) on the normalised stored basis, and |proj|^2 / |change|^2."""
    basis = np.concatenate([ds["signal_vectors"].values, ds["noise_vectors"].values]).astype(np.float64)
    norms = np.linalg.norm(basis, axis=1)
    unit = basis / np.where(norms > 0, norms, 1.0)[:, None]  # a zero probe (an empty patch) explains nothing
    delta = weights - weights[0]  # (T, m, d)
    coef, cover = [], []
    for dw in delta:
        a, *_ = np.linalg.lstsq(unit.T, dw.T, rcond=np.sqrt(rcond))  # singular values: sqrt of the Gram's eigenvalues
        coef.append((a * norms[:, None]).T)
        proj = (unit.T @ a).T
        total = (dw ** 2).sum(1)
        cover.append(np.where(total > 0, (proj ** 2).sum(1) / np.where(total > 0, total, 1), np.nan))
    return np.stack(coef), np.stack(cover)


def test_digits_mlp_more_probes_than_features(tmp_path):
    """Regression (issue 11): n + K > d used to raise 'linearly dependent' in coefficients, tidy and verify."""
    x, y = digits(300)
    model = mlp()
    site = dyn.Site(model[0].weight, signals=probes.class_means(x, y), noise=x, labels=y, track_change=True)
    weights = train_recorded(tmp_path / "m.zarr", model, {"w": site}, x, y, steps=12)["w"]
    ds = dyn.open(tmp_path / "m.zarr")["w"].to_dataset()
    c = coefficients(ds)
    assert c.attrs["method"] == "projection" and c.attrs["rank"] <= 64 < c.attrs["n_basis"]
    coef, cover = _brute(ds, weights)
    got = np.concatenate([c["gamma"].values, c["rho"].values], axis=2)
    scale = np.abs(coef).max()
    np.testing.assert_allclose(got, coef, atol=5e-3 * scale)  # float32 recording through a cut near 1e6
    # full-batch GD on the probed samples: every update is a combination of the inputs, the span holds it all
    np.testing.assert_allclose(c["span_coverage"].values[1:], cover[1:], atol=1e-4)
    assert float(c["span_coverage"].isel(step=slice(1, None)).min()) > 0.9999
    assert reconstruction_residual(ds, c)["rel"] < 1e-2
    assert recording_error(ds)["rel"] < 1e-5
    checks = {ch.name: ch for ch in dyn.verify(tmp_path / "m.zarr")}
    assert checks["decomposition w"].ok, checks["decomposition w"].detail
    frame = dyn.tidy(tmp_path / "m.zarr", reduce="max")
    assert set(frame["quantity"]) == {"signal_inner", "noise_inner", "gamma", "rho"}


def test_class_mean_signals_are_not_amplified(tmp_path):
    """Regression (issue 11): signals = class means of the noise rows, n < d: the exact solve returned ~1e8."""
    g = torch.Generator().manual_seed(0)
    d, n = 50, 12
    x = torch.randn(n, d, generator=g)
    y = torch.arange(n) % 3
    model = torch.nn.Linear(d, 3, bias=False)
    site = dyn.Site(model.weight, signals=probes.class_means(x, y), noise=x, labels=y, track_change=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with dyn.Recorder(tmp_path / "c.zarr", sites={"w": site}, optimizer=opt) as rec:
        for _ in range(10):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)
    ds = dyn.open(tmp_path / "c.zarr")["w"].to_dataset()
    with pytest.raises(dyn.StoreError, match="dependent"):
        coefficients(ds, method="exact")
    c = coefficients(ds)
    assert c.attrs["method"] == "projection" and c.attrs["rank"] == n
    change = np.sqrt(c["change_sq"].values.max())
    assert np.abs(c["gamma"].values).max() < 100 * change and np.abs(c["rho"].values).max() < 100 * change
    assert float(c["span_coverage"].isel(step=-1).min()) > 0.9999
    assert reconstruction_residual(ds, c)["rel"] < 1e-4


def test_adam_is_a_projection_with_measured_coverage(tmp_path):
    """Adam's updates leave the span of the inputs; the per-step coverage equals the brute force from weights."""
    x, y = digits(40)  # n + K = 50 <= d = 64: an independent basis, solved exactly
    model = mlp()
    site = dyn.Site(model[0].weight, signals=probes.class_means(x, y), noise=x, labels=y, track_change=True)
    weights = train_recorded(tmp_path / "a.zarr", model, {"w": site}, x, y, optimizer="adam", steps=10)["w"]
    ds = dyn.open(tmp_path / "a.zarr")["w"].to_dataset()
    c = coefficients(ds)
    _, cover = _brute(ds, weights)
    np.testing.assert_allclose(c["span_coverage"].values[1:], cover[1:], atol=1e-4)
    assert float(c["span_coverage"].isel(step=-1).median()) < 0.99
    np.testing.assert_allclose(c["residual"].values[1:], np.sqrt(np.maximum(1 - cover[1:], 0)), atol=1e-2)
    res = reconstruction_residual(ds, c)
    assert res["rel"] > 1e-2 and res["coverage"] < 0.99
    check = {ch.name: ch for ch in dyn.verify(tmp_path / "a.zarr")}["decomposition w"]
    assert check.ok and "recording sound" in check.detail and "approximate" in check.detail


def test_few_conv_patches_report_their_coverage(tmp_path):
    """Regression (issue 11): 5 conv patches explained 81% of the change silently; now it is measured."""
    x, y = digits(60)
    model = cnn()
    conv = model[1]
    patches = probes.conv_patches(conv, x.reshape(-1, 1, 8, 8), per_image=1)
    sub = slice(0, 5)
    site = dyn.Site(conv.weight, signals=probes.class_means(patches.vectors[sub], y[patches.image[sub]]),
                    noise=patches.vectors[sub], track_change=True)
    weights = train_recorded(tmp_path / "p.zarr", model, {"conv": site}, x, y, steps=8)["conv"]
    ds = dyn.open(tmp_path / "p.zarr")["conv"].to_dataset()
    c = coefficients(ds)
    _, cover = _brute(ds, weights)
    np.testing.assert_allclose(c["span_coverage"].values[1:], cover[1:], atol=1e-4)
    assert float(c["span_coverage"].isel(step=-1).max()) < 0.99


def test_corrupted_recording_is_not_called_approximate(tmp_path):
    x, y = digits(40)
    model = mlp()
    site = dyn.Site(model[0].weight, signals=probes.class_means(x, y), noise=x, labels=y)
    train_recorded(tmp_path / "r.zarr", model, {"w": site}, x, y, steps=4, snapshots=False)
    import zarr

    arr = zarr.open_array(str(tmp_path / "r.zarr" / "w" / "noise_inner"), mode="r+")
    values = arr[...]
    values[-1] *= 1.5
    arr[...] = values
    check = {ch.name: ch for ch in dyn.verify(tmp_path / "r.zarr")}["decomposition w"]
    assert not check.ok and "disagree" in check.detail


def test_raw_export_never_runs_the_solve(tmp_path, monkeypatch):
    x, y = digits(30)
    model = mlp()
    site = dyn.Site(model[0].weight, signals=probes.class_means(x, y), noise=x, labels=y)
    train_recorded(tmp_path / "e.zarr", model, {"w": site}, x, y, steps=3, snapshots=False)

    def broken(*args, **kwargs):
        raise dyn.StoreError("solve failed")

    monkeypatch.setattr(dyn.Run, "coefficients", broken)
    raw = dyn.tidy(tmp_path / "e.zarr", quantities=("signal_inner", "noise_inner"))
    assert set(raw["quantity"]) == {"signal_inner", "noise_inner"}
    with pytest.warns(UserWarning, match="raw inner products only"):
        frame = dyn.tidy(tmp_path / "e.zarr")
    assert set(frame["quantity"]) == {"signal_inner", "noise_inner"}
    with pytest.raises(dyn.StoreError, match="solve failed"):
        dyn.tidy(tmp_path / "e.zarr", quantities=("gamma",))
    with pytest.raises(dyn.ConfigError, match="unknown quantity"):
        dyn.tidy(tmp_path / "e.zarr", quantities=("A",))


def test_projection_rcond_and_method_are_checked(tmp_path):
    x, y = digits(20)
    model = mlp()
    site = dyn.Site(model[0].weight, signals=probes.class_means(x, y), noise=x)
    train_recorded(tmp_path / "q.zarr", model, {"w": site}, x, y, steps=2, snapshots=False)
    ds = dyn.open(tmp_path / "q.zarr")["w"].to_dataset()
    with pytest.raises(dyn.ConfigError, match="method"):
        coefficients(ds, method="svd")
    with pytest.raises(dyn.ConfigError, match="rcond"):
        coefficients(ds, rcond=0)
    lazy = coefficients(dyn.open(tmp_path / "q.zarr", chunks={})["w"].to_dataset())
    np.testing.assert_allclose(lazy["rho"].values, coefficients(ds)["rho"].values, rtol=1e-9, atol=1e-12)
