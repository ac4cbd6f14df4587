"""The trainer against the paper's formulas, computed independently and by brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dyn
from dyn.setups.huang2024.data import make_data
from dyn.setups.huang2024.train import Huang2024Setup


def _features(w, x):
    """h_r(x^(p)) for all samples, patches, neurons: (N, 2, m), numpy float64."""
    return np.maximum(np.einsum("npd,rd->npr", x, w), 0.0)


def _sim(fa, fb, m):
    """Eq. 4 evaluated with explicit sums: (1/m) sum_r sum_p h_r(a^(p)) h_r(b^(p))."""
    return sum(fa[p, r] * fb[p, r] for p in range(2) for r in range(m)) / m


def _single_loss_direct(w, data, tau):
    x, xa = data.inputs().numpy(), data.augmented().numpy()
    n, m = x.shape[0], w.shape[0]
    f, fa = _features(w, x), _features(w, xa)
    neg = data.negatives.numpy()
    total = 0.0
    for i in range(n):
        pos = math.exp(_sim(f[i], fa[i], m) / tau)
        den = pos + sum(math.exp(_sim(f[i], f[j], m) / tau) for j in range(n) if neg[i, j])
        total -= math.log(pos / den)
    return total / n


def _multi_loss_direct(w, wt, data, tau):
    x, xt = data.inputs().numpy(), data.inputs_tilde().numpy()
    n, m = x.shape[0], w.shape[0]
    f, g = _features(w, x), _features(wt, xt)
    neg = data.negatives.numpy()
    total = 0.0
    for i in range(n):
        for a, b in ((f, g), (g, f)):  # eq. 9: the h-centred and the g-centred term
            pos = math.exp(_sim(a[i], b[i], m) / tau)
            den = pos + sum(math.exp(_sim(a[i], b[j], m) / tau) for j in range(n) if neg[i, j])
            total -= math.log(pos / den)
    return total / n


@pytest.mark.parametrize("negatives", ["all", 2])
def test_single_modal_loss_equals_eq6(tiny, negatives):
    cfg = tiny(negatives=negatives)
    setup = Huang2024Setup(cfg)
    expected = _single_loss_direct(setup.encoders["h"].weight.detach().numpy(), setup.data, cfg.tau)
    assert float(setup.loss().loss.detach()) == pytest.approx(expected, rel=1e-12)


def test_multi_modal_loss_equals_eq9(tiny):
    cfg = tiny(modality="multi")
    setup = Huang2024Setup(cfg)
    w, wt = (setup.encoders[k].weight.detach().numpy() for k in ("h", "g"))
    assert float(setup.loss().loss.detach()) == pytest.approx(_multi_loss_direct(w, wt, setup.data, cfg.tau), rel=1e-12)


def test_initial_multi_modal_loss_is_two_log_one_plus_m():
    # at sigma0 -> 0 all similarities vanish and each term is log(1 + M): the reference value ~7.8
    cfg = dyn.load_preset("huang2024-figure1", modality="multi", d=300, sigma0=1e-6)
    setup = Huang2024Setup(cfg)
    m_per_anchor = setup.data.negatives.sum(1).double()
    assert float(setup.loss().loss.detach()) == pytest.approx(float(2 * torch.log1p(m_per_anchor).mean()), rel=1e-5)


def _loss_derivatives(a, b, neg, tau, m):
    """l'_i and l'_{i,j} of eq. 8 for anchors a against partners b."""
    n = a.shape[0]
    s = np.array([[_sim(a[i], b[j], m) for j in range(n)] for i in range(n)])
    lp = np.zeros(n)
    lpij = np.zeros((n, n))
    for i in range(n):
        den = math.exp(s[i, i] / tau) + sum(math.exp(s[i, j] / tau) for j in range(n) if neg[i, j])
        lp[i] = math.exp(s[i, i] / tau) / den
        for j in range(n):
            if neg[i, j]:
                lpij[i, j] = math.exp(s[i, j] / tau) / den
    return lp, lpij


def _eq7_update(w, data, cfg):
    """One GD step of eq. 7 computed term by term."""
    x, xa = data.inputs().numpy(), data.augmented().numpy()
    y, mu, xi = data.y.numpy(), data.mu.numpy(), data.xi.numpy()
    n, m = x.shape[0], w.shape[0]
    f, fa = _features(w, x), _features(w, xa)
    neg = data.negatives.numpy()
    s_pos = np.array([_sim(f[i], fa[i], m) for i in range(n)])
    s = np.array([[_sim(f[i], f[j], m) for j in range(n)] for i in range(n)])
    new = w.copy()
    c = cfg.eta / (n * m * cfg.tau)
    for r in range(m):
        for i in range(n):
            den = math.exp(s_pos[i] / cfg.tau) + sum(math.exp(s[i, j] / cfg.tau) for j in range(n) if neg[i, j])
            lp = math.exp(s_pos[i] / cfg.tau) / den
            d1 = float(w[r] @ x[i, 0] > 0)  # h'_r(x_i^(1))
            d2 = float(w[r] @ x[i, 1] > 0)  # h'_r(x_i^(2))
            new[r] += c * (1 - lp) * fa[i, 0, r] * d1 * y[i] * mu
            new[r] += c * (1 - lp) * fa[i, 1, r] * d2 * xi[i]
            for j in range(n):
                if neg[i, j]:
                    lpij = math.exp(s[i, j] / cfg.tau) / den
                    new[r] -= c * lpij * f[j, 0, r] * d1 * y[i] * mu
                    new[r] -= c * lpij * f[j, 1, r] * d2 * xi[i]
    return new


def _eq10_update(w, wt, data, cfg, x, xt, mu, xi):
    """One GD step of eq. 10 for the encoder with weights w, partner wt (x: own inputs, xt: partner inputs)."""
    y = data.y.numpy()
    n, m = x.shape[0], w.shape[0]
    f, g = _features(w, x), _features(wt, xt)
    lp, lpij = _loss_derivatives(f, g, data.negatives.numpy(), cfg.tau, m)
    new = w.copy()
    c = cfg.eta / (n * m * cfg.tau)
    for r in range(m):
        for i in range(n):
            d1 = float(w[r] @ x[i, 0] > 0)
            d2 = float(w[r] @ x[i, 1] > 0)
            new[r] += c * (1 - lp[i]) * g[i, 0, r] * d1 * y[i] * mu
            new[r] += c * (1 - lp[i]) * g[i, 1, r] * d2 * xi[i]
            for j in range(n):
                new[r] -= c * lpij[i, j] * g[j, 0, r] * d1 * y[i] * mu
                new[r] -= c * lpij[i, j] * g[j, 1, r] * d2 * xi[i]
    return new


def test_gd_step_equals_eq7(tiny, tmp_path):
    cfg = tiny(steps=1, n=8, d=24, m=4)
    dyn.train(cfg, tmp_path / "run.zarr")
    tree = dyn.open(tmp_path / "run.zarr")
    w0, w1 = tree["h"]["weight_init"].values, tree["h"]["weight_final"].values
    expected = _eq7_update(w0, make_data(cfg), cfg)
    np.testing.assert_allclose(w1, expected, rtol=1e-12, atol=1e-14)
    assert np.abs(w1 - w0).max() > 1e-4  # the step did move the weights


def test_gd_step_equals_eq10_both_encoders(tiny, tmp_path):
    cfg = tiny(steps=1, n=8, d=24, m=4, modality="multi")
    dyn.train(cfg, tmp_path / "run.zarr")
    tree = dyn.open(tmp_path / "run.zarr")
    data = make_data(cfg)
    w0, wt0 = tree["h"]["weight_init"].values, tree["g"]["weight_init"].values
    x, xt = data.inputs().numpy(), data.inputs_tilde().numpy()
    exp_h = _eq10_update(w0, wt0, data, cfg, x, xt, data.mu.numpy(), data.xi.numpy())
    exp_g = _eq10_update(wt0, w0, data, cfg, xt, x, data.mu_tilde.numpy(), data.xi_tilde.numpy())
    np.testing.assert_allclose(tree["h"]["weight_final"].values, exp_h, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tree["g"]["weight_final"].values, exp_g, rtol=1e-12, atol=1e-14)


def test_sgd_option_averages_over_a_minibatch(tiny, tmp_path):
    cfg = tiny(optimizer="sgd", batch_size=4, steps=3)
    summary = dyn.train(cfg, tmp_path / "run.zarr")
    assert summary.status == "complete" and math.isfinite(summary.final_loss)
    # with a batch of all anchors SGD is exactly GD
    full = tiny(optimizer="sgd", batch_size=10, steps=3)
    dyn.train(full, tmp_path / "sgd.zarr")
    dyn.train(tiny(steps=3), tmp_path / "gd.zarr")
    a, b = dyn.open(tmp_path / "sgd.zarr"), dyn.open(tmp_path / "gd.zarr")
    np.testing.assert_allclose(a["h"]["weight_final"].values, b["h"]["weight_final"].values, rtol=1e-12)


def test_redrawn_augmentation_enters_from_the_second_step(tiny, tmp_path):
    """redraw_eps: step 1 uses the eps drawn at initialisation, later steps fresh eps (deterministic by seed)."""
    once = tiny(steps=1), tiny(steps=3)
    redraw = tiny(steps=1, redraw_eps=True), tiny(steps=3, redraw_eps=True)
    w = {}
    for name, cfg in (("once1", once[0]), ("once3", once[1]), ("redraw1", redraw[0]), ("redraw3", redraw[1])):
        dyn.train(cfg, tmp_path / f"{name}.zarr")
        w[name] = dyn.open(tmp_path / f"{name}.zarr")["h"]["weight_final"].values
    # once1 and redraw1 compute the augmented view through different matrix products (a probe column vs
    # (xi + eps) @ W.T): equal up to rounding, not bitwise (they differ by ~1e-17 on some machines).
    np.testing.assert_allclose(w["once1"], w["redraw1"], rtol=1e-12, atol=1e-15)
    assert np.abs(w["once3"] - w["redraw3"]).max() > 1e-8
    dyn.train(redraw[1], tmp_path / "again.zarr")
    np.testing.assert_array_equal(dyn.open(tmp_path / "again.zarr")["h"]["weight_final"].values, w["redraw3"])
    assert "noise_aug_inner" not in dyn.open(tmp_path / "again.zarr")["h"]  # eps changes: no fixed probe to record
