"""Huang et al. 2024 (NeurIPS), "On the Comparison between Multi-modal and Single-modal Contrastive Learning".

The paper's synthetic data (:mod:`.data`), patch-ReLU encoders (:mod:`.model`), single- and multi-modal InfoNCE
losses with the paper's stop-gradients (:mod:`.objective`), the GD trainer that records every step (:mod:`.train`),
the OOD linear probe (:mod:`.probe`), the coloured-digits experiment of Table 1 (:mod:`.colored_digits`) and the
reproductions (:mod:`dyn.experiments.huang2024`). Its theorem is :mod:`dyn.theory.huang2024`. Presets: ``data/presets/huang2024/``.

Importing this package registers the setup; it imports no torch (the trainer is loaded on first use).
"""

from __future__ import annotations

from ..base import Setup, register_setup
from .config import Config, with_c_mu, with_n_snr2

__all__ = ["Config", "SETUP"]


#: Config fields runs must share to be trained in one batch (:mod:`.batched`): they set tensor shapes, the step
#: loop or the device. Everything else (seed, signal norms, noise scales, negatives, η, τ) may differ per run.
BATCH_FIELDS = ("modality", "d", "n", "n_test", "m", "steps", "record_every", "dtype", "device", "optimizer",
                "redraw_eps")


def batch_key(config: Config) -> tuple | None:
    """What runs must share to be trained in one batch; None when the batched trainer cannot train ``config``
    (minibatch SGD, ``redraw_eps``). Imports no torch.

    Examples
    --------
    >>> batch_key(Config(seed=1)) == batch_key(Config(seed=2, mu_norm=3.0, eta=0.05))
    True
    >>> batch_key(Config(d=100)) == batch_key(Config(d=200)), batch_key(Config(optimizer="sgd", batch_size=10))
    (False, None)
    """
    if config.optimizer != "gd" or config.redraw_eps:
        return None
    return tuple(getattr(config, name) for name in BATCH_FIELDS)


def _sweep_options(config: Config) -> dict:
    return {"evaluate_every": config.steps}  # the final OOD probe accuracy, for the phase diagram


SETUP = register_setup(Setup(
    name="huang2024",
    description="Huang et al. 2024: single- vs multi-modal contrastive learning on signal-noise data (GD)",
    config=Config,
    package=__name__,
    trainer=f"{__name__}.train:train",
    batch_trainer=f"{__name__}.batched:train_batch",
    batch_key=batch_key,
    derived_axes={"n_snr2": with_n_snr2, "c_mu": with_c_mu},
    ignored_axes=lambda config: ("c_mu",) if config.modality == "single" else (),  # C_μ enters multi-modal only
    sweep_options=_sweep_options,
    phase_diagram="dyn.experiments.huang2024:phase_diagram",
    experiments="dyn.experiments.huang2024:EXPERIMENTS",
))
