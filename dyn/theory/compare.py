"""Claim-by-claim comparison of a recorded run with a theorem.

``dyn.compare(run)`` (the theory is picked from the run's setup, or named) returns one :class:`pandas.DataFrame`
row per claim, every cell a plain value: what the theorem states and predicts, what the run showed, the verdict,
whether the claim's hypotheses hold for this run (and which do not), and why a claim is not checkable. The numbers
behind each verdict differ from claim to claim, so they are not columns: they are kept in ``table.attrs["numbers"]``
(claim → {name: value}) and :func:`numbers_table` lays them out as a long table.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pandas as pd
import xarray as xr

from ..analysis.run import Run
from ..errors import ConfigError
from .base import Theory, Verdict, get_theory, summarize, theory_for

__all__ = ["compare", "regime", "resolve_theory", "theory_or_none", "numbers_table", "verdict_table", "COLUMNS"]

#: The columns of a :func:`compare` table, in order.
COLUMNS = ("claim", "stage", "statement", "predicted", "observed", "verdict", "hypotheses_met", "unmet", "reason")


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


def verdict_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """Verdicts as a :func:`compare`-style table (columns :data:`COLUMNS`, numbers and summary in ``attrs``)."""
    table = pd.DataFrame(
        [
            {
                "claim": v.claim,
                "stage": v.stage,
                "statement": v.statement,
                "predicted": v.predicted,
                "observed": v.observed,
                "verdict": v.verdict,
                "hypotheses_met": v.hypotheses_met,
                "unmet": "; ".join(v.unmet),
                "reason": v.reason,
            }
            for v in verdicts
        ],
        columns=list(COLUMNS),
    )
    table["hypotheses_met"] = table["hypotheses_met"].astype("boolean")
    table.attrs["numbers"] = {v.claim: dict(v.numbers) for v in verdicts}
    table.attrs["summary"] = summarize(verdicts)
    return table


def compare(run: str | os.PathLike | xr.DataTree | Run, theory: str | Theory | None = None) -> pd.DataFrame:
    """Check every claim of ``theory`` on ``run``.

    Parameters
    ----------
    run : path, DataTree or :class:`dyn.Run`
    theory : registry name or :class:`dyn.theory.Theory` instance; None picks the theory of the run's setup

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: ``claim, stage, statement, predicted, observed, verdict`` (holds / violated / not
        checkable), ``hypotheses_met`` (nullable bool; NA on assumption rows, which are conditions, not claims),
        ``unmet`` (the hypotheses that fail, ``"; "``-separated) and ``reason`` (why not checkable). ``attrs``:
        ``theory``, ``regime`` (:func:`regime`), ``summary`` (:func:`dyn.theory.summarize`: tests of the theorem
        apart from predictions outside its assumptions), ``hypotheses`` (name → met) and ``numbers``
        (see :func:`numbers_table`).

    Raises
    ------
    StoreError
        The store is damaged (a corrupt chunk is an error, never a verdict).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny"), path)
    >>> table = dyn.compare(path)
    >>> list(table.columns)
    ['claim', 'stage', 'statement', 'predicted', 'observed', 'verdict', 'hypotheses_met', 'unmet', 'reason']
    >>> set(table["verdict"]) <= {"holds", "violated", "not checkable"}
    True
    >>> sorted(table.attrs["summary"])
    ['conditions', 'other conditions', 'outside', 'tests']
    """
    run = Run.coerce(run)
    th = resolve_theory(run, theory)
    table = verdict_table(th.check(run))
    table.attrs["regime"] = th.regime(run)
    table.attrs["theory"] = th.name
    table.attrs["hypotheses"] = dict(th.hypotheses(run))
    return table


def numbers_table(table: pd.DataFrame) -> pd.DataFrame:
    """The numbers behind each verdict of a :func:`compare` table, one row per (claim, quantity).

    Returns
    -------
    pandas.DataFrame
        Columns ``claim``, ``quantity``, ``value`` (float; NaN where the number is not numeric) and ``text`` (the
        value as text). Lists become one row per entry, ``name[i]``.

    Examples
    --------
    >>> t = pd.DataFrame({"claim": ["a"]})
    >>> t.attrs["numbers"] = {"a": {"slope": 0.5, "ci": [0.4, 0.6], "kind": "log-like"}}
    >>> numbers_table(t)[["quantity", "value", "text"]].values.tolist()
    [['slope', 0.5, '0.5'], ['ci[0]', 0.4, '0.4'], ['ci[1]', 0.6, '0.6'], ['kind', nan, 'log-like']]
    """
    rows = []

    def add(claim: str, name: str, value: Any) -> None:
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                add(claim, f"{name}[{i}]", v)
        elif isinstance(value, dict):
            for k, v in value.items():
                add(claim, f"{name}.{k}", v)
        else:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            rows.append({"claim": claim, "quantity": name,
                         "value": float(value) if numeric else (float(value) if isinstance(value, bool) else math.nan),
                         "text": "" if value is None else str(value)})

    for claim, numbers in table.attrs.get("numbers", {}).items():
        for name, value in numbers.items():
            add(claim, name, value)
    return pd.DataFrame(rows, columns=["claim", "quantity", "value", "text"])


def regime(run: str | os.PathLike | xr.DataTree | Run, theory: str | Theory | None = None) -> dict[str, Any]:
    """Which of signal learning and noise memorization wins, and whether the theory predicted it."""
    run = Run.coerce(run)
    return resolve_theory(run, theory).regime(run)
