"""The data of Definition 2.1 (Huang, Han et al. 2025), the test set, and the label flips of Algorithm 1.

Each point has two patches: the signal ``y·μ`` and the noise ``ξ ~ N(0, σ_p² (I − μμᵀ/‖μ‖²))``, with Rademacher
``y``. The noise is drawn as ``g ~ N(0, σ_p² I)`` projected off μ (exact for the projected covariance; with μ on a
coordinate axis the projection zeroes that coordinate exactly, so ``⟨ξ_i, μ⟩ = 0`` holds bit for bit). Which patch
holds the signal never affects the shared-filter network or its gradient, so the signal is always patch 1.

Everything is drawn on the CPU in float64 from generators seeded by ``config.seed`` (training data), ``seed + 2``
(test set) and ``seed + 3`` (flips), then cast and moved, so the data are identical on every device and the test
set does not depend on ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import ConfigError
from ...record import resolve_device
from .config import LabelNoiseConfig

__all__ = ["LabelNoiseData", "make_data", "draw_noise", "draw_flips"]


@dataclass
class LabelNoiseData:
    """One draw of the training and test data, as tensors on the run's device.

    Attributes
    ----------
    mu : (d,) the signal vector μ.
    y : (n,) training labels ±1.
    xi : (n, d) training noise patches ξ_i (exactly orthogonal to μ).
    y_test : (n_test,) test labels.
    xi_test : (n_test, d) test noise patches.
    """

    mu: torch.Tensor
    y: torch.Tensor
    xi: torch.Tensor
    y_test: torch.Tensor
    xi_test: torch.Tensor

    def inputs(self) -> torch.Tensor:
        """Training inputs ``x_i = [y_i μ, ξ_i]`` as an (n, 2, d) tensor."""
        return torch.stack([self.y[:, None] * self.mu, self.xi], dim=1)

    def test_inputs(self) -> torch.Tensor:
        """Test inputs ``[y μ, ξ]`` as an (n_test, 2, d) tensor."""
        return torch.stack([self.y_test[:, None] * self.mu, self.xi_test], dim=1)

    def probes(self) -> torch.Tensor:
        """``[μ | ξ_1 .. ξ_n]`` as a (d, 1 + n) matrix: the columns whose inner products the forward pass needs
        (and the recorder stores), in :meth:`dyn.Site.probe_matrix` order."""
        return torch.cat([self.mu[None], self.xi]).T.contiguous()


def draw_noise(count: int, mu: torch.Tensor, sigma_p: float, gen: torch.Generator) -> torch.Tensor:
    """``count`` noise patches ``ξ ~ N(0, σ_p² (I − μ̂μ̂ᵀ))`` in float64: ``g − ⟨g, μ̂⟩ μ̂`` with ``g ~ N(0, σ_p² I)``.

    Examples
    --------
    >>> mu = torch.tensor([0.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    >>> xi = draw_noise(5, mu, 1.0, torch.Generator().manual_seed(0))
    >>> float((xi @ mu).abs().max())
    0.0
    """
    g = torch.randn(count, mu.shape[0], generator=gen, dtype=torch.float64) * sigma_p
    unit = mu.to(torch.float64) / torch.linalg.vector_norm(mu.to(torch.float64))
    return g - (g @ unit)[:, None] * unit[None, :]


def _labels(count: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (count,), generator=gen).to(torch.float64) * 2 - 1


def draw_flips(config: LabelNoiseConfig) -> torch.Tensor:
    """The label-flip signs ε_i⁽ᵗ⁾ of every step, ``(steps, n)`` int8 in {+1, −1}.

    Label-noise GD: i.i.d. per (step, sample), −1 with probability ``p`` (Algorithm 1), drawn at once from a
    generator seeded ``config.seed + 3`` (so a run can be replayed from its seed or from the stored array).
    Standard GD: all +1 (no draws).

    Examples
    --------
    >>> cfg = LabelNoiseConfig(d=20, n=4, steps=3, p=0.5)
    >>> draw_flips(cfg).shape, draw_flips(cfg.replace(algorithm="gd")).unique().tolist()
    (torch.Size([3, 4]), [1])
    """
    shape = (config.steps, config.n)
    if config.algorithm == "gd":
        return torch.ones(shape, dtype=torch.int8)
    gen = torch.Generator().manual_seed(config.seed + 3)
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    return torch.where(u < config.p, -1, 1).to(torch.int8)


def make_data(config: LabelNoiseConfig) -> LabelNoiseData:
    """Draw the training set and the test set of ``config`` (Definition 2.1).

    Examples
    --------
    >>> data = make_data(LabelNoiseConfig(d=30, n=6, n_test=4))
    >>> data.xi.shape, data.inputs().shape, float((data.xi @ data.mu).abs().max())
    (torch.Size([6, 30]), torch.Size([6, 2, 30]), 0.0)
    """
    mu = torch.zeros(config.d, dtype=torch.float64)
    mu[config.mu_axis] = config.mu_norm
    gen = torch.Generator().manual_seed(config.seed)
    y = _labels(config.n, gen)
    xi = draw_noise(config.n, mu, config.sigma_p, gen)
    test_gen = torch.Generator().manual_seed(config.seed + 2)
    y_test = _labels(config.n_test, test_gen)
    xi_test = draw_noise(config.n_test, mu, config.sigma_p, test_gen)
    dev = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)

    def put(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=dev, dtype=dtype)

    return LabelNoiseData(mu=put(mu), y=put(y), xi=put(xi), y_test=put(y_test), xi_test=put(xi_test))
