"""The paper's patch-ReLU encoder (eq. 3): one filter per neuron, shared over the patches, outputs summed.

``h̄_r(x) = σ(⟨w_r, x⁽¹⁾⟩) + σ(⟨w_r, x⁽²⁾⟩)`` with σ = ReLU, no bias, ``w_r(0) ~ N(0, σ₀² I)``.
The weight is an ``(m, d)`` matrix whose rows are neurons, the layout :class:`dyn.Site` expects.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchReLUEncoder"]


class PatchReLUEncoder(nn.Module):
    """Patch-wise ReLU encoder ``R^{P×d} → R^m`` with a filter shared across patches.

    Parameters
    ----------
    d : int
        Patch dimension.
    m : int
        Number of neurons (the embedding dimension).
    sigma0 : float
        Initialisation scale: every weight entry is drawn from N(0, σ₀²).
    generator : torch.Generator, optional
        Source of the initial weights (drawn on the CPU in float64, then cast), for reproducible runs.
    dtype, device
        Of the weight.

    Examples
    --------
    >>> enc = PatchReLUEncoder(d=3, m=2, sigma0=1.0, generator=torch.Generator().manual_seed(0))
    >>> x = torch.randn(5, 2, 3)
    >>> enc(x).shape, enc.patch_features(x).shape
    (torch.Size([5, 2]), torch.Size([5, 2, 2]))
    """

    def __init__(
        self,
        d: int,
        m: int,
        sigma0: float,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        super().__init__()
        w = torch.randn(m, d, generator=generator, dtype=torch.float64) * sigma0
        self.weight = nn.Parameter(w.to(device=device, dtype=dtype))

    @property
    def m(self) -> int:
        return self.weight.shape[0]

    def preactivations(self, patches: torch.Tensor) -> torch.Tensor:
        """``⟨w_r, p⟩`` for every patch vector ``p``: ``(..., d) → (..., m)``."""
        return patches @ self.weight.T

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-patch activations ``h_r(x⁽ᵖ⁾) = σ(⟨w_r, x⁽ᵖ⁾⟩)``: ``(N, P, d) → (N, P, m)``."""
        return torch.relu(self.preactivations(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``h̄(x) = Σ_p σ(W x⁽ᵖ⁾)``: ``(N, P, d) → (N, m)``."""
        return self.patch_features(x).sum(dim=-2)
