"""Empirical phase detection on recorded curves: the end of stage 1 (T₁), stage-1 log-slopes, stage-2 growth.

Stage 1 of the theory is exponential growth (a straight line in log scale); stage 2 grows at most logarithmically.
:func:`fit_stage1` fits ``log(curve)`` by a line up to a breakpoint T₁ joined continuously to a stage-2 law
``b·log(1 + c(t − T₁))/c`` (``c`` on a grid; ``c = 0`` is a straight line, so exponential → slower exponential is
covered too). A phase change is reported only when

- the curve moves: stage 1 multiplies it by at least ``min_growth`` (a curve that changes by 1e-9 has no phases);
- the log-slope drops by ``min_drop`` on average after T₁;
- the two-phase model beats every single-law curve — exponential ``A e^{kt}`` and ``a + b e^{kt}``, linear, power
  law ``A (t + o)^p`` and ``a + b (t + o)^p`` (√t, 1 + t², 10 + t³, ...), logarithmic — by ``min_bic`` in BIC
  computed with the effective sample size of autocorrelated residuals, and one straight line by an F test at
  ``alpha``. A linear, power-law or log t curve therefore has no T₁. Residuals that are a smooth misfit rather than
  noise (their RMS above :data:`SMOOTH_MISFIT` times the robust sd of their second differences: a noise-free
  curve) are compared as they are, without the AR(1) correction that would leave an effective sample size of 3.

Otherwise :class:`PhaseError` is raised rather than a T₁ invented. Confidence intervals for T₁ and both slopes come
from an AR(1) sieve bootstrap of the residuals (the residuals of recorded curves are autocorrelated; resampling
them as if independent gives intervals that are far too narrow), refitting the breakpoint each time.

A :class:`PhaseError` names the test that failed. Power, measured over 100 replicates of a change at T₁ = 60 in
120 steps (log-slope 0.05, then flat) under AR(1) noise: φ = 0.9, sd 0.05: 66 found, the stage-1 slope interval
covers 58 of 66, the T₁ interval 65 of 66; φ = 0.9, sd 0.02: 73 found, 65/73 and 72/73; φ = 0.7, sd 0.05: 100
found, 94/100 and 99/100. On the same noise (φ = 0.9) no T₁ was found in any of 100 exponential, 1 + (t/40)²,
3 log(2 + t) or √(1 + t) curves. Strongly autocorrelated noise leaves few effective samples (about 6 of 120 at
φ = 0.9), so a real change is missed about a third of the time there: a missed T₁ is "no phase change found", not
"no phase change".

:func:`t1_from_band` finds the first step where a loss derivative leaves the stage-1 band.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.optimize
import scipy.signal
import scipy.stats
import xarray as xr

from ..errors import PhaseError

__all__ = ["PhaseError", "Stage1Fit", "fit_stage1", "t1_from_band", "stage2_growth", "fit_per_neuron", "log_slope",
           "ar1_coefficient", "MIN_EFFECT"]

#: The minimum effect: a curve must change by at least this factor before a phase, a rate, a direction, a bound or a
#: winner is read off it. Float rounding (~1e-7 relative) and the step-to-step noise of a recorded curve are orders
#: below it, while "it grew" in the theories' stage 1 means the dominant coefficient left its initial scale; a curve
#: that moves by x1.005 supports no statement about its growth, whatever the width of a confidence interval.
MIN_EFFECT = 2.0

#: Time scales ``c`` of the stage-2 laws tried by :func:`fit_stage1` (``c = 0``: a straight line in log scale).
STAGE2_RATES = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
#: Relative sizes ``k`` of logarithmic growth ``y(T₁)(1 + k log(1 + c τ))`` in stage 2 (``k = 0``: ``log(1 + c τ)``
#: in log scale, i.e. power-law growth).
STAGE2_LOG_SIZES = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)


def _stage2_shapes() -> list[tuple[float, float]]:
    return [(0.0, 0.0)] + [(c, k) for c in STAGE2_RATES if c > 0 for k in STAGE2_LOG_SIZES]


def _stage2_column(tau: np.ndarray, c: float, k: float) -> np.ndarray:
    """Stage-2 shape in log scale, normalised to slope 1 at τ = 0 (so its coefficient is the slope just after T₁)."""
    if c == 0:
        return tau
    if k == 0:
        return np.log1p(c * tau) / c
    return np.log1p(k * np.log1p(c * tau)) / (k * c)


@dataclass(frozen=True)
class Stage1Fit:
    """A two-phase fit of ``log(curve)`` against step.

    Attributes
    ----------
    t1 : float
        The breakpoint (end of stage 1), in steps.
    t1_ci : (float, float)
        Bootstrap confidence interval of T₁ (``level``).
    slope1, slope2 : float
        Log-slope (per step) before T₁, and the average log-slope from T₁ to the last point.
    slope1_ci, slope2_ci : (float, float)
        Bootstrap confidence intervals (``level``) that include the uncertainty of the breakpoint.
    f_stat, p_value : float
        Test of the two-phase fit against one straight line, with the effective sample size (approximate: the
        breakpoint is selected).
    level : float
    n_points : int
    growth : float
        Log-growth of the fitted curve during stage 1 (``slope1 · (t1 − t0)``).
    curvature : float
        The stage-2 curvature ``c`` chosen (0: log-linear stage 2).
    ar1 : float
        Lag-1 autocorrelation of the residuals used by the bootstrap.
    bic_margin : float
        BIC of the best single-law curve minus BIC of the two-phase fit.
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
    t1_ci: tuple[float, float] = (math.nan, math.nan)
    growth: float = math.nan
    curvature: float = 0.0
    ar1: float = 0.0
    bic_margin: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)


def ar1_coefficient(resid: np.ndarray, fitted_params: int = 0) -> float:
    """Lag-1 autocorrelation of residuals, bias-corrected and clipped to [0, 0.98].

    The correction adds Kendall's ``(1 + 3φ)/n`` and ``fitted_params/n`` for the parameters the residuals were
    fitted with (both pull the estimate towards 0).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> e = rng.normal(size=4000)
    >>> x = scipy.signal.lfilter([1.0], [1.0, -0.7], e)
    >>> round(ar1_coefficient(x), 1)
    0.7
    """
    r = np.asarray(resid, dtype=np.float64)
    r = r - r.mean()
    denom = float(r @ r)
    if len(r) < 3 or denom <= 0:
        return 0.0
    phi = float(r[1:] @ r[:-1]) / denom
    phi += (1 + 3 * phi + fitted_params) / len(r)
    return float(min(max(phi, 0.0), 0.98))


#: Residuals whose RMS exceeds this many times the robust sd of their second differences are a smooth misfit, not
#: noise: AR(1) noise with φ <= 0.98 (the clip of :func:`ar1_coefficient`) gives at most 1/√(2(1−φ)(3−φ)) = 3.5.
SMOOTH_MISFIT = 10.0


def _effective_n(n: int, phi: float) -> float:
    return max(n * (1 - phi) / (1 + phi), 3.0)


class _TwoPhase:
    """Least-squares two-phase fits ``a + s1·min(t, T) + b·g_c(max(t − T, 0))`` for every (breakpoint, curvature)."""

    def __init__(self, t: np.ndarray, min_points: int):
        self.t = t
        n = len(t)
        self.cands = np.arange(min_points - 1, n - min_points)
        tk = t[self.cands]
        self.shapes = _stage2_shapes()
        k_count, c_count = len(self.cands), len(self.shapes)
        m = np.minimum(t[None, :], tk[:, None])  # (K, n)
        tau = np.maximum(t[None, :] - tk[:, None], 0.0)  # (K, n)
        g = np.empty((k_count, c_count, n))
        for j, (c, k) in enumerate(self.shapes):
            g[:, j] = _stage2_column(tau, c, k)
        self.m = np.repeat(m[:, None, :], c_count, axis=1).reshape(k_count * c_count, n)
        self.g = g.reshape(k_count * c_count, n)
        xtx = np.empty((k_count * c_count, 3, 3))
        xtx[:, 0, 0] = n
        xtx[:, 0, 1] = xtx[:, 1, 0] = self.m.sum(1)
        xtx[:, 0, 2] = xtx[:, 2, 0] = self.g.sum(1)
        xtx[:, 1, 1] = (self.m * self.m).sum(1)
        xtx[:, 1, 2] = xtx[:, 2, 1] = (self.m * self.g).sum(1)
        xtx[:, 2, 2] = (self.g * self.g).sum(1)
        self.inv = np.linalg.pinv(xtx)
        self.shape = (k_count, c_count)

    def fit(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``beta (KC, 3, B)`` and ``sse (KC, B)`` for the columns of ``y (n, B)``."""
        xty = np.stack([np.broadcast_to(y.sum(0), (self.m.shape[0], y.shape[1])), self.m @ y, self.g @ y], axis=1)
        beta = np.einsum("kij,kjb->kib", self.inv, xty)
        sse = (y * y).sum(0)[None, :] - np.einsum("kib,kib->kb", beta, xty)
        return beta, np.maximum(sse, 0.0)

    def describe(self, idx: np.ndarray, beta: np.ndarray, y_last_t: float) -> dict[str, np.ndarray]:
        """Breakpoint, curvature, slopes of the fits ``idx`` (one per column) with coefficients ``beta (B, 3)``."""
        k, j = np.unravel_index(idx, self.shape)
        t1 = self.t[self.cands[k]]
        span = np.maximum(y_last_t - t1, 1e-12)
        g_end = np.array([_stage2_column(np.array([s]), *self.shapes[jj])[0] for s, jj in zip(span, j)])
        c = np.array([self.shapes[jj][0] for jj in j])
        return {"t1": t1, "c": c, "s1": beta[:, 1], "s2_avg": beta[:, 2] * g_end / span, "a": beta[:, 0]}

    def fitted(self, i: int, beta: np.ndarray) -> np.ndarray:
        return beta[0] + beta[1] * self.m[i] + beta[2] * self.g[i]


#: Exponents of the power laws ``a + b (t + o)^p`` a phase change must beat (a grid, refined by a local search).
POWER_EXPONENTS = tuple(float(x) for x in np.geomspace(0.1, 8.0, 17))


def _single_law_sse(t: np.ndarray, y_raw: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Log-space SSE of the single-law curves a phase change must beat: exponential (``A e^{kt}`` and ``a + b e^{kt}``),
    linear, power law (``A (t + o)^p`` and ``a + b (t + o)^p``, e.g. ``1 + t²``) and logarithm."""
    out = {}
    span = float(t[-1] - t[0]) or 1.0
    x0 = (t - t[0]) / span  # in [0, 1]: the laws' nonlinear parameters are searched on this scale

    def line(x: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        design = np.column_stack([np.ones_like(x), x])
        w = np.ones_like(x) if weights is None else weights
        beta, *_ = np.linalg.lstsq(design * w[:, None], target * w, rcond=None)
        return design @ beta

    def sse_linear_in(x: np.ndarray) -> float:
        if not np.all(np.isfinite(x)) or np.ptp(x) == 0:
            return 1e300
        fit = line(x, y_raw, 1.0 / y_raw)  # relative errors, as in log space
        return float(np.sum((y - np.log(fit)) ** 2)) if np.all(fit > 0) else 1e300

    def sse_power(x: np.ndarray) -> float:
        return float(np.sum((y - line(x, y)) ** 2))

    def best(sse, grid: list[tuple[float, ...]]) -> float:
        """The least SSE of a law with nonlinear parameters: a grid, then a Nelder-Mead refinement from its best."""
        values = [sse(*g) for g in grid]
        start = grid[int(np.argmin(values))]
        res = scipy.optimize.minimize(lambda u: sse(*u), np.asarray(start), method="Nelder-Mead",
                                      options={"xatol": 1e-6, "fatol": 1e-12, "maxiter": 400})
        found = min(min(values), float(res.fun))
        return found if found < 1e300 else math.inf

    out["exponential"] = sse_power(t)
    out["linear"] = sse_linear_in(t)
    offsets = [math.log(o) for o in (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)]
    # y = A (t + o)^p and y = a + b log(t + o): a straight line in log(t + o)
    out["power law"] = best(lambda u: sse_power(np.log(x0 + math.exp(np.clip(u, -12, 5)))), [(u,) for u in offsets])
    out["logarithmic"] = best(lambda u: sse_linear_in(np.log(x0 + math.exp(np.clip(u, -12, 5)))),
                              [(u,) for u in offsets])
    # y = a + b (t + o)^p (1 + t^2, 10 + t^2, 1 + 0.01 t^3: a power law on a constant is no phase change either)
    # exponents clipped to [e^-5, e^3] and offsets to [e^-12, e^5] (spans): the search cannot overflow
    out["offset power law"] = best(lambda lp, u: sse_linear_in((x0 + math.exp(np.clip(u, -12, 5)))
                                                               ** math.exp(np.clip(lp, -5, 3))),
                                   [(math.log(p), u) for p in POWER_EXPONENTS for u in offsets[::2]])
    # y = a + b e^{k t}: exponential growth out of a constant
    out["offset exponential"] = best(lambda lk: sse_linear_in(np.expm1(math.exp(np.clip(lk, -10, 6.5)) * x0)),
                                     [(math.log(k),) for k in (0.1, 1.0, 3.0, 10.0, 30.0, 100.0)])
    return out


def fit_stage1(
    steps: np.ndarray,
    curve: np.ndarray,
    *,
    min_points: int = 4,
    level: float = 0.95,
    alpha: float = 1e-3,
    min_drop: float = 0.25,
    min_growth: float = math.log(MIN_EFFECT),
    min_bic: float = 10.0,
    n_boot: int = 200,
    seed: int = 0,
) -> Stage1Fit:
    """Fit stage 1 and T₁ to a positive curve (e.g. ``max_r A_r(t)``).

    Parameters
    ----------
    steps, curve : 1-D arrays of equal length; ``curve > 0``.
    min_points : fewest points on each side of the breakpoint.
    level : confidence level of the intervals.
    alpha : significance a phase change must reach against one straight line.
    min_drop : the average stage-2 log-slope must be below ``(1 - min_drop)`` times the stage-1 slope.
    min_growth : the least log-growth of the curve during stage 1 (default: ``log(MIN_EFFECT)``, it doubles).
    min_bic : how much better (BIC, effective sample size) the two-phase fit must be than every single law.
    n_boot, seed : bootstrap resamples and their seed (results are reproducible); ``n_boot=0`` skips the intervals.

    Raises
    ------
    PhaseError
        Too few points, non-positive values, or no phase change (see the module docstring).

    Examples
    --------
    >>> t = np.arange(100.0)
    >>> y = np.exp(np.where(t < 40, 0.1 * t, 4 + 0.01 * (t - 40)))
    >>> fit = fit_stage1(t, y)
    >>> round(fit.t1), round(fit.slope1, 3), round(fit.slope2, 3)
    (40, 0.1, 0.01)
    >>> fit_stage1(t, 1 + 0.5 * t)
    Traceback (most recent call last):
    ...
    dyn.errors.PhaseError: no phase change: a linear curve fits as well (BIC margin -...)
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
    if float(y.max() - y.min()) < min_growth:
        raise PhaseError(f"no phase change: the curve changes by a factor {math.exp(float(y.max() - y.min())):.6g}, "
                         f"less than the minimum effect {math.exp(min_growth):.3g}")
    model = _TwoPhase(t, min_points)
    beta, sse = model.fit(y[:, None])
    best = int(np.argmin(sse[:, 0]))
    b = beta[best, :, 0]
    desc = {k: float(v[0]) for k, v in model.describe(np.array([best]), b[None], t[-1]).items()}
    s1, s2, t1 = desc["s1"], desc["s2_avg"], desc["t1"]
    sse2 = float(sse[best, 0])
    fitted = model.fitted(best, b)
    resid = y - fitted
    phi = ar1_coefficient(resid, fitted_params=5)
    rough = float(np.median(np.abs(np.diff(resid, 2)))) / 0.6745  # robust sd of the residuals' second differences
    if float(np.sqrt(np.mean(resid**2))) > SMOOTH_MISFIT * rough:
        # the residuals are the model's smooth misfit of a (nearly) noise-free curve, not autocorrelated noise
        phi = 0.0
    n_eff = _effective_n(n, phi)
    floor = n * (1e-12 * max(1.0, float(np.abs(y).max()))) ** 2  # float rounding: exact curves compare as equal
    laws = _single_law_sse(t, y_raw, y)
    k_two, k_one = 5, 2  # intercept, slope, stage-2 coefficient, breakpoint, curvature vs intercept, slope

    def bic(s: float, k: int) -> float:
        return n_eff * math.log(max(s, floor) / n) + k * math.log(n_eff)

    margins = {name: bic(s, k_one) - bic(sse2, k_two) for name, s in laws.items()}
    rival = min(margins, key=margins.get)
    df = max(n_eff - 4, 1.0)
    f_stat = ((max(laws["exponential"], floor) - max(sse2, floor)) / 3) / (max(sse2, floor) / df)
    p_value = float(scipy.stats.f.sf(f_stat, 3, df)) if np.isfinite(f_stat) else 0.0
    growth = s1 * (t1 - t[0])
    if not s1 > 0 or growth < min_growth:
        raise PhaseError(f"no phase change: stage 1 grows the curve by a factor {math.exp(max(growth, -50)):.3g} "
                         f"(stage-1 log-slope {s1:.3g}), less than the minimum effect {math.exp(min_growth):.3g}")
    if not s2 < (1 - min_drop) * s1:
        raise PhaseError(f"no phase change: the log-slope does not drop (stage-1 slope {s1:.3g}, after {s2:.3g})")
    failed = []
    if margins[rival] < min_bic:
        failed.append(f"a{'n' if rival[0] in 'aeiou' else ''} {rival} curve fits as well (BIC margin "
                      f"{margins[rival]:.3g} < {min_bic:g})")
    if p_value >= alpha:
        failed.append(f"not significant against one straight line in log scale (F test p = {p_value:.2g} >= "
                      f"{alpha:g}, effective sample size {n_eff:.3g} of {n})")
    if failed:
        raise PhaseError("no phase change: " + "; ".join(failed))
    ci = {"t1": (math.nan, math.nan), "s1": (math.nan, math.nan), "s2_avg": (math.nan, math.nan)}
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        innov = resid[1:] - phi * resid[:-1]
        # residuals of a p-parameter fit under AR(1) errors keep about n - p(1+φ)/(1-φ) of the noise variance
        kept = max(n - 5 * (1 + phi) / (1 - phi), n / 4)
        innov = (innov - innov.mean()) * math.sqrt(n / kept)
        draws = rng.choice(innov, size=(n, n_boot), replace=True)
        # each resample draws its own AR coefficient from the estimate's sampling distribution, so the intervals
        # carry the uncertainty of the autocorrelation too
        phis = np.clip(phi + rng.normal(0.0, math.sqrt(max(1 - phi * phi, 1e-3) / n), n_boot), 0.0, 0.98)
        noise = np.empty_like(draws)
        noise[0] = draws[0] / np.sqrt(1 - phis * phis)  # stationary start
        for i in range(1, n):
            noise[i] = phis * noise[i - 1] + draws[i]
        beta_b, sse_b = model.fit(fitted[:, None] + noise)
        kb = np.argmin(sse_b, axis=0)
        boot = model.describe(kb, beta_b[kb, :, np.arange(n_boot)], t[-1])
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        ci = {k: tuple(float(v) for v in np.percentile(boot[k], q)) for k in ci}
    return Stage1Fit(
        t1=t1, slope1=s1, slope2=s2, slope1_ci=ci["s1"], slope2_ci=ci["s2_avg"], f_stat=float(f_stat),
        p_value=p_value, level=level, n_points=n, t1_ci=ci["t1"], growth=float(growth), curvature=desc["c"],
        ar1=phi, bic_margin=float(margins[rival]),
    )


def fit_per_neuron(curves: xr.DataArray, **kwargs) -> xr.Dataset:
    """:func:`fit_stage1` for every neuron of a ``(step, neuron)`` curve; NaN where no phase change is found.

    Intervals are skipped unless ``n_boot`` is given.

    Returns
    -------
    xarray.Dataset
        ``t1``, ``slope1``, ``slope2`` over ``neuron`` and ``found`` (bool).
    """
    kwargs.setdefault("n_boot", 0)
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
    Returns None if every recorded step stays in the band; the first recorded step if the band is never entered.

    Examples
    --------
    >>> s = np.arange(5)
    >>> t1_from_band(s, np.full(5, .09), np.array([.1, .1, .12, .3, .6]), np.full(5, .09), np.full(5, .1), 9)
    3.0
    """
    lo, hi = 1.0 / (c_ell * (1 + negatives)), c_ell / (1 + negatives)
    bounds = [np.asarray(a, dtype=np.float64) for a in (lp_pos_min, lp_pos_max, lp_neg_min, lp_neg_max)]
    out = (bounds[0] < lo) | (bounds[1] > hi) | (bounds[2] < lo) | (bounds[3] > hi) | ~np.isfinite(sum(bounds))
    idx = np.flatnonzero(out)
    return float(np.asarray(steps)[idx[0]]) if idx.size else None


def stage2_growth(steps: np.ndarray, curve: np.ndarray, t1: float, *, flat_tol: float = 0.05) -> dict:
    """Classify growth after T₁: ``"flat"``, ``"decreasing"``, ``"log-like"`` or ``"faster than log"``.

    ``flat`` when the curve changes by less than ``flat_tol`` (relative) after T₁; ``decreasing`` when it ends below
    its value at T₁ and a fitted trend falls (no growth at all, which "at most logarithmic" allows); otherwise the
    better of the fits
    ``a + b·log(t)`` (logarithmic growth in training time, as gradient descent on exponential-tailed losses gives)
    and ``a + b·t`` (by R²) names it.

    Returns
    -------
    dict
        ``kind``, ``relative_change``, ``r2_log``, ``r2_linear``, ``log_coefficient``, ``n_points``.

    Examples
    --------
    >>> t = np.arange(1.0, 400.0)
    >>> stage2_growth(t, 2 + np.log(t), 50)["kind"], stage2_growth(t, 2 + 0.05 * t, 50)["kind"]
    ('log-like', 'faster than log')
    >>> stage2_growth(t, 5 - 0.01 * t, 50)["kind"]
    'decreasing'

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
    r2_lin, b_lin = r2(t)
    if rel < flat_tol:
        kind = "flat"
    elif y[-1] < y[0] and min(b_lin, b_log) < 0:
        kind = "decreasing"
    elif r2_log >= r2_lin:
        kind = "log-like"
    else:
        kind = "faster than log"
    return {"kind": kind, "relative_change": rel, "r2_log": r2_log, "r2_linear": r2_lin,
            "log_coefficient": b_log, "n_points": int(len(t))}


def log_slope(steps: np.ndarray, curve: np.ndarray, *, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Least-squares slope of ``log(curve)`` against step, with a confidence interval that allows for AR(1)
    residuals (the standard error is inflated by ``(1 + φ)/(1 − φ)``, φ the residuals' lag-1 autocorrelation).

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
    phi = ar1_coefficient(resid)
    inflate = (1 + phi) / (1 - phi)
    se = float(np.sqrt(max(np.sum(resid**2) / df, 0.0) * np.linalg.pinv(x.T @ x)[1, 1] * inflate)) if df > 0 else math.inf
    df_eff = max(_effective_n(len(t), phi) - 2, 1.0)
    q = float(scipy.stats.t.ppf(0.5 + level / 2, df_eff))
    return float(beta[1]), (float(beta[1] - q * se), float(beta[1] + q * se))
