"""dyn: record and analyse the feature-learning dynamics of neural-network training.

Record every neuron's inner products with signal vectors and noise patches at every step of any PyTorch loop
(:class:`Recorder`, :class:`Site`), store them in zarr as xarray data (:func:`open`), recover exact signal learning
and noise memorization (:func:`coefficients`), check a theorem claim by claim (:func:`compare`), plot
(:func:`plot_coefficients`, ...) and export (:func:`export`, :func:`tidy`) the curves. Paper setups live in
:mod:`dyn.setups` (presets: :func:`load_preset`); ``dyn.train`` and ``dyn.Config`` are the first setup's
(Huang et al. 2024), kept at the top level because the README's examples use them.

Layers (each imports only those before it): ``store`` → ``record`` → ``setups``; ``store`` → ``analysis`` →
``theory`` → ``viz`` → ``experiments`` → ``cli``. Names are imported on first use, so ``import dyn`` (and the CLI's
``--help``) does not load torch or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import errors
from .errors import ConfigError, DivergenceError, DynError, NotCheckable, PhaseError, StoreError
from .viz import accessor as _accessor  # noqa: F401  (registers the .dyn accessors on xarray objects)

__version__ = "0.1.0"

#: public name -> (module, attribute), imported on first access
_LAZY = {
    "Recorder": ("dyn.record", "Recorder"),
    "Site": ("dyn.record", "Site"),
    "every": ("dyn.record", "every"),
    "probes": ("dyn.record.probes", None),
    "summary": ("dyn.analysis.summary", "summary"),
    "open": ("dyn.store", "open_run"),
    "Run": ("dyn.analysis.run", "Run"),
    "coefficients": ("dyn.analysis.coefficients", "coefficients"),
    "verify": ("dyn.analysis.verify", "verify"),
    "Theory": ("dyn.theory.base", "Theory"),
    "get_theory": ("dyn.theory.base", "get_theory"),
    "theory_for": ("dyn.theory.base", "theory_for"),
    "compare": ("dyn.theory.compare", "compare"),
    "regime": ("dyn.theory.compare", "regime"),
    "open_sweep": ("dyn.theory.sweeps", "open_sweep"),
    "check_transitions": ("dyn.theory.transitions", "check_transitions"),
    "Transition": ("dyn.theory.base", "Transition"),
    "theory": ("dyn.theory", None),
    "list_presets": ("dyn.setups.base", "list_presets"),
    "load_preset": ("dyn.setups.base", "load_preset"),
    "get_setup": ("dyn.setups.base", "get_setup"),
    "RunSummary": ("dyn.setups.base", "RunSummary"),
    "Config": ("dyn.setups.huang2024.config", "Config"),
    "train": ("dyn.setups.huang2024.train", "train"),
    "plot_coefficients": ("dyn.viz.plot", "plot_coefficients"),
    "plot_heatmap": ("dyn.viz.plot", "plot_heatmap"),
    "plot_signal_vs_noise": ("dyn.viz.plot", "plot_signal_vs_noise"),
    "export": ("dyn.viz.export", "export"),
    "tidy": ("dyn.viz.export", "tidy"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = importlib.import_module(module)
        value = value if attr is None else getattr(value, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dyn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "__version__",
    "Config",
    "ConfigError",
    "DivergenceError",
    "DynError",
    "NotCheckable",
    "PhaseError",
    "Recorder",
    "Run",
    "RunSummary",
    "Site",
    "StoreError",
    "Theory",
    "Transition",
    "check_transitions",
    "coefficients",
    "compare",
    "errors",
    "every",
    "export",
    "get_setup",
    "get_theory",
    "list_presets",
    "load_preset",
    "open",
    "open_sweep",
    "plot_coefficients",
    "plot_heatmap",
    "plot_signal_vs_noise",
    "probes",
    "regime",
    "summary",
    "theory",
    "theory_for",
    "tidy",
    "train",
    "verify",
]
