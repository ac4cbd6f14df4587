"""The two-layer signal–noise CNN family: the data model and network that Cao et al. 2022, Kou et al. 2023 and
Huang et al. 2025 (and most papers of this line) share.

Each point has a signal patch ``ỹ·μ`` and a noise patch ξ; ``f = F₊₁ − F₋₁`` with shared filters, activation
``max(0, z)^q`` and a fixed second layer; labels flipped with probability ``flip_rate``; the papers' network or the
authors' code network; GD, label-noise GD, SAM or any ``torch.optim`` update. Every step is recorded with one
:class:`dyn.Site` per filter bank (``pos``: j = +1, ``neg``: j = −1). A paper is presets plus a theory on this
family (``dyn.theory.kou2023``, ``dyn.theory.cao2022``); ``huang2025-label-noise`` is its q = 2 member.

Examples
--------
>>> import tempfile, os
>>> from dyn.setups.signal_noise_cnn import CNNConfig, train
>>> out = os.path.join(tempfile.mkdtemp(), "cnn.zarr")
>>> train(CNNConfig(d=60, n=10, n_test=50, m=4, steps=10, flip_rate=0.1), out).status
'complete'
"""

from __future__ import annotations

import importlib
from typing import Any

from ..base import Setup, load_preset, register_setup
from .config import ALGORITHMS, NETWORKS, OPTIMIZERS, SETUP_NAME, CNNConfig, with_snr

__all__ = ["ALGORITHMS", "NETWORKS", "OPTIMIZERS", "SETUP", "SETUP_NAME", "CNNConfig", "load_preset", "train",
           "with_snr", "ignored_axes", "batch_key"]

#: the torch side, imported on first use so that registering the setup stays cheap
_LAZY = {"train": "trainer", "CNNSetup": "trainer", "read_flips": "trainer", "FLIPS_GROUP": "trainer",
         "LABELS_GROUP": "trainer", "SITES": "trainer", "make_optimizer": "trainer", "probe_matrix": "trainer",
         "make_data": "data", "draw_flips": "data", "draw_noise": "data", "draw_label_flips": "data",
         "CNNData": "data", "SignalNoiseCNN": "model", "Architecture": "model", "output_from_inner": "model",
         "population_error": "model", "train_batch": "batched"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ignored_axes(config: CNNConfig) -> tuple[str, ...]:
    """Sweep axes that do not enter a run with this config: ``p`` under standard GD, σ₀ under the code network,
    ``sam_radius`` / ``momentum`` unless those optimizers are used."""
    out = []
    if config.algorithm == "gd":
        out.append("p")
    if config.network == "code":
        out.append("sigma0")
    if config.optimizer != "sam":
        out.append("sam_radius")
    if config.optimizer != "momentum":
        out.append("momentum")
    return tuple(out)


def batch_key(config: CNNConfig) -> Any:
    """Runs with equal keys train together in one batch: the same shapes, network, activation, algorithm, steps,
    schedule, dtype and device; any seed, ‖μ‖, σ_p, σ₀, η, p and flip rate. Optimizers other than GD are trained
    alone (None)."""
    if config.optimizer != "gd":
        return None
    return (config.d, config.n, config.n_test, config.m, config.steps, config.network, float(config.q),
            config.algorithm, config.record_every, config.test_every, config.population_draws, config.dtype,
            config.device, config.orthogonal_noise, config.mu_axis)


SETUP = register_setup(Setup(
    name=SETUP_NAME,
    description="Two-layer signal-noise CNN family: activation max(0,z)^q, label-flip noise, theory or code network "
                "(Cao 2022, Kou 2023, ...)",
    config=CNNConfig,
    package=__name__,
    trainer=f"{__name__}.trainer:train",
    derived_axes={"snr": with_snr},
    ignored_axes=ignored_axes,
    batch_trainer=f"{__name__}.batched:train_batch",
    experiments="dyn.experiments.kou2023:EXPERIMENTS",  # reproductions live in the experiments layer
    batch_key=batch_key,
))
