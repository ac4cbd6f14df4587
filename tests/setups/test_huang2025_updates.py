"""The paper's update identities against brute force: update (2) vs autograd, and the coefficient recursion (4)-(6)
iterated alongside training vs the exact coefficients recovered from the inner products (float64 and as recorded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dyn
from dyn.setups.huang2025_label_noise import LabelNoiseConfig, LabelNoiseSetup, closed_form_gradient, train
from dyn.theory.huang2025_label_noise.quantities import J, coefficient_increments

pytestmark = pytest.mark.usefixtures("one_thread")



def config(algorithm: str, **changes) -> LabelNoiseConfig:
    base = dict(algorithm=algorithm, d=120, n=16, n_test=0, m=5, steps=40, eta=0.8, p=0.25, sigma0=0.05,
                sigma_p=0.5, mu_norm=1.5, population_draws=0, dtype="float64")
    base.update(changes)
    return LabelNoiseConfig(**base)


@pytest.mark.parametrize("algorithm", ["gd", "label_noise"])
def test_one_step_autograd_equals_update_2_term_by_term(algorithm):
    setup = LabelNoiseSetup(config(algorithm))
    # take a few steps first so that outputs, margins and the ReLU gates are all non-trivial
    for t in range(5):
        setup.step(setup.forward(t))
    t = 5
    eps = setup.flips[t].to(torch.float64)
    assert algorithm == "gd" or bool((eps < 0).any())
    state = setup.forward(t)
    w_before = [w.detach().clone() for w in (setup.net.weight_pos, setup.net.weight_neg)]
    setup.step(state)  # autograd + SGD
    w_after = [w.detach().clone() for w in (setup.net.weight_pos, setup.net.weight_neg)]
    d = setup.data
    g_pos, g_neg = closed_form_gradient(w_before[0], w_before[1], d.mu, d.xi, d.y, eps)
    eta = setup.config.eta
    for before, after, grad in zip(w_before, w_after, (g_pos, g_neg)):
        assert float(grad.abs().max()) > 1e-6  # a real step
        torch.testing.assert_close(after, before - eta * grad, rtol=1e-10, atol=1e-14)


def _exact_coefficients(inner: dict[str, torch.Tensor], inner0: dict[str, torch.Tensor], gram: np.ndarray):
    """The paper's gamma (with the factor j) and rho from float64 inner products: c = D K^-1 (P(t) - P(0))."""
    s = np.linalg.solve(gram, np.eye(gram.shape[0])) * np.diag(gram)[:, None]
    c = [(inner[k] - inner0[k]).numpy() @ s.T for k in ("pos", "neg")]  # (m, 1 + n) per bank
    gamma = J[:, None] * np.stack([ck[:, 0] for ck in c])
    rho = np.stack([ck[:, 1:] for ck in c])
    return gamma, rho


@pytest.mark.parametrize("algorithm", ["gd", "label_noise"])
def test_coefficient_recursion_matches_exact_solve_and_recording(tmp_path, algorithm):
    cfg = config(algorithm)
    setup = LabelNoiseSetup(cfg)
    d = setup.data
    y, mu, xi = d.y.numpy(), d.mu.numpy(), d.xi.numpy()
    basis = np.concatenate([mu[None], xi])
    gram = basis @ basis.T
    mu2, xi2 = float(mu @ mu), np.einsum("id,id->i", xi, xi)
    w0 = [w.detach().numpy().copy() for w in setup.net.banks().values()]
    gamma = np.zeros((2, cfg.m))
    rho = np.zeros((2, cfg.m, cfg.n))
    history = [(gamma.copy(), rho.copy())]
    inner0 = None
    worst = 0.0
    for t in range(cfg.steps + 1):
        state = setup.forward(t)
        inner = {k: v.detach().clone() for k, v in state.inner.items()}
        inner0 = inner0 or inner
        exact_gamma, exact_rho = _exact_coefficients(inner, inner0, gram)
        scale = max(1.0, float(np.abs(rho).max()))
        np.testing.assert_allclose(exact_gamma, gamma, rtol=0, atol=1e-10 * scale)
        np.testing.assert_allclose(exact_rho, rho, rtol=0, atol=1e-10 * scale)
        # the recursion's coefficients rebuild the weights (decomposition (3)) to float64 precision
        for k, name in enumerate(("pos", "neg")):
            rebuilt = w0[k] + J[k] * gamma[k][:, None] * mu[None] / mu2 + (rho[k] / xi2) @ xi
            np.testing.assert_allclose(rebuilt, setup.net.banks()[name].detach().numpy(), rtol=0, atol=1e-12 * scale)
        if t == cfg.steps:
            break
        a = np.stack([inner[k][:, 0].numpy() for k in ("pos", "neg")])
        b = np.stack([inner[k][:, 1:].numpy() for k in ("pos", "neg")])
        dg, dr = coefficient_increments(a, b, y, state.eps.numpy(), eta=cfg.eta, mu_norm2=mu2, xi_norm2=xi2)
        gamma, rho = gamma + dg, rho + dr
        history.append((gamma.copy(), rho.copy()))
        worst = max(worst, float(np.abs(dr).max()))
        setup.step(state)
    assert worst > 1e-3  # the coefficients really moved
    if algorithm == "gd":
        assert float(np.diff([h[0] for h in history], axis=0).min()) >= -1e-12  # gamma non-decreasing under GD
    # The same run recorded through dyn.Recorder (float32 inner products) and solved by dyn.coefficients.
    train(cfg, tmp_path / "run.zarr")
    tree = dyn.open(tmp_path / "run.zarr")
    rec_gamma = np.stack([J[k] * dyn.coefficients(tree[s].to_dataset())["gamma"].values[:, :, 0]
                          for k, s in enumerate(("pos", "neg"))], axis=1)
    coeffs = [dyn.coefficients(tree[s].to_dataset()) for s in ("pos", "neg")]
    rec_rho = np.stack([c["rho"].values for c in coeffs], axis=1)
    bound = 4 * max(c.attrs["solve_error_bound"] for c in coeffs)
    np.testing.assert_allclose(rec_gamma, np.stack([h[0] for h in history]), rtol=0, atol=bound)
    np.testing.assert_allclose(rec_rho, np.stack([h[1] for h in history]), rtol=0, atol=bound)
    assert bound < 1e-4 * float(np.abs(rec_rho).max())
