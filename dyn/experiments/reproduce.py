"""``dyn reproduce NAME``: the reproductions every registered setup offers, found by name."""

from __future__ import annotations

import os
from typing import Callable

from ..errors import ConfigError
from ..setups.base import available_setups

__all__ = ["available_experiments", "reproduce"]


def available_experiments() -> dict[str, tuple[str, str, Callable[..., str]]]:
    """``name -> (setup, description, command)`` over every registered setup."""
    out: dict[str, tuple[str, str, Callable[..., str]]] = {}
    for setup in available_setups().values():
        if setup.experiments:
            for name, (description, command) in setup.load(setup.experiments).items():
                out[name] = (setup.name, description, command)
    return out


def reproduce(name: str, out: str | os.PathLike, *, seeds: int | None = None, small: bool = False,
              overwrite: bool = False, progress: bool | None = None) -> str:
    """Run the reproduction ``name`` into the folder ``out``; returns the summary text it prints.

    Parameters
    ----------
    name : an experiment of :func:`available_experiments` (``figure1``, ``table1``, ``figure2``, ...).
    out : the folder to write.
    seeds : number of seeds (None: the experiment's default).
    small : the seconds-long version.
    overwrite : replace a reproduction folder dyn wrote at ``out``.
    progress : one bar over the experiment's runs and figures (plus the trainers' per-step bars); None (default):
        on in notebooks and terminals, off otherwise (:func:`dyn.progress.progress_enabled`).

    Raises
    ------
    ConfigError
        ``name`` is not offered by any registered setup.

    Examples
    --------
    >>> sorted(available_experiments())  # reproduce("figure1", "out/f1", small=True) runs one of them
    ['benign-vs-harmful', 'figure1', 'figure2', 'figure3', 'kou-heatmap', 'optimizers', 'table1']
    """
    experiments = available_experiments()
    if name not in experiments:
        raise ConfigError(f"unknown experiment {name!r} (available: {', '.join(sorted(experiments))})")
    if seeds is not None and (not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1):
        raise ConfigError(f"seeds must be a positive integer, got {seeds!r}")
    return experiments[name][2](out, seeds=seeds, small=small, overwrite=overwrite, progress=progress)
