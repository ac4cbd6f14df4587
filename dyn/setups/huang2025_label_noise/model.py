"""The two-layer squared-ReLU CNN of Huang, Han et al. 2025 (§2), its loss, and the paper's closed-form update.

``f(W, x) = F₊₁(W₊₁, x) − F₋₁(W₋₁, x)`` with ``F_j(W_j, x) = (1/m) Σ_r Σ_p σ(⟨w_{j,r}, x⁽ᵖ⁾⟩)`` and
``σ(z) = max(0, z)²``: 2m filters shared over the two patches, no biases, a fixed second layer ±1. The filter banks
are ``(m, d)`` matrices whose rows are neurons (the layout :class:`dyn.Site` expects): ``weight_pos`` (j = +1)
and ``weight_neg`` (j = −1), entries drawn from N(0, σ₀²).

On the training set the forward pass needs only ``Z_j = W_j [μ | ξ_1..ξ_n]`` (one GEMM per bank): the signal
patch gives ``⟨w, y_i μ⟩ = y_i ⟨w, μ⟩`` and the noise patch ``⟨w, ξ_i⟩``. These pre-activations are exactly the
inner products the recorder stores.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SquaredReLUCNN", "squared_relu", "output_from_inner", "logistic_loss", "closed_form_gradient",
           "population_error"]


def squared_relu(z: torch.Tensor) -> torch.Tensor:
    """σ(z) = max(0, z)²."""
    return torch.relu(z).square()


def output_from_inner(z_pos: torch.Tensor, z_neg: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``f(W, x_i)`` for every training sample from the pre-activations ``Z_j = W_j [μ | ξ_1..ξ_n]``.

    Parameters
    ----------
    z_pos, z_neg : (m, 1 + n) tensors
        Column 0 is ``⟨w_{j,r}, μ⟩``, column 1 + i is ``⟨w_{j,r}, ξ_i⟩``.
    y : (n,) labels ±1 (the signal patch is ``y_i μ``).

    Returns
    -------
    (n,) tensor
    """
    m = z_pos.shape[0]

    def bank(z: torch.Tensor) -> torch.Tensor:
        signal = squared_relu(y[None, :] * z[:, :1])  # σ(⟨w_r, y_i μ⟩) = σ(y_i ⟨w_r, μ⟩), (m, n)
        return (signal + squared_relu(z[:, 1:])).sum(0)

    return (bank(z_pos) - bank(z_neg)) / m


def logistic_loss(margins: torch.Tensor) -> torch.Tensor:
    """Mean of ℓ(z) = log(1 + e^{−z}) over the margins (numerically stable)."""
    return F.softplus(-margins).mean()


class SquaredReLUCNN(nn.Module):
    """``f = F₊₁ − F₋₁`` with squared-ReLU filters shared across patches and a fixed second layer.

    Parameters
    ----------
    d, m : int
        Patch dimension and filters per bank.
    sigma0 : float
        Every weight entry is drawn from N(0, σ₀²) (``weight_pos`` first, then ``weight_neg``).
    generator : torch.Generator, optional
        Source of the initial weights (drawn on the CPU in float64, then cast).
    dtype, device
        Of the weights.

    Examples
    --------
    >>> net = SquaredReLUCNN(d=5, m=3, sigma0=1.0, generator=torch.Generator().manual_seed(0))
    >>> x = torch.randn(4, 2, 5, dtype=torch.float64)
    >>> net(x).shape
    torch.Size([4])
    >>> bool(torch.allclose(net(x), net(x.flip(1))))  # the patch order never matters
    True
    """

    def __init__(self, d: int, m: int, sigma0: float, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"):
        super().__init__()
        w = torch.randn(2, m, d, generator=generator, dtype=torch.float64) * sigma0
        self.weight_pos = nn.Parameter(w[0].to(device=device, dtype=dtype))
        self.weight_neg = nn.Parameter(w[1].to(device=device, dtype=dtype))

    @property
    def m(self) -> int:
        return self.weight_pos.shape[0]

    def banks(self) -> dict[str, nn.Parameter]:
        """``{"pos": W₊₁, "neg": W₋₁}``: the recorder's sites, in the order j = +1, −1."""
        return {"pos": self.weight_pos, "neg": self.weight_neg}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(W, x)`` for inputs ``(N, P, d)`` (any number of patches): ``(N,)``."""
        pos = squared_relu(x @ self.weight_pos.T).sum(dim=(1, 2))
        neg = squared_relu(x @ self.weight_neg.T).sum(dim=(1, 2))
        return (pos - neg) / self.m

    def inner(self, probes: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"pos": W₊₁ P, "neg": W₋₁ P}`` for a probe matrix ``P = [μ | ξ_1..ξ_n]`` (d, 1 + n)."""
        return {"pos": self.weight_pos @ probes, "neg": self.weight_neg @ probes}


def closed_form_gradient(w_pos: torch.Tensor, w_neg: torch.Tensor, mu: torch.Tensor, xi: torch.Tensor,
                         y: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``∇_{W_j} L^ε_S`` term by term from the per-neuron update (2), with no autograd.

    ``w_{j,r} ← w_{j,r} − (η/nm) Σ_i ℓ̃'_i ε_i σ'(⟨w_{j,r}, y_i μ⟩) j μ − (η/nm) Σ_i ℓ̃'_i ε_i σ'(⟨w_{j,r}, ξ_i⟩) j y_i ξ_i``
    with ``ℓ̃'_i = ℓ'(ε_i y_i f_i)``, ``ℓ'(z) = −1/(1 + e^z)`` and ``σ'(z) = 2 max(0, z)``; the gradient is the
    bracket without ``−η``. Standard GD is ``eps`` all ones.

    Returns
    -------
    (grad_pos, grad_neg) : (m, d) tensors
    """
    n, m = xi.shape[0], w_pos.shape[0]
    probes = torch.cat([mu[None], xi]).T
    z = {1: w_pos @ probes, -1: w_neg @ probes}
    f = output_from_inner(z[1], z[-1], y)
    lp = -torch.sigmoid(-eps * y * f)  # ℓ'(ε y f) = −1/(1 + e^{ε y f})
    coef = lp * eps  # ℓ̃'_i ε_i, (n,)
    grads = []
    for j in (1, -1):
        a, b = z[j][:, :1], z[j][:, 1:]
        sig_grad = 2 * torch.relu(y[None, :] * a)  # σ'(⟨w_{j,r}, y_i μ⟩), (m, n)
        noise_grad = 2 * torch.relu(b)  # σ'(⟨w_{j,r}, ξ_i⟩), (m, n)
        g = (sig_grad * coef[None, :]).sum(1, keepdim=True) * j * mu[None, :]
        g = g + ((noise_grad * (coef * y)[None, :]) @ xi) * j
        grads.append(g / (n * m))
    return grads[0], grads[1]


def population_error(net: SquaredReLUCNN, mu: torch.Tensor, sigma_p: float, draws: torch.Tensor) -> tuple[float, float]:
    """Population 0-1 error ``P[y f(W, x) ≤ 0]`` over Definition 2.1, computed semi-analytically.

    Given W, the signal part of ``y f`` is fixed for each y, and the noise pre-activations
    ``z = (⟨w_{j,r}, ξ⟩)_{j,r}`` are jointly Gaussian, ``N(0, σ_p² W (I − μ̂μ̂ᵀ) Wᵀ)`` (2m-dimensional). Monte Carlo
    over z with fixed standard-normal ``draws`` (common random numbers, so curves over training are smooth);
    both labels use the same draws, each with probability ½.

    Parameters
    ----------
    net : the network.
    mu : (d,) the signal vector.
    sigma_p : the noise strength.
    draws : (N, 2m) standard-normal draws.

    Returns
    -------
    (error, standard_error) : floats (NaN when the weights are not finite)
    """
    with torch.no_grad():
        w = torch.cat([net.weight_pos, net.weight_neg]).to(torch.float64)
        m = net.m
        unit = mu.to(torch.float64) / torch.linalg.vector_norm(mu.to(torch.float64))
        wu = w @ unit
        cov = sigma_p**2 * (w @ w.T - torch.outer(wu, wu))
        if not bool(torch.isfinite(cov).all()):
            return math.nan, math.nan
        evals, evecs = torch.linalg.eigh(cov)
        root = evecs * evals.clamp_min(0).sqrt()[None, :]  # cov = root rootᵀ
        z = draws.to(device=w.device, dtype=torch.float64) @ root.T  # (N, 2m)
        noise_part = (squared_relu(z[:, :m]).sum(1) - squared_relu(z[:, m:]).sum(1)) / m
        a = w @ mu.to(torch.float64)
        errors = []
        for y in (1.0, -1.0):
            signal_part = (squared_relu(y * a[:m]).sum() - squared_relu(y * a[m:]).sum()) / m
            errors.append((y * (signal_part + noise_part) <= 0).to(torch.float64).mean())
        err = float((errors[0] + errors[1]) / 2)
        # the two labels' estimates share draws: bound the standard error by the worst case of perfect correlation
        se = float(sum(math.sqrt(float(e) * (1 - float(e)) / draws.shape[0]) for e in errors) / 2)
    return err, se
