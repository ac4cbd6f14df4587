"""Empirical phase detection on recorded curves: the end of stage 1 (T₁), stage-1 log-slopes, stage-2 growth.

Stage 1 of the theory is exponential growth (a straight line in log scale); stage 2 grows at most
logarithmically. :func:`fit_stage1` fits a continuous two-segment line to ``log(curve)`` (a hinge at T₁, chosen by
least squares over all admissible breakpoints) and reports both slopes with confidence intervals. It raises
:class:`PhaseError` when the curve shows no significant slowdown, rather than inventing a T₁.
:func:`t1_from_band` finds T₁ as the first step where a loss derivative leaves the stage-1 band.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats
import xarray as xr

from ..errors import PhaseError

__all__ = ["PhaseError", "Stage1Fit", "fit_stage1", "t1_from_band", "stage2_growth", "fit_per_neuron", "log_slope"]


@dataclass(frozen=True)
class Stage1Fit:
    """A two-segment fit of ``log(curve)`` against step.

    Attributes
    ----------
    t1 : float
        The breakpoint (end of stage 1), in steps.
    slope1, slope2 : float
        Log-slopes (per step) before and after T₁.
    slope1_ci, slope2_ci : (float, float)
        Bootstrap confidence intervals (``level``) that include the uncertainty of the breakpoint.
    f_stat, p_value : float
        Test of the two-segment fit against one straight line (approximate: the breakpoint is selected).
    level : float
    n_points : int
    """

    t1: float
    slope1: float
    slope2: float
    slope1_ci: tuple[float, float]
    slope2_ci: tuple[float, float]
    f_stat: float
    p_value: float
    level: float
    n_points: int

    def to_dict(self) -> dict:
        return asdict(self)


def _hinge_fits(t: np.ndarray, y: np.ndarray, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares hinge fits ``a + s1 t + δ max(t − t_k, 0)`` for every candidate k and every column of ``y``.

    Returns ``beta (K, 3, B)`` and ``sse (K, B)``; all candidates are solved at once from the normal equations.
    """
    h = np.maximum(t[None, :] - t[cands][:, None], 0.0)  # (K, n)
    n = len(t)
    xtx = np.empty((len(cands), 3, 3))
    xtx[:, 0, 0] = n
    xtx[:, 0, 1] = xtx[:, 1, 0] = t.sum()
    xtx[:, 1, 1] = (t * t).sum()
    xtx[:, 0, 2] = xtx[:, 2, 0] = h.sum(1)
    xtx[:, 1, 2] = xtx[:, 2, 1] = h @ t
    xtx[:, 2, 2] = (h * h).sum(1)
    xty = np.stack([np.broadcast_to(y.sum(0), (len(cands), y.shape[1])),
                    np.broadcast_to(t @ y, (len(cands), y.shape[1])), h @ y], axis=1)  # (K, 3, B)
    beta = np.linalg.solve(xtx, xty)
    sse = (y * y).sum(0)[None, :] - np.einsum("kjb,kjb->kb", beta, xty)
    return beta, np.maximum(sse, 0.0)


def fit_stage1(
    steps: np.ndarray,
    curve: np.ndarray,
    *,
    min_points: int = 4,
    level: float = 0.95,
    alpha: float = 1e-3,
    min_drop: float = 0.25,
    n_boot: int = 200,
    seed: int = 0,
) -> Stage1Fit:
    """Fit stage 1 and T₁ to a positive curve (e.g. ``max_r A_r(t)``).

    The breakpoint and both slopes are least-squares estimates of a continuous two-segment line in log scale. Their
    confidence intervals come from a residual bootstrap that refits the breakpoint each time, so they include the
    uncertainty of where stage 1 ends.

    Parameters
    ----------
    steps, curve : 1-D arrays of equal length; ``curve > 0``.
    min_points : fewest points on each side of the breakpoint.
    level : confidence level of the slope intervals.
    alpha : significance a phase change must reach (F test of two segments against one line; approximate,
        since the breakpoint is selected).
    min_drop : the stage-2 slope must be below ``(1 - min_drop)`` times the stage-1 slope.
    n_boot, seed : bootstrap resamples and their seed (results are reproducible).

    Raises
    ------
    PhaseError
        Too few points, non-positive values, or no significant slowdown (no phase change).

    Examples
    --------
    >>> t = np.arange(100.0)
    >>> y = np.exp(np.where(t < 40, 0.1 * t, 4 + 0.01 * (t - 40)))
    >>> fit = fit_stage1(t, y)
    >>> round(fit.t1), round(fit.slope1, 3), round(fit.slope2, 3)
    (40, 0.1, 0.01)
    """
    t = np.asarray(steps, dtype=np.float64)
    y_raw = np.asarray(curve, dtype=np.float64)
    if t.shape != y_raw.shape or t.ndim != 1:
        raise PhaseError("steps and curve must be 1-D arrays of equal length")
    if len(t) < 2 * min_points + 1:
        raise PhaseError(f"curve too short for a phase fit ({len(t)} points, need {2 * min_points + 1})")
    if not np.all(np.isfinite(y_raw)) or np.any(y_raw <= 0):
        raise PhaseError("curve must be finite and positive to fit in log scale")
    y = np.log(y_raw)
    n = len(t)
    line = np.column_stack([np.ones_like(t), t])
    sse1 = float(np.sum((y - line @ np.linalg.lstsq(line, y, rcond=None)[0]) ** 2))
    cands = np.arange(min_points - 1, n - min_points)
    beta, sse = _hinge_fits(t, y[:, None], cands)
    k = int(np.argmin(sse[:, 0]))
    sse2 = float(sse[k, 0])
    b = beta[k, :, 0]
    s1, s2 = float(b[1]), float(b[1] + b[2])
    df = n - 4  # intercept, two slopes, breakpoint
    sigma2 = max(sse2 / df, 1e-300)
    f_stat = ((sse1 - sse2) / 2) / sigma2
    p_value = float(scipy.stats.f.sf(f_stat, 2, df)) if np.isfinite(f_stat) else 0.0
    if not (p_value < alpha and s2 < (1 - min_drop) * s1 and s1 > 0):
        raise PhaseError(
            f"no phase change: one line fits as well (p={p_value:.2g}), or the log-slope does not drop "
            f"(stage-1 slope {s1:.3g}, after {s2:.3g})"
        )
    fitted = np.column_stack([np.ones_like(t), t, np.maximum(t - t[cands[k]], 0.0)]) @ b
    resid = (y - fitted) * np.sqrt(n / df)  # rescaled so resampled residuals keep the estimated variance
    rng = np.random.default_rng(seed)
    y_boot = fitted[:, None] + rng.choice(resid, size=(n, n_boot), replace=True)
    beta_b, sse_b = _hinge_fits(t, y_boot, cands)
    kb = np.argmin(sse_b, axis=0)
    bb = beta_b[kb, :, np.arange(n_boot)]  # (B, 3)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    ci1 = tuple(float(v) for v in np.percentile(bb[:, 1], q))
    ci2 = tuple(float(v) for v in np.percentile(bb[:, 1] + bb[:, 2], q))
    return Stage1Fit(
        t1=float(t[cands[k]]),
        slope1=s1,
        slope2=s2,
        slope1_ci=ci1,
        slope2_ci=ci2,
        f_stat=float(f_stat),
        p_value=p_value,
        level=level,
        n_points=n,
    )


def fit_per_neuron(curves: xr.DataArray, **kwargs) -> xr.Dataset:
    """:func:`fit_stage1` for every neuron of a ``(step, neuron)`` curve; NaN where no phase change is found.

    Returns
    -------
    xarray.Dataset
        ``t1``, ``slope1``, ``slope2`` over ``neuron`` and ``found`` (bool).
    """
    steps = curves["step"].values
    out = {k: [] for k in ("t1", "slope1", "slope2", "found")}
    for r in range(curves.sizes["neuron"]):
        try:
            fit = fit_stage1(steps, curves.isel(neuron=r).values, **kwargs)
            vals = (fit.t1, fit.slope1, fit.slope2, True)
        except PhaseError:
            vals = (np.nan, np.nan, np.nan, False)
        for key, v in zip(out, vals):
            out[key].append(v)
    return xr.Dataset({k: ("neuron", np.asarray(v)) for k, v in out.items()}, coords={"neuron": curves["neuron"]})


def t1_from_band(
    steps: np.ndarray,
    lp_pos_min: np.ndarray,
    lp_pos_max: np.ndarray,
    lp_neg_min: np.ndarray,
    lp_neg_max: np.ndarray,
    negatives: float,
    c_ell: float = 2.0,
) -> float | None:
    """First step where a loss derivative leaves the stage-1 band ``[1/(C_ℓ(1+M)), C_ℓ/(1+M)]`` (Lemma C.2).

    The paper's constant C_ℓ = 1.01 is a proof device; the default 2 marks where similarities stop being small.
    Returns None if every recorded step stays in the band.

    Examples
    --------
    >>> s = np.arange(5)
    >>> t1_from_band(s, np.full(5, .09), np.array([.1, .1, .12, .3, .6]), np.full(5, .09), np.full(5, .1), 9)
    3.0
    """
    lo, hi = 1.0 / (c_ell * (1 + negatives)), c_ell / (1 + negatives)
    bounds = [np.asarray(a, dtype=np.float64) for a in (lp_pos_min, lp_pos_max, lp_neg_min, lp_neg_max)]
    out = (bounds[0] < lo) | (bounds[1] > hi) | (bounds[2] < lo) | (bounds[3] > hi)
    idx = np.flatnonzero(out)
    return float(np.asarray(steps)[idx[0]]) if idx.size else None


def stage2_growth(steps: np.ndarray, curve: np.ndarray, t1: float, *, flat_tol: float = 0.05) -> dict:
    """Classify growth after T₁: ``"flat"``, ``"log-like"`` or ``"faster than log"``.

    ``flat`` when the curve changes by less than ``flat_tol`` (relative) after T₁; otherwise the better of the fits
    ``a + b·log(t)`` (logarithmic growth in training time, as gradient descent on exponential-tailed losses gives)
    and ``a + b·t`` (by R²) names it.

    Returns
    -------
    dict
        ``kind``, ``relative_change``, ``r2_log``, ``r2_linear``, ``log_coefficient``, ``n_points``.
    """
    t = np.asarray(steps, dtype=np.float64)
    y = np.asarray(curve, dtype=np.float64)
    mask = t >= t1
    t, y = t[mask], y[mask]
    if len(t) < 4:
        raise PhaseError(f"stage 2 too short to classify ({len(t)} points after T1={t1:g})")
    rel = float((y.max() - y.min()) / max(abs(y[0]), 1e-12))

    def r2(x: np.ndarray) -> tuple[float, float]:
        design = np.column_stack([np.ones_like(x), x])
        beta, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ beta
        tot = float(np.sum((y - y.mean()) ** 2))
        return (1.0 - float(np.sum(resid**2)) / tot if tot > 0 else 1.0), float(beta[1])

    r2_log, b_log = r2(np.log(np.maximum(t, 1.0)))
    r2_lin, _ = r2(t)
    if rel < flat_tol:
        kind = "flat"
    elif r2_log >= r2_lin:
        kind = "log-like"
    else:
        kind = "faster than log"
    return {"kind": kind, "relative_change": rel, "r2_log": r2_log, "r2_linear": r2_lin,
            "log_coefficient": b_log, "n_points": int(len(t))}


def log_slope(steps: np.ndarray, curve: np.ndarray, *, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Least-squares slope of ``log(curve)`` against step, with its confidence interval.

    Examples
    --------
    >>> t = np.arange(10.0)
    >>> slope, ci = log_slope(t, np.exp(0.3 * t))
    >>> round(slope, 6)
    0.3
    """
    t = np.asarray(steps, dtype=np.float64)
    y = np.asarray(curve, dtype=np.float64)
    if len(t) < 3:
        raise PhaseError(f"too few points for a slope ({len(t)})")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise PhaseError("curve must be finite and positive to fit in log scale")
    x = np.column_stack([np.ones_like(t), t])
    beta, *_ = np.linalg.lstsq(x, np.log(y), rcond=None)
    resid = np.log(y) - x @ beta
    df = len(t) - 2
    se = float(np.sqrt(max(np.sum(resid**2) / df, 0.0) * np.linalg.pinv(x.T @ x)[1, 1])) if df > 0 else float("inf")
    q = float(scipy.stats.t.ppf(0.5 + level / 2, df)) if df > 0 else float("inf")
    return float(beta[1]), (float(beta[1] - q * se), float(beta[1] + q * se))
