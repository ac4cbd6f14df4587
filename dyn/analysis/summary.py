"""A theory-free summary of any recorded run, one row per site (in the spirit of ArviZ's ``summary``).

For a model no theorem covers this still answers the questions the recording was made for: how much did signal
learning γ and noise memorization ρ grow, which dominates and from which step, where the curves change phase
(a two-segment fit of their log, :func:`dyn.analysis.phases.fit_stage1`, when there is a phase change), how much of
each neuron's change the probes explain (span coverage), and whether the noise probes grew more than random
directions of the same norms would (the ``random_inner`` baseline of :func:`dyn.record.probes.site_for`).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DynError, PhaseError
from .phases import MIN_EFFECT, fit_stage1
from .run import Run

__all__ = ["summary", "COLUMNS", "winner", "WINNERS", "TIE_RTOL"]

#: The outcomes of a race between signal learning and noise memorization, as every table and report spells them.
WINNERS = ("signal learning", "noise memorization", "tie", "did not move")
#: Two sizes within this fraction of the larger are a tie: the regime claims call a race closer than 10% undecided,
#: and a winner column must not name a side the verdicts would not.
TIE_RTOL = 0.1


def winner(signal: float, noise: float, *, signal_scale: float, noise_scale: float, rtol: float = TIE_RTOL,
           min_effect: float = MIN_EFFECT) -> str:
    """Who won the race between signal learning and noise memorization: one of :data:`WINNERS`.

    Parameters
    ----------
    signal, noise : float
        How far each has grown since initialisation, in the same units (e.g. ``max |γ|`` and ``max ρ``, inner-product
        units).
    signal_scale, noise_scale : float
        The size of each at initialisation (e.g. ``max_r |⟨w_r(0), μ⟩|``): the scale "moved" is judged against.
    rtol : float
        Relative tolerance of a tie: ``|signal − noise| <= rtol · max(signal, noise)``.
    min_effect : float
        ``"did not move"`` unless one of them changed its quantity by this factor, i.e. grew by at least
        ``(min_effect − 1)`` times its initial scale (:data:`~dyn.analysis.phases.MIN_EFFECT`, ×2). A scale of 0
        counts any growth as moved.

    Raises
    ------
    DynError
        A size or scale that is negative or not finite.

    Examples
    --------
    >>> winner(0.0, 0.0, signal_scale=0.1, noise_scale=0.1)
    'did not move'
    >>> winner(3.0, 0.5, signal_scale=0.1, noise_scale=0.1), winner(0.5, 3.0, signal_scale=0.1, noise_scale=0.1)
    ('signal learning', 'noise memorization')
    >>> winner(1.0, 1.05, signal_scale=0.1, noise_scale=0.1)
    'tie'
    >>> winner(0.01, 0.02, signal_scale=0.1, noise_scale=0.1)  # both still at their initial scale
    'did not move'
    """
    values = {"signal": signal, "noise": noise, "signal_scale": signal_scale, "noise_scale": noise_scale}
    bad = [k for k, v in values.items() if not (np.isfinite(v) and v >= 0)]
    if bad:
        raise DynError(f"winner needs finite non-negative sizes; got {', '.join(f'{k}={values[k]!r}' for k in bad)}")
    moved = [v > 0 and v >= (min_effect - 1) * s for v, s in ((signal, signal_scale), (noise, noise_scale))]
    if not any(moved):
        return "did not move"
    if abs(signal - noise) <= rtol * max(signal, noise):
        return "tie"
    return "signal learning" if signal > noise else "noise memorization"

#: The summary's columns, in order.
COLUMNS = [
    "site", "neurons", "features", "signals", "samples", "steps", "last_step",
    "method", "rank", "coverage_min", "coverage_median", "coverage_source",
    "gamma_max", "gamma_mean", "rho_max", "rho_mean", "gamma_max_growth", "rho_max_growth",
    "winner", "signal_dominates_from", "noise_dominates_from", "gamma_t1", "rho_t1", "noise_vs_random",
]


def _first_run(mask: np.ndarray, steps: np.ndarray) -> float:
    """The first step from which ``mask`` holds until the end (NaN if it does not hold at the end)."""
    if not len(mask) or not mask[-1]:
        return float("nan")
    bad = np.flatnonzero(~mask)
    return float(steps[0] if not len(bad) else steps[bad[-1] + 1])


def _growth(curve: np.ndarray) -> float:
    """End over the first positive value after initialisation (coefficients are 0 at step 0)."""
    later = curve[1:]
    pos = np.flatnonzero(later > 0)
    return float(later[-1] / later[pos[0]]) if len(pos) else float("nan")


def _t1(steps: np.ndarray, curve: np.ndarray) -> float:
    keep = curve > 0
    try:
        return float(fit_stage1(steps[keep], curve[keep], n_boot=50).t1)
    except PhaseError:
        return float("nan")


def _site_row(run: Run, name: str) -> dict:
    ds = run.site(name)
    c = run.coefficients(name)
    steps = np.asarray(c["step"].values)
    g, r = abs(c["gamma"]), abs(c["rho"])
    gmax = g.max(["neuron", "signal"]).values
    rmax = r.max(["neuron", "sample"]).values
    row = {
        "site": name, "neurons": ds.sizes["neuron"], "features": ds.sizes.get("feature", np.nan),
        "signals": ds.sizes["signal"], "samples": ds.sizes["sample"], "steps": len(steps),
        "last_step": int(steps[-1]), "method": c.attrs.get("method"), "rank": c.attrs.get("rank"),
        "gamma_max": float(gmax[-1]), "gamma_mean": float(g.isel(step=-1).mean()),
        "rho_max": float(rmax[-1]), "rho_mean": float(r.isel(step=-1).mean()),
        "gamma_max_growth": _growth(gmax), "rho_max_growth": _growth(rmax),
        "winner": winner(float(gmax[-1]), float(rmax[-1]),
                         signal_scale=float(abs(ds["signal_inner"].isel(step=0)).max()),
                         noise_scale=float(abs(ds["noise_inner"].isel(step=0)).max())),
        "signal_dominates_from": _first_run(gmax > rmax, steps),
        "noise_dominates_from": _first_run(rmax > gmax, steps),
        "gamma_t1": _t1(steps, gmax), "rho_t1": _t1(steps, rmax),
    }
    if "span_coverage" in c:
        final = c["span_coverage"].isel(step=-1).values
        final = final[np.isfinite(final)]
        row.update(coverage_min=float(final.min()) if final.size else np.nan,
                   coverage_median=float(np.median(final)) if final.size else np.nan, coverage_source="recorded")
    elif c.attrs.get("method") == "exact":
        row.update(coverage_min=np.nan, coverage_median=np.nan, coverage_source="not recorded (exact solve)")
    else:
        row.update(coverage_min=np.nan, coverage_median=np.nan, coverage_source="not recorded")
        if {"weight_init", "weight_final", "signal_vectors", "noise_vectors"} <= set(ds.data_vars):
            from .coefficients import reconstruction_residual

            try:
                res = reconstruction_residual(ds, c)
            except DynError:
                pass
            else:
                row.update(coverage_min=res["coverage"], coverage_median=res["coverage"],
                           coverage_source=f"stored weights, step {res['step']}")
    if "random_inner" in ds and ds["random_inner"].sizes.get("sample") == ds.sizes["sample"]:
        noise = ds["noise_inner"].astype(np.float64)
        rand = ds["random_inner"].astype(np.float64)
        moved_noise = float(abs(noise.isel(step=-1) - noise.isel(step=0)).max())
        moved_rand = float(abs(rand.isel(step=-1) - rand.isel(step=0)).max())
        row["noise_vs_random"] = moved_noise / moved_rand if moved_rand > 0 else np.nan
    else:
        row["noise_vs_random"] = np.nan
    return row


def summary(run: str | os.PathLike | xr.DataTree | Run) -> pd.DataFrame:
    """One row per site: growth of γ and ρ, who dominates from when, phase changes, span coverage, baseline.

    Parameters
    ----------
    run : path, DataTree or :class:`dyn.Run`

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: sizes; ``method`` and ``rank`` of the decomposition; ``coverage_min`` /
        ``coverage_median`` over neurons of the share of ``‖w(T) − w(0)‖²`` inside the probes' span at the last
        step, and where that came from; final max and mean of ``|γ|`` and ``|ρ|`` and the growth of the max since
        the first step; ``winner`` at the end (:func:`winner`: signal learning, noise memorization, a tie within
        :data:`TIE_RTOL`, or "did not move" when neither max grew by ``MIN_EFFECT − 1`` times its initial inner
        products); the step from which signal (or noise) has the larger
        max until the end (NaN if it does not at the end); ``gamma_t1`` / ``rho_t1``, the phase change of the
        log-max curves (NaN when there is none); ``noise_vs_random``, the largest change of a noise inner product
        over that of a random direction of the same norm (NaN without a ``random_inner`` baseline).

    Examples
    --------
    >>> import torch, tempfile, os
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(20, 4, bias=False)
    >>> x, y = torch.randn(12, 20), torch.arange(12) % 2
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> site = dyn.probes.site_for(model, x, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "s.zarr")
    >>> with dyn.Recorder(path, sites={"w": site}, optimizer=opt) as rec:
    ...     for _ in range(20):
    ...         loss = torch.nn.functional.cross_entropy(model(x)[:, :2], y)
    ...         loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)
    >>> table = summary(path)
    >>> table.loc[0, ["site", "method", "winner"]].tolist(), round(float(table.loc[0, "coverage_min"]), 4)
    (['w', 'projection', 'signal learning'], 1.0)
    """
    run = Run.coerce(run)
    return pd.DataFrame([_site_row(run, name) for name in run.sites], columns=COLUMNS)
