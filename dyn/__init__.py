"""dyn: record and analyse the feature-learning dynamics of neural-network training.

Record every neuron's inner products with signal vectors and noise patches at every step of any PyTorch loop
(:class:`Recorder`, :class:`Site`), store them in zarr as xarray data (:func:`open`), train the contrastive
setups of Huang et al. 2024 (:func:`train`, :class:`Config`, :func:`load_preset`), recover exact signal learning
and noise memorization (:func:`coefficients`), check a theorem claim by claim (:func:`compare`), and plot
(:mod:`dyn.plot`) or export (:mod:`dyn.export`) the curves.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import accessor as _accessor  # noqa: F401  (registers the .dyn accessors)
from . import theory
from .coefficients import coefficients
from .compare import compare, regime
from .config import Config, list_presets, load_preset
from .errors import ConfigError, DivergenceError, DynError, StoreError
from .phases import PhaseError
from .record import Recorder, Site, every
from .run import Run
from .store import open_run as open
from .theory import Theory, get_theory
from .train import RunSummary, train



def __getattr__(name: str):
    # plot and export pull in matplotlib/seaborn/pyarrow: loaded on first use, so `dyn run` starts faster
    if name in ("plot", "export"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'dyn' has no attribute {name!r}")


__all__ = [
    "__version__",
    "Config",
    "ConfigError",
    "DivergenceError",
    "DynError",
    "PhaseError",
    "Recorder",
    "Run",
    "RunSummary",
    "Site",
    "StoreError",
    "Theory",
    "coefficients",
    "compare",
    "every",
    "export",
    "get_theory",
    "list_presets",
    "load_preset",
    "open",
    "plot",
    "regime",
    "theory",
    "train",
]
