"""Train the two-layer squared-ReLU CNN with standard GD or label-noise GD (Algorithm 1), recording every step.

The family's trainer (:mod:`dyn.setups.signal_noise_cnn.trainer`) on a :class:`LabelNoiseConfig`: full-batch GD
with learning rate η on ``L^ε_S(W) = (1/n) Σ_i ℓ(ε_i⁽ᵗ⁾ y_i f(W, x_i))`` (ε ≡ 1 for standard GD), the flips of
every step drawn before training and stored as ``flips/epsilon(flip_step, sample)``, two recorder sites ``pos``
(j = +1) and ``neg`` (j = −1) whose inner products are the forward pass's pre-activations. Logged per step:
``loss``, ``loss_noisy``, ``loss_noisy_expected``, ``margin_min/mean/max``, ``train_error``, ``flip_count``; every
``test_every`` steps ``test_error``, ``population_error`` and ``population_error_se``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ...errors import ConfigError
from ..signal_noise_cnn.trainer import FLIPS_GROUP, SITES, CNNSetup, RunSummary, make_optimizer, read_flips
from ..signal_noise_cnn.trainer import train as _train_family
from .config import SETUP_NAME, LabelNoiseConfig

__all__ = ["LabelNoiseSetup", "RunSummary", "train", "train_batch", "SITES", "FLIPS_GROUP", "read_flips",
           "make_optimizer"]


class LabelNoiseSetup(CNNSetup):
    """Data, network, flips and recorder sites of one run, built from a :class:`LabelNoiseConfig` (the family's
    :class:`~dyn.setups.signal_noise_cnn.trainer.CNNSetup`).

    Examples
    --------
    >>> from dyn.setups.huang2025_label_noise import LabelNoiseConfig
    >>> setup = LabelNoiseSetup(LabelNoiseConfig(d=30, n=6, n_test=4, m=3, steps=2))
    >>> state = setup.forward(0)
    >>> sorted(state.inner), tuple(state.inner["pos"].shape)
    (['neg', 'pos'], (3, 7))
    """


def train(config: LabelNoiseConfig, out: str | os.PathLike | None, **options: Any) -> RunSummary:
    """Train ``config`` and record every (scheduled) step into the store ``out`` (setup ``huang2025-label-noise``).

    Keyword options as :func:`dyn.setups.signal_noise_cnn.train` (``overwrite``, ``progress``, ``attrs``,
    ``chunk_bytes``, ``checkpoint_every``, ``checkpoint_seconds``, ``resume``).

    Examples
    --------
    >>> import tempfile, os
    >>> from dyn.setups.huang2025_label_noise import LabelNoiseConfig
    >>> out = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> summary = train(LabelNoiseConfig(d=40, n=8, n_test=20, m=4, steps=5, population_draws=0), out)
    >>> summary.status, summary.steps
    ('complete', 5)
    >>> sorted(dyn.open(out).children)
    ['flips', 'neg', 'pos']
    """
    if not isinstance(config, LabelNoiseConfig):
        raise ConfigError(f"config must be a LabelNoiseConfig, got {type(config).__name__}")
    return _train_family(config, out, setup=SETUP_NAME, setup_class=LabelNoiseSetup, **options)


def train_batch(configs: list[LabelNoiseConfig], outs: list[str | os.PathLike | None], **options: Any) -> list[RunSummary]:
    """Train runs of one shape together (the family's batch trainer), each recorded as :func:`train` would."""
    from ..signal_noise_cnn.batched import train_batch as _batch

    bad = [type(c).__name__ for c in configs if not isinstance(c, LabelNoiseConfig)]
    if bad:
        raise ConfigError(f"configs must be LabelNoiseConfig, got {bad[0]}")
    return _batch(configs, outs, setup=SETUP_NAME, setup_class=LabelNoiseSetup, **options)
