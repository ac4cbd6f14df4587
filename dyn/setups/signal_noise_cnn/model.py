"""The family's two-layer CNN ``f = F₊₁ − F₋₁`` with activation ``σ(z) = max(0, z)^q``, under either network.

``network="theory"``: ``F_j = (1/m) Σ_r Σ_p σ(⟨w_{j,r}, x⁽ᵖ⁾⟩)``, no bias, entries of W drawn from N(0, σ₀²) (one
``torch.randn(2, m, d)`` draw: ``weight_pos`` then ``weight_neg``).

``network="code"``: the authors' code network for Kou et al. 2023, ``Conv1d(1, 2m, kernel=stride=d)`` with bias,
ReLU-type activation, **mean** over the two patches and **sum** over the m filters of each class (channels 0..m−1
give F₋₁, m..2m−1 give F₊₁), PyTorch's default initialisation (every weight and bias U(−1/√d, 1/√d)). The bias
is stored as a last column of each filter (``weight_*`` is ``(m, d + 1)``) and every input patch gets a constant
1 appended: the same function and the same gradient step as the convolution's separate bias, with the bias as
one more recorded inner product (the probe ``e_{d+1}``, signal name ``bias``).

The filter banks are ``(m, d)`` (or ``(m, d + 1)``) matrices whose rows are neurons (the layout :class:`dyn.Site`
expects). On the training set the forward pass needs only ``Z_j = W_j [μ | (e_bias) | ξ_1..ξ_n]`` (one GEMM per
bank); these pre-activations are exactly the inner products the recorder stores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Architecture", "SignalNoiseCNN", "activation", "activation_grad", "output_from_inner", "logistic_loss",
           "population_error"]


@dataclass(frozen=True)
class Architecture:
    """What distinguishes the networks of the family: σ's power, the patch and filter factors, the bias.

    Attributes
    ----------
    q : activation power.
    patch_scale : factor of the sum over patches (1: sum, ½: mean).
    filter_divisor : the sum over filters is divided by this (m, or 1).
    bias : whether each filter has a bias (stored as the weight's last column).
    """

    q: float
    patch_scale: float
    filter_divisor: int
    bias: bool

    @classmethod
    def from_config(cls, config) -> "Architecture":
        return cls(q=float(config.q), patch_scale=config.patch_scale, filter_divisor=config.m if config.network == "theory" else 1,
                   bias=config.network == "code")

    @property
    def n_signals(self) -> int:
        """Signal probes before the noise probes: μ, and the bias direction when there is a bias."""
        return 2 if self.bias else 1


def activation(z: torch.Tensor, q: float) -> torch.Tensor:
    """σ(z) = max(0, z)^q."""
    r = torch.relu(z)
    if q == 1:
        return r
    if q == 2:
        return r.square()
    return r.pow(q)


def activation_grad(z: torch.Tensor, q: float) -> torch.Tensor:
    """σ'(z) = q max(0, z)^{q−1}; for q = 1 the indicator 1(z > 0) (σ'(0) = 0, as autograd computes it)."""
    if q == 1:
        return (z > 0).to(z.dtype)
    return q * torch.relu(z).pow(q - 1)


def output_from_inner(z_pos: torch.Tensor, z_neg: torch.Tensor, y_true: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """``f(W, x_i)`` for every training sample from the pre-activations ``Z_j = W_j [μ | (e_bias) | ξ_1..ξ_n]``.

    Parameters
    ----------
    z_pos, z_neg : (m, n_signals + n) tensors
        Column 0 is ``⟨w_{j,r}, μ⟩``, column 1 the bias (code network), then ``⟨w_{j,r}, ξ_i⟩``.
    y_true : (n,) true labels ±1 (the signal patch is ``ỹ_i μ``).
    arch : the network.

    Returns
    -------
    (n,) tensor
    """
    k = arch.n_signals

    def bank(z: torch.Tensor) -> torch.Tensor:
        b = z[:, 1:2] if arch.bias else 0.0
        signal = activation(y_true[None, :] * z[:, :1] + b, arch.q)  # σ(⟨w_r, ỹ_i μ⟩ + b_r), (m, n)
        return (signal + activation(z[:, k:] + b, arch.q)).sum(0)

    return (bank(z_pos) - bank(z_neg)) * arch.patch_scale / arch.filter_divisor  # x * 1.0 / m is x / m exactly


def logistic_loss(margins: torch.Tensor) -> torch.Tensor:
    """Mean of ℓ(z) = log(1 + e^{−z}) over the margins (numerically stable)."""
    return F.softplus(-margins).mean()


class SignalNoiseCNN(nn.Module):
    """``f = F₊₁ − F₋₁`` with filters shared across patches and a fixed second layer (module docstring).

    Parameters
    ----------
    d, m : int
        Patch dimension and filters per bank.
    arch : Architecture
    sigma0 : float
        Theory network: every weight entry drawn from N(0, σ₀²). Ignored by the code network.
    generator : torch.Generator, optional
        Source of the initial weights (drawn on the CPU in float64, then cast).
    dtype, device
        Of the weights.

    Examples
    --------
    >>> arch = Architecture(q=1.0, patch_scale=0.5, filter_divisor=1, bias=True)
    >>> net = SignalNoiseCNN(d=5, m=3, arch=arch, generator=torch.Generator().manual_seed(0))
    >>> net.weight_pos.shape, float(net.weight_pos.detach().abs().max()) <= 1 / 5 ** 0.5
    (torch.Size([3, 6]), True)
    >>> x = torch.randn(4, 2, 5, dtype=torch.float64)
    >>> bool(torch.allclose(net(x), net(x.flip(1))))  # the patch order never matters
    True
    """

    def __init__(self, d: int, m: int, arch: Architecture, *, sigma0: float = 0.01,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.arch = arch
        if arch.bias:  # nn.Conv1d's default init: kaiming_uniform(a=√5) and its bias rule, both U(±1/√fan_in)
            bound = 1.0 / math.sqrt(d)
            w = (torch.rand(2 * m, d, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            b = (torch.rand(2 * m, 1, generator=generator, dtype=torch.float64) * 2 - 1) * bound
            banks = torch.cat([w, b], dim=1)
            neg, pos = banks[:m], banks[m:]  # channels 0..m-1 score class 0 (label -1)
        else:
            w = torch.randn(2, m, d, generator=generator, dtype=torch.float64) * sigma0
            pos, neg = w[0], w[1]
        self.weight_pos = nn.Parameter(pos.to(device=device, dtype=dtype).contiguous())
        self.weight_neg = nn.Parameter(neg.to(device=device, dtype=dtype).contiguous())

    @property
    def m(self) -> int:
        return self.weight_pos.shape[0]

    def banks(self) -> dict[str, nn.Parameter]:
        """``{"pos": W₊₁, "neg": W₋₁}``: the recorder's sites, in the order j = +1, −1."""
        return {"pos": self.weight_pos, "neg": self.weight_neg}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``f(W, x)`` for inputs ``(N, P, d)`` (any number of patches): ``(N,)``."""
        if self.arch.bias:
            x = torch.cat([x, torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)], dim=-1)
        patches = 1.0 if self.arch.patch_scale == 1.0 else 1.0 / x.shape[1]  # a sum, or a mean over patches
        pos = activation(x @ self.weight_pos.T, self.arch.q).sum(dim=(1, 2))
        neg = activation(x @ self.weight_neg.T, self.arch.q).sum(dim=(1, 2))
        return (pos - neg) * patches / self.arch.filter_divisor

    def inner(self, probes: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"pos": W₊₁ P, "neg": W₋₁ P}`` for a probe matrix ``P`` (rows: the weights' features)."""
        return {"pos": self.weight_pos @ probes, "neg": self.weight_neg @ probes}


def population_error(net: SignalNoiseCNN, mu: torch.Tensor, sigma_p: float, draws: torch.Tensor, *,
                     orthogonal: bool = True) -> tuple[float, float]:
    """Population 0-1 error against the true label, ``P[ỹ f(W, x) ≤ 0]``, computed semi-analytically.

    Given W, the signal part of ``ỹ f`` is fixed for each ỹ, and the noise-patch pre-activations
    ``z = (⟨w_{j,r}, ξ⟩ + b_{j,r})`` are jointly Gaussian, ``N(b, σ_p² W Π Wᵀ)`` with Π = I − μ̂μ̂ᵀ (orthogonal
    noise) or I (2m-dimensional). Monte Carlo over z with fixed standard-normal ``draws`` (common random numbers,
    so curves over training are smooth); both labels use the same draws, each with probability ½. Against labels
    flipped with probability p the error is ``p + (1 − 2p) · error``.

    Parameters
    ----------
    net : the network.
    mu : (d,) the signal vector.
    sigma_p : the noise strength.
    draws : (N, 2m) standard-normal draws.
    orthogonal : whether the noise is orthogonal to μ.

    Returns
    -------
    (error, standard_error) : floats (NaN when the weights are not finite)
    """
    arch = net.arch
    with torch.no_grad():
        banks = torch.cat([net.weight_pos, net.weight_neg]).to(torch.float64)
        d = mu.shape[0]
        w, b = banks[:, :d], (banks[:, d] if arch.bias else torch.zeros(banks.shape[0], dtype=torch.float64,
                                                                         device=banks.device))
        m = net.m
        mu64 = mu.to(device=w.device, dtype=torch.float64)
        norm = torch.linalg.vector_norm(mu64)
        cov = w @ w.T
        if orthogonal and float(norm) > 0:
            wu = w @ (mu64 / norm)
            cov = cov - torch.outer(wu, wu)
        cov = sigma_p**2 * cov
        if not bool(torch.isfinite(cov).all()):
            return math.nan, math.nan
        evals, evecs = torch.linalg.eigh(cov)
        root = evecs * evals.clamp_min(0).sqrt()[None, :]  # cov = root rootᵀ
        z = draws.to(device=w.device, dtype=torch.float64) @ root.T + b[None, :]  # (N, 2m)
        noise_part = (activation(z[:, :m], arch.q).sum(1) - activation(z[:, m:], arch.q).sum(1)) * arch.patch_scale \
            / arch.filter_divisor
        a = w @ mu64
        errors = []
        for y in (1.0, -1.0):
            s = activation(y * a + b, arch.q)
            signal_part = (s[:m].sum() - s[m:].sum()) * arch.patch_scale / arch.filter_divisor
            errors.append((y * (signal_part + noise_part) <= 0).to(torch.float64).mean())
        err = float((errors[0] + errors[1]) / 2)
        # the two labels' estimates share draws: bound the standard error by the worst case of perfect correlation
        se = float(sum(math.sqrt(float(e) * (1 - float(e)) / draws.shape[0]) for e in errors) / 2)
    return err, se
