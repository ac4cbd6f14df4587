"""Seaborn figures of recorded dynamics. Data first, options keyword-only, each returns its figure (never shows it).

Every function takes a run (a path, an opened tree or a :class:`dyn.Run`). Generic quantities are the exact
coefficients (γ, ρ) and the raw inner products; a theory may add the quantities its proofs use
(:meth:`dyn.theory.Theory.quantities`) and overlays (its predicted growth, T₁).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure

from ..analysis.run import Run
from ..errors import ConfigError
from ..theory.base import Theory, get_theory, theory_for

__all__ = ["plot_coefficients", "plot_signal_vs_noise", "plot_heatmap", "per_neuron", "QUANTITIES"]

#: generic quantity -> (source, label)
QUANTITIES = {
    "gamma": ("coefficients", "signal learning γ"),
    "rho": ("coefficients", "noise memorization ρ"),
    "signal_inner": ("site", "⟨w, μ⟩"),
    "noise_inner": ("site", "⟨w, ξ⟩"),
}

_RunLike = str | os.PathLike | xr.DataTree | Run


def _theory(run: Run, theory: str | Theory | bool | None) -> Theory | None:
    """``None``: the theory registered for the run's setup, if any; ``False``: none; else by name/instance."""
    if theory is False:
        return None
    if theory is None:
        try:
            th = theory_for(run)
        except ConfigError:
            return None
    else:
        th = get_theory(theory)
    return th if th.applies_to(run) is None else None


def _site(run: Run, site: str | None) -> str:
    return run.sites[0] if site is None else site


def _values(run: Run, site: str, quantity: str, theory: Theory | None) -> tuple[xr.DataArray, str]:
    """The quantity ``(step, neuron, probe)`` and its label."""
    if quantity in QUANTITIES:
        source, label = QUANTITIES[quantity]
        da = run.coefficients(site)[quantity] if source == "coefficients" else run.site(site)[quantity].astype(np.float64)
        return da, label
    extra = theory.quantities(run, site) if theory is not None else xr.Dataset()
    if quantity not in extra:
        known = [*QUANTITIES, *map(str, extra.data_vars)]
        raise ConfigError(f"unknown quantity {quantity!r} (choose from {', '.join(known)})")
    da = extra[quantity]
    return da, str(da.attrs.get("long_name", quantity))


def per_neuron(run: _RunLike, site: str | None, quantity: str, *, absolute: bool | None = None,
               theory: str | Theory | bool | None = None) -> xr.DataArray:
    """``(step, neuron)``: the quantity reduced over its probes by the maximum (of |·| for signal quantities)."""
    run = Run.coerce(run)
    da, label = _values(run, _site(run, site), quantity, _theory(run, theory))
    probe = next(d for d in da.dims if d not in ("step", "neuron"))
    if absolute is None:
        absolute = probe == "signal"
    out = (abs(da) if absolute else da).max(probe)
    out.attrs["long_name"] = label
    return out


def plot_coefficients(
    run: _RunLike,
    *,
    site: str | None = None,
    quantities: Sequence[str] | None = None,
    reduce: str = "max",
    band: tuple[float, float] = (0.1, 0.9),
    logy: bool = True,
    theory: str | Theory | bool | None = None,
    title: str | None = None,
) -> Figure:
    """Curves over steps: the max (or mean) over neurons with a quantile band, one panel per quantity.

    In log scale with ``theory`` given, the theory's predicted stage-1 growth is overlaid and T₁ is marked.

    Parameters
    ----------
    run : the run.
    site : site group (default: the run's first site).
    quantities : from :data:`QUANTITIES` or the theory's quantities (default: the theory's
        ``plot_quantities``, else ``("gamma", "rho")``).
    reduce : ``"max"`` or ``"mean"`` over neurons for the line.
    band : quantiles over neurons shaded around the line (``None`` for no band).
    logy : log-scale y axis (where the line is positive).
    theory : the theory whose quantities and overlays to use: None picks the run's (if any), False none.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny"), path)
    >>> fig = plot_coefficients(path, quantities=("A", "Psi"))
    >>> len(fig.axes)
    2
    """
    run = Run.coerce(run)
    site = _site(run, site)
    if reduce not in ("max", "mean"):
        raise ConfigError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    th = _theory(run, theory)
    if quantities is None:
        quantities = tuple(th.plot_quantities) if th is not None and th.plot_quantities else ("gamma", "rho")
    fig = Figure(figsize=(5.2 * len(quantities), 3.8), layout="constrained")
    axes = fig.subplots(1, len(quantities), squeeze=False)[0]
    palette = sns.color_palette("colorblind")
    for ax, q in zip(axes, quantities):
        curves = per_neuron(run, site, q, theory=th if th is not None else False)
        label = curves.attrs["long_name"]
        steps = curves["step"].values
        line = curves.max("neuron") if reduce == "max" else curves.mean("neuron")
        ax.plot(steps, line.values, color=palette[0], lw=2, label=f"{reduce} over neurons")
        if band is not None:
            lo, hi = curves.quantile(band[0], "neuron").values, curves.quantile(band[1], "neuron").values
            ax.fill_between(steps, lo, hi, color=palette[0], alpha=0.2,
                            label=f"neurons {band[0]:.0%}–{band[1]:.0%}")
        if th is not None:
            over = th.overlays(run, site, q)
            for i, (label, t, v) in enumerate(over["lines"]):
                ax.plot(t, v, ls="--", color=palette[1 + i], label=label)
            for i, (label, t1) in enumerate(over["markers"]):
                ax.axvline(t1, ls=":", color=palette[3 + i], label=label)
        if logy and np.nanmin(line.values) > 0:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.set_title(f"{site}: {label}")
        ax.legend(fontsize=7)
        sns.despine(ax=ax)
    fig.suptitle(title or run.name)
    return fig


def plot_signal_vs_noise(
    runs: Mapping[str, _RunLike],
    *,
    site: str | None = None,
    coefficients_kind: str = "exact",
    logy: bool = False,
) -> Figure:
    """Signal learning and noise memorization of several runs side by side (e.g. single vs multi-modal).

    Left: ``max_r |γ_r|`` (or ``max_r |⟨w_r, μ⟩|``); right: ``max_{r,i} ρ_{r,i}`` (or ``max ⟨w_r, ξ_i⟩``).

    Parameters
    ----------
    runs : mapping of label to run.
    site : site group (default: each run's first site).
    coefficients_kind : ``"exact"`` (γ, ρ) or ``"proxy"`` (raw inner products).
    logy : log-scale y axes.

    Examples
    --------
    >>> import tempfile, os
    >>> root = tempfile.mkdtemp()
    >>> runs = {m: os.path.join(root, f"{m}.zarr") for m in ("single", "multi")}
    >>> for m, p in runs.items():
    ...     _ = dyn.train(dyn.load_preset("huang2024-tiny", modality=m), p)
    >>> fig = plot_signal_vs_noise(runs)
    >>> [ax.get_title() for ax in fig.axes]
    ['signal learning', 'noise memorization']
    """
    if coefficients_kind not in ("exact", "proxy"):
        raise ConfigError(f"coefficients_kind must be 'exact' or 'proxy', got {coefficients_kind!r}")
    frames = []
    for label, r in runs.items():
        r = Run.coerce(r)
        sig_q, noise_q = ("gamma", "rho") if coefficients_kind == "exact" else ("signal_inner", "noise_inner")
        sig = per_neuron(r, site, sig_q, theory=False).max("neuron")
        noise = per_neuron(r, site, noise_q, theory=False).max("neuron")
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


def plot_heatmap(
    run: _RunLike,
    *,
    site: str | None = None,
    quantity: str = "gamma",
    max_columns: int = 200,
) -> Figure:
    """Neuron × step heatmap of a quantity (reduced over probes by max |·| for signals, max for samples).

    Parameters
    ----------
    run : the run.
    site : site group (default: the run's first site).
    quantity : from :data:`QUANTITIES` or the run's theory's quantities.
    max_columns : steps are subsampled evenly to at most this many columns.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny"), path)
    >>> fig = plot_heatmap(path, quantity="rho")
    >>> fig.axes[0].get_ylabel()
    'neuron'
    """
    run = Run.coerce(run)
    site = _site(run, site)
    curves = per_neuron(run, site, quantity)
    n = curves.sizes["step"]
    idx = np.unique(np.linspace(0, n - 1, min(n, max_columns)).round().astype(int))
    frame = curves.isel(step=idx).transpose("neuron", "step").to_pandas()
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    label = curves.attrs["long_name"]
    sns.heatmap(frame, ax=ax, cmap="viridis", cbar_kws={"label": label},
                xticklabels=max(len(idx) // 10, 1), yticklabels=max(curves.sizes["neuron"] // 10, 1))
    ax.set_title(f"{run.name} / {site}: {label} per neuron")
    return fig
