"""Phase detection on synthetic curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal

from dyn.errors import PhaseError
from dyn.analysis.phases import fit_per_neuron, fit_stage1, log_slope, stage2_growth, t1_from_band


def _piecewise(t, t1, s1, s2, noise, rng):
    logy = np.where(t < t1, s1 * t, s1 * t1 + s2 * (t - t1))
    return np.exp(logy + rng.normal(0, noise, size=t.shape))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("t1, s1, s2", [(40, 0.08, 0.005), (120, 0.03, 0.0), (25, 0.2, 0.02)])
def test_recovers_t1_and_slopes(seed, t1, s1, s2):
    rng = np.random.default_rng(seed)
    t = np.arange(200.0)
    fit = fit_stage1(t, _piecewise(t, t1, s1, s2, 0.02, rng))
    assert abs(fit.t1 - t1) <= 3
    assert fit.slope1_ci[0] - 1e-3 <= s1 <= fit.slope1_ci[1] + 1e-3
    assert fit.slope2_ci[0] - 1e-3 <= s2 <= fit.slope2_ci[1] + 1e-3
    assert abs(fit.slope1 - s1) < 0.1 * s1 and fit.p_value < 1e-6


def _ar1(rng, phi, sd, n):
    """AR(1) noise with stationary standard deviation ``sd``."""
    return scipy.signal.lfilter([1.0], [1.0, -phi], rng.normal(0, sd * math.sqrt(1 - phi**2), n))


def _exp_to_log(t, t1, s, kind):
    """Smooth curves with a known T1: exponential growth, then logarithmic growth of the curve itself."""
    y1 = np.exp(s * np.minimum(t, t1))
    tau = np.maximum(t - t1, 0.0)
    return {"c1": y1 * (1 + s * np.log1p(tau)),  # slope continuous at T1
            "c1-fast": y1 * (1 + np.log1p(s * tau)),
            "kink": y1 + 0.5 * np.log1p(tau)}[kind]


@pytest.mark.parametrize("kind", ["c1", "c1-fast", "kink"])
@pytest.mark.parametrize("t1, s", [(40, 0.08), (60, 0.05), (100, 0.03)])
def test_t1_is_not_biased_late_on_smooth_exp_to_log_curves(kind, t1, s):
    """Regression (issue 9, defect 5): the hinge-only fit put T1 3 to 19 steps late on these curves."""
    t = np.arange(200.0)
    errors = []
    for seed in range(3):
        y = _exp_to_log(t, t1, s, kind) * np.exp(np.random.default_rng(seed).normal(0, 0.01, t.shape))
        fit = fit_stage1(t, y, n_boot=50)
        errors.append(fit.t1 - t1)
        assert fit.t1_ci[0] - 3 <= t1 <= fit.t1_ci[1] + 3
    assert max(abs(e) for e in errors) <= 3 and abs(np.mean(errors)) <= 2


def test_slope_and_t1_intervals_cover_under_ar1_noise():
    """Regression (issue 9, defect 5): a residual bootstrap that treats AR(1) residuals as independent covered the
    true stage-1 slope 36 times in 100; the AR(1) sieve bootstrap covers it near the nominal 95%."""
    t = np.arange(120.0)
    slope_hits = t1_hits = fits = 0
    for i in range(40):
        rng = np.random.default_rng(500 + i)
        logy = np.where(t < 60, 0.05 * t, 3.0)
        try:
            fit = fit_stage1(t, np.exp(logy + _ar1(rng, 0.7, 0.05, len(t))), n_boot=150)
        except PhaseError:
            continue
        fits += 1
        slope_hits += fit.slope1_ci[0] <= 0.05 <= fit.slope1_ci[1]
        t1_hits += fit.t1_ci[0] <= 60 <= fit.t1_ci[1]
    assert fits >= 36
    assert slope_hits >= 0.85 * fits and t1_hits >= 0.85 * fits


@pytest.mark.parametrize("name", ["linear", "sqrt", "log", "tiny", "linear-noisy", "sqrt-noisy", "log-noisy"])
def test_no_phase_change_on_single_law_curves(name):
    """Regression (issue 9, defect 5): linear, √t and log t curves, and a curve that moves by 4e-9, got a T1."""
    t = np.arange(200.0)
    law = {"linear": 1 + 0.5 * t, "sqrt": np.sqrt(1 + t), "log": np.log(2 + t), "tiny": 1 + 4e-9 * t / t[-1]}
    base = name.removesuffix("-noisy")
    y = law[base] * (np.exp(np.random.default_rng(3).normal(0, 0.01, t.shape)) if name.endswith("noisy") else 1.0)
    with pytest.raises(PhaseError, match="no phase change"):
        fit_stage1(t, y)


@pytest.mark.parametrize("seed", range(3))
def test_slope_confidence_intervals_cover(seed):
    """Over many noisy draws the 95% interval for the stage-1 slope covers the truth about 95% of the time."""
    rng = np.random.default_rng(100 + seed)
    t = np.arange(120.0)
    hits = sum(
        (fit := fit_stage1(t, _piecewise(t, 60, 0.05, 0.0, 0.05, rng))).slope1_ci[0] <= 0.05 <= fit.slope1_ci[1]
        for _ in range(60)
    )
    assert hits >= 50


@pytest.mark.parametrize("curve", ["exp", "const", "noise"])
def test_no_phase_change_fails_loudly(curve):
    rng = np.random.default_rng(0)
    t = np.arange(150.0)
    y = {"exp": np.exp(0.05 * t + rng.normal(0, 0.02, t.shape)), "const": np.full(t.shape, 2.0),
         "noise": np.exp(rng.normal(0, 0.1, t.shape))}[curve]
    with pytest.raises(PhaseError, match="no phase change"):
        fit_stage1(t, y)


def test_bad_curves():
    with pytest.raises(PhaseError, match="too short"):
        fit_stage1(np.arange(5.0), np.ones(5))
    with pytest.raises(PhaseError, match="positive"):
        fit_stage1(np.arange(50.0), np.linspace(-1, 1, 50))


def test_log_slope_and_band_and_stage2():
    t = np.arange(30.0)
    slope, (lo, hi) = log_slope(t, 3 * np.exp(0.07 * t))
    assert slope == pytest.approx(0.07) and lo <= 0.07 <= hi
    steps = np.arange(6)
    lp = np.array([0.1, 0.1, 0.1, 0.1, 0.25, 0.5])
    assert t1_from_band(steps, lp, lp, np.full(6, 0.1), np.full(6, 0.1), negatives=9) == 4.0
    assert t1_from_band(steps, np.full(6, .1), np.full(6, .1), np.full(6, .1), np.full(6, .1), negatives=9) is None
    t = np.arange(1.0, 400.0)
    assert stage2_growth(t, 2 + np.log(t), 50)["kind"] == "log-like"
    assert stage2_growth(t, 2 + 0.05 * t, 50)["kind"] == "faster than log"
    assert stage2_growth(t, 5 + 1e-4 * np.log(t), 50)["kind"] == "flat"


def test_fit_per_neuron():
    import xarray as xr

    rng = np.random.default_rng(1)
    t = np.arange(100.0)
    curves = np.stack([_piecewise(t, 30, 0.1, 0.0, 0.01, rng), np.exp(0.05 * t)], axis=1)
    res = fit_per_neuron(xr.DataArray(curves, dims=("step", "neuron"), coords={"step": t, "neuron": [0, 1]}))
    assert res["found"].values.tolist() == [True, False]
    assert abs(float(res["t1"][0]) - 30) <= 2 and np.isnan(float(res["t1"][1]))


POWER_LAWS = {"1+t^2": lambda t: 1 + t**2, "1+t^1.5": lambda t: 1 + t**1.5, "1+t^3": lambda t: 1 + t**3,
              "10+t^2": lambda t: 10 + t**2, "1+0.01t^2": lambda t: 1 + 0.01 * t**2}


@pytest.mark.parametrize("noisy", [False, True])
@pytest.mark.parametrize("name", list(POWER_LAWS))
def test_no_phase_change_in_a_power_law(name, noisy):
    """Regression (issue 21 item 4): 1 + t^2 got T1 = 3 (CI 3..3), 1 + 0.01 t^2 T1 = 23: a power law on a constant
    is one law, not a phase change."""
    t = np.arange(200.0)
    y = POWER_LAWS[name](t) * (np.exp(np.random.default_rng(4).normal(0, 0.01, t.shape)) if noisy else 1.0)
    with pytest.raises(PhaseError, match="no phase change: an offset power law curve fits as well"):
        fit_stage1(t, y, n_boot=0)


@pytest.mark.parametrize("kind", ["c1", "kink"])
@pytest.mark.parametrize("t1", [40, 100, 150])
@pytest.mark.parametrize("s", [0.03, 0.08])
def test_a_clean_phase_change_is_found(kind, t1, s):
    """Regression (issue 21 item 4): noise-free exp -> log curves with a real change at 40/100/150 raised PhaseError:
    their residuals are a smooth misfit, read as AR(1) noise with phi = 0.98 (effective sample size 3)."""
    t = np.arange(200.0)
    fit = fit_stage1(t, _exp_to_log(t, t1, s, kind), n_boot=20)
    assert abs(fit.t1 - t1) <= 2 and fit.slope1 == pytest.approx(s, rel=0.05)


def test_the_error_cites_the_test_that_failed():
    """Regression (issue 21 item 4): a failed F test (p = 0.013) was reported as "BIC margin 19.2 < 10"."""
    t = np.arange(200.0)
    y = _exp_to_log(t, 60, 0.05, "c1") * np.exp(np.random.default_rng(0).normal(0, 0.01, t.shape))
    with pytest.raises(PhaseError) as only_f:
        fit_stage1(t, y, min_bic=-math.inf, alpha=0.0, n_boot=0)
    assert "F test p = " in str(only_f.value) and "BIC" not in str(only_f.value)
    with pytest.raises(PhaseError) as only_bic:
        fit_stage1(t, 1 + t**2, alpha=1.0, n_boot=0)
    assert "BIC margin" in str(only_bic.value) and "F test" not in str(only_bic.value)


def test_a_decreasing_stage_2_is_not_faster_than_log():
    """Regression (issue 21 item 4): 5 - 0.01 t was "faster than log" (so stage2.growth was violated)."""
    t = np.arange(1.0, 400.0)
    assert stage2_growth(t, 5 - 0.01 * t, 50)["kind"] == "decreasing"
    assert stage2_growth(t, 5 + 0.01 * t, 50)["kind"] == "faster than log"
