"""Validated settings of one run of Huang, Han et al. 2025 (label-noise GD in the low-SNR regime), and its presets.

A :class:`LabelNoiseConfig` holds every number a run depends on, including those the paper leaves open (σ₀, the
seeds, the test-set size, the precision). It is stored as JSON in every run's root attributes (``config``), so a
run can be re-created from its store.

The setup is the q = 2 member of the signal–noise CNN family (:mod:`dyn.setups.signal_noise_cnn`): its config
is the family's with the paper's defaults, trained by the family's trainer; its stores keep the setup name
``huang2025-label-noise`` and the theory :mod:`dyn.theory.huang2025_label_noise`.

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

from dataclasses import dataclass
from typing import ClassVar

from ...errors import ConfigError
from ..signal_noise_cnn.config import CNNConfig, with_snr

__all__ = ["SETUP_NAME", "ALGORITHMS", "OPTIMIZERS", "LabelNoiseConfig", "with_snr"]

#: The value of the ``setup`` key in presets and of the ``setup`` root attribute of every run store.
SETUP_NAME = "huang2025-label-noise"
#: Standard full-batch GD (ε ≡ 1) and label-noise GD (Algorithm 1).
ALGORITHMS = ("gd", "label_noise")
#: The updates the paper's comparison uses: plain GD (the paper), heavy-ball SGD, Adam (the family offers more).
OPTIMIZERS = ("gd", "momentum", "adam")


@dataclass(frozen=True)
class LabelNoiseConfig(CNNConfig):
    """Settings of one run of the synthetic experiment of Huang, Han et al. 2025: the family's config
    (:class:`~dyn.setups.signal_noise_cnn.config.CNNConfig`, every field documented there) with the paper's
    defaults: σ(z) = max(0, z)² (q = 2), the theory network, noise orthogonal to μ, no label-flipping noise in the
    data, label-noise GD with p = 0.1, and the Figure-2 sizes.

    The signal is ``μ = mu_norm · e_{mu_axis}``; the noise patches are ``ξ ~ N(0, σ_p² (I − μμᵀ/‖μ‖²))``
    (Definition 2.1). The network is ``f = F₊₁ − F₋₁`` with ``F_j = (1/m) Σ_r Σ_p σ(⟨w_{j,r}, x⁽ᵖ⁾⟩)``, trained by
    full-batch GD on the logistic loss; ``algorithm="gd"`` ignores ``p`` (ε ≡ 1), so one preset serves a paired
    comparison. Seeds: data ``seed``, weights ``seed + 1``, test set ``seed + 2``, flips ``seed + 3``,
    population-error draws ``seed + 4``. ``optimizer`` "momentum" / "adam" are not in the paper: only "gd" runs are
    the theorem's setting.

    Examples
    --------
    >>> cfg = LabelNoiseConfig()  # the paper's Figure-2 sizes
    >>> round(cfg.snr, 4), round(cfg.n * cfg.snr**2, 2), cfg.q
    (0.0894, 1.6, 2.0)
    >>> cfg.replace(algorithm="gd").flip_probability
    0.0
    >>> LabelNoiseConfig(p=1.5)
    Traceback (most recent call last):
    ...
    dyn.errors.ConfigError: p must be a probability in [0, 1], got 1.5
    """

    setup_name: ClassVar[str] = SETUP_NAME  # named in errors about unknown keys
    q: float = 2.0
    algorithm: str = "label_noise"
    d: int = 2000
    n: int = 200
    n_test: int = 2000
    m: int = 20
    steps: int = 2000
    eta: float = 0.5
    p: float = 0.1
    sigma_p: float = 0.5
    mu_norm: float = 2.0
    population_draws: int = 100_000

    #: names users try for a field (``--set lr=0.1``), answered with the field meant
    KEY_ALIASES: ClassVar[dict[str, str]] = {"lr": "eta", "learning_rate": "eta", "epochs": "steps", "width": "m",
                                             "neurons": "m", "dim": "d", "samples": "n", "label_noise": "p",
                                             "flip": "p"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mu_norm <= 0:
            raise ConfigError(f"mu_norm must be a positive finite number, got {self.mu_norm}")
