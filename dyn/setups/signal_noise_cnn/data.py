"""The family's data: a signal patch ``ỹ·μ`` and a noise patch ξ per point, label-flipping noise, and the per-step
flips of label-noise GD.

- True labels ỹ are Rademacher; the observed label is ``y = ỹ`` or, with probability ``flip_rate``, ``−ỹ`` (the
  signal patch keeps ỹ: the flip is noise in the label, not in the input). Training and test labels are flipped
  alike, so the Bayes test error against observed labels is ``flip_rate``.
- ξ ~ N(0, σ_p² (I − μ̂μ̂ᵀ)) (``orthogonal_noise``: ``g − ⟨g, μ̂⟩μ̂`` with g ~ N(0, σ_p² I); with μ on a coordinate
  axis ``⟨ξ_i, μ⟩ = 0`` bit for bit) or N(0, σ_p² I) (the authors' code).
- Which patch holds the signal never affects the shared-filter network or its gradient, so the signal is patch 1.

Everything is drawn on the CPU in float64 from generators seeded by ``config.seed`` (training data),
``seed + 2`` (test set), ``seed + 3`` (label-noise GD flips) and ``seed + 5`` (the data's label flips), then cast
and moved, so the data are identical on every device, the test set does not depend on ``n``, and a run without
label flips draws exactly what it drew before label flips existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...record import resolve_device
from .config import CNNConfig

__all__ = ["CNNData", "make_data", "draw_noise", "draw_flips", "draw_label_flips"]


@dataclass
class CNNData:
    """One draw of the training and test data, as tensors on the run's device.

    Attributes
    ----------
    mu : (d,) the signal vector μ.
    y : (n,) observed training labels ±1 (what the loss sees).
    xi : (n, d) training noise patches ξ_i.
    y_test : (n_test,) observed test labels.
    xi_test : (n_test, d) test noise patches.
    y_true, y_test_true : the true labels ỹ (equal to ``y``, ``y_test`` without label flips).
    """

    mu: torch.Tensor
    y: torch.Tensor
    xi: torch.Tensor
    y_test: torch.Tensor
    xi_test: torch.Tensor
    y_true: torch.Tensor
    y_test_true: torch.Tensor

    @property
    def flipped(self) -> torch.Tensor:
        """(n,) bool: training samples whose observed label is flipped."""
        return self.y != self.y_true

    def inputs(self) -> torch.Tensor:
        """Training inputs ``x_i = [ỹ_i μ, ξ_i]`` as an (n, 2, d) tensor."""
        return torch.stack([self.y_true[:, None] * self.mu, self.xi], dim=1)

    def test_inputs(self) -> torch.Tensor:
        """Test inputs ``[ỹ μ, ξ]`` as an (n_test, 2, d) tensor."""
        return torch.stack([self.y_test_true[:, None] * self.mu, self.xi_test], dim=1)


def draw_noise(count: int, mu: torch.Tensor, sigma_p: float, gen: torch.Generator, *,
               orthogonal: bool = True) -> torch.Tensor:
    """``count`` noise patches in float64: ``g ~ N(0, σ_p² I)``, projected off μ when ``orthogonal`` (and μ ≠ 0).

    Examples
    --------
    >>> mu = torch.tensor([0.0, 2.0, 0.0, 0.0], dtype=torch.float64)
    >>> xi = draw_noise(5, mu, 1.0, torch.Generator().manual_seed(0))
    >>> float((xi @ mu).abs().max())
    0.0
    """
    g = torch.randn(count, mu.shape[0], generator=gen, dtype=torch.float64) * sigma_p
    norm = torch.linalg.vector_norm(mu.to(torch.float64))
    if not orthogonal or float(norm) == 0.0:
        return g
    unit = mu.to(torch.float64) / norm
    return g - (g @ unit)[:, None] * unit[None, :]


def _labels(count: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (count,), generator=gen).to(torch.float64) * 2 - 1


def draw_flips(config: CNNConfig) -> torch.Tensor:
    """The label-noise GD flip signs ε_i⁽ᵗ⁾ of every step, ``(steps, n)`` int8 in {+1, −1}.

    Label-noise GD: i.i.d. per (step, sample), −1 with probability ``p``, drawn at once from a generator seeded
    ``config.seed + 3`` (a run can be replayed from its seed or from the stored array). Standard GD: all +1.

    Examples
    --------
    >>> cfg = CNNConfig(d=20, n=4, steps=3, p=0.5, algorithm="label_noise")
    >>> draw_flips(cfg).shape, draw_flips(cfg.replace(algorithm="gd")).unique().tolist()
    (torch.Size([3, 4]), [1])
    """
    shape = (config.steps, config.n)
    if config.algorithm == "gd":
        return torch.ones(shape, dtype=torch.int8)
    gen = torch.Generator().manual_seed(config.seed + 3)
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    return torch.where(u < config.p, -1, 1).to(torch.int8)


def draw_label_flips(config: CNNConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The data's label flips: (n,) and (n_test,) float64 signs, −1 with probability ``flip_rate`` (generator
    ``seed + 5``; all +1 and nothing drawn when ``flip_rate`` is 0).

    Examples
    --------
    >>> train, test = draw_label_flips(CNNConfig(d=50, n=40, n_test=1000, flip_rate=0.1))
    >>> int((train < 0).sum()) > 0, 0.05 < float((test < 0).double().mean()) < 0.15
    (True, True)
    """
    if config.flip_rate == 0:
        return torch.ones(config.n, dtype=torch.float64), torch.ones(config.n_test, dtype=torch.float64)
    gen = torch.Generator().manual_seed(config.seed + 5)
    u = torch.rand(config.n + config.n_test, generator=gen, dtype=torch.float64)
    signs = torch.where(u < config.flip_rate, -1.0, 1.0).to(torch.float64)
    return signs[:config.n], signs[config.n:]


def make_data(config: CNNConfig) -> CNNData:
    """Draw the training set and the test set of ``config``.

    Examples
    --------
    >>> data = make_data(CNNConfig(d=30, n=6, n_test=4))
    >>> data.xi.shape, data.inputs().shape, float((data.xi @ data.mu).abs().max())
    (torch.Size([6, 30]), torch.Size([6, 2, 30]), 0.0)
    """
    mu = torch.zeros(config.d, dtype=torch.float64)
    mu[config.mu_axis] = config.mu_norm
    orthogonal = config.orthogonal_noise
    gen = torch.Generator().manual_seed(config.seed)
    y_true = _labels(config.n, gen)
    xi = draw_noise(config.n, mu, config.sigma_p, gen, orthogonal=orthogonal)
    test_gen = torch.Generator().manual_seed(config.seed + 2)
    y_test_true = _labels(config.n_test, test_gen)
    xi_test = draw_noise(config.n_test, mu, config.sigma_p, test_gen, orthogonal=orthogonal)
    flips, test_flips = draw_label_flips(config)
    dev = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)

    def put(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=dev, dtype=dtype)

    return CNNData(mu=put(mu), y=put(y_true * flips), xi=put(xi), y_test=put(y_test_true * test_flips),
                   xi_test=put(xi_test), y_true=put(y_true), y_test_true=put(y_test_true))
