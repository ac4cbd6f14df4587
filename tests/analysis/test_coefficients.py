"""Exact gamma/rho: hand-built known coefficients, weight reconstruction, lazy (dask) equals eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dyn
from dyn.analysis.coefficients import coefficients, reconstruction_residual, weights_at
from dyn.theory.huang2024 import proof_quantities


def test_solve_returns_known_coefficients(tmp_path):
    """W(t) = W(0) + gamma mu/|mu|^2 + sum_i rho_i xi_i/|xi_i|^2 with chosen gamma, rho: the solve returns them."""
    g = torch.Generator().manual_seed(0)
    d, n, m, steps = 30, 6, 4, 5
    mu = torch.randn(d, generator=g, dtype=torch.float64) * 3
    xi = torch.randn(n, d, generator=g, dtype=torch.float64)
    w0 = torch.randn(m, d, generator=g, dtype=torch.float64) * 0.1
    gam = torch.randn(steps + 1, m, generator=g, dtype=torch.float64)
    rho = torch.randn(steps + 1, m, n, generator=g, dtype=torch.float64)
    gam[0], rho[0] = 0, 0
    w = torch.nn.Parameter(w0.clone())
    site = dyn.Site(w, signals={"mu": mu}, noise=xi)
    with dyn.Recorder(tmp_path / "k.zarr", sites={"h": site}) as rec:
        for t in range(1, steps + 1):
            with torch.no_grad():
                w.copy_(w0 + gam[t][:, None] * mu / mu.dot(mu) + rho[t] @ (xi / (xi * xi).sum(1, keepdim=True)))
            rec.step()
    c = coefficients(dyn.open(tmp_path / "k.zarr")["h"].to_dataset())
    np.testing.assert_allclose(c["gamma"].values[:, :, 0], gam.numpy(), atol=1e-4)  # float32 recording
    np.testing.assert_allclose(c["rho"].values, rho.numpy(), atol=1e-4)
    assert c.attrs["solve_error_bound"] < 1e-4


@pytest.mark.parametrize("modality", ["single", "multi"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reconstruction_of_trained_weights_to_float_precision(tiny, tmp_path, modality, dtype):
    path = tmp_path / "r.zarr"
    dyn.train(tiny(modality=modality, dtype=dtype, steps=15, d=80, n=12), path)
    tree = dyn.open(path)
    for site in tree.attrs["sites"]:
        res = reconstruction_residual(tree[site].to_dataset())
        # the recording is float32 whatever the training dtype, so the rebuild is exact to float32 precision
        assert res["rel"] < 1e-5, res
        assert res["step"] == 15


def test_lazy_dask_decomposition_equals_eager(tiny, tmp_path):
    path = tmp_path / "r.zarr"
    dyn.train(tiny(steps=30), path, chunk_bytes=2000)
    eager = coefficients(dyn.open(path)["h"].to_dataset())
    lazy_site = dyn.open(path, chunks={})["h"].to_dataset()
    assert lazy_site["noise_inner"].chunks is not None
    lazy = coefficients(lazy_site)
    assert lazy["rho"].chunks is not None  # nothing computed yet
    np.testing.assert_allclose(lazy["rho"].values, eager["rho"].values, rtol=1e-9, atol=1e-12)


def test_weights_at_every_step_match_replay(tiny, tmp_path, replay):

    cfg = tiny(steps=6)
    path = tmp_path / "r.zarr"
    dyn.train(cfg, path)
    ds = dyn.open(path)["h"].to_dataset()
    _, weights, _ = replay(cfg)
    for t in (0, 3, 6):
        np.testing.assert_allclose(weights_at(ds, t), weights["h"][t], atol=1e-6)


def test_proof_quantities_definitions(tiny, tmp_path):
    path = tmp_path / "r.zarr"
    dyn.train(tiny(steps=5), path)
    ds = dyn.open(path)["h"].to_dataset()
    pq = proof_quantities(ds)
    c = coefficients(ds)
    sig0 = ds["signal_inner"].values[0, :, 0]
    a = pq["A"].values[:, :, 0]
    np.testing.assert_allclose(a, np.sign(sig0) * (c["gamma"].values[:, :, 0] + sig0), rtol=1e-12)
    # A ~ |<w, mu>| and Psi ~ <w, xi>: equal up to the cross-talk the exact solve removes
    np.testing.assert_allclose(a[0], np.abs(sig0), rtol=1e-6)
    np.testing.assert_allclose(pq["Psi"].values[0], ds["noise_inner"].values[0], rtol=1e-6)
    assert pq["I_plus0"].dtype == bool and pq["I_plus"].dims == ("step", "neuron", "sample")


def test_dependent_basis_is_reported(tmp_path):
    """A dependent basis is refused by the exact solve and projected by default (tests/analysis/test_projection.py)."""
    w = torch.nn.Parameter(torch.randn(3, 4))
    site = dyn.Site(w, signals={"mu": torch.ones(4)}, noise=torch.randn(6, 4))  # 7 probes in 4 dimensions
    with dyn.Recorder(tmp_path / "d.zarr", sites={"h": site}) as rec:
        rec.step()
    ds = dyn.open(tmp_path / "d.zarr")["h"].to_dataset()
    with pytest.raises(dyn.StoreError, match="linearly dependent"):
        coefficients(ds, method="exact")
    c = coefficients(ds)
    assert c.attrs["method"] == "projection" and c.attrs["rank"] == 4


def test_accessors(tiny, tmp_path):
    path = tmp_path / "r.zarr"
    dyn.train(tiny(steps=5), path)
    tree = dyn.open(path)
    ds = tree["h"].to_dataset()
    np.testing.assert_array_equal(ds.dyn.coefficients()["rho"].values, tree.dyn.coefficients("h")["rho"].values)
    assert ds.dyn.reconstruction_residual()["rel"] < 1e-5
    assert list(tree.dyn.compare()["verdict"].unique())
    with pytest.raises(dyn.StoreError, match="compare needs the whole run"):
        ds.dyn.compare()
    import xarray as xr

    root = xr.open_zarr(path)  # the root dataset knows its source: ds.dyn.compare() works on it
    assert root.dyn.compare()["verdict"].tolist() == tree.dyn.compare()["verdict"].tolist()
