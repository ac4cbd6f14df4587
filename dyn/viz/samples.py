"""Figures of which samples a network memorizes (:mod:`dyn.analysis.samples`): the top-k samples with the probe
vector (image or patch) they came from, and the "memorized first" curves (flipped vs clean when a mask is given)."""

from __future__ import annotations

import math
import os
import textwrap
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ..analysis.coefficients import describe
from ..analysis.run import Run
from ..analysis.samples import memorized_curves, sample_table

__all__ = ["plot_top_samples", "plot_memorized_curves"]

_RunLike = str | os.PathLike | xr.DataTree | Run


def _shape(ds: xr.Dataset, d: int) -> tuple[int, int] | None:
    """How to draw a probe vector: the conv kernel ``(channels·kh, kw)`` from ``weight_shape``, a square image, or
    None (drawn as a 1-row strip)."""
    shape = ds.attrs.get("weight_shape")
    if isinstance(shape, list) and len(shape) >= 3 and int(np.prod(shape[1:])) == d:
        return int(np.prod(shape[1:-1])), int(shape[-1])
    side = int(round(math.sqrt(d)))
    return (side, side) if side * side == d else None


def plot_top_samples(run: _RunLike, site: str, *, k: int = 12, flipped: Any = None) -> Figure:
    """The ``k`` most memorized samples of a site: each drawn from its stored noise probe (the image, or the patch
    with its source image and position), titled with its rank, label, final max-over-neurons ρ and onset step.

    Examples
    --------
    >>> from dyn.testing import make_run
    >>> rho = np.zeros((3, 2, 4)); rho[2, 0] = [4.0, 3.0, 0.0, 2.0]
    >>> fig = plot_top_samples(make_run(np.zeros((3, 2)), rho), "h", k=2)
    >>> [ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_title()]
    ['#1 sample 0', '#2 sample 1']
    """
    run = Run.coerce(run)
    ds = run.site(site)
    table = sample_table(run, site, flipped=flipped)
    top = table.head(k)
    cols = min(len(top), 6) or 1
    rows = max(1, math.ceil(len(top) / cols))
    fig = Figure(figsize=(1.9 * cols + 0.4, 2.2 * rows + 0.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    vectors = ds["noise_vectors"] if "noise_vectors" in ds else None
    shape = _shape(ds, ds.sizes.get("feature", 0)) if vectors is not None else None
    for ax, (_, row) in zip(axes, top.iterrows()):
        i = int(row["sample"])
        if vectors is not None:
            v = np.asarray(vectors.sel(sample=i).values, dtype=np.float64)
            img = v.reshape(shape) if shape else v[None, :]
            lim = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="equal" if shape else "auto")
        else:
            ax.text(0.5, 0.5, "probe vector\nnot stored", ha="center", va="center", fontsize=8)
        where = ""
        if "patch_image" in row:
            pos = (f" ({int(row['patch_row'])},{int(row['patch_col'])})" if "patch_row" in row else "")
            where = f"\nimage {int(row['patch_image'])}{pos}"
        label = f" label {row['label']}" if "label" in row else ""
        flip = " FLIPPED" if bool(row.get("flipped", False)) else ""
        onset = "never" if not np.isfinite(row["onset"]) else f"{int(row['onset'])}"
        ax.set_title(f"#{int(row['rank'])} sample {i}{where}\n{label} ρ={row['rho_max']:.3g}, onset {onset}{flip}",
                     fontsize=7.5)
        ax.set_xticks([]); ax.set_yticks([])
    for ax in axes[len(top):]:
        ax.set_axis_off()
    kind = describe(run.coefficients(site), short=True)
    width = int(20 * cols)
    fig.suptitle(textwrap.fill(f"site {site}: the {len(top)} most memorized samples (max over neurons of ρ at the last "
                               f"step; threshold {table.attrs['threshold']:.3g}: {table.attrs['threshold_source']})",
                               width) + "\n" + textwrap.fill(f"ρ: {kind}", width), fontsize=9)
    return fig


def plot_memorized_curves(run: _RunLike, site: str, *, flipped: Any = None) -> Figure:
    """"Memorized first": the fraction of samples whose max-over-neurons ρ is above the threshold, by step;
    flipped and clean samples separately when a mask is given.

    Examples
    --------
    >>> from dyn.testing import make_run
    >>> rho = np.zeros((3, 2, 4)); rho[2, 0] = [4.0, 3.0, 0.0, 2.0]
    >>> fig = plot_memorized_curves(make_run(np.zeros((3, 2)), rho), "h", flipped=[1, 0, 0, 0])
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['all samples', 'flipped labels', 'clean labels']
    """
    run = Run.coerce(run)
    curves = memorized_curves(run, site, flipped=flipped)
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    names = {"all": "all samples", "flipped": "flipped labels", "clean": "clean labels"}
    styles = {"all": dict(color="0.2", lw=2), "flipped": dict(color="C3", lw=1.5), "clean": dict(color="C0", lw=1.5)}
    for col in curves.columns:
        ax.plot(curves.index, curves[col].to_numpy(), label=names[col], **styles[col])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction memorized")
    ax.legend(frameon=False, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    kind = describe(run.coefficients(site), short=True)
    ax.set_title(textwrap.fill(f"site {site}: samples whose max-over-neurons ρ ≥ {curves.attrs['threshold']:.3g} "
                               f"({curves.attrs['threshold_source']})", 80) + "\n" + textwrap.fill(f"ρ: {kind}", 80),
                 fontsize=8.5)
    return fig
