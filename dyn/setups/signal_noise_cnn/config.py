"""Validated settings of one run of the two-layer signal–noise CNN family, and the quantities its theorems use.

The family (``shared/theory/benign-overfitting.md``): each point has a signal patch ``ỹ·μ`` and a noise patch ξ;
the network is ``f = F₊₁ − F₋₁`` with shared filters, activation ``σ(z) = max(0, z)^q`` and a fixed second layer;
training labels are flipped with probability ``flip_rate``; the loss is logistic. One config class serves every
member: Cao et al. 2022 (q > 2, no flips), Kou et al. 2023 (q = 1, label-flipping noise), Huang et al. 2025
(q = 2, label-noise GD), under either network:

- ``network="theory"``: the papers' network, ``F_j = (1/m) Σ_r Σ_p σ(⟨w_{j,r}, x⁽ᵖ⁾⟩)``, no bias, init N(0, σ₀²);
- ``network="code"``: the authors' code network for Kou et al. (``Conv1d(1, 2m, kernel=stride=d)`` with bias and
  PyTorch's default init U(±1/√d) for weights and biases, **mean** over the 2 patches, **sum** over the m filters).

A config is stored as JSON in every run's root attributes (``config``), so a run can be re-created from its store.
This module imports no torch (theories read it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

from ...errors import ConfigError
from ..base import SetupConfig, check_probe_scale

__all__ = ["SETUP_NAME", "ALGORITHMS", "OPTIMIZERS", "NETWORKS", "CNNConfig", "with_snr"]

#: The value of the ``setup`` key in presets and of the ``setup`` root attribute of the family's run stores.
SETUP_NAME = "signal-noise-cnn"
#: Standard full-batch GD (ε ≡ 1) and label-noise GD (labels of the loss flipped per step with probability ``p``).
ALGORITHMS = ("gd", "label_noise")
#: Updates dyn names; any other ``torch.optim`` class name (``"AdamW"``, ``"RMSprop"``, ...) is used at lr η with
#: its defaults. ``"sam"``: sharpness-aware minimisation (ascent to ``w + r ∇L/‖∇L‖``, GD step with the gradient there).
OPTIMIZERS = ("gd", "momentum", "adam", "sam")
#: The papers' network and the authors' code network (see the module docstring).
NETWORKS = ("theory", "code")
_DTYPES = ("float32", "float64")
_TORCH_OPTIM = re.compile(r"^[A-Z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class CNNConfig(SetupConfig):
    """Settings of one run of the two-layer signal–noise CNN.

    Parameters
    ----------
    q : float
        Activation power: σ(z) = max(0, z)^q (q ≥ 1; 1 is ReLU).
    algorithm : {"gd", "label_noise"}
        Standard GD, or label-noise GD (the loss's labels flipped independently per sample and step with
        probability ``p``; Huang et al. 2025, Algorithm 1).
    network : {"theory", "code"}
        "theory": sum over patches, 1/m, no bias, N(0, σ₀²) init; "code": the authors' Conv1d with bias, mean over
        patches, sum over filters, PyTorch's default init (module docstring).
    d : int
        Patch dimension.
    n, n_test : int
        Training-set size, and size of the fresh test set (0: no test error).
    m : int
        Filters per output (2m filters in all).
    steps : int
        Full-batch steps.
    eta : float
        Learning rate η.
    p : float
        Per-step flip probability of label-noise GD, in [0, 1] (ignored by standard GD).
    flip_rate : float
        Label-flipping noise of the data (Kou et al.'s p), in [0, 0.5): every training and test label is flipped
        independently with this probability; the signal patch keeps the true label (``x = [ỹμ, ξ]``, ``y = ±ỹ``).
        Test error is reported against both the flipped labels (``test_error``: the Bayes error is ``flip_rate``)
        and the true ones (``test_error_clean``).
    sigma0 : float
        Initialisation scale of the theory network: entries drawn from N(0, σ₀²) (the code network ignores it).
    sigma_p : float
        Noise strength σ_p.
    mu_norm, mu_axis : float, int
        The signal vector ``μ = mu_norm · e_{mu_axis}`` (mu_norm = 0 only for unrecorded runs).
    orthogonal_noise : bool
        ξ ~ N(0, σ_p²(I − μμᵀ/‖μ‖²)) (the theory) or N(0, σ_p² I) (the authors' code).
    seed : int
        Seeds the training data (``seed``), the initial weights (``seed + 1``), the test set (``seed + 2``), the
        label-noise GD flips (``seed + 3``), the population-error draws (``seed + 4``) and the data's label flips
        (``seed + 5``).
    dtype : {"float32", "float64"}
        Precision of training (recorded inner products are stored as float32 either way).
    device : str
        Torch device.
    optimizer : str
        ``"gd"`` (the theory's update), ``"momentum"`` (heavy-ball SGD), ``"adam"``, ``"sam"`` or any
        ``torch.optim`` class name (used with lr η and its defaults). Only ``"gd"`` is the theorems' setting.
    momentum : float
        Momentum of ``optimizer="momentum"``, in [0, 1).
    sam_radius : float
        SAM's ascent radius r (``optimizer="sam"``).
    record_every : int
        Record every k-th step (step 0 and the last always are); the exact update identities need 1.
    test_every : int
        Evaluate test and population error every k steps (and at step 0 and the last step).
    population_draws : int
        Monte-Carlo draws of the population 0-1 error (0: not computed).

    Examples
    --------
    >>> cfg = CNNConfig(q=1, d=400, n=20, mu_norm=5.0, sigma_p=1.0)
    >>> round(cfg.snr, 4), cfg.patch_scale, cfg.replace(network="code").patch_scale
    (0.25, 1.0, 0.5)
    >>> CNNConfig(q=0.5)
    Traceback (most recent call last):
    ...
    dyn.errors.ConfigError: q must be a number >= 1 (sigma(z) = max(0, z)^q), got 0.5
    """

    setup_name: ClassVar[str] = SETUP_NAME
    #: names users try for a field (``--set lr=0.1``), answered with the field meant
    KEY_ALIASES: ClassVar[dict[str, str]] = {"lr": "eta", "learning_rate": "eta", "epochs": "steps", "width": "m",
                                             "neurons": "m", "dim": "d", "samples": "n", "flip": "flip_rate",
                                             "label_flip": "flip_rate", "power": "q", "activation": "q",
                                             "rho": "sam_radius", "sam_rho": "sam_radius", "init": "sigma0"}
    q: float = 1.0
    algorithm: str = "gd"
    network: str = "theory"
    d: int = 400
    n: int = 20
    n_test: int = 1000
    m: int = 10
    steps: int = 100
    eta: float = 0.1
    p: float = 0.1
    flip_rate: float = 0.0
    sigma0: float = 0.01
    sigma_p: float = 1.0
    mu_norm: float = 5.0
    mu_axis: int = 0
    orthogonal_noise: bool = True
    seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"
    optimizer: str = "gd"
    momentum: float = 0.9
    sam_radius: float = 0.05
    record_every: int = 1
    test_every: int = 10
    population_draws: int = 0
    notes: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.check_field_types()
        if not isinstance(self.notes, Mapping):
            raise ConfigError(f"notes must be a table of strings, got {type(self.notes).__name__}")
        if not (math.isfinite(self.q) and self.q >= 1):
            raise ConfigError(f"q must be a number >= 1 (sigma(z) = max(0, z)^q), got {self.q}")
        for name in ("d", "n", "m", "steps", "record_every", "test_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n < 2:
            raise ConfigError(f"n must be at least 2, got {self.n}")
        if self.n > self.d - 1:
            raise ConfigError(f"n must be at most d - 1 = {self.d - 1} so that mu, xi_1..xi_n are linearly "
                              f"independent (the exact decomposition needs it), got {self.n}")
        for name in ("n_test", "seed", "population_draws"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("eta", "sigma0", "sigma_p", "sam_radius"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                why = {"sigma0": " (with w(0) = 0 every gradient of max(0, z)^q vanishes)"}.get(name, "")
                raise ConfigError(f"{name} must be a positive finite number{why}, got {v}")
        if not (math.isfinite(self.mu_norm) and self.mu_norm >= 0):
            raise ConfigError(f"mu_norm must be a positive finite number or 0 (unrecorded runs), got {self.mu_norm}")
        if not (math.isfinite(self.p) and 0.0 <= self.p <= 1.0):
            raise ConfigError(f"p must be a probability in [0, 1], got {self.p}")
        if not (math.isfinite(self.flip_rate) and 0.0 <= self.flip_rate < 0.5):
            raise ConfigError(f"flip_rate must lie in [0, 0.5) (at 0.5 the labels carry no information), "
                              f"got {self.flip_rate}")
        if not 0 <= self.mu_axis < self.d:
            raise ConfigError(f"mu_axis must lie in [0, d={self.d}), got {self.mu_axis}")
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.network not in NETWORKS:
            raise ConfigError(f"network must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        if self.optimizer not in OPTIMIZERS and not _TORCH_OPTIM.match(self.optimizer):
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)} or a torch.optim class name "
                              f"such as 'AdamW', got {self.optimizer!r}")
        if not (math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ConfigError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        for name, what in (("mu_norm", "the signal μ"), ("sigma_p", "the noise patches ξ_i")):
            check_probe_scale(name, getattr(self, name), self.dtype, what)
        object.__setattr__(self, "notes", {str(k): str(v) for k, v in self.notes.items()})

    # Derived quantities the theorems are written in (benign-overfitting.md §1, §4).
    @property
    def flip_probability(self) -> float:
        """The per-step flip probability of the loss actually used: ``p`` for label-noise GD, 0 for standard GD."""
        return self.p if self.algorithm == "label_noise" else 0.0

    @property
    def snr(self) -> float:
        """SNR = ‖μ‖ / (σ_p √d)."""
        return self.mu_norm / (self.sigma_p * math.sqrt(self.d))

    @property
    def patch_scale(self) -> float:
        """The factor of the sum over the two patches: 1 (theory network: sum), ½ (code network: mean)."""
        return 1.0 if self.network == "theory" else 0.5


def with_snr(config: CNNConfig, snr: float) -> CNNConfig:
    """Derived sweep axis ``snr``: ``config`` with ‖μ‖ = SNR · σ_p √d (σ_p and d fixed).

    Examples
    --------
    >>> round(with_snr(CNNConfig(d=400, sigma_p=1.0), 0.1).mu_norm, 4)
    2.0
    """
    if isinstance(snr, bool) or not isinstance(snr, (int, float)) or not (math.isfinite(snr) and snr > 0):
        raise ConfigError(f"snr must be a positive number, got {snr!r}")
    return config.replace(mu_norm=float(snr) * config.sigma_p * math.sqrt(config.d))
