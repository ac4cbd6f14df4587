"""The paper's signal–noise data (Huang et al. 2024, eqs. 1, 2, 5) and the OOD test set.

Every sample has two patches of dimension d: patch 1 is the signal ``y·μ``, patch 2 the noise ``ξ ~ N(0, σ_ξ² I)``.
Modality 2 shares the labels and has independent noise. The single-modal positive view is ``[yμ, ξ+ε]`` with
``ε ~ N(0, σ_ε² I)`` drawn once per sample (or redrawn each step, see :meth:`SyntheticData.redraw_augmentation`).

Everything is drawn on the CPU from one ``torch.Generator`` seeded by ``config.seed`` and then moved, so the data are
identical on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import Config
from ...errors import ConfigError
from ...record import resolve_device

__all__ = ["SyntheticData", "make_data", "basis_vector"]


def basis_vector(d: int, axis: int, norm: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``norm · e_axis`` in R^d.

    Examples
    --------
    >>> basis_vector(4, 1, 5.0)
    tensor([0., 5., 0., 0.], dtype=torch.float64)
    """
    v = torch.zeros(d, dtype=dtype)
    v[axis] = norm
    return v


@dataclass
class SyntheticData:
    """One draw of the paper's data, as ``(samples, d)`` tensors on the run's device.

    Attributes
    ----------
    y : (n,) tensor of ±1 labels, shared by both modalities.
    mu, mu_tilde, nu : (d,) signal vectors of modality 1, modality 2 and the OOD test set.
    xi : (n, d) modality-1 noise patches ξ_i.
    xi_tilde : (n, d) modality-2 noise patches ξ̃_i (independent of ξ).
    eps : (n, d) augmentation noise ε_i of the single-modal positive view.
    y_test : (n_test,) OOD test labels.
    zeta : (n_test, d) OOD test noise patches ζ.
    negatives : (n, n) boolean mask, ``negatives[i, j]`` if x_j is a negative of anchor i (y_j ≠ y_i).
    """

    y: torch.Tensor
    mu: torch.Tensor
    mu_tilde: torch.Tensor
    nu: torch.Tensor
    xi: torch.Tensor
    xi_tilde: torch.Tensor
    eps: torch.Tensor
    y_test: torch.Tensor
    zeta: torch.Tensor
    negatives: torch.Tensor
    sigma_eps: float = 0.0
    _eps_generator: torch.Generator | None = None

    def inputs(self) -> torch.Tensor:
        """Modality-1 inputs ``x_i = [y_i μ, ξ_i]`` as an (n, 2, d) tensor."""
        return torch.stack([self.y[:, None] * self.mu, self.xi], dim=1)

    def inputs_tilde(self) -> torch.Tensor:
        """Modality-2 inputs ``x̃_i = [y_i μ̃, ξ̃_i]`` as an (n, 2, d) tensor."""
        return torch.stack([self.y[:, None] * self.mu_tilde, self.xi_tilde], dim=1)

    def augmented(self) -> torch.Tensor:
        """Single-modal positive views ``x̂_i = [y_i μ, ξ_i + ε_i]`` (eq. 5) as an (n, 2, d) tensor."""
        return torch.stack([self.y[:, None] * self.mu, self.xi + self.eps], dim=1)

    def test_inputs(self) -> torch.Tensor:
        """OOD test inputs ``[y ν, ζ]`` as an (n_test, 2, d) tensor."""
        return torch.stack([self.y_test[:, None] * self.nu, self.zeta], dim=1)

    def redraw_augmentation(self) -> None:
        """Draw fresh ε_i for every sample (used when ``config.redraw_eps``); deterministic given the seed."""
        if self._eps_generator is None:
            raise ConfigError("redraw_augmentation needs data made by make_data")
        eps = torch.randn(self.eps.shape, generator=self._eps_generator, dtype=torch.float64) * self.sigma_eps
        self.eps = eps.to(device=self.eps.device, dtype=self.eps.dtype)


def _negative_mask(y: torch.Tensor, negatives: int | str, gen: torch.Generator,
                   shuffle: torch.Generator | None = None) -> torch.Tensor:
    if shuffle is not None:  # the ablation: "opposite" under a random permutation of the labels
        y = y[torch.randperm(y.shape[0], generator=shuffle)]
    opposite = y[:, None] != y[None, :]
    if negatives == "all":
        if not bool(opposite.any(dim=1).all()):
            raise ConfigError("negatives: some anchor has no opposite-label sample (all labels equal); raise n or change seed")
        return opposite
    counts = opposite.sum(dim=1)
    if int(counts.min()) < int(negatives):
        raise ConfigError(
            f"negatives={negatives} exceeds the smallest opposite-label class ({int(counts.min())} samples)"
        )
    # A fixed random subset of M opposite-label samples per anchor: rank random keys within the opposite set.
    keys = torch.rand(opposite.shape, generator=gen, dtype=torch.float64)
    keys = torch.where(opposite, keys, torch.full_like(keys, 2.0))
    ranks = keys.argsort(dim=1).argsort(dim=1)
    return ranks < int(negatives)


def make_data(config: Config) -> SyntheticData:
    """Draw the training and OOD test data for ``config``.

    Parameters
    ----------
    config : Config
        Sizes, scales, signal vectors and seed.

    Returns
    -------
    SyntheticData
        Tensors in ``config.dtype`` on ``config.device``; the negatives mask is boolean.

    Examples
    --------
    >>> data = make_data(Config(d=20, n=8, n_test=4, m=4))
    >>> data.xi.shape, data.inputs().shape, int(data.y.abs().sum())
    (torch.Size([8, 20]), torch.Size([8, 2, 20]), 8)
    """
    gen = torch.Generator().manual_seed(config.seed)
    f64 = torch.float64
    n, d = config.n, config.d
    y = torch.randint(0, 2, (n,), generator=gen).to(f64) * 2 - 1
    xi = torch.randn(n, d, generator=gen, dtype=f64) * config.sigma_xi
    xi_tilde = torch.randn(n, d, generator=gen, dtype=f64) * config.sigma_xi
    eps = torch.randn(n, d, generator=gen, dtype=f64) * config.sigma_eps
    y_test = torch.randint(0, 2, (config.n_test,), generator=gen).to(f64) * 2 - 1
    zeta = torch.randn(config.n_test, d, generator=gen, dtype=f64) * config.sigma_xi
    shuffle = torch.Generator().manual_seed(config.seed + 0x5EED + 1) if config.negative_pairs == "shuffled" else None
    negatives = _negative_mask(y, config.negatives, gen, shuffle)
    eps_gen = torch.Generator().manual_seed(config.seed + 0x5EED)

    dtype = getattr(torch, config.dtype)
    dev = resolve_device(config.device)

    def put(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=dev, dtype=dtype)

    return SyntheticData(
        y=put(y),
        mu=put(basis_vector(d, config.mu_axis, config.mu_norm)),
        mu_tilde=put(basis_vector(d, config.mu_tilde_axis, config.mu_tilde_norm)),
        nu=put(basis_vector(d, config.nu_axis, config.nu_norm)),
        xi=put(xi),
        xi_tilde=put(xi_tilde),
        eps=put(eps),
        y_test=put(y_test),
        zeta=put(zeta),
        negatives=negatives.to(dev),
        sigma_eps=config.sigma_eps,
        _eps_generator=eps_gen,
    )
