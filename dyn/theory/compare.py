"""Claim-by-claim comparison of a recorded run with a theorem.

``dyn.compare(run)`` (the theory is picked from the run's setup, or named) returns a tidy :class:`pandas.DataFrame`: one row per claim with the
prediction, what was observed, the verdict (holds / violated / not checkable) and the numbers behind it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd
import xarray as xr

from ..analysis.run import Run
from ..errors import ConfigError
from .base import Theory, get_theory, theory_for

__all__ = ["compare", "regime", "resolve_theory", "theory_or_none"]


def resolve_theory(run: Run, theory: str | Theory | None) -> Theory:
    """``theory`` by name or instance, or (None) the registered theory of the run's setup."""
    return theory_for(run) if theory is None else get_theory(theory)


def theory_or_none(run: Run, theory: str | Theory | None) -> Theory | None:
    """The named theory, else the run's registered one, else None (a run no theory judges, e.g. a user's model)."""
    if theory is not None:
        return get_theory(theory)
    try:
        return theory_for(run)
    except ConfigError:
        return None


def compare(run: str | os.PathLike | xr.DataTree | Run, theory: str | Theory | None = None) -> pd.DataFrame:
    """Check every claim of ``theory`` on ``run``.

    Parameters
    ----------
    run : path, DataTree or :class:`dyn.run.Run`
    theory : registry name or :class:`dyn.theory.Theory` instance; None picks the theory of the run's setup

    Returns
    -------
    pandas.DataFrame
        Columns ``claim, stage, statement, predicted, observed, verdict, numbers`` (numbers as a JSON string);
        ``attrs["regime"]`` holds :func:`regime`'s summary.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny"), path)
    >>> table = dyn.compare(path)
    >>> list(table.columns)
    ['claim', 'stage', 'statement', 'predicted', 'observed', 'verdict', 'numbers']
    >>> set(table["verdict"]) <= {"holds", "violated", "not checkable"}
    True
    """
    run = Run.coerce(run)
    th = resolve_theory(run, theory)
    verdicts = th.check(run)
    table = pd.DataFrame(
        [
            {
                "claim": v.claim,
                "stage": v.stage,
                "statement": v.statement,
                "predicted": v.predicted,
                "observed": v.observed,
                "verdict": v.verdict,
                "numbers": json.dumps(v.numbers, sort_keys=True, default=float),
            }
            for v in verdicts
        ]
    )
    table.attrs["regime"] = th.regime(run)
    table.attrs["theory"] = th.name
    return table


def regime(run: str | os.PathLike | xr.DataTree | Run, theory: str | Theory | None = None) -> dict[str, Any]:
    """Which of signal learning and noise memorization wins, and whether the theory predicted it."""
    run = Run.coerce(run)
    return resolve_theory(run, theory).regime(run)
