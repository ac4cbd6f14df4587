"""The two-layer squared-ReLU CNN of Huang, Han et al. 2025 (§2) and the paper's closed-form update (2).

The network is the q = 2 member of the signal–noise CNN family (:mod:`dyn.setups.signal_noise_cnn.model`, theory
network): ``f(W, x) = F₊₁(W₊₁, x) − F₋₁(W₋₁, x)`` with ``F_j(W_j, x) = (1/m) Σ_r Σ_p σ(⟨w_{j,r}, x⁽ᵖ⁾⟩)`` and
``σ(z) = max(0, z)²``; 2m filters shared over the two patches, no biases, a fixed second layer ±1, entries drawn
from N(0, σ₀²). :func:`closed_form_gradient` writes the paper's update term by term, with no autograd, for the tests
that check the trainer against it.
"""

from __future__ import annotations

import torch

from ..signal_noise_cnn.model import Architecture, SignalNoiseCNN, activation, logistic_loss
from ..signal_noise_cnn.model import output_from_inner as _family_output
from ..signal_noise_cnn.model import population_error

__all__ = ["SquaredReLUCNN", "squared_relu", "output_from_inner", "logistic_loss", "closed_form_gradient",
           "population_error", "paper_architecture"]


def paper_architecture(m: int) -> Architecture:
    """The paper's network for ``m`` filters per bank: q = 2, sum over patches, 1/m, no bias."""
    return Architecture(q=2.0, patch_scale=1.0, filter_divisor=m, bias=False)


def squared_relu(z: torch.Tensor) -> torch.Tensor:
    """σ(z) = max(0, z)²."""
    return activation(z, 2.0)


def output_from_inner(z_pos: torch.Tensor, z_neg: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``f(W, x_i)`` for every training sample from the pre-activations ``Z_j = W_j [μ | ξ_1..ξ_n]`` (column 0 is
    ``⟨w_{j,r}, μ⟩``, column 1 + i is ``⟨w_{j,r}, ξ_i⟩``; the signal patch is ``y_i μ``): ``(n,)``."""
    return _family_output(z_pos, z_neg, y, paper_architecture(z_pos.shape[0]))


class SquaredReLUCNN(SignalNoiseCNN):
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
        super().__init__(d, m, paper_architecture(m), sigma0=sigma0, generator=generator, dtype=dtype, device=device)


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


