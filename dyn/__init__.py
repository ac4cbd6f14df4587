"""dyn: record and analyse the feature-learning dynamics of neural-network training.

Record every neuron's inner products with signal vectors and noise patches at every step of any PyTorch loop
(:class:`Recorder`, :class:`Site`), store them in zarr as xarray data (:func:`open`), and train the contrastive
setups of Huang et al. 2024 (:func:`train`, :class:`Config`, :func:`load_preset`).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config, list_presets, load_preset
from .errors import ConfigError, DivergenceError, DynError, StoreError
from .record import Recorder, Site, every
from .store import open_run as open
from .train import RunSummary, train

__all__ = [
    "__version__",
    "Config",
    "ConfigError",
    "DivergenceError",
    "DynError",
    "Recorder",
    "RunSummary",
    "Site",
    "StoreError",
    "every",
    "list_presets",
    "load_preset",
    "open",
    "train",
]
