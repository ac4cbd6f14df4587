"""The quantities the signal–noise CNN family's theorems are written in, computed from a recorded run.

Sign convention: arrays have a bank axis ``j`` of length 2 in the order j = +1 (site ``pos``), j = −1 (``neg``).
From the recording (``shared/theory/benign-overfitting.md`` §3):

- ``a[t, j, r] = ⟨w_{j,r}(t), μ⟩``, ``c[t, j, r]`` the bias (code network; 0 otherwise) and
  ``b[t, j, r, i] = ⟨w_{j,r}(t), ξ_i⟩`` (recorded inner products);
- γ, ρ of ``w_{j,r}(t) = w_{j,r}(0) + j γ_{j,r} μ/‖μ‖² + Σ_i ρ_{j,r,i} ξ_i/‖ξ_i‖²`` recovered exactly by
  :func:`dyn.coefficients` (γ = j·γ_dyn);
- ``f_i`` rebuilt from the inner products, ``ℓ'_i = ℓ'(ε_i y_i f_i)`` and the exact one-step increments of GD on
  the run's network (:func:`increments`): the identities of §3 with the network's factors (sum or mean over
  patches, 1/m or not, the bias inside σ'), valid with or without noise orthogonal to μ because the exact
  decomposition uses the (μ, ξ) basis itself.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import scipy.linalg

from ...errors import StoreError

__all__ = ["J", "SITES", "Net", "CNNRecording", "activation", "activation_grad", "outputs", "increments"]

J = np.array([1.0, -1.0])
SITES = ("pos", "neg")
_EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Net:
    """The network of a run: activation power, the factor of the patch and filter sums, the bias."""

    q: float
    scale: float
    bias: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Net":
        code = config.get("network", "theory") == "code"
        m = int(config["m"])
        return cls(q=float(config.get("q", 2.0)), scale=0.5 if code else 1.0 / m, bias=code)


def activation(z: np.ndarray, q: float) -> np.ndarray:
    """σ(z) = max(0, z)^q."""
    return np.maximum(z, 0.0) ** q


def activation_grad(z: np.ndarray, q: float) -> np.ndarray:
    """σ'(z) = q max(0, z)^{q−1}, and 1(z > 0) for q = 1."""
    if q == 1:
        return (z > 0).astype(np.float64)
    return q * np.maximum(z, 0.0) ** (q - 1)


def outputs(a: np.ndarray, c: np.ndarray, b: np.ndarray, y_true: np.ndarray, net: Net) -> np.ndarray:
    """``f(W(t), x_i)`` from the inner products: ``scale Σ_{j,r} j [σ(ỹ_i a_{j,r} + c_{j,r}) + σ(b_{j,r,i} + c_{j,r})]``.

    Parameters
    ----------
    a, c : (..., 2, m); b : (..., 2, m, n); y_true : (n,)
    """
    per = activation(y_true * a[..., None] + c[..., None], net.q) + activation(b + c[..., None], net.q)
    bank = per.sum(axis=-2)  # (..., 2, n)
    return (bank[..., 0, :] - bank[..., 1, :]) * net.scale


def increments(a: np.ndarray, c: np.ndarray, b: np.ndarray, y: np.ndarray, y_true: np.ndarray, eps: np.ndarray,
               *, eta: float, net: Net, mu_norm2: float, xi_norm2: np.ndarray, dz: np.ndarray | float = 0.0
               ) -> dict[str, np.ndarray]:
    """The exact increments of γ, ρ and the bias over one GD step, with first-order error bounds.

    ``Δγ_{j,r} = (η s/n) Σ_i w_i σ'(ỹ_i a_{j,r} + c_{j,r}) ỹ_i ‖μ‖²``,
    ``Δρ_{j,r,i} = (η s/n) j w_i σ'(b_{j,r,i} + c_{j,r}) ‖ξ_i‖²``,
    ``Δc_{j,r} = (η s/n) j Σ_i w_i [σ'(ỹ_i a + c) + σ'(b_i + c)]``, with ``w_i = −ℓ'(ε_i y_i f_i) ε_i y_i`` and
    ``s`` the network's factor. ``dz`` bounds the error of the inner products: σ' is taken at the midpoint of its
    range over ``[z − 2dz, z + 2dz]`` (a closed/open ReLU gate within the error is uncertain), and the bounds
    ``*_err`` add the half-range and the error of ``w`` through f.

    Parameters
    ----------
    a, c : (..., 2, m); b : (..., 2, m, n); y, y_true : (n,); eps : (..., n) label-noise GD flips (1 for GD).

    Returns
    -------
    dict with ``gamma``, ``rho``, ``bias`` and ``gamma_err``, ``rho_err``, ``bias_err``.

    Examples
    --------
    >>> net = Net(q=1.0, scale=0.5, bias=False)
    >>> a = np.array([[0.5], [-0.2]]); c = np.zeros((2, 1)); b = np.array([[[0.3, -0.1]], [[0.0, 0.4]]])
    >>> y = np.array([1.0, -1.0])
    >>> out = increments(a, c, b, y, y, np.ones(2), eta=1.0, net=net, mu_norm2=4.0, xi_norm2=np.ones(2))
    >>> abs(float(out["rho"][0, 0, 1]))  # <w, xi> <= 0: the ReLU gate keeps rho frozen
    0.0
    """
    n = y.shape[-1]
    dz = np.asarray(dz, dtype=np.float64)[..., None, None]
    f = outputs(a, c, b, y_true, net)
    u = eps * y * f
    lp = -np.exp(-np.logaddexp(0.0, u))  # ℓ'(u) = −1/(1 + e^u)
    w = -lp * eps * y  # (..., n)
    zs = y_true * a[..., None] + c[..., None]  # signal-patch pre-activations (..., 2, m, n)
    zn = b + c[..., None]
    band = 2.0 * dz[..., None]  # (c and a each carry an error dz)

    def grad_range(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = activation_grad(z - band, net.q), activation_grad(z + band, net.q)
        return (lo + hi) / 2.0, (hi - lo) / 2.0

    gs, gs_half = grad_range(zs)
    gn, gn_half = grad_range(zn)
    # error of f (hence of w, |dℓ'/du| <= 1/4) from the inner products' errors
    f_err = net.scale * ((gs + gs_half) + (gn + gn_half)).sum(axis=(-3, -2)) * band[..., 0, 0, :]
    w_err = f_err / 4.0
    k = eta * net.scale / n
    jj = J[:, None, None]
    out = {
        "gamma": k * mu_norm2 * np.einsum("...jrn,...n->...jr", gs * y_true, w),
        "gamma_err": k * mu_norm2 * (np.abs(w)[..., None, None, :] * gs_half
                                     + gs * w_err[..., None, None, :]).sum(-1),
        "rho": k * jj * w[..., None, None, :] * gn * xi_norm2,
        "rho_err": k * xi_norm2 * (np.abs(w)[..., None, None, :] * gn_half + gn * w_err[..., None, None, :]),
        "bias": k * J[:, None] * np.einsum("...jrn,...n->...jr", gs + gn, w),
        "bias_err": k * (np.abs(w)[..., None, None, :] * (gs_half + gn_half)
                         + (gs + gn) * w_err[..., None, None, :]).sum(-1),
    }
    return out


@dataclass(frozen=True, eq=False)
class CNNRecording:
    """One run's recorded arrays, read once, in the papers' notation (float64).

    Attributes
    ----------
    config : the run's config (dict).  net : Net.  steps : (T,) recorded steps.
    y : (n,) observed labels.  y_true : (n,) true labels.  flipped : (n,) bool.
    mu_norm2 : ‖μ‖².  xi_norm2 : (n,).  a, c : (T, 2, m).  b : (T, 2, m, n).
    gamma : (T, 2, m) with the factor j.  rho : (T, 2, m, n).  eps : (steps, n) label-noise GD flips, or None.
    scalars : logged per-step scalars.  train_dtype : training precision.  row_sum_norm : ‖D K⁻¹‖_∞.
    """

    config: Mapping[str, Any]
    net: Net
    steps: np.ndarray
    y: np.ndarray
    y_true: np.ndarray
    flipped: np.ndarray
    mu_norm2: float
    xi_norm2: np.ndarray
    a: np.ndarray
    c: np.ndarray
    b: np.ndarray
    gamma: np.ndarray
    rho: np.ndarray
    eps: np.ndarray | None
    scalars: Mapping[str, np.ndarray]
    train_dtype: str
    row_sum_norm: float

    @classmethod
    def from_run(cls, run: Any) -> "CNNRecording":
        """Read a run of the family (a :class:`dyn.Run`)."""
        config = dict(run.config)
        net = Net.from_config(config)
        for s in SITES:
            if s not in run.sites:
                raise StoreError(f"run has no site {s!r} (sites: {', '.join(run.sites)})")
        ds = {s: run.site(s) for s in SITES}
        sig = {s: ds[s]["signal_inner"].transpose("step", "neuron", "signal") for s in SITES}
        names = [str(v) for v in sig["pos"]["signal"].values.tolist()]
        if "mu" not in names:
            raise StoreError("site 'pos' records no signal 'mu'")
        im = names.index("mu")
        a = np.stack([sig[s].values[:, :, im] for s in SITES], axis=1).astype(np.float64)
        if net.bias:
            if "bias" not in names:
                raise StoreError("a code-network run records no 'bias' probe")
            c = np.stack([sig[s].values[:, :, names.index("bias")] for s in SITES], axis=1).astype(np.float64)
        else:
            c = np.zeros_like(a)
        b = np.stack([ds[s]["noise_inner"].transpose("step", "neuron", "sample").values for s in SITES],
                     axis=1).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            coeffs = [run.coefficients(s) for s in SITES]
        gamma = J[None, :, None] * np.stack([co["gamma"].transpose("step", "neuron", "signal").values[:, :, im]
                                             for co in coeffs], axis=1)
        rho = np.stack([co["rho"].transpose("step", "neuron", "sample").values for co in coeffs], axis=1)
        gram = np.asarray(ds["pos"]["gram"].values, dtype=np.float64)
        y = np.asarray(ds["pos"]["label"].values, dtype=np.float64)
        tree = run.tree
        y_true = y.copy()
        if "labels" in tree.children and "label_true" in tree["labels"].ds:
            y_true = np.asarray(tree["labels"]["label_true"].values, dtype=np.float64)
        eps = None
        if "flips" in tree.children and "epsilon" in tree["flips"].ds:
            eps = np.asarray(tree["flips"]["epsilon"].values, dtype=np.float64)
        scalar_names = ("loss", "loss_noisy", "margin_min", "margin_mean", "margin_max", "train_error",
                        "train_error_flipped", "test_error", "test_error_clean", "population_error")
        scalars = {k: v for k in scalar_names if (v := run.scalar(k)) is not None}
        steps = np.asarray(run.steps, dtype=np.int64)
        finite = np.isfinite(a).all(axis=(1, 2)) & np.isfinite(b).all(axis=(1, 2, 3)) \
            & np.isfinite(gamma).all(axis=(1, 2)) & np.isfinite(rho).all(axis=(1, 2, 3))
        keep = int(np.argmin(finite)) if not finite.all() else len(steps)
        if keep == 0:
            raise StoreError("the recording is not finite at step 0")
        if keep < len(steps):  # a diverged run: claims read the finite prefix only
            a, c, b, gamma, rho, steps = a[:keep], c[:keep], b[:keep], gamma[:keep], rho[:keep], steps[:keep]
            scalars = {k: v[:keep] for k, v in scalars.items()}
        k0 = len(names)
        return cls(config=config, net=net, steps=steps, y=y, y_true=y_true, flipped=y != y_true,
                   mu_norm2=float(gram[im, im]), xi_norm2=np.diag(gram)[k0:].copy(), a=a, c=c, b=b, gamma=gamma,
                   rho=rho, eps=eps, scalars=scalars, train_dtype=str(config.get("dtype", "float32")),
                   row_sum_norm=_row_sum_norm(gram))

    def replace(self, **changes: Any) -> "CNNRecording":
        """A copy with some arrays replaced (for tests and what-if analyses)."""
        return dataclasses.replace(self, **changes)

    @property
    def n(self) -> int:
        return self.y.shape[0]

    def flips_at_steps(self) -> np.ndarray:
        """(T, n) label-noise GD flips of the step taken from each recorded step (1 for GD and the last step)."""
        out = np.ones((len(self.steps), self.n))
        if self.eps is not None:
            inside = self.steps < self.eps.shape[0]
            out[inside] = self.eps[self.steps[inside]]
        return out

    def outputs(self) -> np.ndarray:
        """(T, n) f(W(t), x_i)."""
        return outputs(self.a, self.c, self.b, self.y_true, self.net)

    def own(self) -> np.ndarray:
        """(2, n) bool: bank j is sample i's own (j = y_i)."""
        return J[:, None] == self.y[None, :]

    def inner_error(self) -> np.ndarray:
        """(T,) a bound on the absolute error of every recorded inner product at each step: float32 storage plus
        the training precision's rounding in the d-term inner product."""
        scale = np.maximum(np.abs(self.a).max(axis=(1, 2)), np.abs(self.b).max(axis=(1, 2, 3)))
        scale = np.maximum(scale, np.abs(self.c).max(axis=(1, 2)))
        eps_train = float(np.finfo(np.dtype(self.train_dtype)).eps)
        return scale * (_EPS32 + eps_train * math.sqrt(int(self.config["d"])))

    def coefficient_error(self) -> np.ndarray:
        """(T,) a bound on the absolute error of every recovered coefficient (``‖D K⁻¹‖_∞`` times the inner
        products' errors at that step and at step 0)."""
        err = self.inner_error()
        return self.row_sum_norm * (err + err[0])

    def signal_max(self) -> np.ndarray:
        """(T,) max_{j,r} γ_{j,r}."""
        return self.gamma.max(axis=(1, 2))

    def noise_max(self) -> np.ndarray:
        """(T,) max over samples and own-bank neurons of ρ̄_{y_i,r,i}."""
        own = self.own()
        return np.where(own[None, :, None, :], self.rho, -np.inf).max(axis=(1, 2, 3))


def _row_sum_norm(gram: np.ndarray) -> float:
    factor = scipy.linalg.cho_factor(gram, lower=True)
    s = scipy.linalg.cho_solve(factor, np.eye(gram.shape[0])) * np.diag(gram)[:, None]
    return float(np.abs(s).sum(axis=1).max())
