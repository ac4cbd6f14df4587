"""Synthetic Huang et al. 2024 runs with known answers, built in memory with :mod:`dyn.testing`.

The probes are orthogonal (diagonal Gram), so γ = Δ⟨w, μ⟩ and ρ = Δ⟨w, ξ⟩ exactly: the curves written here are
what the claims read. The config is the ``huang2024-theorem`` preset (every Assumption 4.1 term met; T₁ = 112.6
single-modal, 57.8 multi-modal), so by default a claim is a test of the theorem; ``config=`` changes that.
Every curve follows the theory's picture: exponential growth in stage 1 (until ``t_exit``, where the loss derivatives
leave their band), logarithmic growth after.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import dyn
from dyn.testing import make_run, make_site
from dyn.theory.huang2024.params import Params


def _growth(t: np.ndarray, rate: float, t_exit: float, k: float, linear: bool = False) -> np.ndarray:
    """exp(rate t) up to t_exit, then (1 + k log(1 + t - t_exit)) times the value there (``linear``: 1 + k τ)."""
    tau = np.maximum(t - t_exit, 0.0)
    return np.exp(rate * np.minimum(t, t_exit)) * (1 + k * (tau if linear else np.log1p(tau)))


def _k_for(level: float, start: float, rate: float, t_exit: float, t1: float) -> float:
    """The stage-2 coefficient k that brings ``start`` to ``level`` at T1."""
    return max((level / (start * math.exp(rate * t_exit)) - 1) / math.log1p(max(t1 - t_exit, 1e-9)), 0.0)


def synthetic_run(modality: str = "single", *, steps: int = 200, t_exit: float | None = None,
                  signal_rate: float | None = None, noise_rate: float | None = None, k_signal: float = 0.3,
                  k_noise: float | None = None, stage2_linear: bool = False, coupling: bool = True, band_at_start: bool = True, leave_band: bool = True, gate_leak: float = 0.0,
                  zero_leak: float = 0.0, sign_flip: bool = False, desync: bool = False, sync_at: int = 10, probe_acc: float | None = None,
                  config=None, frozen: bool = False, level: float | None = None, dependent_basis: bool = False):
    """A run whose every number is set here; see the module docstring. ``frozen``: nothing moves (untrained);
    ``level``: the dominant coefficient's total (Ψ single-modal, A multi-modal) at T1."""
    cfg = config or dyn.load_preset("huang2024-theorem", modality=modality, steps=steps)
    p = Params.from_config(cfg)
    multi = modality == "multi"
    t = np.arange(steps + 1, dtype=np.float64)
    m, n = cfg.m, cfg.n
    t_exit = (20.0 if multi else 40.0) if t_exit is None else t_exit
    # default rates inside the rigorous stage-1 bounds (Lemmas C.4/C.11 single, D.4/D.8 multi)
    signal_rate = (1.3 if multi else 0.7) * p.signal_rate_bound if signal_rate is None else signal_rate
    noise_rate = (0.3 if multi else 1.3) * p.noise_rate_bound if noise_rate is None else noise_rate
    k_noise = (0.0 if multi else 0.3) if k_noise is None else k_noise
    if frozen:
        signal_rate = noise_rate = k_signal = k_noise = 0.0
    rng = np.random.default_rng(0)
    signs = np.where(np.arange(m) % 2 == 0, 1.0, -1.0)  # half the neurons in U+(0)
    sig0 = p.signal_init * signs * (1 + 0.05 * rng.random(m))
    # exactly half the neurons see each sample at initialisation: I+(0) is balanced
    active = (np.arange(m)[:, None] + np.arange(n)[None, :]) % 2 == 0
    noise0 = p.noise_init * np.where(active, 1.0, -1.0) * (1 + 0.05 * rng.random((m, n)))
    if level is not None:
        if multi:
            k_signal = _k_for(level, float(np.abs(sig0).mean()), signal_rate, t_exit, p.T1)
        else:
            k_noise = _k_for(level, float(np.abs(noise0).mean()), noise_rate, t_exit, p.T1)
    gs = _growth(t, signal_rate, t_exit, k_signal, stage2_linear)
    gn = _growth(t, noise_rate, t_exit, k_noise, stage2_linear)
    gs[0] = gn[0] = 1.0
    sig = sig0[None, :] * gs[:, None]
    noise = np.where(active[None], noise0[None] * gn[:, None, None], noise0[None])
    if sign_flip:  # neuron 1 (in U-) crosses to positive halfway: U-(t) != U-(0), gamma not monotone
        sig[steps // 2:, 1] = abs(sig[steps // 2:, 1])
    if gate_leak:  # a closed gate's rho moves by gate_leak per step
        noise[:, 1, 0] = noise0[1, 0] + gate_leak * t
    if zero_leak:  # a pair in I-(0) drifts while staying in I-(0)
        noise[:, 1, 0] = noise0[1, 0] * (1 - zero_leak * t / t[-1])
    labels = np.where(np.arange(n) % 2 == 0, 1, -1)
    gram = None
    if dependent_basis:  # the signal is the mean of the +1 noise rows: the basis is linearly dependent
        rows = rng.normal(size=(n, 50))
        mu = rows[labels > 0].mean(0)
        basis = np.vstack([mu, rows])
        gram = basis @ basis.T
    sites = {"h": make_site(sig, noise, labels=labels, signal_names=["mu"], gram=gram,
                            signal_norm2=p.mu**2, noise_norm2=p.sigma_xi**2 * p.d)}
    if multi:
        sig0_g = p.c_mu * np.abs(sig0) * signs
        if desync:  # neuron 0 starts mixed-sign and never synchronises
            sig0_g[0] = -sig0_g[0]
        mismatch = 1 + 0.5 * (np.exp(-t / 10) if coupling else 1 - np.exp(-t / 10))  # A~ -> C_mu A (eq. 42) or not
        sig_g = sig0_g[None, :] * gs[:, None] * mismatch[:, None]
        if not desync:  # neuron 3 starts mixed-sign (U- and U~+) and synchronises at step sync_at
            sig_g[:, 3] = np.where(t < sync_at, abs(sig_g[:, 3]), sig_g[:, 3])
        else:
            sig_g[:, 0] = sig0_g[0] * gs  # stays negative while h's neuron 0 grows positive
        active_g = (np.arange(m)[:, None] // 2 + np.arange(n)[None, :]) % 2 == 0
        noise0_g = p.noise_init * np.where(active_g, 1.0, -1.0) * (1 + 0.2 * rng.random((m, n)))
        both = active & active_g
        noise_g = np.where(both[None], noise0_g[None] * gn[:, None, None], noise0_g[None])
        noise = np.where(both[None], noise, noise0[None])  # only case 4 (I+ and I~+) pairs move
        if gate_leak:
            noise[:, 1, 0] = noise0[1, 0] + gate_leak * t
        sites = {"h": make_site(sig, noise, labels=labels, signal_names=["mu"], signal_norm2=p.mu**2,
                                noise_norm2=p.sigma_xi**2 * p.d),
                 "g": make_site(sig_g, noise_g, labels=labels, signal_names=["mu_tilde"],
                                signal_norm2=p.mu_tilde**2, noise_norm2=p.sigma_xi**2 * p.d)}
    big_m = n / 2
    lo, hi = 1 / (2 * (1 + big_m)), 2 / (1 + big_m)
    inside = 1 / (1 + big_m)
    out = (t >= t_exit) if leave_band else np.zeros_like(t, dtype=bool)
    if not band_at_start:
        out[:] = True
    lp_pos_min = np.where(out, 0.9, inside * 0.95)
    lp_pos_max = np.where(out, 0.99, inside * 1.05)
    lp_neg = np.where(out, 0.5 * lo, inside)
    scalars = {"loss": math.log(1 + big_m) * np.exp(-t / 40) + 0.01, "lp_pos_min": lp_pos_min,
               "lp_pos_max": lp_pos_max, "lp_neg_min": lp_neg, "lp_neg_max": np.minimum(lp_neg * 1.05, hi)}
    if probe_acc is not None:
        scalars["probe_acc"] = np.where(t % 10 == 0, probe_acc, np.nan)
    return make_run(sites=sites, config=cfg, setup="huang2024", scalars=scalars)


@pytest.fixture
def synthetic():
    return synthetic_run
