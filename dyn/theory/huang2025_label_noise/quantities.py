"""The quantities Huang, Han et al. 2025 is written in, computed from a recorded run.

Sign convention: arrays have a bank axis ``j`` of length 2 in the order j = +1 (site ``pos``), j = −1 (``neg``);
:data:`J` holds those signs. From the recording (notes §4.4, §9):

- ``a[t, j, r] = ⟨w_{j,r}(t), μ⟩`` and ``b[t, j, r, i] = ⟨w_{j,r}(t), ξ_i⟩`` (the recorded inner products);
- the paper's coefficients of decomposition (3), ``w_{j,r}(t) = w_{j,r}(0) + j γ_{j,r} μ/‖μ‖² + Σ_i ρ_{j,r,i}
  ξ_i/‖ξ_i‖²``, recovered exactly from the inner products by :func:`dyn.coefficients` (the solve on the Gram matrix
  of [μ, ξ_1..ξ_n]): ``γ = j γ_dyn`` (dyn's decomposition has no factor j) and ``ρ = ρ_dyn``; ρ̄ and ρ̲ are ρ on
  the samples with ``y_i = j`` and ``y_i = −j``;
- ``f_i(t)`` rebuilt from a and b, the loss derivatives ``ℓ̃'_i = ℓ'(ε_i y_i f_i)`` with the stored flips, and the
  increments the paper's coefficient updates (4)–(6) predict (:func:`coefficient_increments`).

Everything here is numpy on arrays read once from the store (:class:`Recording`); claims
(:mod:`dyn.theory.huang2025_label_noise.claims`) only combine these.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import scipy.linalg

from ...errors import StoreError
from . import constants as C

__all__ = ["J", "SITES", "Params", "Recording", "coefficient_increments", "outputs", "loss_derivative",
           "binary_entropy", "logistic", "first_crossing"]

#: The signs j of the bank axis: site ``pos`` is j = +1, site ``neg`` is j = −1.
J = np.array([1.0, -1.0])
#: Site names of the banks, in the order of :data:`J`.
SITES = ("pos", "neg")
_EPS32 = float(np.finfo(np.float32).eps)


def logistic(z: np.ndarray | float) -> np.ndarray:
    """ℓ(z) = log(1 + e^{−z}), stable."""
    return np.logaddexp(0.0, -np.asarray(z, dtype=np.float64))


def binary_entropy(p: float) -> float:
    """H_b(p) in nats: the floor of the expected label-noise loss (notes §7.6).

    Examples
    --------
    >>> round(binary_entropy(0.1), 4)
    0.3251
    """
    if p <= 0 or p >= 1:
        return 0.0
    return float(-p * math.log(p) - (1 - p) * math.log(1 - p))


def first_crossing(steps: np.ndarray, curve: np.ndarray, level: float) -> float | None:
    """The first recorded step at which ``curve ≥ level``, or None."""
    idx = np.flatnonzero(np.asarray(curve) >= level)
    return float(steps[idx[0]]) if idx.size else None


@dataclass(frozen=True)
class Params:
    """The numbers the theorems are written in, from a run's config (notes §5, §7).

    Attributes
    ----------
    d, n, m, eta, p, sigma0, sigma_p, mu_norm, steps : the config (``p`` is the flip probability actually used:
        0 for standard GD).
    algorithm : ``"gd"`` or ``"label_noise"``.
    snr : ‖μ‖/(σ_p √d).
    s_xi, s_mu : the initial scales σ₀σ_p√d and σ₀‖μ‖.
    lambda_n, lambda_s : the stage-1 rates ησ_p²d/(nm) and η‖μ‖²/(2m) (notes §7.6).
    delta : the failure probability of the log factors, 1/d.
    """

    d: int
    n: int
    m: int
    eta: float
    p: float
    sigma0: float
    sigma_p: float
    mu_norm: float
    steps: int
    algorithm: str
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Params":
        algorithm = config.get("algorithm", "label_noise")
        p = float(config["p"]) if algorithm == "label_noise" else 0.0
        return cls(d=int(config["d"]), n=int(config["n"]), m=int(config["m"]), eta=float(config["eta"]), p=p,
                   sigma0=float(config["sigma0"]), sigma_p=float(config["sigma_p"]),
                   mu_norm=float(config["mu_norm"]), steps=int(config["steps"]), algorithm=algorithm,
                   config=dict(config))

    @property
    def snr(self) -> float:
        return self.mu_norm / (self.sigma_p * math.sqrt(self.d))

    @property
    def n_snr2(self) -> float:
        return self.n * self.snr**2

    @property
    def s_xi(self) -> float:
        return self.sigma0 * self.sigma_p * math.sqrt(self.d)

    @property
    def s_mu(self) -> float:
        return self.sigma0 * self.mu_norm

    @property
    def lambda_n(self) -> float:
        return self.eta * self.sigma_p**2 * self.d / (self.n * self.m)

    @property
    def lambda_s(self) -> float:
        return self.eta * self.mu_norm**2 / (2 * self.m)

    @property
    def delta(self) -> float:
        return C.delta(self.d)

    @property
    def envelope_rate(self) -> float:
        """1 + 2η‖μ‖²/m: the per-step factor of the signal envelope (Lemma D.1, both algorithms, every step)."""
        return 1.0 + C.D1_RATE_FACTOR * self.eta * self.mu_norm**2 / self.m

    @property
    def equilibrium_margin(self) -> float:
        """z* = log((1 − p)/p), where a sample's expected label-noise drift vanishes (notes §7.6); inf at p = 0."""
        return math.log((1 - self.p) / self.p) if 0 < self.p < 1 else math.inf

    def alpha(self, t_star: float) -> float:
        """α = 4 log T* (Prop. 4.1)."""
        return C.ALPHA_LOG_FACTOR * math.log(max(t_star, 2.0))

    def t1_gd(self) -> float:
        """T₁ of standard GD, 4 log(1/s_ξ)/λ_n (Lemma 4.2 proof); inf when s_ξ ≥ 1 (no small initialisation)."""
        return C.T1_GD_FACTOR * math.log(1 / self.s_xi) / self.lambda_n if self.s_xi < 1 else math.inf

    def t1_ln(self, c0: float) -> float:
        """T₁ of label-noise GD, 4 log(20/s_ξ)/(C₀ λ_n) (Lemma 4.4 proof)."""
        if c0 <= 0 or self.s_xi >= C.T1_LN_LOG_NUMERATOR:
            return math.inf
        return C.T1_LN_FACTOR * math.log(C.T1_LN_LOG_NUMERATOR / self.s_xi) / (c0 * self.lambda_n)

    def t2_ln(self, t1: float, c2: float) -> float:
        """T₂ of label-noise GD, T₁ + 4m(1 + e^{c₂}) log(6/s_μ)/(η‖μ‖²) (Lemma 4.5)."""
        if self.s_mu >= C.T2_LN_LOG_NUMERATOR:
            return t1
        return t1 + (C.T2_LN_FACTOR * self.m * (1 + math.exp(min(c2, 700.0))) * math.log(C.T2_LN_LOG_NUMERATOR / self.s_mu)
                     / (self.eta * self.mu_norm**2))

    def race_prediction(self) -> dict[str, Any]:
        """The §7.6 race: the noise reaches Θ(1) before the signal iff
        n SNR²/2 < log(1/(√(2 log m) s_μ)) / log(1/(√(2 log m) s_ξ)) (DERIVED heuristic, small initialisation)."""
        k = math.sqrt(2 * math.log(self.m)) if self.m > 1 else 1.0
        start_xi, start_mu = k * self.s_xi, k * self.s_mu
        if start_xi >= 1 or start_mu >= 1:
            return {"applicable": False, "start_noise": start_xi, "start_signal": start_mu}
        rhs = math.log(1 / start_mu) / math.log(1 / start_xi)
        lhs = self.n_snr2 / 2
        return {"applicable": True, "lhs": lhs, "rhs": rhs, "noise_first": lhs < rhs,
                "start_noise": start_xi, "start_signal": start_mu,
                "t_noise": math.log(1 / start_xi) / math.log1p(self.lambda_n),
                "t_signal": math.log(1 / start_mu) / math.log1p(self.lambda_s)}


def outputs(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``f(W(t), x_i)`` from the inner products: ``(1/m) Σ_{j,r} j [σ(y_i a_{j,r}) + σ(b_{j,r,i})]``.

    Parameters
    ----------
    a : (..., 2, m); b : (..., 2, m, n); y : (n,)

    Returns
    -------
    (..., n) array
    """
    m = a.shape[-1]
    sig = np.maximum(y * a[..., None], 0.0) ** 2 + np.maximum(b, 0.0) ** 2  # (..., 2, m, n)
    per_bank = sig.sum(axis=-2)  # (..., 2, n)
    return (per_bank[..., 0, :] - per_bank[..., 1, :]) / m


def loss_derivative(f: np.ndarray, y: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """``ℓ̃'_i = ℓ'(ε_i y_i f_i) = −1/(1 + e^{ε_i y_i f_i})``."""
    z = eps * y * f
    return -np.exp(-np.logaddexp(0.0, z))


def coefficient_increments(a: np.ndarray, b: np.ndarray, y: np.ndarray, eps: np.ndarray, *, eta: float,
                           mu_norm2: float, xi_norm2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The increments of γ and ρ over one GD step predicted by the paper's updates (4)–(6).

    ``γ_{j,r} += −(η/nm) Σ_i ℓ̃'_i ε_i σ'(y_i ⟨w_{j,r}, μ⟩) ‖μ‖²`` and
    ``ρ_{j,r,i} += −(η/nm) j y_i ℓ̃'_i ε_i σ'(⟨w_{j,r}, ξ_i⟩) ‖ξ_i‖²`` (ρ̄: y_i = j, eq. 5; ρ̲: y_i = −j, eq. 6),
    with σ'(z) = 2 max(0, z) and ``f`` rebuilt from the same inner products.

    Parameters
    ----------
    a : (..., 2, m) ⟨w_{j,r}(t), μ⟩; b : (..., 2, m, n) ⟨w_{j,r}(t), ξ_i⟩; y : (n,); eps : (..., n) flips ε⁽ᵗ⁾.
    eta, mu_norm2, xi_norm2 : η, ‖μ‖², ‖ξ_i‖² (n,).

    Returns
    -------
    (dgamma (..., 2, m), drho (..., 2, m, n))

    Examples
    --------
    >>> a = np.array([[0.5], [-0.2]]); b = np.array([[[0.3, -0.1]], [[0.0, 0.4]]]); y = np.array([1.0, -1.0])
    >>> dg, dr = coefficient_increments(a, b, y, np.ones(2), eta=1.0, mu_norm2=4.0, xi_norm2=np.ones(2))
    >>> bool(dr[0, 0, 1] == 0.0)  # ⟨w, ξ⟩ ≤ 0: the ReLU gate keeps ρ frozen
    True
    """
    n, m = y.shape[-1], a.shape[-1]
    f = outputs(a, b, y)
    w = -loss_derivative(f, y, eps) * eps  # −ℓ̃'_i ε_i, (..., n)
    sig_grad = 2.0 * np.maximum(y * a[..., None], 0.0)  # σ'(y_i a_{j,r}), (..., 2, m, n)
    dgamma = (eta * mu_norm2 / (n * m)) * np.einsum("...jrn,...n->...jr", sig_grad, w)
    drho = (eta / (n * m)) * (J[:, None, None] * (y * w * xi_norm2)[..., None, None, :]) * 2.0 * np.maximum(b, 0.0)
    return dgamma, drho


@dataclass(frozen=True, eq=False)
class Recording:
    """One run's recorded arrays, read once, in the paper's notation (float64).

    Attributes
    ----------
    params : Params
    steps : (T,) recorded steps.
    y : (n,) labels.
    mu_norm2 : ‖μ‖².  xi_norm2 : (n,) ‖ξ_i‖².  gram : (1+n, 1+n) Gram matrix of [μ, ξ_1..ξ_n].
    a : (T, 2, m), b : (T, 2, m, n) the inner products.
    gamma : (T, 2, m) the paper's γ (with the factor j of (3)).  rho : (T, 2, m, n) the paper's ρ.
    eps : (steps, n) stored flips, or None.
    scalars : logged per-step scalars by name.
    weights : per site ``(weight_init, weight_final, final_step)`` when stored.
    basis : (1+n, d) the probe vectors [μ, ξ_1..ξ_n] when stored.
    train_dtype : the training precision (sets the float tolerance of the identities).
    row_sum_norm : ‖D K⁻¹‖_∞, by which errors of the inner products can grow in the coefficients.
    """

    params: Params
    steps: np.ndarray
    y: np.ndarray
    mu_norm2: float
    xi_norm2: np.ndarray
    gram: np.ndarray
    a: np.ndarray
    b: np.ndarray
    gamma: np.ndarray
    rho: np.ndarray
    eps: np.ndarray | None
    scalars: Mapping[str, np.ndarray]
    weights: Mapping[str, tuple[np.ndarray, np.ndarray, int]]
    basis: np.ndarray | None
    train_dtype: str
    row_sum_norm: float

    @classmethod
    def from_run(cls, run: Any) -> "Recording":
        """Read a run of the ``huang2025-label-noise`` setup (a :class:`dyn.run.Run` or anything with its
        ``config``, ``steps``, ``site()``, ``coefficients()``, ``scalar()`` and ``tree``)."""
        params = Params.from_config(run.config)
        for s in SITES:
            if s not in run.sites:
                raise StoreError(f"run has no site {s!r} (sites: {', '.join(run.sites)})")
        ds = {s: run.site(s) for s in SITES}
        a = np.stack([ds[s]["signal_inner"].transpose("step", "neuron", "signal").values[:, :, 0] for s in SITES],
                     axis=1).astype(np.float64)
        b = np.stack([ds[s]["noise_inner"].transpose("step", "neuron", "sample").values for s in SITES],
                     axis=1).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite steps of a diverged run are cut below
            coeffs = [run.coefficients(s) for s in SITES]
        gamma = J[None, :, None] * np.stack([c["gamma"].transpose("step", "neuron", "signal").values[:, :, 0]
                                             for c in coeffs], axis=1)
        rho = np.stack([c["rho"].transpose("step", "neuron", "sample").values for c in coeffs], axis=1)
        gram = np.asarray(ds["pos"]["gram"].values, dtype=np.float64)
        if "label" not in ds["pos"]:
            raise StoreError("site 'pos' stores no labels")
        eps = None
        tree = getattr(run, "tree", None)
        if tree is not None and "flips" in tree.children and "epsilon" in tree["flips"].ds:
            eps = np.asarray(tree["flips"]["epsilon"].values, dtype=np.float64)
        names = ("loss", "loss_noisy", "loss_noisy_expected", "margin_min", "margin_mean", "margin_max",
                 "train_error", "flip_count", "test_error", "population_error", "population_error_se")
        scalars = {k: v for k in names if (v := run.scalar(k)) is not None}
        weights = {}
        for s in SITES:
            if "weight_init" in ds[s] and "weight_final" in ds[s]:
                final = ds[s]["weight_final"]
                weights[s] = (ds[s]["weight_init"].values.astype(np.float64), final.values.astype(np.float64),
                              int(final.attrs.get("step", run.steps[-1])))
        basis = None
        if "signal_vectors" in ds["pos"] and "noise_vectors" in ds["pos"]:
            basis = np.concatenate([ds["pos"]["signal_vectors"].values, ds["pos"]["noise_vectors"].values]).astype(np.float64)
        steps = np.asarray(run.steps, dtype=np.int64)
        # A diverged run keeps the steps before the loss became non-finite, but its inner products can overflow
        # earlier: claims read the finite prefix only (a data error is never turned into a verdict).
        finite = np.isfinite(a).all(axis=(1, 2)) & np.isfinite(b).all(axis=(1, 2, 3)) \
            & np.isfinite(gamma).all(axis=(1, 2)) & np.isfinite(rho).all(axis=(1, 2, 3))
        keep = int(np.argmin(finite)) if not finite.all() else len(steps)
        if keep == 0:
            raise StoreError("the recording is not finite at step 0")
        if keep < len(steps):
            a, b, gamma, rho, steps = a[:keep], b[:keep], gamma[:keep], rho[:keep], steps[:keep]
            scalars = {k: v[:keep] for k, v in scalars.items()}
            weights = {}  # the stored final weights belong to a step that is cut
        return cls(params=params, steps=steps,
                   y=np.asarray(ds["pos"]["label"].values, dtype=np.float64), mu_norm2=float(gram[0, 0]),
                   xi_norm2=np.diag(gram)[1:].copy(), gram=gram, a=a, b=b, gamma=gamma, rho=rho, eps=eps,
                   scalars=scalars, weights=weights, basis=basis, train_dtype=str(run.config.get("dtype", "float32")),
                   row_sum_norm=_row_sum_norm(gram))

    def replace(self, **changes: Any) -> "Recording":
        """A copy with some arrays replaced (for tests and what-if analyses)."""
        return dataclasses.replace(self, **changes)

    # -- derived quantities -----------------------------------------------------------------------------------
    @property
    def last_step(self) -> int:
        return int(self.steps[-1])

    def upto(self, t: float) -> np.ndarray:
        """Mask of recorded steps ≤ t."""
        return self.steps <= t + 1e-9

    def window(self, start: float, stop: float) -> np.ndarray:
        """Mask of recorded steps in [start, stop]."""
        return (self.steps >= start - 1e-9) & (self.steps <= stop + 1e-9)

    def index_at(self, t: float) -> int | None:
        """Index of the last recorded step ≤ t, or None when t lies beyond the run."""
        if t > self.last_step:
            return None
        return int(np.flatnonzero(self.upto(t))[-1])

    def outputs(self) -> np.ndarray:
        """(T, n) ``f(W(t), x_i)``."""
        return outputs(self.a, self.b, self.y)

    def margins(self) -> np.ndarray:
        """(T, n) ``y_i f(W(t), x_i)``."""
        return self.y * self.outputs()

    def flips_at_steps(self) -> np.ndarray:
        """(T', n) the flips of the recorded steps that took a gradient step (t < config steps); ones for GD."""
        k = int(np.searchsorted(self.steps, self.params.steps))
        if self.params.algorithm == "gd" and self.eps is None:
            return np.ones((k, self.params.n))
        if self.eps is None:
            raise StoreError("the run stores no label flips (group 'flips')")
        return self.eps[self.steps[:k]]

    def loss_derivatives(self) -> np.ndarray:
        """(T', n) ``|ℓ̃'_i(t)|`` at the recorded steps that took a gradient step."""
        eps = self.flips_at_steps()
        k = eps.shape[0]
        return -loss_derivative(self.outputs()[:k], self.y, eps)

    def own_bank(self) -> np.ndarray:
        """(n,) bank index of ``j = y_i`` for every sample."""
        return np.where(self.y > 0, 0, 1)

    def rho_own(self) -> np.ndarray:
        """(T, m, n) ``ρ̄_{y_i,r,i}``: memorization of each sample in the bank of its own label."""
        idx = self.own_bank()
        return np.take_along_axis(self.rho, idx[None, None, None, :], axis=1)[:, 0]

    def rho_other(self) -> np.ndarray:
        """(T, m, n) ``ρ̲_{−y_i,r,i}``: each sample's coefficients in the bank of the other label."""
        idx = 1 - self.own_bank()
        return np.take_along_axis(self.rho, idx[None, None, None, :], axis=1)[:, 0]

    def signal_max(self) -> np.ndarray:
        """(T,) Γ = max_{j,r} γ_{j,r}."""
        return self.gamma.max(axis=(1, 2))

    def signal_total(self) -> np.ndarray:
        """(T, 2) B_j = max_r j ⟨w_{j,r}(t), μ⟩ = max_r (γ_{j,r} + j ⟨w_{j,r}(0), μ⟩) (Lemma E.1)."""
        return (J[None, :, None] * self.a).max(axis=2)

    def noise_per_sample(self) -> np.ndarray:
        """(T, n) R̄_i = max_r ρ̄_{y_i,r,i}."""
        return self.rho_own().max(axis=1)

    def noise_min(self) -> np.ndarray:
        """(T,) R̄_min = min_i R̄_i."""
        return self.noise_per_sample().min(axis=1)

    def noise_max(self) -> np.ndarray:
        """(T,) R̄_max = max over (j, r, i with y_i = j) of ρ̄."""
        return self.rho_own().max(axis=(1, 2))

    def wrong_label_max(self) -> np.ndarray:
        """(T,) R̲ = max over (j, r, i with y_i = −j) of |ρ̲|."""
        return np.abs(self.rho_other()).max(axis=(1, 2))

    def iota(self) -> np.ndarray:
        """(T, n) ι_i = (1/m) Σ_r ρ̄_{y_i,r,i}² (Lemma 4.5)."""
        return (self.rho_own() ** 2).mean(axis=1)

    def memorized(self) -> np.ndarray:
        """(T,) min_i max_{j,r} ρ_{j,r,i}: the quantity of Lemma 4.2(i) / 4.4(i)."""
        return self.rho.max(axis=(1, 2)).min(axis=1)

    def inner_error(self) -> np.ndarray:
        """(T,) a bound on the absolute error of every recorded inner product at each step: float32 rounding of
        the stored value plus the training precision's rounding in the d-term inner product."""
        scale = np.maximum(np.abs(self.a).max(axis=(1, 2)), np.abs(self.b).max(axis=(1, 2, 3)))
        eps_train = float(np.finfo(np.dtype(self.train_dtype)).eps)
        return scale * (_EPS32 + eps_train * math.sqrt(self.params.d))

    def coefficient_error(self) -> np.ndarray:
        """(T,) a bound on the absolute error of every recovered coefficient γ, ρ at each step
        (``‖D K⁻¹‖_∞`` times the inner-product errors at that step and at step 0)."""
        err = self.inner_error()
        return self.row_sum_norm * (err + err[0])


def _row_sum_norm(gram: np.ndarray) -> float:
    factor = scipy.linalg.cho_factor(gram, lower=True)
    s = scipy.linalg.cho_solve(factor, np.eye(gram.shape[0])) * np.diag(gram)[:, None]
    return float(np.abs(s).sum(axis=1).max())
