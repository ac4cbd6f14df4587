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

from .config import ALGORITHMS, SETUP_NAME, LabelNoiseConfig, load_preset, preset_path
from .data import LabelNoiseData, draw_flips, draw_noise, make_data
from .model import SquaredReLUCNN, closed_form_gradient, output_from_inner, population_error
from .train import FLIPS_GROUP, SITES, LabelNoiseSetup, RunSummary, read_flips, train

__all__ = [
    "ALGORITHMS",
    "FLIPS_GROUP",
    "SETUP_NAME",
    "SITES",
    "LabelNoiseConfig",
    "LabelNoiseData",
    "LabelNoiseSetup",
    "RunSummary",
    "SquaredReLUCNN",
    "closed_form_gradient",
    "draw_flips",
    "draw_noise",
    "load_preset",
    "make_data",
    "output_from_inner",
    "population_error",
    "preset_path",
    "read_flips",
    "train",
]
