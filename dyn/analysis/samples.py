"""Which samples does the network memorize? Per-sample views of a site's noise memorization ρ (no torch).

For every noise probe (a training sample, or a patch of one) ``i``: ``rho_max`` = max over neurons of ``ρ_{r,i}``
at the last step, and ``onset``, the first step from which that max stays at or above a threshold. Crossed with
the sample's label, a flipped-label mask when the caller passes one, the values logged per sample
(:meth:`dyn.Recorder.log_per_sample`, stored in the ``per_sample`` group: e.g. per-sample loss or margin at the last
logged step) and, for conv patches, the image and position it came from (``patch_image``, ``patch_row``,
``patch_col``).

The threshold: half the largest final ``rho_max`` of the site, never below the float32 rounding bound of ρ (an
untrained run memorizes nothing). "More than chance" is a separate column in the raw inner products' own units:
``noise_change``, the largest final |Δ⟨w_r, ξ_i⟩| over neurons, against ``random_change``, the largest final
|Δ⟨w_r, r⟩| over neurons and random directions ``r`` with the noise probes' norms (the site's ``random_inner``,
:func:`dyn.record.probes.random_baseline`): ``above_random`` says which samples moved more than any random
direction did.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ConfigError, StoreError
from .run import Run

__all__ = ["threshold", "sample_table", "memorized_curves", "per_sample_values", "PER_SAMPLE_GROUP"]

#: Group of the store holding values logged per training example (``Recorder.log_per_sample``).
PER_SAMPLE_GROUP = "per_sample"


def _rho_max(run: Run, site: str) -> xr.DataArray:
    """``max_r ρ_{r,i}(t)``, ``(step, sample)``."""
    return run.coefficients(site)["rho"].max("neuron")


def threshold(run: str | os.PathLike | xr.DataTree | Run, site: str) -> tuple[float, str]:
    """The memorization threshold of a site and how it was chosen (see the module's text).

    Examples
    --------
    >>> from dyn.testing import make_run
    >>> rho = np.zeros((3, 2, 4)); rho[2, 0] = [4.0, 1.0, 0.0, 2.0]
    >>> threshold(make_run(np.zeros((3, 2)), rho), "h")
    (2.0, 'half the largest final max-over-neurons rho')
    """
    run = Run.coerce(run)
    floor = float(run.coefficients(site).attrs.get("rho_rounding_bound", 0.0))
    level = 0.5 * float(_rho_max(run, site).isel(step=-1).max())
    if level <= floor:
        return floor, "the float32 rounding bound of rho (nothing moved beyond it)"
    return level, "half the largest final max-over-neurons rho"


def _onset(curve: np.ndarray, steps: np.ndarray, level: float) -> np.ndarray:
    """Per column, the first step from which ``curve >= level`` holds to the end (NaN if not at the end)."""
    above = curve >= level  # (step, sample)
    out = np.full(curve.shape[1], np.nan)
    ends = above[-1]
    # last step where it was below, +1; all above -> the first step
    below = ~above
    last_below = np.where(below.any(0), below.shape[0] - 1 - np.argmax(below[::-1], axis=0), -1)
    first = last_below + 1
    ok = ends & (first < len(steps))
    out[ok] = steps[first[ok]]
    return out


def per_sample_values(run: str | os.PathLike | xr.DataTree | Run) -> xr.Dataset | None:
    """The store's ``per_sample`` group (values logged per training example), or None."""
    run = Run.coerce(run)
    if PER_SAMPLE_GROUP not in run.tree.children:
        return None
    return run.tree[PER_SAMPLE_GROUP].to_dataset()


def _example_index(ds: xr.Dataset) -> np.ndarray:
    """The training example each noise probe belongs to: ``patch_image`` for conv patches, else the sample."""
    if "patch_image" in ds:
        return np.asarray(ds["patch_image"].values, dtype=np.int64)
    return np.asarray(ds["sample"].values, dtype=np.int64)


def sample_table(run: str | os.PathLike | xr.DataTree | Run, site: str, *, flipped: Any = None,
                 level: float | None = None) -> pd.DataFrame:
    """One row per noise probe, most memorized first.

    Parameters
    ----------
    run : path, DataTree or :class:`dyn.Run`
    site : the site's name.
    flipped : (samples,) bool array-like, optional
        Which samples' labels were flipped (label noise): adds the ``flipped`` column. For conv patches it may
        also be given per example (image), then mapped through ``patch_image``.
    level : float, optional
        The memorization threshold (default: :func:`threshold`).

    Returns
    -------
    pandas.DataFrame
        Columns ``sample``, ``rank`` (1 = most memorized), ``rho_max`` (max over neurons of ρ at the last step),
        ``onset`` (first step from which it stays ≥ the threshold; NaN if it does not end above it),
        ``memorized`` (ends above the threshold), ``label`` (when stored), ``noise_change`` (largest final
        |Δ⟨w_r, ξ_i⟩| over neurons) and ``above_random`` (it exceeds every random direction's; with a random
        baseline, whose largest change is ``attrs["random_change"]``), ``flipped`` (when given),
        ``patch_image``/``patch_row``/``patch_col`` (when stored), and the last logged value of every per-sample
        quantity (``Recorder.log_per_sample``) joined by example. ``attrs``: ``threshold``, ``threshold_source``.

    Raises
    ------
    ConfigError
        A ``flipped`` mask whose length matches neither the samples nor the examples.

    Examples
    --------
    >>> from dyn.testing import make_run
    >>> rho = np.zeros((3, 2, 4)); rho[1, 1] = [0, 3, 0, 0]; rho[2, 0] = [4.0, 3.0, 0.0, 2.0]
    >>> t = sample_table(make_run(np.zeros((3, 2)), rho), "h", flipped=[True, False, False, False])
    >>> t[["sample", "rank", "rho_max", "onset", "memorized", "flipped"]].to_string(index=False)
    ' sample  rank  rho_max  onset  memorized  flipped\\n      0     1      4.0    2.0       True     True\\n      1     2      3.0    1.0       True    False\\n      3     3      2.0    2.0       True    False\\n      2     4      0.0    NaN      False    False'
    """
    run = Run.coerce(run)
    ds = run.site(site)
    curve = _rho_max(run, site)
    values = np.asarray(curve.values, dtype=np.float64)
    steps = np.asarray(curve["step"].values)
    if level is None:
        level, source = threshold(run, site)
    else:
        source = "given"
    n = values.shape[1]
    table = pd.DataFrame({"sample": np.asarray(ds["sample"].values), "rho_max": values[-1],
                          "onset": _onset(values, steps, level) if level > 0 else np.full(n, np.nan)})
    table["memorized"] = np.isfinite(table["onset"].to_numpy())
    if "label" in ds:
        table["label"] = np.asarray(ds["label"].values)
    noise = np.asarray(ds["noise_inner"].isel(step=[0, -1]).values, dtype=np.float64)
    table["noise_change"] = np.abs(noise[1] - noise[0]).max(0)
    if "random_inner" in ds and ds["random_inner"].sizes.get("sample") == n:
        rand = np.asarray(ds["random_inner"].isel(step=[0, -1]).values, dtype=np.float64)
        random_change = float(np.abs(rand[1] - rand[0]).max())
        table["above_random"] = table["noise_change"].to_numpy() > random_change
        table.attrs["random_change"] = random_change
    examples = _example_index(ds)
    for name in ("patch_image", "patch_row", "patch_col", "patch_pos"):
        if name in ds:
            table[name] = np.asarray(ds[name].values)
    if flipped is not None:
        mask = np.asarray(flipped, dtype=bool).reshape(-1)
        if mask.shape[0] == n:
            table["flipped"] = mask
        elif examples.size and mask.shape[0] > examples.max():
            table["flipped"] = mask[examples]
        else:
            raise ConfigError(f"flipped has {mask.shape[0]} entries; site {site!r} has {n} samples"
                              + (f" from {examples.max() + 1} examples" if "patch_image" in ds else ""))
    extra = per_sample_values(run)
    if extra is not None:
        for name, var in extra.data_vars.items():
            last = np.asarray(var.isel({var.dims[0]: -1}).values, dtype=np.float64)
            if examples.size and last.shape[0] > examples.max():
                table[str(name)] = last[examples]
    table = table.sort_values("rho_max", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(1, "rank", np.arange(1, n + 1))
    table.attrs.update(threshold=float(level), threshold_source=source, site=site)
    table.attrs.setdefault("random_change", float("nan"))
    return table


def memorized_curves(run: str | os.PathLike | xr.DataTree | Run, site: str, *, flipped: Any = None,
                     level: float | None = None) -> pd.DataFrame:
    """"Memorized first" curves: by step, the fraction of samples whose max-over-neurons ρ is at or above the
    threshold, overall and (with a ``flipped`` mask) for flipped and clean samples separately.

    Returns
    -------
    pandas.DataFrame
        Index ``step``; columns ``all`` and, with a mask, ``flipped`` and ``clean``. ``attrs``: ``threshold``,
        ``threshold_source``.

    Examples
    --------
    >>> from dyn.testing import make_run
    >>> rho = np.zeros((3, 2, 4)); rho[1, 1] = [0, 3, 0, 0]; rho[2, 0] = [4.0, 3.0, 0.0, 2.0]
    >>> memorized_curves(make_run(np.zeros((3, 2)), rho), "h", flipped=[1, 0, 0, 0], level=2.5).to_dict("list")
    {'all': [0.0, 0.25, 0.5], 'flipped': [0.0, 0.0, 1.0], 'clean': [0.0, 0.3333333333333333, 0.3333333333333333]}
    """
    run = Run.coerce(run)
    table = sample_table(run, site, flipped=flipped, level=level)
    curve = np.asarray(_rho_max(run, site).values, dtype=np.float64)
    steps = np.asarray(run.coefficients(site)["step"].values)
    lvl = table.attrs["threshold"]
    above = curve >= lvl if lvl > 0 else np.zeros_like(curve, dtype=bool)
    out = pd.DataFrame({"all": above.mean(1)}, index=pd.Index(steps, name="step"))
    if "flipped" in table:
        mask = table.sort_values("sample")["flipped"].to_numpy()
        if mask.any():
            out["flipped"] = above[:, mask].mean(1)
        if (~mask).any():
            out["clean"] = above[:, ~mask].mean(1)
    out.attrs.update(threshold=lvl, threshold_source=table.attrs["threshold_source"], site=site)
    return out
