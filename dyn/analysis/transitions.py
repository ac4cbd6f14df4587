"""Where an outcome changes across a family of runs: the statistics behind the across-runs verdicts.

A sweep gives one outcome per run (a test error, who won) and each run's config. A theorem says the outcome changes
across a boundary ``Σ_j e_j log x_j = const`` of a scaling variable (a monomial of config fields ``x_j`` with
exponents ``e_j``). This module fits that boundary from the runs alone and measures how well one curve in a given
variable describes them; it knows no theorem and returns plain result objects (the theory layer turns them into
verdicts, :func:`dyn.theory.check_transitions`).

The model, everywhere: the outcome, rescaled to [0, 1] over its observed range (:func:`rescale`), is a logistic
function of a linear form in the log axes, ``σ(b₀ + Σ_j b_j log x_j)``, fitted by penalised quasi-likelihood (a
fractional outcome is allowed; :func:`fit_logistic`). The boundary is where the rescaled outcome crosses one half
(``b₀ + b·log x = 0``); its direction is identified up to scale, so it is reported as exponent ratios ``b_j/b_ref``
to a reference axis, to be read against the theory's ``e_j/e_ref``.

Uncertainty is a bootstrap over the runs (:func:`resample`): within each grid cell over its seeds when most cells
have two or more runs, else over the cells themselves.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = np.exp(rng.uniform(-2, 2, size=(400, 2)))
>>> p = 1 / (1 + np.exp(-4 * (np.log(x[:, 0]) + 2 * np.log(x[:, 1]))))   # boundary x0 · x1² = 1
>>> y = (rng.uniform(size=400) < p).astype(float)
>>> fit = locate(np.log(x), y, [1.0, 2.0], rng=rng, n_boot=50)
>>> fit.spanned, fit.reference, abs(float(fit.ratios[0]) - 0.5) < 0.15
(True, 1, True)
>>> bool(fit.ci[0][0] < 0.5 < fit.ci[0][1])
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["LEVEL", "BOOTSTRAP", "PENALTY", "SPAN_EFFECT_FRACTION", "FAR", "rescale", "fit_logistic", "fit_logistic_range", "resample",
           "inflation", "LocationFit", "locate", "CollapseFit", "collapse", "SideFit", "side", "SharpnessFit", "sharpness",
           "boundary_1d"]

#: Two-sided level of every interval (a 95% percentile bootstrap interval), Bonferroni-split across the ratios of a
#: location fit so that the verdict "the CI excludes the theory's ratio" has a 5% false-alarm rate overall.
LEVEL = 0.95
#: Bootstrap replicates per interval: 200 puts the 2.5% and 97.5% quantiles within about ±1% coverage of their
#: nominal level (binomial error of 5 replicates in each tail) while a whole verdict set stays well under a second.
BOOTSTRAP = 200
#: Ridge penalty (per run) on the standardised slopes of the logistic fit. A grid whose cells separate perfectly has
#: no maximum-likelihood fit (the slopes diverge); the penalty keeps them finite. A ridge also pulls the fitted
#: direction: on 400 runs of a planted boundary x₀·x₁² = 1 the ratio came out 0.41 at 1e-2, 0.47 at 1e-3 and 0.49 at
#: 1e-4 (true 0.5), so 1e-4: a bias well inside the bootstrap interval, slopes still finite on separated grids.
PENALTY = 1e-4
#: Rescaled cell means closer than this to 0 or 1 count as "on a side" (used to tell a fitted width from an upper
#: bound, and for a grid whose cells all sit on one side).
SIDE_MARGIN = 0.1
#: "Far from the boundary" for the side verdicts: a factor 10 in the scaling variable either way (the papers' "≫"
#: and "≪" read as one decade).
FAR = 10.0
#: Multiple of the standard error within which a side's mean outcome counts as "the predicted value".
SE_MULTIPLIER = 2.0
#: The change of the outcome that counts as a transition when the theory gives no other: this fraction of the
#: predicted gap between the two sides (``high_min − low``).
SPAN_EFFECT_FRACTION = 0.5
#: IRLS iterations of the logistic fit (Newton steps on a strictly convex objective; 25 reach 1e-10 in practice).
_NEWTON_STEPS = 25


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def rescale(y: np.ndarray, bottom: float, top: float) -> np.ndarray:
    """``(y − bottom)/(top − bottom)`` clipped to [0, 1] (the scale the logistic model fits).

    Examples
    --------
    >>> rescale(np.array([0.0, 0.25, 1.0]), 0.0, 0.5).tolist()
    [0.0, 0.5, 1.0]
    """
    if not top > bottom:
        raise ConfigError(f"rescale needs top > bottom, got [{bottom}, {top}]")
    return np.clip((np.asarray(y, dtype=float) - bottom) / (top - bottom), 0.0, 1.0)


def fit_logistic(x: np.ndarray, y: np.ndarray, *, penalty: float = PENALTY) -> tuple[float, np.ndarray]:
    """The intercept and slopes of ``y ≈ σ(b₀ + x·b)`` for ``y`` in [0, 1] (fractions allowed), by Newton steps
    (IRLS) on the mean cross-entropy plus ``penalty·|b_std|²`` (slopes of the standardised columns).

    Parameters
    ----------
    x : (runs, k) array of log axes.
    y : (runs,) array in [0, 1].

    Returns
    -------
    b0, b : float and (k,) array, in the units of ``x``.

    Examples
    --------
    >>> x = np.linspace(-3, 3, 61)[:, None]
    >>> b0, b = fit_logistic(x, 1 / (1 + np.exp(-(2 * x[:, 0] - 1))), penalty=0.0)
    >>> round(b0, 3), round(float(b[0]), 3)
    (-1.0, 2.0)
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    n = len(y)
    reg = np.full(z.shape[1], 2.0 * penalty * n)
    reg[0] = 0.0
    beta = np.zeros(z.shape[1])
    for _ in range(_NEWTON_STEPS):
        p = _sigmoid(z @ beta)
        grad = z.T @ (p - y) + reg * beta
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-12 * np.eye(z.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    b = beta[1:] / scale
    return float(beta[0] - b @ mean), b


def fit_logistic_range(x: np.ndarray, y: np.ndarray, bottom: float, top: float, *, penalty: float = PENALTY,
                       start: tuple[float, np.ndarray, float, float] | None = None
                       ) -> tuple[float, np.ndarray, float, float]:
    """``y ≈ L + (H − L)·σ(b₀ + x·b)`` with the asymptotes ``L``, ``H`` fitted too (least squares, Levenberg–
    Marquardt, the same ridge on the standardised slopes), started from the logistic fit rescaled over
    [``bottom``, ``top``] (or from ``start``, a previous fit's ``(b0, b, L, H)``: the bootstrap's warm start).

    Why: rescaling over the extreme cell means puts the deep cells at, say, 0.03 instead of 0, which tilts the
    fitted direction on an asymmetric grid (a planted ratio 0.5 came out 0.47–0.48 with CIs that excluded it when
    the outcome's noise was small); fitting the asymptotes removed the bias (0.51 ± 0.02 over 20 sweeps).

    Returns
    -------
    b0, b, L, H

    Examples
    --------
    >>> x = np.linspace(-3, 3, 61)[:, None]
    >>> y = 0.1 + 0.3 / (1 + np.exp(-(2 * x[:, 0] - 1)))
    >>> b0, b, lo, hi = fit_logistic_range(x, y, y.min(), y.max(), penalty=0.0)
    >>> round(b0, 2), round(float(b[0]), 2), round(lo, 3), round(hi, 3)
    (-1.0, 2.0, 0.1, 0.4)
    """
    from scipy.optimize import least_squares

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if start is None:
        b0, b = fit_logistic(x, np.clip(rescale(y, bottom, top), 0.0, 1.0), penalty=penalty)
    else:
        b0, b, bottom, top = start
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    k = x.shape[1]
    # the least-squares residuals are in outcome units: a ridge row of 1e-3 (top − bottom) per unit standardised
    # slope keeps a separated grid's slopes finite (~1e3) without pulling a fitted direction (a ridge of
    # sqrt(PENALTY·runs)·(top − bottom), the cross-entropy fit's, biased a planted ratio 0.5 to 0.486)
    ridge = (1e-3 if penalty > 0 else 0.0) * (top - bottom)

    def parts(th: np.ndarray) -> np.ndarray:
        return _sigmoid(th[0] + z @ th[1:1 + k])

    def residuals(th: np.ndarray) -> np.ndarray:
        p = parts(th)
        return np.concatenate([th[-2] + (th[-1] - th[-2]) * p - y, ridge * th[1:1 + k]])

    def jacobian(th: np.ndarray) -> np.ndarray:
        p = parts(th)
        d = (th[-1] - th[-2]) * p * (1 - p)
        top_rows = np.column_stack([d, z * d[:, None], 1 - p, p])
        reg = np.zeros((k, k + 3))
        reg[:, 1:1 + k] = ridge * np.eye(k)
        return np.vstack([top_rows, reg])

    start = np.concatenate([[b0 + b @ mean], b * scale, [bottom, top]])
    try:
        th = least_squares(residuals, start, jac=jacobian, method="trf" if penalty == 0 else "lm",
                           max_nfev=200, ftol=1e-12, xtol=1e-12, gtol=1e-12).x
    except (ValueError, np.linalg.LinAlgError):  # a degenerate grid: keep the rescaled logistic fit
        return b0, b, bottom, top
    lo, hi = float(th[-2]), float(th[-1])
    if not hi > lo:  # the fit turned the curve over: the asymptotes are not identified, keep the cell range
        return b0, b, bottom, top
    slopes = th[1:1 + k] / scale
    return float(th[0] - slopes @ mean), slopes, lo, hi


def resample(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of one bootstrap replicate of the runs: within each cell (over its seeds) when most cells hold two
    or more runs, else whole cells drawn with replacement.

    Examples
    --------
    >>> idx = resample(np.array([0, 0, 1, 1]), np.random.default_rng(0))
    >>> set(idx[:2].tolist()) <= {0, 1}, set(idx[2:].tolist()) <= {2, 3}
    (True, True)
    """
    cells = np.asarray(cells)
    labels, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(labels))]
    if np.median(counts) >= 2:
        return np.concatenate([rng.choice(m, size=len(m)) for m in members])
    picks = rng.integers(0, len(labels), size=len(labels))
    return np.concatenate([members[k] for k in picks])


def inflation(cells: np.ndarray) -> float:
    """Factor on bootstrap deviations that undoes the resampling's shrinkage of the variance: a bootstrap over ``m``
    draws has variance (m − 1)/m of the sampling variance, which matters within cells of a few seeds (m = 4: CIs
    13% too narrow; 100 planted sweeps covered the true ratio 92 times at 95% without the factor).

    Examples
    --------
    >>> round(inflation(np.array([0, 0, 0, 0, 1, 1, 1, 1])), 4)
    1.1547
    """
    _, counts = np.unique(np.asarray(cells), return_counts=True)
    m = float(np.median(counts)) if np.median(counts) >= 2 else float(len(counts))
    return math.sqrt(m / (m - 1)) if m > 1 else 1.0


def _cell_means(cells: np.ndarray, y: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(cells, return_inverse=True)
    return np.bincount(inverse, weights=y) / np.bincount(inverse)


def _interval(samples: np.ndarray, level: float, center: float | None = None,
              factor: float = 1.0) -> tuple[float, float]:
    """Percentile interval of ``samples``, their deviations from ``center`` scaled by ``factor`` (see
    :func:`inflation`); open (±inf) when more than a tenth of the replicates are undefined."""
    finite = samples[np.isfinite(samples)]
    if len(finite) < 0.9 * len(samples) or not len(finite):
        return (-math.inf, math.inf)
    if center is not None and math.isfinite(center):
        finite = center + factor * (finite - center)
    a = (1 - level) / 2
    return float(np.quantile(finite, a)), float(np.quantile(finite, 1 - a))


@dataclass
class LocationFit:
    """Where the outcome crosses half its range, as a hyperplane in the log axes.

    Attributes
    ----------
    spanned : whether the grid spans the transition: the fitted curve changes by at least the required effect
        across the grid's cells and the fitted boundary passes between them.
    fitted_range : how much the fitted curve changes across the cells (outcome units).
    reference : index of the axis the ratios are relative to.
    coef, intercept : the fitted linear form (boundary: ``intercept + coef·log x = 0``).
    ratios : ``coef / coef[reference]``.
    ci : one (low, high) interval per ratio (the reference's is (1, 1)); infinite when the bootstrap cannot bound
        it (the reference slope changes sign across replicates).
    orientation : +1 when the outcome rises along ``coef``'s reference axis, −1 when it falls.
    bottom, top : the fitted asymptotes the outcome is rescaled over (started from the range of the cell means).
    level : the per-ratio level (Bonferroni-split).
    boot : (replicates, k) bootstrap slopes, rescaled so that the reference slope has its fitted magnitude.
    boot_intercept : (replicates,) bootstrap intercepts on the same scale.
    """

    spanned: bool
    fitted_range: float
    reference: int
    coef: np.ndarray
    intercept: float
    ratios: np.ndarray
    ci: list[tuple[float, float]]
    orientation: int
    bottom: float
    top: float
    level: float
    boot: np.ndarray = field(repr=False)
    boot_intercept: np.ndarray = field(repr=False)


def _reference(x: np.ndarray, slopes: Sequence[float]) -> int:
    """The axis whose fitted term varies most over the grid: the best-determined slope to divide by (dividing by
    the theory's largest term instead left the ratio unbounded when the runs ignore that axis)."""
    spread = np.abs(np.asarray(slopes, dtype=float)) * x.std(axis=0)
    return int(np.argmax(spread))


def locate(x: np.ndarray, y: np.ndarray, exponents: Sequence[float], *, cells: np.ndarray | None = None,
           effect: float = 0.0, n_boot: int = BOOTSTRAP, level: float = LEVEL,
           rng: np.random.Generator | None = None) -> LocationFit:
    """Fit the boundary of ``y`` in the log axes ``x`` (runs × k, k ≥ 1) and bootstrap its exponent ratios.

    Parameters
    ----------
    x : (runs, k) log axes (the varying fields of the theory's variable).
    y : (runs,) outcome (any units; rescaled over the range of its cell means).
    exponents : the theory's exponents of the k axes (choose the reference axis when the grid does not span the
        transition; the fitted slopes choose it otherwise).
    cells : grid cell of each run (default: the distinct rows of ``x``).
    effect : smallest range of the cell means that counts as a transition; a smaller one is ``spanned=False``.
    n_boot, level, rng : bootstrap replicates, two-sided level (split across the k − 1 ratios) and generator.

    Examples
    --------
    >>> x = np.log(np.array([[1., 1.], [1., 10.], [10., 1.], [10., 10.]] * 3))
    >>> locate(x, np.zeros(12), [1.0, 1.0], effect=0.5).spanned
    False
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    rng = rng if rng is not None else np.random.default_rng(0)
    if cells is None:
        _, cells = np.unique(np.round(x, 12), axis=0, return_inverse=True)
    cells = np.asarray(cells).ravel()
    means = _cell_means(cells, y)
    bottom, top = float(means.min()), float(means.max())
    k = x.shape[1]
    ref = _reference(x, exponents)  # until the fit says otherwise
    if not (top - bottom > max(effect, 0.0) and top > bottom):
        nan = np.full(k, np.nan)
        return LocationFit(False, top - bottom, ref, nan, math.nan, nan, [(-math.inf, math.inf)] * k, 0, bottom,
                           top, level, np.empty((0, k)), np.empty(0))
    b0, b, bottom, top = fit_logistic_range(x, y, bottom, top)
    ref = _reference(x, b)
    # noise alone gives cell means a range; the fitted curve must itself change by the effect, and cross one half
    # between the cells, for the grid to span the transition
    z = b0 + x @ b
    fitted_range = (top - bottom) * float(_sigmoid(z.max()) - _sigmoid(z.min()))
    spanned = bool(fitted_range >= effect and z.min() < 0 < z.max())
    per_level = 1 - (1 - level) / max(k - 1, 1)
    boot = np.empty((n_boot, k))
    boot0 = np.empty(n_boot)
    for i in range(n_boot):
        idx = resample(cells, rng)
        boot0[i], boot[i], _, _ = fit_logistic_range(x[idx], y[idx], bottom, top, start=(b0, b, bottom, top))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = b / b[ref]
        boot_ratios = boot / boot[:, [ref]]
        # a replicate whose reference slope flips sign has no ratio on the fitted scale: it makes the interval open
        boot_ratios[np.sign(boot[:, ref]) != np.sign(b[ref])] = np.nan
    factor = inflation(cells)
    ci = [(1.0, 1.0) if j == ref else _interval(boot_ratios[:, j], per_level, float(ratios[j]), factor)
          for j in range(k)]
    scale = np.abs(b[ref]) / np.where(np.abs(boot[:, ref]) > 0, np.abs(boot[:, ref]), np.nan)
    return LocationFit(spanned, fitted_range, ref, b, b0, ratios, ci, int(np.sign(b[ref])), bottom, top, per_level,
                       boot * scale[:, None], boot0 * scale)


def boundary_1d(v: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """The crossing point ``v_c`` (where the logistic fit of ``r`` in ``v`` is one half) and the signed slope.

    Examples
    --------
    >>> v = np.linspace(-3, 3, 61)
    >>> c, s = boundary_1d(v, 1 / (1 + np.exp(-3 * (v - 0.5))))
    >>> round(c, 1), s > 0
    (0.5, True)
    """
    b0, b = fit_logistic(np.asarray(v, dtype=float)[:, None], r)
    slope = float(b[0])
    return (-b0 / slope if slope != 0 else math.nan), slope


def _spread(v: np.ndarray, r: np.ndarray) -> float:
    b0, b = fit_logistic(v[:, None], r)
    return float(np.sqrt(np.mean((r - _sigmoid(b0 + v * b[0])) ** 2)))


@dataclass
class CollapseFit:
    """How tightly the rescaled outcome lies on one logistic curve in each of two variables.

    Attributes
    ----------
    spread, spread_wrong : RMS distance (rescaled outcome units, 0..1) of the runs from the best curve in the
        theory's variable and in the wrong one.
    ratio : spread / spread_wrong (< 1: the theory's variable collapses the runs better).
    ci : bootstrap interval of the ratio.
    distinct : whether the two variables order the grid's cells differently (else they cannot be told apart).
    """

    spread: float
    spread_wrong: float
    ratio: float
    ci: tuple[float, float]
    distinct: bool


def collapse(v: np.ndarray, w: np.ndarray, r: np.ndarray, *, cells: np.ndarray, n_boot: int = BOOTSTRAP,
             level: float = LEVEL, rng: np.random.Generator | None = None) -> CollapseFit:
    """Spread of the rescaled outcome ``r`` around one curve in ``v`` (log theory variable) against in ``w``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> a, b = rng.uniform(-2, 2, 300), rng.uniform(-2, 2, 300)
    >>> r = 1 / (1 + np.exp(-3 * (a + b)))
    >>> fit = collapse(a + b, a + 3 * b, r, cells=np.arange(300), rng=rng, n_boot=50)
    >>> fit.distinct, fit.ratio < 0.5, fit.ci[1] < 1
    (True, True, True)
    """
    v, w, r = (np.asarray(a, dtype=float) for a in (v, w, r))
    rng = rng if rng is not None else np.random.default_rng(0)
    cells = np.asarray(cells).ravel()
    # the two variables are told apart only if some pair of cells is ordered differently by them
    cv, cw = _cell_means(cells, v), _cell_means(cells, w)
    dv, dw = np.sign(np.subtract.outer(cv, cv)), np.sign(np.subtract.outer(cw, cw))
    distinct = bool(np.any(dv * dw < 0))
    s, sw = _spread(v, r), _spread(w, r)
    boot = np.empty(n_boot)
    for i in range(n_boot):
        idx = resample(cells, rng)
        bs, bw = _spread(v[idx], r[idx]), _spread(w[idx], r[idx])
        boot[i] = bs / bw if bw > 0 else (math.inf if bs > 0 else 1.0)
    ratio = s / sw if sw > 0 else (math.inf if s > 0 else 1.0)
    return CollapseFit(s, sw, ratio, _interval(boot, level, ratio, inflation(cells)), distinct)


@dataclass
class SideFit:
    """The outcome of the runs far on one side of a boundary.

    Attributes
    ----------
    runs : how many runs lie at least :data:`FAR` × beyond the boundary on this side.
    mean, se : their mean outcome and its standard error (the spread across runs and each run's own sampling
        error, whichever is larger).
    """

    runs: int
    mean: float
    se: float


def side(v: np.ndarray, y: np.ndarray, boundary: float, *, above: bool, run_se: np.ndarray | None = None,
         far: float = FAR) -> SideFit:
    """The runs with ``v ≥ boundary + log(far)`` (``above``) or ``v ≤ boundary − log(far)``; ``v`` is a log variable.

    Examples
    --------
    >>> f = side(np.log([0.01, 0.02, 1.0, 50.0]), np.array([0.0, 0.0, 0.5, 1.0]), 0.0, above=False)
    >>> f.runs, f.mean, f.se
    (2, 0.0, 0.0)
    """
    v, y = np.asarray(v, dtype=float), np.asarray(y, dtype=float)
    sel = v >= boundary + math.log(far) if above else v <= boundary - math.log(far)
    m = int(sel.sum())
    if not m:
        return SideFit(0, math.nan, math.nan)
    spread = float(y[sel].std(ddof=1) / math.sqrt(m)) if m > 1 else 0.0
    own = float(np.sqrt(np.mean(np.asarray(run_se, dtype=float)[sel] ** 2)) / math.sqrt(m)) if run_se is not None else 0.0
    return SideFit(m, float(y[sel].mean()), max(spread, own))


@dataclass
class SharpnessFit:
    """How the transition's width in log(variable) changes along one axis.

    Attributes
    ----------
    values : the axis values whose slice spans the transition.
    widths : the 10–90% width of each slice's logistic fit, in log(variable).
    bounded : per slice, False when no run lies inside the transition (the width is then an upper bound only).
    slope : fitted d log(width) / d log(axis).
    ci : bootstrap interval of the slope.
    """

    values: np.ndarray
    widths: np.ndarray
    bounded: np.ndarray
    slope: float
    ci: tuple[float, float]


#: 10–90% width of σ(s·v) in v is 2·ln 9 / s.
_WIDTH_10_90 = 2.0 * math.log(9.0)


def _slice_widths(v: np.ndarray, r: np.ndarray, axis: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.empty(len(values))
    for k, a in enumerate(values):
        sel = axis == a
        _, s = boundary_1d(v[sel], r[sel])
        out[k] = _WIDTH_10_90 / abs(s) if s != 0 else math.inf
    return out


def sharpness(v: np.ndarray, r: np.ndarray, axis: np.ndarray, *, cells: np.ndarray, n_boot: int = BOOTSTRAP,
              level: float = LEVEL, rng: np.random.Generator | None = None) -> SharpnessFit:
    """Per value of ``axis`` (a config field, positive), the width of the logistic fit of ``r`` in ``v``, and the
    slope of log(width) against log(axis) with a bootstrap interval. Slices whose rescaled cell means do not reach
    both sides (within :data:`SIDE_MARGIN`) are left out.

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> axis = np.repeat([10.0, 100.0, 1000.0], 200)
    >>> v = rng.uniform(-3, 3, 600)
    >>> r = (rng.uniform(size=600) < 1 / (1 + np.exp(-v * np.log10(axis)))).astype(float)
    >>> fit = sharpness(v, r, axis, cells=np.arange(600), rng=rng, n_boot=50)
    >>> len(fit.values), fit.slope < 0
    (3, True)
    """
    v, r, axis = (np.asarray(a, dtype=float) for a in (v, r, axis))
    rng = rng if rng is not None else np.random.default_rng(0)
    cells = np.asarray(cells).ravel()
    keep, bounded = [], []
    for a in np.unique(axis):
        sel = axis == a
        m = _cell_means(cells[sel], r[sel])
        if m.min() <= SIDE_MARGIN and m.max() >= 1 - SIDE_MARGIN:
            keep.append(a)
            bounded.append(bool(np.any((m > SIDE_MARGIN) & (m < 1 - SIDE_MARGIN))))
    values = np.array(keep)
    if len(values) < 2:
        return SharpnessFit(values, np.full(len(values), np.nan), np.array(bounded, dtype=bool), math.nan,
                            (-math.inf, math.inf))
    widths = _slice_widths(v, r, axis, values)
    slope = float(np.polyfit(np.log(values), np.log(widths), 1)[0])
    boot = np.empty(n_boot)
    within = np.isin(axis, values)
    vi, ri, ai, ci_ = v[within], r[within], axis[within], cells[within]
    for i in range(n_boot):
        idx = resample(ci_, rng)
        present = np.unique(ai[idx])
        if len(present) < 2:
            boot[i] = np.nan
            continue
        wb = _slice_widths(vi[idx], ri[idx], ai[idx], present)
        boot[i] = np.polyfit(np.log(present), np.log(wb), 1)[0]
    return SharpnessFit(values, widths, np.array(bounded, dtype=bool), slope,
                        _interval(boot, level, slope, inflation(ci_)))
