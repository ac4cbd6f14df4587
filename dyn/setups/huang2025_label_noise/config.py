"""Validated settings of one run of Huang, Han et al. 2025 (label-noise GD in the low-SNR regime), and its presets.

A :class:`LabelNoiseConfig` holds every number a run depends on, including those the paper leaves open (σ₀, the
seeds, the test-set size, the precision). It is stored as JSON in every run's root attributes (``config``), so a
run can be re-created from its store.

Presets are TOML files in ``data/presets/`` (shipped inside the package as ``dyn/presets``)::

    setup = "huang2025-label-noise"
    description = "one line"
    [config]
    d = 2000
    ...
    [notes]            # why each unstated number was chosen; stored with the run
    sigma0 = "..."
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from ...errors import ConfigError
from ..base import SetupConfig, check_probe_scale

__all__ = ["SETUP_NAME", "ALGORITHMS", "OPTIMIZERS", "LabelNoiseConfig", "with_snr"]

#: The value of the ``setup`` key in presets and of the ``setup`` root attribute of every run store.
SETUP_NAME = "huang2025-label-noise"
#: Standard full-batch GD (ε ≡ 1) and label-noise GD (Algorithm 1).
ALGORITHMS = ("gd", "label_noise")
#: The update applied to the gradient of the (flipped-label) loss: plain GD (the paper), heavy-ball SGD, Adam.
OPTIMIZERS = ("gd", "momentum", "adam")
_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class LabelNoiseConfig(SetupConfig):
    """Settings of one run of the synthetic experiment of Huang, Han et al. 2025.

    The signal is ``μ = mu_norm · e_{mu_axis}``; the noise patches are ``ξ ~ N(0, σ_p² (I − μμᵀ/‖μ‖²))``
    (Definition 2.1). The network is ``f = F₊₁ − F₋₁`` with ``F_j = (1/m) Σ_r Σ_p σ(⟨w_{j,r}, x⁽ᵖ⁾⟩)``,
    σ(z) = max(0, z)², fixed second layer ±1, trained by full-batch GD on the logistic loss.

    Parameters
    ----------
    algorithm : {"gd", "label_noise"}
        Standard GD, or label-noise GD (labels of the loss flipped independently per sample and per step with
        probability ``p``). Standard GD ignores ``p`` (ε ≡ 1), so one preset serves a paired comparison.
    d : int
        Patch dimension.
    n, n_test : int
        Training-set size, and size of the fresh test set drawn from the same distribution (0: no test error).
    m : int
        Filters per output (2m trainable filters in all).
    steps : int
        Full-batch GD steps.
    eta : float
        Learning rate η.
    p : float
        Label-flip probability of label-noise GD, in [0, 1].
    sigma0 : float
        Initialisation scale: every weight entry is drawn from N(0, σ₀²) (not stated in the paper).
    sigma_p : float
        Noise strength σ_p.
    mu_norm, mu_axis : float, int
        The signal vector ``μ = mu_norm · e_{mu_axis}``.
    seed : int
        Seeds the training data (``seed``), the initial weights (``seed + 1``), the test set (``seed + 2``),
        the label flips (``seed + 3``) and the population-error draws (``seed + 4``); a GD and a label-noise run
        with the same seed share data and initialisation.
    dtype : {"float32", "float64"}
        Precision of training (the recorded inner products are stored as float32 either way).
    device : str
        Torch device.
    optimizer : {"gd", "momentum", "adam"}
        The update applied to the full-batch gradient of the loss chosen by ``algorithm``: plain GD with step η
        (the paper's update (2); the default), ``torch.optim.SGD`` with heavy-ball ``momentum``, or
        ``torch.optim.Adam`` with learning rate η (default betas). Not in the paper: only ``"gd"`` runs are the
        theorem's setting.
    momentum : float
        Momentum coefficient of ``optimizer="momentum"``, in [0, 1) (ignored otherwise).
    record_every : int
        Record every k-th step (step 0 and the last step always are). The exact update-identity claims need 1.
    test_every : int
        Evaluate test and population error every k steps (and at step 0 and the last step).
    population_draws : int
        Monte-Carlo draws of the population 0-1 error (0: not computed); see
        :func:`dyn.setups.huang2025_label_noise.model.population_error`.

    Examples
    --------
    >>> cfg = LabelNoiseConfig()  # the paper's Figure-2 sizes
    >>> round(cfg.snr, 4), round(cfg.n * cfg.snr**2, 2)
    (0.0894, 1.6)
    >>> cfg.replace(algorithm="gd").flip_probability
    0.0
    >>> LabelNoiseConfig(p=1.5)
    Traceback (most recent call last):
    ...
    dyn.errors.ConfigError: p must be a probability in [0, 1], got 1.5
    """

    setup_name: ClassVar[str] = SETUP_NAME  # named in errors about unknown keys
    algorithm: str = "label_noise"
    d: int = 2000
    n: int = 200
    n_test: int = 2000
    m: int = 20
    steps: int = 2000
    eta: float = 0.5
    p: float = 0.1
    sigma0: float = 0.01
    sigma_p: float = 0.5
    mu_norm: float = 2.0
    mu_axis: int = 0
    seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"
    optimizer: str = "gd"
    momentum: float = 0.9
    record_every: int = 1
    test_every: int = 10
    population_draws: int = 100_000
    notes: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.check_field_types()
        if not isinstance(self.notes, Mapping):
            raise ConfigError(f"notes must be a table of strings, got {type(self.notes).__name__}")
        for name in ("d", "n", "m", "steps", "record_every", "test_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n < 2:
            raise ConfigError(f"n must be at least 2, got {self.n}")
        if self.n > self.d - 1:
            raise ConfigError(f"n must be at most d - 1 = {self.d - 1} so that mu, xi_1..xi_n are linearly "
                              f"independent (the noise lives in the (d-1)-dim complement of mu), got {self.n}")
        for name in ("n_test", "seed", "population_draws"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("eta", "sigma0", "sigma_p", "mu_norm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                why = {"sigma0": " (with w(0) = 0 every gradient of the squared ReLU vanishes)"}.get(name, "")
                raise ConfigError(f"{name} must be a positive finite number{why}, got {v}")
        if not (math.isfinite(self.p) and 0.0 <= self.p <= 1.0):
            raise ConfigError(f"p must be a probability in [0, 1], got {self.p}")
        if not 0 <= self.mu_axis < self.d:
            raise ConfigError(f"mu_axis must lie in [0, d={self.d}), got {self.mu_axis}")
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        for name, what in (("mu_norm", "the signal μ"), ("sigma_p", "the noise patches ξ_i")):
            check_probe_scale(name, getattr(self, name), self.dtype, what)
        object.__setattr__(self, "notes", {str(k): str(v) for k, v in self.notes.items()})

    # Derived quantities the theorem is written in (shared/theory/huang2025-label-noise.md §5, §7).
    @property
    def flip_probability(self) -> float:
        """The flip probability actually used: ``p`` for label-noise GD, 0 for standard GD."""
        return self.p if self.algorithm == "label_noise" else 0.0

    @property
    def snr(self) -> float:
        """SNR = ‖μ‖ / (σ_p √d) (Assumption 3.1)."""
        return self.mu_norm / (self.sigma_p * math.sqrt(self.d))


def with_snr(config: LabelNoiseConfig, snr: float) -> LabelNoiseConfig:
    """Derived sweep axis ``snr``: ``config`` with ‖μ‖ = SNR · σ_p √d (the paper does not say how Figure 3 varies
    the SNR; notes §8.2 RECON: through ‖μ‖ at fixed σ_p and d).

    Examples
    --------
    >>> round(with_snr(LabelNoiseConfig(), 0.05).mu_norm, 4)
    1.118
    """
    if isinstance(snr, bool) or not isinstance(snr, (int, float)) or not (math.isfinite(snr) and snr > 0):
        raise ConfigError(f"snr must be a positive number, got {snr!r}")
    return config.replace(mu_norm=float(snr) * config.sigma_p * math.sqrt(config.d))
