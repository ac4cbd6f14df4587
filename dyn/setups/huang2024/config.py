"""The validated settings of one Huang et al. 2024 run.

A :class:`Config` holds every number a run depends on, including those the paper leaves open (τ, σ₀, the number
of negatives M, the seed). It is stored as JSON in every run's root attributes, so a run can always be re-created
from its store. Presets (``data/presets/huang2024/``) and ``--set`` overrides are read by :mod:`dyn.setups.base`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from ...errors import ConfigError
from ..base import SetupConfig, check_probe_scale

__all__ = ["Config", "with_n_snr2", "with_c_mu"]

_MODALITIES = ("single", "multi")
_OPTIMIZERS = ("gd", "sgd")
_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Config(SetupConfig):
    """Settings of one run of the Huang et al. 2024 synthetic experiment.

    Vectors the paper writes as ``μ = 5e₁`` are given by a norm and an axis (0-based): ``mu_norm=5, mu_axis=0``.

    Parameters
    ----------
    modality : {"single", "multi"}
        Single-modal contrastive learning with augmentation (eq. 6) or multi-modal (eq. 9).
    d : int
        Patch dimension (both modalities, as in the paper's analysis).
    n, n_test : int
        Training and OOD test set sizes.
    m : int
        Neurons per encoder (the embedding dimension).
    steps : int
        Optimizer steps (full-batch GD: one step per epoch).
    eta : float
        Learning rate η.
    tau : float
        InfoNCE temperature τ (not stated in the paper).
    sigma0 : float
        Initialisation scale σ₀: ``w_r(0) ~ N(0, σ₀² I)`` (not stated in the paper).
    sigma_xi : float
        Noise scale σ_ξ of both modalities.
    sigma_eps : float
        Augmentation noise σ_ε (single-modal positive view ``[yμ, ξ+ε]``).
    mu_norm, mu_axis : float, int
        Modality-1 signal ``μ = mu_norm · e_{mu_axis}``.
    mu_tilde_norm, mu_tilde_axis : float, int
        Modality-2 signal ``μ̃``.
    nu_norm, nu_axis : float, int
        OOD test signal ``ν``.
    negatives : int or "all"
        Number of opposite-label negatives M per anchor; ``"all"`` uses every opposite-label sample.
    negative_pairs : {"opposite", "shuffled"}
        Which samples may be an anchor's negatives: those of the opposite label (the paper), or those whose label
        differs after a random permutation of the labels (an ablation, not in the paper: negatives then share the
        anchor's label about half the time). The mask the objective used is stored with the run (group
        ``negatives``) and M is read from it.
    redraw_eps : bool
        Redraw the augmentation noise ε at every step (default: drawn once per sample).
    optimizer : {"gd", "sgd"}
        Full-batch gradient descent (the paper) or minibatch SGD over anchors.
    batch_size : int
        Anchors per SGD step (ignored by GD).
    seed : int
        Seeds data, initialisation, negative sampling and minibatches.
    dtype : {"float32", "float64"}
        Floating-point precision of training.
    device : str
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    record_every : int
        Record every k-th step (step 0 and the last step are always recorded).

    Examples
    --------
    >>> cfg = Config()  # the paper's Figure-1 sizes
    >>> round(cfg.snr, 4), round(cfg.n * cfg.snr**2, 3)
    (0.1118, 1.25)
    >>> cfg.replace(modality="multi").modality
    'multi'
    """

    modality: str = "single"
    d: int = 2000
    n: int = 100
    n_test: int = 200
    m: int = 50
    steps: int = 200
    eta: float = 0.01
    tau: float = 0.1
    sigma0: float = 0.01
    sigma_xi: float = 1.0
    sigma_eps: float = 0.1
    mu_norm: float = 5.0
    mu_axis: int = 0
    mu_tilde_norm: float = 15.0
    mu_tilde_axis: int = 1
    nu_norm: float = 2.0
    nu_axis: int = 0
    negatives: int | str = "all"
    negative_pairs: str = "opposite"
    redraw_eps: bool = False
    optimizer: str = "gd"
    batch_size: int = 0
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    record_every: int = 1
    notes: Mapping[str, str] = field(default_factory=dict, compare=False)

    setup_name: ClassVar[str] = "huang2024"  # named in errors about unknown keys
    #: names users try for a field (``--set lr=0.1``), answered with the field meant
    KEY_ALIASES: ClassVar[dict[str, str]] = {"lr": "eta", "learning_rate": "eta", "temperature": "tau",
                                             "epochs": "steps", "width": "m", "neurons": "m", "dim": "d",
                                             "samples": "n"}

    def __post_init__(self) -> None:
        self.check_field_types()
        for name in ("d", "n", "m", "steps", "record_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n < 2:
            raise ConfigError(f"n must be at least 2 (anchors need a negative), got {self.n}")
        if self.n_test < 0:
            raise ConfigError(f"n_test must be >= 0, got {self.n_test}")
        for name in ("eta", "tau"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive finite number, got {v}")
        for name in ("sigma0", "sigma_xi", "sigma_eps", "mu_norm", "mu_tilde_norm", "nu_norm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
        # A zero probe makes the Gram matrix of (μ, ξ_1..ξ_n) singular: no exact γ/ρ, an unusable run.
        for name, what in (("sigma_xi", "the noise patches ξ_i"), ("mu_norm", "the signal μ"),
                           ("mu_tilde_norm", "the second modality's signal μ̃")):
            if getattr(self, name) == 0:
                raise ConfigError(f"{name} must be > 0 ({what} would be zero: the exact decomposition needs them)")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must lie in [0, 2**63), got {self.seed}")
        if self.device.split(":")[0].strip().lower() == "meta":
            raise ConfigError(f"device {self.device!r} holds no data (tensors there have shapes only); use cpu or cuda")
        for name in ("mu_axis", "mu_tilde_axis", "nu_axis"):
            v = getattr(self, name)
            if not 0 <= v < self.d:
                raise ConfigError(f"{name} must lie in [0, d={self.d}), got {v}")
        if self.modality not in _MODALITIES:
            raise ConfigError(f"modality must be one of {', '.join(_MODALITIES)}, got {self.modality!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(_OPTIMIZERS)}, got {self.optimizer!r}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        for name, what in (("sigma_xi", "the noise patches ξ_i"), ("mu_norm", "the signal μ"),
                           ("mu_tilde_norm", "the second modality's signal μ̃")):
            check_probe_scale(name, getattr(self, name), self.dtype, what)
        if isinstance(self.negatives, str):
            if self.negatives != "all":
                raise ConfigError(f"negatives must be a positive integer or 'all', got {self.negatives!r}")
        elif self.negatives <= 0:
            raise ConfigError(f"negatives must be a positive integer or 'all', got {self.negatives}")
        if self.negative_pairs not in ("opposite", "shuffled"):
            raise ConfigError(f"negative_pairs must be 'opposite' or 'shuffled', got {self.negative_pairs!r}")
        if self.optimizer == "sgd" and not 0 < self.batch_size <= self.n:
            raise ConfigError(f"batch_size must lie in [1, n={self.n}] for optimizer='sgd', got {self.batch_size}")
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be >= 0, got {self.batch_size}")
        object.__setattr__(self, "notes", dict(self.notes))

    # Derived quantities the theory is written in.
    @property
    def snr(self) -> float:
        """SNR = ‖μ‖ / (σ_ξ √d) (Assumption 4.1)."""
        return self.mu_norm / (self.sigma_xi * math.sqrt(self.d)) if self.sigma_xi > 0 else math.inf

    @property
    def c_mu(self) -> float:
        """C_μ = ‖μ̃‖ / ‖μ‖ (Assumption 4.1(7))."""
        return self.mu_tilde_norm / self.mu_norm if self.mu_norm > 0 else math.inf


def with_n_snr2(config: Config, n_snr2: float) -> Config:
    """Sweep axis n·SNR²: sets ``mu_norm = sqrt(n_snr2 · σ_ξ² d / n)``, scaling ν and μ̃ along (ratios kept)."""
    mu = math.sqrt(n_snr2 * config.sigma_xi**2 * config.d / config.n)
    ratio_nu = config.nu_norm / config.mu_norm if config.mu_norm > 0 else 0.0
    ratio_tilde = config.mu_tilde_norm / config.mu_norm if config.mu_norm > 0 else 3.0
    return config.replace(mu_norm=mu, nu_norm=ratio_nu * mu, mu_tilde_norm=ratio_tilde * mu)


def with_c_mu(config: Config, c_mu: float) -> Config:
    """Sweep axis C_μ = ‖μ̃‖/‖μ‖: sets ``mu_tilde_norm = c_mu · mu_norm``."""
    return config.replace(mu_tilde_norm=c_mu * config.mu_norm)
