"""Issue 21.5: near-dependent probe bases. The stated error bound bounds the error against a float64 solve from saved
weights, "exact" only when it is small against the values, and a basis that cannot separate signal from noise is
reported as such (by ``coefficients``, ``describe`` and ``verify``). Scaling the signal does not change the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dyn
from dyn.analysis.coefficients import coefficients, describe, separation_note

D, N = 40, 12


def _basis(target: float, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise rows and a signal = class-0 mean + δ·(a random direction), δ chosen so that the normalised Gram matrix
    of [μ, ξ] has condition ``target`` (found by bisection on log δ)."""
    g = np.random.default_rng(0)
    xi = g.standard_normal((N, D))
    y = np.arange(N) % 2
    mean = xi[y == 0].mean(0)
    direction = g.standard_normal(D)

    def cond(delta: float) -> tuple[float, np.ndarray]:
        mu = mean + delta * direction
        b = np.vstack([mu, xi])
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        lam = np.linalg.eigvalsh(b @ b.T)
        return lam[-1] / lam[0], mu

    lo, hi = -12.0, 1.0  # log10 δ: condition falls as δ grows
    for _ in range(80):
        mid = (lo + hi) / 2
        if cond(10 ** mid)[0] > target:
            lo = mid
        else:
            hi = mid
    c, mu = cond(10 ** hi)
    assert 0.9 * target < c < 1.1 * target
    return torch.tensor(mu * scale), torch.tensor(xi), torch.tensor(y)


def _run(tmp_path, target: float, dtype: torch.dtype, scale: float = 1.0, name: str = "r"):
    """SGD on a linear layer whose inputs are the probes (updates inside their span); returns the store's site,
    its coefficients and the float64 truth from the saved weights (np.linalg.solve on the independent basis)."""
    mu, xi, y = _basis(target)
    torch.manual_seed(1)
    layer = torch.nn.Linear(D, 2, bias=False).to(dtype)
    x = torch.vstack([mu, xi]).to(dtype)  # the data are not scaled: the probe μ is (γ scales with it)
    mu = mu * scale
    labels = torch.cat([torch.tensor([0]), y])
    site = dyn.Site(layer.weight, signals={"mu": mu.to(dtype)}, noise=xi.to(dtype), labels=y, track_change=True)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    path = tmp_path / f"{name}.zarr"
    w = [layer.weight.detach().double().clone()]
    with dyn.Recorder(path, {"h": site}, optimizer=opt) as rec:
        for _ in range(8):
            loss = torch.nn.functional.cross_entropy(layer(x), labels)
            opt.zero_grad(); loss.backward(); opt.step(); rec.log(loss=loss)
            w.append(layer.weight.detach().double().clone())
    ds = dyn.open(path)["h"].to_dataset()
    c = coefficients(ds)
    b = torch.vstack([mu, xi]).double().numpy()
    norms = (b * b).sum(1)
    truth = np.stack([np.linalg.solve(b @ b.T, ((wt - w[0]).numpy() @ b.T).T).T * norms  # (neuron, basis)
                      for wt in w])
    return ds, c, truth, path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("target", [7.3e5, 8e6])
def test_error_bound_bounds_the_error_of_near_dependent_bases(tmp_path, target, dtype):
    ds, c, truth, path = _run(tmp_path, target, dtype)
    err_g = np.abs(c["gamma"].values[:, :, 0] - truth[:, :, 0]).max()
    err_r = np.abs(c["rho"].values - truth[:, :, 1:]).max()
    assert err_g <= c.attrs["gamma_error_bound"][0], (err_g, c.attrs["gamma_error_bound"])
    assert err_r <= c.attrs["rho_error_bound"], (err_r, c.attrs["rho_error_bound"])
    # the float32 recording cannot resolve γ here: not exact, not separable, and said so everywhere
    assert not c.attrs["exact"] and not c.attrs["separable"]
    assert "exact" != describe(c) and "cannot separate signal from noise" in describe(c)
    assert "mu" in separation_note(c)
    check = {ch.name: ch for ch in dyn.verify(path)}["decomposition h"]
    assert not check.ok and "cannot separate signal from noise" in check.detail


def test_condition_7e5_was_called_exact(tmp_path):
    """The issue's case: the solve is exact (independent basis, condition below 1/rcond) but the float32 rounding
    amplified by the condition moves γ by more than 1% of its values; before, it was called exact with a stated
    bound (‖S‖_∞ · max|P| · 2 eps) below the error."""
    _, c, truth, _ = _run(tmp_path, 7.3e5, torch.float32)
    err = np.abs(c["gamma"].values[:, :, 0] - truth[:, :, 0]).max()
    assert c.attrs["method"] == "exact" and err > 1e-2 * np.abs(truth[:, :, 0]).max()
    assert not c.attrs["exact"] and err <= c.attrs["solve_error_bound"]


def test_well_conditioned_basis_stays_exact_and_its_bound_is_tight(tmp_path):
    """The check can pass: independent random probes are exact, separable, and the bound is within 1e4 of the
    error (not a vacuous inf), and the error itself is far below the values."""
    ds, c, truth, path = _run(tmp_path, 30.0, torch.float32)
    err = np.abs(np.concatenate([c["gamma"].values, c["rho"].values], axis=2) - truth).max()
    assert c.attrs["exact"] and c.attrs["separable"] and describe(c) == "exact"
    assert err <= c.attrs["solve_error_bound"] < 1e4 * max(err, 1e-12)
    assert c.attrs["relative_error_bound"] < 1e-3
    assert {ch.name: ch for ch in dyn.verify(path)}["decomposition h"].ok


@pytest.mark.parametrize("scale", [1e-30, 1e20])
def test_scaled_signals_keep_bound_and_verdicts(tmp_path, scale):
    """Scaling μ by 1e-30 or 1e20 scales γ and its bound together (the bound was 2.4e23 / 1.2e34 before)."""
    _, ref, _, _ = _run(tmp_path, 30.0, torch.float32, name="ref")
    _, c, truth, _ = _run(tmp_path, 30.0, torch.float32, scale=scale, name="scaled")
    assert c.attrs["exact"] == ref.attrs["exact"] and c.attrs["separable"] == ref.attrs["separable"]
    err = np.abs(c["gamma"].values[:, :, 0] - truth[:, :, 0]).max()
    assert err <= c.attrs["gamma_error_bound"][0]
    ratio = c.attrs["gamma_error_bound"][0] / ref.attrs["gamma_error_bound"][0] / scale
    assert 0.1 < ratio < 10, ratio
    rel = lambda x: x.attrs["gamma_error_bound"][0] / float(abs(x["gamma"]).max())  # noqa: E731
    assert 0.1 < rel(c) / rel(ref) < 10 and c.attrs["relative_error_bound"] < 1e-3
