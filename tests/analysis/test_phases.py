"""Phase detection on synthetic curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

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
