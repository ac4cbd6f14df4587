"""Huang, Han et al. 2025, "How Does Label Noise Gradient Descent Improve Generalization in the Low SNR Regime?".

The synthetic setup of the paper: data of Definition 2.1, the two-layer squared-ReLU CNN with a fixed ±1 second
layer, logistic loss, and full-batch standard GD or label-noise GD (Algorithm 1), recorded at every step with one
:class:`dyn.Site` per filter bank (``pos``: j = +1, ``neg``: j = −1). The claims of its theorems live in
:mod:`dyn.theory.huang2025_label_noise`.

Examples
--------
>>> import tempfile, os
>>> from dyn.setups.huang2025_label_noise import load_preset, train
>>> cfg = load_preset("huang2025-tiny", steps=20)
>>> out = os.path.join(tempfile.mkdtemp(), "ln.zarr")
>>> train(cfg, out).status
'complete'
"""

from __future__ import annotations

import importlib
from typing import Any

from ..base import Setup, load_preset, register_setup
from ..signal_noise_cnn import batch_key as family_batch_key
from .config import ALGORITHMS, OPTIMIZERS, SETUP_NAME, LabelNoiseConfig, with_snr

__all__ = ["ALGORITHMS", "OPTIMIZERS", "SETUP", "SETUP_NAME", "LabelNoiseConfig", "load_preset", "train"]

#: the torch side, imported on first use so that registering the setup stays cheap
_LAZY = {"train": "trainer", "LabelNoiseSetup": "trainer", "read_flips": "trainer", "FLIPS_GROUP": "trainer",
         "SITES": "trainer", "make_data": "data", "draw_flips": "data", "draw_noise": "data",
         "LabelNoiseData": "data", "SquaredReLUCNN": "model", "closed_form_gradient": "model",
         "output_from_inner": "model", "population_error": "model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SETUP = register_setup(Setup(
    name=SETUP_NAME,
    description="Huang, Han et al. 2025: two-layer CNN, standard GD vs label-noise GD in the low-SNR regime",
    config=LabelNoiseConfig,
    package=__name__,
    trainer=f"{__name__}.trainer:train",
    derived_axes={"snr": with_snr},  # Figure 3's axis: ||mu|| = SNR sigma_p sqrt(d)
    ignored_axes=lambda config: ("p",) if config.algorithm == "gd" else (),  # standard GD ignores p
    phase_diagram="dyn.experiments.huang2025_label_noise:phase_diagram",
    experiments="dyn.experiments.huang2025_label_noise:EXPERIMENTS",
    batch_trainer=f"{__name__}.trainer:train_batch",  # the family's batch trainer, recording as the lone one
    batch_key=family_batch_key,
))
