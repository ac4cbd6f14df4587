"""Claim-by-claim comparison of a recorded run with a theorem.

``dyn.compare(run, theory="huang2024")`` returns a tidy :class:`pandas.DataFrame`: one row per claim with the
prediction, what was observed, the verdict (holds / violated / not checkable) and the numbers behind it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd
import xarray as xr

from .run import Run
from .theory import Theory, get_theory

__all__ = ["compare", "regime", "format_table"]


def _as_run(run: str | os.PathLike | xr.DataTree | Run) -> Run:
    return run if isinstance(run, Run) else Run(run)


def compare(run: str | os.PathLike | xr.DataTree | Run, theory: str | Theory = "huang2024") -> pd.DataFrame:
    """Check every claim of ``theory`` on ``run``.

    Parameters
    ----------
    run : path, DataTree or :class:`dyn.run.Run`
    theory : registry name or :class:`dyn.theory.Theory` instance

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
    run = _as_run(run)
    th = get_theory(theory)
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


def regime(run: str | os.PathLike | xr.DataTree | Run, theory: str | Theory = "huang2024") -> dict[str, Any]:
    """Which of signal learning and noise memorization wins, and whether the theory predicted it."""
    run = _as_run(run)
    return get_theory(theory).regime(run)


def format_table(table: pd.DataFrame, *, width: int = 60) -> str:
    """A plain-text rendering of a :func:`compare` table for terminals (claim, predicted, observed, verdict)."""

    def cut(s: str) -> str:
        s = str(s)
        return s if len(s) <= width else s[: width - 1] + "…"

    rows = [("claim", "predicted", "observed", "verdict")]
    rows += [(r.claim, cut(r.predicted), cut(r.observed), r.verdict) for r in table.itertuples()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
