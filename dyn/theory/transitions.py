"""Claims across runs: a theorem's transition (:class:`~dyn.theory.Transition`) checked on a sweep.

For each transition a theory declares, :func:`fit_transitions` selects the sweep's runs it is about, fits the
boundary from the grid (:mod:`dyn.analysis.transitions`) and :func:`check_transitions` turns the fits into
:class:`~dyn.theory.Verdict` rows of stage ``"across runs"`` with the same honesty rules as per-run claims:

- ``<name>.location``: the exponent ratios of the fitted boundary against the theory's, with bootstrap CIs;
  **violated** when a CI excludes the theory's ratio (or the outcome changes the other way round), **not
  checkable** when the grid varies fewer than two fields of the variable or does not span the transition;
- ``<name>.collapse``: the spread of the outcome around one curve in the theory's variable against the spread in
  the wrong variable (ratio < 1 with its CI below 1: holds; CI above 1: violated);
- ``<name>.low_side`` / ``<name>.high_side``: the runs at least 10× from the fitted boundary show the predicted
  outcome (within :data:`~dyn.analysis.transitions.SE_MULTIPLIER` standard errors);
- ``<name>.sharpness`` (when the transition names a ``sharpness_axis``): the width in log(variable) shrinks
  along that axis.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..analysis import transitions as T
from .base import Theory, Transition, Verdict
from .sweeps import sweep_table, sweep_theory

__all__ = ["STAGE", "TransitionFit", "fit_transition", "fit_transitions", "check_transitions", "transition_verdicts"]

#: The stage of every across-runs verdict.
STAGE = "across runs"


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _ci(ci: tuple[float, float]) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


@dataclass
class TransitionFit:
    """Everything fitted for one transition on one sweep (what the verdicts and the figures read).

    Attributes
    ----------
    transition : the theory's statement.
    runs : the selected runs (one row each) with finite outcome.
    fields : the fields of the variable that vary across those runs (the fit's log axes).
    problem : why the transition cannot be fitted at all (no runs, a field missing from the table), else "".
    location : the boundary fit in the varying fields (None when fewer than one varies or problem is set).
    v, w : each run's log theory variable and log wrong variable (None when the wrong one is not given).
    r : the outcome rescaled to [0, 1] over its observed range (None when the grid does not span it).
    boundary : log variable at the crossing of the 1-D fit in the theory's variable (NaN when not spanned).
    collapse, low, high, sharp : the other fits (None when not made).
    effect : the change of the outcome required to call the grid spanning.
    """

    transition: Transition
    runs: pd.DataFrame
    fields: list[str]
    problem: str = ""
    cells: np.ndarray | None = None
    location: T.LocationFit | None = None
    v: np.ndarray | None = None
    w: np.ndarray | None = None
    r: np.ndarray | None = None
    boundary: float = math.nan
    collapse: T.CollapseFit | None = None
    low: T.SideFit | None = None
    high: T.SideFit | None = None
    sharp: T.SharpnessFit | None = None
    effect: float = 0.0
    numbers: dict[str, Any] = field(default_factory=dict)


def _select(table: pd.DataFrame, t: Transition) -> tuple[pd.DataFrame, str]:
    runs = table
    if "status" in runs:
        runs = runs[runs["status"] == "complete"]
    for key, value in t.where.items():
        if key not in runs:
            return runs.iloc[:0], f"the sweep's table has no column {key!r} (needed to select the runs)"
        runs = runs[runs[key] == value]
    if t.outcome not in runs:
        return runs.iloc[:0], f"the sweep's table has no result column {t.outcome!r}"
    y = pd.to_numeric(runs[t.outcome], errors="coerce")
    runs = runs[np.isfinite(y.astype(float))]
    missing = [f for f in t.variable if f not in runs]
    if missing:
        return runs.iloc[:0], f"the sweep's table has no config field(s) {missing} of the variable"
    if runs.empty:
        return runs, "no run of the sweep has a finite outcome " + (f"where {dict(t.where)}" if t.where else "")
    return runs.reset_index(drop=True), ""


def _log_monomial(runs: pd.DataFrame, variable: dict[str, float]) -> np.ndarray:
    out = np.zeros(len(runs))
    for f, e in variable.items():
        out += float(e) * np.log(runs[f].astype(float).to_numpy())
    return out


def fit_transition(table: pd.DataFrame, t: Transition, *, n_boot: int = T.BOOTSTRAP,
                   rng: np.random.Generator | None = None) -> TransitionFit:
    """Fit ``t`` on the runs of ``table`` (one row per run, with its config fields and result columns).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> n, mu = np.repeat([10., 30., 100., 300.], 40), np.tile(np.repeat([0.3, 0.6, 1.2, 2.4], 10), 4)
    >>> y = (rng.uniform(size=160) < 1 / (1 + np.exp(-3 * np.log(n * mu**2 / 40)))).astype(float)
    >>> table = pd.DataFrame({"n": n, "mu_norm": mu, "won": y, "seed": np.tile(np.arange(10), 16)})
    >>> t = Transition("transition.demo", "demo", "won", {"n": 1, "mu_norm": 2}, increasing=True, high_min=1.0)
    >>> fit = fit_transition(table, t, n_boot=50)
    >>> fit.fields, fit.location.spanned
    (['n', 'mu_norm'], True)
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    runs, problem = _select(table, t)
    if problem:
        return TransitionFit(t, runs, [], problem=problem)
    positive = [f for f in t.variable if (runs[f].astype(float) > 0).all()]
    if len(positive) < len(t.variable):
        bad = [f for f in t.variable if f not in positive]
        return TransitionFit(t, runs, [], problem=f"config field(s) {bad} are not positive: no log scale")
    fields = [f for f in t.variable if float(t.variable[f]) != 0 and runs[f].nunique() > 1]
    y = runs[t.outcome].astype(float).to_numpy()
    wrong_fields = [f for f in (t.wrong_variable or {}) if f in runs and runs[f].nunique() > 1]
    cell_fields = list(dict.fromkeys(fields + wrong_fields))
    if cell_fields:
        _, cells = np.unique(np.round(np.log(runs[cell_fields].astype(float).to_numpy()), 12), axis=0,
                             return_inverse=True)
    else:
        cells = np.zeros(len(runs), dtype=int)
    cells = np.asarray(cells).ravel()
    effect = t.effect if t.effect is not None else (
        T.SPAN_EFFECT_FRACTION * (t.high_min - t.low) if t.high_min is not None else 0.0)
    fit = TransitionFit(t, runs, fields, cells=cells, effect=float(abs(effect)))
    fit.v = _log_monomial(runs, dict(t.variable))
    if t.wrong_variable and all(f in runs and (runs[f].astype(float) > 0).all() for f in t.wrong_variable):
        fit.w = _log_monomial(runs, dict(t.wrong_variable))
    if fields:
        x = np.log(runs[fields].astype(float).to_numpy())
        fit.location = T.locate(x, y, t.exponents(fields), cells=cells, effect=fit.effect, n_boot=n_boot, rng=rng)
    if fit.location is None or not fit.location.spanned:
        if t.threshold is not None:
            fit.boundary = math.log(t.threshold)
        return fit
    fit.r = T.rescale(y, fit.location.bottom, fit.location.top)
    fit.boundary, _ = T.boundary_1d(fit.v, fit.r)
    if fit.w is not None:
        fit.collapse = T.collapse(fit.v, fit.w, fit.r, cells=cells, n_boot=n_boot, rng=rng)
    if t.sharpness_axis and t.sharpness_axis in runs:
        fit.sharp = T.sharpness(fit.v, fit.r, runs[t.sharpness_axis].astype(float).to_numpy(), cells=cells,
                                n_boot=n_boot, rng=rng)
    return fit


def _sides(fit: TransitionFit) -> None:
    t = fit.transition
    if not math.isfinite(fit.boundary) or fit.v is None:
        return
    y = fit.runs[t.outcome].astype(float).to_numpy()
    se = fit.runs[t.outcome_se].astype(float).to_numpy() if t.outcome_se and t.outcome_se in fit.runs else None
    fit.low = T.side(fit.v, y, fit.boundary, above=not t.increasing, run_se=se)
    fit.high = T.side(fit.v, y, fit.boundary, above=t.increasing, run_se=se)


def fit_transitions(sweep: xr.Dataset | pd.DataFrame | str | os.PathLike, theory: str | Theory | None = None, *,
                    n_boot: int = T.BOOTSTRAP, seed: int = 0) -> list[TransitionFit]:
    """:func:`fit_transition` for every transition the sweep's theory declares (bootstrap seeded by ``seed``)."""
    table = sweep_table(sweep)
    th = sweep_theory(sweep if not isinstance(sweep, (str, os.PathLike)) else table, theory)
    out = []
    for t in th.transitions():
        fit = fit_transition(table, t, n_boot=n_boot, rng=np.random.default_rng(seed))
        _sides(fit)
        out.append(fit)
    return out


def check_transitions(sweep: xr.Dataset | pd.DataFrame | str | os.PathLike, theory: str | Theory | None = None, *,
                      n_boot: int = T.BOOTSTRAP, seed: int = 0) -> list[Verdict]:
    """The across-runs verdicts of ``theory`` (default: the sweep's setup's) on a sweep.

    Parameters
    ----------
    sweep : a dataset from :func:`dyn.open_sweep`, a sweep folder, or a table with one row per run.
    theory : registry name or instance.
    n_boot, seed : bootstrap replicates and the generator's seed (the verdicts are reproducible).

    Returns
    -------
    list of Verdict
        Stage ``"across runs"``; per transition ``.location``, ``.collapse`` (when a wrong variable is declared),
        ``.low_side``, ``.high_side`` and ``.sharpness`` (when a sharpness axis is declared).

    Examples
    --------
    A synthetic table judged by the label-noise theory: standard GD's test error falls from 0.4 to 0 across
    n·SNR² = 0.3 on a 4 × 4 grid of n and ‖μ‖ with 3 seeds.

    >>> import itertools
    >>> rng = np.random.default_rng(1)
    >>> rows = [dict(id=f"{n}-{mu}-{s}", algorithm="gd", n=n, mu_norm=mu, sigma_p=1.0, d=100, seed=s,
    ...              test_error=0.4 / (1 + np.exp(4 * np.log(n * mu**2 / 100 / 0.3))) + 0.02 * rng.standard_normal(),
    ...              test_error_se=0.02)
    ...         for n, mu, s in itertools.product([10, 30, 100, 300], [0.3, 0.6, 1.2, 2.4], range(3))]
    >>> verdicts = check_transitions(pd.DataFrame(rows), "huang2025-label-noise", n_boot=100)
    >>> {v.claim: v.verdict for v in verdicts if v.claim.startswith("transition.gd")}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'transition.gd.location': 'holds', 'transition.gd.collapse': 'holds', 'transition.gd.low_side': 'holds',
     'transition.gd.high_side': 'holds'}
    """
    return [v for fit in fit_transitions(sweep, theory, n_boot=n_boot, seed=seed) for v in transition_verdicts(fit)]


def _verdict(fit: TransitionFit, suffix: str, statement: str, predicted: str, observed: str, holds: bool | None,
             numbers: dict[str, Any], reason: str = "") -> Verdict:
    from .base import _plain

    verdict = "not checkable" if holds is None else ("holds" if holds else "violated")
    return Verdict(f"{fit.transition.name}.{suffix}", STAGE, statement, predicted, observed, verdict,
                   {k: _plain(v) for k, v in numbers.items()}, hypotheses_met=None, reason=reason)


def _label(t: Transition, wrong: bool = False) -> str:
    variable = t.wrong_variable if wrong else t.variable
    label = t.wrong_label if wrong else t.variable_label
    mono = " ".join(f"{f}^{e:g}" for f, e in (variable or {}).items())
    return f"{label} ({mono})" if label else mono


def transition_verdicts(fit: TransitionFit) -> list[Verdict]:
    """The verdicts of one :class:`TransitionFit` (see :func:`check_transitions`)."""
    t = fit.transition
    base = {"runs": int(len(fit.runs)), "fields_varied": list(fit.fields)}
    out = [_location(fit, base)]
    if t.wrong_variable is not None:
        out.append(_collapse(fit, base))
    out += _side_verdicts(fit, base)
    if t.sharpness_axis:
        out.append(_sharpness(fit, base))
    return out


def _location(fit: TransitionFit, base: dict[str, Any]) -> Verdict:
    t = fit.transition
    statement = f"{t.statement} [location: the outcome {t.outcome!r} changes across {_label(t)} = const]"
    fields = fit.fields
    if fit.problem:
        return _verdict(fit, "location", statement, "", "", None, base, fit.problem)
    loc = fit.location
    ref = loc.reference if loc is not None else 0
    theory_ratios = {f: float(t.variable[f]) / float(t.variable[fields[ref]]) for f in fields} if fields else {}
    predicted = ", ".join(f"{f}/{fields[ref]}: {_fmt(r)}" for f, r in theory_ratios.items() if f != fields[ref]) \
        if len(fields) > 1 else f"those of {_label(t)}"
    side = "large" if t.increasing else "small"
    predicted = f"exponent ratios {predicted}; the outcome high where the variable is {side}"
    if t.threshold is not None:
        predicted += f"; boundary near {t.variable_label or 'variable'} = {_fmt(t.threshold)}"
    if loc is None or len(fields) < 2:
        observed = (f"1-D boundary at {t.variable_label or 'variable'} = {_fmt(math.exp(fit.boundary))}"
                    if fit.r is not None and math.isfinite(fit.boundary) else "")
        numbers = {**base, "boundary_variable": math.exp(fit.boundary) if observed else None,
                   "theory_threshold": t.threshold}
        return _verdict(fit, "location", statement, predicted, observed, None, numbers,
                        f"the grid varies {len(fields)} field(s) of the variable ({', '.join(fields) or 'none'}): "
                        "two or more are needed to identify the boundary's exponent ratios")
    numbers = {**base, "bottom": loc.bottom, "top": loc.top, "effect_required": fit.effect,
               "reference_field": fields[ref]}
    if not loc.spanned:
        moved = loc.top - loc.bottom if not math.isfinite(loc.intercept) else loc.fitted_range
        return _verdict(fit, "location", statement, predicted,
                        f"cell means of {t.outcome} span [{_fmt(loc.bottom)}, {_fmt(loc.top)}]; the fitted curve "
                        f"changes by {_fmt(loc.fitted_range)}", None, {**numbers, "fitted_range": loc.fitted_range},
                        f"the outcome changes by {_fmt(moved)} across the grid (the fit's boundary "
                        f"{'outside' if math.isfinite(loc.intercept) else 'not fitted'}), the transition needs "
                        f"{_fmt(fit.effect)} and a boundary inside the grid: the grid does not span it")
    expected_sign = int(np.sign(float(t.variable[fields[ref]]))) * (1 if t.increasing else -1)
    flipped = float(np.mean(np.sign(loc.boot[:, ref]) != expected_sign)) if len(loc.boot) else math.nan
    for f, r, ci in zip(fields, loc.ratios, loc.ci):
        numbers[f"ratio_{f}"] = float(r)
        numbers[f"ratio_{f}_ci"] = list(ci)
        numbers[f"theory_ratio_{f}"] = theory_ratios[f]
    numbers.update(fitted_range=loc.fitted_range, level=loc.level, orientation=loc.orientation, expected_orientation=expected_sign,
                   bootstrap_wrong_orientation=flipped, boundary_variable=math.exp(fit.boundary)
                   if math.isfinite(fit.boundary) else None, theory_threshold=t.threshold)
    observed = "; ".join(f"{f}/{fields[ref]}: {_fmt(r)} {_ci(ci)}" for f, r, ci in zip(fields, loc.ratios, loc.ci)
                         if f != fields[ref])
    if math.isfinite(fit.boundary):
        observed += f"; 1-D boundary at {t.variable_label or 'variable'} = {_fmt(math.exp(fit.boundary))}"
        if t.threshold is not None:
            observed += f" (theory: {_fmt(t.threshold)})"
    if flipped > 1 - (1 - loc.level) / 2:
        return _verdict(fit, "location", statement, predicted, observed + "; the outcome changes the other way",
                        False, numbers, "the outcome is high on the side the theory predicts low")
    excluded = [f for f, ci in zip(fields, loc.ci) if f != fields[ref] and not ci[0] <= theory_ratios[f] <= ci[1]]
    open_ = [f for f, ci in zip(fields, loc.ci) if f != fields[ref] and not (math.isfinite(ci[0]) and math.isfinite(ci[1]))]
    if excluded and not open_:
        return _verdict(fit, "location", statement, predicted, observed, False, numbers,
                        f"the {loc.level:.1%} CI of the ratio(s) {', '.join(excluded)} excludes the theory's")
    if open_:
        return _verdict(fit, "location", statement, predicted, observed, None, numbers,
                        f"the grid does not bound the ratio(s) of {', '.join(open_)} (the bootstrap's reference "
                        f"slope on {fields[ref]} changes sign)")
    if flipped > (1 - loc.level) / 2:
        return _verdict(fit, "location", statement, predicted, observed, None, numbers,
                        f"the direction of the change is not resolved ({flipped:.0%} of the bootstrap the other way)")
    return _verdict(fit, "location", statement, predicted, observed, True, numbers)


def _collapse(fit: TransitionFit, base: dict[str, Any]) -> Verdict:
    t = fit.transition
    statement = f"{t.statement} [collapse: the outcome lies on one curve in {_label(t)}, tighter than in " \
                f"{_label(t, wrong=True)}]"
    predicted = "spread in the theory's variable / spread in the wrong one < 1"
    if fit.problem:
        return _verdict(fit, "collapse", statement, predicted, "", None, base, fit.problem)
    if fit.w is None:
        return _verdict(fit, "collapse", statement, predicted, "", None, base,
                        "the sweep's table lacks a field of the wrong variable")
    if fit.collapse is None:
        return _verdict(fit, "collapse", statement, predicted, "", None, base,
                        "the grid does not span the transition (see the location verdict)")
    c = fit.collapse
    numbers = {**base, "spread": c.spread, "spread_wrong": c.spread_wrong, "ratio": c.ratio, "ratio_ci": list(c.ci),
               "level": T.LEVEL}
    observed = f"spread {_fmt(c.spread)} vs {_fmt(c.spread_wrong)} in the wrong variable: ratio {_fmt(c.ratio)} {_ci(c.ci)}"
    if not c.distinct:
        return _verdict(fit, "collapse", statement, predicted, observed, None, numbers,
                        "the two variables order the grid's cells alike: the grid cannot tell them apart")
    if c.ci[1] < 1:
        return _verdict(fit, "collapse", statement, predicted, observed, True, numbers)
    if c.ci[0] > 1:
        return _verdict(fit, "collapse", statement, predicted, observed, False, numbers,
                        "the wrong variable collapses the runs better")
    return _verdict(fit, "collapse", statement, predicted, observed, None, numbers,
                    "the CI of the spread ratio contains 1: the grid cannot tell the variables apart")


def _side_verdicts(fit: TransitionFit, base: dict[str, Any]) -> list[Verdict]:
    t = fit.transition
    far = f">= {T.FAR:g}x from the boundary"
    low_where = "below" if t.increasing else "above"
    high_where = "above" if t.increasing else "below"
    low_st = f"{t.statement} [low side: {low_where} the boundary ({far}) the outcome is {_fmt(t.low)}]"
    high_st = f"{t.statement} [high side: {high_where} the boundary ({far}) the outcome is at least {_fmt(t.high_min)}]"
    low_pred = f"{t.outcome} = {_fmt(t.low)} within {T.SE_MULTIPLIER:g} standard errors"
    high_pred = f"{t.outcome} >= {_fmt(t.high_min)}" if t.high_min is not None else "not stated by the theory"
    if fit.problem:
        return [_verdict(fit, "low_side", low_st, low_pred, "", None, base, fit.problem),
                _verdict(fit, "high_side", high_st, high_pred, "", None, base, fit.problem)]
    if fit.low is None:
        reason = "no boundary to measure from: the grid does not span the transition and the theory gives no threshold"
        return [_verdict(fit, "low_side", low_st, low_pred, "", None, base, reason),
                _verdict(fit, "high_side", high_st, high_pred, "", None, base, reason)]
    where = "fitted" if fit.r is not None else "theory's"
    bnum = {**base, "boundary_variable": math.exp(fit.boundary), "boundary_from": where, "far_factor": T.FAR}
    out = []
    for name, st, pred, s, target in (("low_side", low_st, low_pred, fit.low, t.low),
                                      ("high_side", high_st, high_pred, fit.high, t.high_min)):
        numbers = {**bnum, "side_runs": s.runs, "side_mean": s.mean, "side_se": s.se, "predicted_value": target}
        if s.runs == 0:
            out.append(_verdict(fit, name, st, pred, "", None, numbers,
                                f"no run lies {far} on this side (boundary at {_fmt(math.exp(fit.boundary))}, "
                                f"{where})"))
            continue
        observed = f"mean {t.outcome} {_fmt(s.mean)} ± {_fmt(s.se)} over {s.runs} run(s)"
        if target is None:
            out.append(_verdict(fit, name, st, pred, observed, None, numbers,
                                "the theory states no value on this side"))
        elif name == "low_side":
            out.append(_verdict(fit, name, st, pred, observed, abs(s.mean - target) <= T.SE_MULTIPLIER * s.se + 1e-12,
                                numbers))
        else:
            out.append(_verdict(fit, name, st, pred, observed, s.mean + T.SE_MULTIPLIER * s.se >= target, numbers))
    return out


def _sharpness(fit: TransitionFit, base: dict[str, Any]) -> Verdict:
    t = fit.transition
    statement = f"{t.statement} [sharpness: the transition's width in log({t.variable_label or 'variable'}) " \
                f"shrinks as {t.sharpness_axis} grows]"
    predicted = f"d log(width) / d log({t.sharpness_axis}) < 0"
    if fit.problem:
        return _verdict(fit, "sharpness", statement, predicted, "", None, base, fit.problem)
    if fit.sharp is None:
        reason = (f"{t.sharpness_axis!r} is not a column of the sweep" if t.sharpness_axis not in fit.runs else
                  "the grid does not span the transition (see the location verdict)")
        return _verdict(fit, "sharpness", statement, predicted, "", None, base, reason)
    s = fit.sharp
    numbers = {**base, "axis_values": list(s.values), "widths": list(s.widths), "width_bounded": list(s.bounded),
               "slope": s.slope, "slope_ci": list(s.ci), "level": T.LEVEL}
    if len(s.values) < 2:
        return _verdict(fit, "sharpness", statement, predicted, "", None, numbers,
                        f"fewer than two values of {t.sharpness_axis} have runs on both sides of the transition")
    observed = "widths " + ", ".join(f"{_fmt(w)}{'' if b else ' (upper bound)'} at {t.sharpness_axis}={_fmt(a)}"
                                     for a, w, b in zip(s.values, s.widths, s.bounded))
    observed += f"; slope {_fmt(s.slope)} {_ci(s.ci)}"
    if not s.bounded.all():
        return _verdict(fit, "sharpness", statement, predicted, observed, None, numbers,
                        "a slice has no run inside the transition: its width is an upper bound only")
    if s.ci[1] < 0:
        return _verdict(fit, "sharpness", statement, predicted, observed, True, numbers)
    if s.ci[0] > 0:
        return _verdict(fit, "sharpness", statement, predicted, observed, False, numbers,
                        f"the transition widens as {t.sharpness_axis} grows")
    return _verdict(fit, "sharpness", statement, predicted, observed, None, numbers,
                    "the CI of the slope contains 0")
