"""Seaborn figures of recorded dynamics. Data first, options keyword-only, each returns its figure (never shows it).

Every function takes a run (a path, an opened tree or a :class:`dyn.run.Run`).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure

from .errors import ConfigError
from .run import Run
from .theory import get_theory

__all__ = ["coefficients", "signal_vs_noise", "heatmap", "QUANTITIES"]

#: quantity -> (site variable source, probe dimension, label)
QUANTITIES = {
    "gamma": ("coefficients", "signal", "signal learning γ"),
    "rho": ("coefficients", "sample", "noise memorization ρ"),
    "A": ("proof", "signal", "total signal A = |γ + ⟨w(0), μ⟩|"),
    "Psi": ("proof", "sample", "total noise Ψ = ρ + ⟨w(0), ξ⟩"),
    "signal_inner": ("site", "signal", "⟨w, μ⟩"),
    "noise_inner": ("site", "sample", "⟨w, ξ⟩"),
}


def _run(run: str | os.PathLike | xr.DataTree | Run) -> Run:
    if isinstance(run, Run):
        return run
    if not isinstance(run, (str, os.PathLike, xr.DataTree)):
        raise ConfigError(f"plot the run (a path, dyn.open(path) or dyn.Run), not a {type(run).__name__}")
    return Run(run)


def _values(run: Run, site: str, quantity: str) -> xr.DataArray:
    if quantity not in QUANTITIES:
        raise ConfigError(f"unknown quantity {quantity!r} (choose from {', '.join(QUANTITIES)})")
    source, _, _ = QUANTITIES[quantity]
    if source == "coefficients":
        return run.coefficients(site)[quantity]
    if source == "proof":
        return run.proof(site)[quantity]
    return run.site(site)[quantity].astype(np.float64)


def per_neuron(run: Run, site: str, quantity: str, *, absolute: bool | None = None) -> xr.DataArray:
    """``(step, neuron)``: the quantity reduced over its probes by the maximum (of |·| for signal quantities)."""
    da = _values(run, site, quantity)
    probe = QUANTITIES[quantity][1]
    if absolute is None:
        absolute = probe == "signal"
    if quantity == "Psi":  # total noise is meaningful on the active pairs I_{r,+}(0)
        da = da.where(run.proof(site)["I_plus0"])
    return (abs(da) if absolute else da).max(probe)


def coefficients(
    run: str | os.PathLike | xr.DataTree | Run,
    *,
    site: str = "h",
    quantities: Sequence[str] = ("A", "Psi"),
    reduce: str = "max",
    band: tuple[float, float] = (0.1, 0.9),
    logy: bool = True,
    theory: str | None = "huang2024",
    title: str | None = None,
) -> Figure:
    """Curves over steps: the max (or mean) over neurons with a quantile band, one panel per quantity.

    In log scale with ``theory`` given, the theory's predicted stage-1 growth is overlaid and T₁ is marked.

    Parameters
    ----------
    run : the run.
    site : site group, e.g. ``"h"``.
    quantities : from :data:`QUANTITIES` (``A``/``Psi`` are positive and suit log scale; ``gamma``/``rho`` start at 0).
    reduce : ``"max"`` or ``"mean"`` over neurons for the line.
    band : quantiles over neurons shaded around the line (``None`` for no band).
    logy : log-scale y axis.
    theory : registry name of the theory whose overlays to draw, or None.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny"), path)
    >>> fig = coefficients(path, quantities=("A", "Psi"))
    >>> len(fig.axes)
    2
    """
    run = _run(run)
    if reduce not in ("max", "mean"):
        raise ConfigError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    fig = Figure(figsize=(5.2 * len(quantities), 3.8), layout="constrained")
    axes = fig.subplots(1, len(quantities), squeeze=False)[0]
    th = get_theory(theory) if theory else None
    palette = sns.color_palette("colorblind")
    for ax, q in zip(axes, quantities):
        curves = per_neuron(run, site, q)
        steps = curves["step"].values
        line = curves.max("neuron") if reduce == "max" else curves.mean("neuron")
        ax.plot(steps, line.values, color=palette[0], lw=2, label=f"{reduce} over neurons")
        if band is not None:
            lo, hi = curves.quantile(band[0], "neuron").values, curves.quantile(band[1], "neuron").values
            ax.fill_between(steps, lo, hi, color=palette[0], alpha=0.2,
                            label=f"neurons {band[0]:.0%}–{band[1]:.0%}")
        if th is not None and th.applies_to(run) is None:
            over = th.overlays(run, site, q)
            for i, (label, t, v) in enumerate(over["lines"]):
                ax.plot(t, v, ls="--", color=palette[1 + i], label=label)
            for i, (label, t1) in enumerate(over["markers"]):
                ax.axvline(t1, ls=":", color=palette[3 + i], label=label)
        if logy and np.nanmin(line.values) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(QUANTITIES[q][2])
        ax.set_title(f"{site}: {QUANTITIES[q][2]}")
        ax.legend(fontsize=7)
        sns.despine(ax=ax)
    fig.suptitle(title or run.name)
    return fig


def signal_vs_noise(
    runs: Mapping[str, str | os.PathLike | xr.DataTree | Run],
    *,
    site: str = "h",
    coefficients_kind: str = "exact",
    logy: bool = False,
) -> Figure:
    """Signal learning and noise memorization of several runs side by side (e.g. single vs multi-modal).

    Left: ``max_r |γ_r|`` (or ``max_r |⟨w_r, μ⟩|``); right: ``max_{r,i} ρ_{r,i}`` (or ``max ⟨w_r, ξ_i⟩``).

    Parameters
    ----------
    runs : mapping of label to run.
    site : site group.
    coefficients_kind : ``"exact"`` (γ, ρ) or ``"proxy"`` (raw inner products).
    logy : log-scale y axes.

    Examples
    --------
    >>> import tempfile, os
    >>> root = tempfile.mkdtemp()
    >>> runs = {m: os.path.join(root, f"{m}.zarr") for m in ("single", "multi")}
    >>> for m, p in runs.items():
    ...     _ = dyn.train(dyn.load_preset("huang2024-tiny", modality=m), p)
    >>> fig = signal_vs_noise(runs)
    >>> [ax.get_title() for ax in fig.axes]
    ['signal learning', 'noise memorization']
    """
    if coefficients_kind not in ("exact", "proxy"):
        raise ConfigError(f"coefficients_kind must be 'exact' or 'proxy', got {coefficients_kind!r}")
    frames = []
    for label, r in runs.items():
        r = _run(r)
        sig_q, noise_q = ("gamma", "rho") if coefficients_kind == "exact" else ("signal_inner", "noise_inner")
        sig = per_neuron(r, site, sig_q).max("neuron")
        noise = per_neuron(r, site, noise_q).max("neuron")
        for panel, da in (("signal learning", sig), ("noise memorization", noise)):
            frames.append(pd.DataFrame({"step": da["step"].values, "value": da.values, "run": label, "panel": panel}))
    data = pd.concat(frames, ignore_index=True)
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    names = {"exact": ("max_r |γ_r|", "max_{r,i} ρ_{r,i}"), "proxy": ("max_r |⟨w_r, μ⟩|", "max_{r,i} ⟨w_r, ξ_i⟩")}
    for ax, panel, ylabel in zip(axes, ("signal learning", "noise memorization"), names[coefficients_kind]):
        sns.lineplot(data=data[data["panel"] == panel], x="step", y="value", hue="run", ax=ax, palette="colorblind")
        ax.set_title(panel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        sns.despine(ax=ax)
    return fig


def heatmap(
    run: str | os.PathLike | xr.DataTree | Run,
    *,
    site: str = "h",
    quantity: str = "gamma",
    max_columns: int = 200,
) -> Figure:
    """Neuron × step heatmap of a quantity (reduced over probes by max |·| for signals, max for samples).

    Parameters
    ----------
    run : the run.
    site : site group.
    quantity : from :data:`QUANTITIES`.
    max_columns : steps are subsampled evenly to at most this many columns.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny"), path)
    >>> fig = heatmap(path, quantity="rho")
    >>> fig.axes[0].get_ylabel()
    'neuron'
    """
    run = _run(run)
    curves = per_neuron(run, site, quantity)
    n = curves.sizes["step"]
    idx = np.unique(np.linspace(0, n - 1, min(n, max_columns)).round().astype(int))
    frame = curves.isel(step=idx).transpose("neuron", "step").to_pandas()
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    sns.heatmap(frame, ax=ax, cmap="viridis", cbar_kws={"label": QUANTITIES[quantity][2]},
                xticklabels=max(len(idx) // 10, 1), yticklabels=max(curves.sizes["neuron"] // 10, 1))
    ax.set_title(f"{run.name} / {site}: {QUANTITIES[quantity][2]} per neuron")
    return fig
