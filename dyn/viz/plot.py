"""Seaborn figures of recorded dynamics. Data first, options keyword-only, each returns its figure (never shows it).

Every function takes a run (a path, an opened tree or a :class:`dyn.Run`). Generic quantities are the exact
coefficients (γ, ρ) and the raw inner products; a theory may add the quantities its proofs use
(:meth:`dyn.theory.Theory.quantities`) and overlays (its predicted growth, T₁).
"""

from __future__ import annotations

import math

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure

from ..analysis.run import Run
from ..errors import ConfigError, NotCheckable
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


def _site_list(run: Run, site: str | Sequence[str] | None) -> list[str]:
    """``None``: every site of the run (both encoders of a two-site run); else the named one(s)."""
    if site is None:
        return list(run.sites)
    return [site] if isinstance(site, str) else list(site)


def plot_coefficients(
    run: _RunLike,
    *,
    site: str | Sequence[str] | None = None,
    quantities: Sequence[str] | None = None,
    reduce: str = "max",
    band: tuple[float, float] = (0.1, 0.9),
    logy: bool = True,
    theory: str | Theory | bool | None = None,
    title: str | None = None,
) -> Figure:
    """Curves over steps: the max (or mean) over neurons with a quantile band; one row per site, one column per
    quantity.

    With a theory, its predicted stage-1 growth is overlaid (clipped to the range of the data, so it never
    squashes the curves) and its T₁ markers are drawn with distinct styles and labelled. One legend for the
    figure, below the panels.

    Parameters
    ----------
    run : the run.
    site : site group(s) (default: every site of the run).
    quantities : from :data:`QUANTITIES` or the theory's quantities (default: the theory's
        ``plot_quantities``, else ``("gamma", "rho")``).
    reduce : ``"max"`` or ``"mean"`` over neurons for the line.
    band : quantiles over neurons shaded around the line (``None`` for no band).
    logy : log-scale y axis (the default). It holds whenever the line has no negative value: points where the
        line is exactly 0 (γ and ρ at initialisation, step 0) are left out of the log axis, and a quantile band
        reaching 0 or below runs to the panel's bottom edge. Only a line with negative values (e.g. the mean of a
        signed quantity) is drawn on a linear axis, and its y label then says "linear: values < 0".
    theory : the theory whose quantities and overlays to use: None picks the run's (if any), False none.
    title : the figure title (default: the run's name).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny"), path)
    >>> fig = plot_coefficients(path, quantities=("A", "Psi"))
    >>> len(fig.axes), fig.axes[0].get_title().split(":")[0]
    (2, 'site h')
    """
    run = Run.coerce(run)
    sites = _site_list(run, site)
    if reduce not in ("max", "mean"):
        raise ConfigError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    th = _theory(run, theory)
    if th is not None and quantities is None:
        try:  # by default a theory draws its quantities only where it can compute them (not on a dependent basis)
            th.quantities(run, sites[0])
        except NotCheckable:
            th = None
    if quantities is None:
        quantities = tuple(th.plot_quantities) if th is not None and th.plot_quantities else ("gamma", "rho")
    fig = Figure(figsize=(5.2 * len(quantities), 3.3 * len(sites) + 0.9), layout="constrained")
    axes = fig.subplots(len(sites), len(quantities), squeeze=False)
    palette = sns.color_palette("colorblind")
    marker_styles = [(":", palette[3]), ("-.", palette[4]), ((0, (5, 2, 1, 2)), palette[5])]
    # one style per kind of overlay line across the figure (an upper and a lower bound never look alike)
    line_styles = [("--", palette[1]), ((0, (4, 1.5, 1, 1.5, 1, 1.5)), palette[2]), ((0, (1, 1)), palette[6])]
    kinds: dict[str, int] = {}
    handles: dict[str, object] = {}
    for row, name in zip(axes, sites):
        for ax, q in zip(row, quantities):
            curves = per_neuron(run, name, q, theory=th if th is not None else False)
            label = curves.attrs["long_name"]
            steps = curves["step"].values
            line = curves.max("neuron") if reduce == "max" else curves.mean("neuron")
            finite = line.values[np.isfinite(line.values)]
            log = logy and finite.size > 0 and bool((finite >= 0).all() and (finite > 0).any())
            shown = np.where(line.values > 0, line.values, np.nan) if log else line.values  # no 0 on a log axis
            ax.plot(steps, shown, color=palette[0], lw=2, label=f"{reduce} over neurons")
            hi_data = np.nanmax(line.values)
            bottom = np.nanmin(shown) if log else None
            if band is not None:
                lo, hi = curves.quantile(band[0], "neuron").values, curves.quantile(band[1], "neuron").values
                ax.fill_between(steps, lo, hi, color=palette[0], alpha=0.2,
                                label=f"neurons, {band[0]:.0%}–{band[1]:.0%} quantiles")
                if log and (lo > 0).any():
                    bottom = min(bottom, float(np.nanmin(lo[lo > 0])))
            over = th.overlays(run, name, q) if th is not None else {"lines": [], "markers": []}
            for what, t, v in over["lines"]:
                v = np.asarray(v, dtype=float)
                inside = v <= hi_data * (1.5 if log else 1.1)  # the prediction stops where it leaves the data
                ls, colour = line_styles[kinds.setdefault(what.split(" (")[0], len(kinds)) % len(line_styles)]
                ax.plot(np.asarray(t)[inside], v[inside], ls=ls, color=colour, lw=1.6, label=what)
            for i, (what, t1) in enumerate(over["markers"]):
                ls, colour = marker_styles[i % len(marker_styles)]
                ax.axvline(t1, ls=ls, color=colour, lw=1.5, label=f"{what} = {t1:.4g}")
                ax.annotate(f"{what}", (t1, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10 - 10 * i),
                            textcoords="offset points", fontsize=7, color=colour)
            if log:
                ax.set_yscale("log")  # a band at or below 0 is clipped to the bottom edge
                ax.set_ylim(bottom=bottom / 1.5)
            ax.set_xlabel("step")
            ax.set_ylabel(label + (" (linear: values < 0)" if logy and not log else ""))
            ax.set_title(f"site {name}: {label}")
            sns.despine(ax=ax)
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
               ncol=min(len(handles), 3), fontsize=8, frameon=False)
    fig.suptitle(title or f"{run.name}: {reduce} over neurons per step")
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
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    names = {"exact": (r"$\max_r\,|\gamma_r|$", r"$\max_{r,i}\,\rho_{r,i}$"),
             "proxy": (r"$\max_r\,|\langle w_r, \mu\rangle|$", r"$\max_{r,i}\,\langle w_r, \xi_i\rangle$")}
    where = "site " + site if site else "first site of each run"
    for ax, panel, ylabel in zip(axes, ("signal learning", "noise memorization"), names[coefficients_kind]):
        sns.lineplot(data=data[data["panel"] == panel], x="step", y="value", hue="run", ax=ax, palette="colorblind",
                     legend=panel == "signal learning")
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        sns.despine(ax=ax)
    legend = axes[0].get_legend()
    if legend is not None:  # one legend for both panels, below them, never over a curve
        handles, labels = axes[0].get_legend_handles_labels()
        legend.remove()
        fig.legend(handles, labels, loc="outside lower center", ncol=max(len(labels), 1), frameon=False)
    fig.suptitle(f"signal learning vs noise memorization ({'exact γ, ρ' if coefficients_kind == 'exact' else 'raw inner products'}; {where})")
    return fig


def _signed_reduction(run: Run, site: str, quantity: str, theory: Theory | None) -> tuple[xr.DataArray, str]:
    """``(step, neuron)`` with the sign kept: the value of largest magnitude over signals (γ, ⟨w, μ⟩), the
    maximum over samples (ρ, ⟨w, ξ⟩, and any other probe dimension); and the words for that reduction."""
    da, label = _values(run, site, quantity, theory)
    probe = next(d for d in da.dims if d not in ("step", "neuron"))
    if probe == "signal":
        pick = abs(da).argmax(probe)
        out, how = da.isel({probe: pick}), "signed value of largest |·| over signals k"
    else:
        out, how = da.max(probe), f"max over {probe}s"
    out.attrs["long_name"] = label
    return out.transpose("step", "neuron"), how


def plot_heatmap(
    run: _RunLike,
    *,
    site: str | Sequence[str] | None = None,
    quantity: str = "gamma",
    max_columns: int = 400,
    linear_width: float = 1e-3,
) -> Figure:
    """Neuron × step heatmap of a quantity, one row per site, on a symmetric log colour scale.

    The colour scale keeps the sign (diverging colours, symmetric log: linear within ``linear_width`` times the
    largest magnitude) and, for γ and ρ, is the same for both quantities and every site of the run, so the two
    heatmaps of a run can be compared colour for colour. The reduction over probes is stated on the colour bar;
    steps are a numeric axis (ticks at round numbers).

    Parameters
    ----------
    run : the run.
    site : site group(s) (default: every site of the run).
    quantity : from :data:`QUANTITIES` or the run's theory's quantities.
    max_columns : steps are subsampled evenly to at most this many columns.
    linear_width : the linear part of the colour scale, as a fraction of the largest magnitude.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny"), path)
    >>> fig = plot_heatmap(path, quantity="rho")
    >>> fig.axes[0].get_ylabel(), fig.axes[0].get_xlabel()
    ('neuron', 'step')
    """
    from matplotlib.colors import SymLogNorm
    from matplotlib.ticker import MaxNLocator

    run = Run.coerce(run)
    sites = _site_list(run, site)
    th = _theory(run, None)
    data = {name: _signed_reduction(run, name, quantity, th) for name in sites}
    shared = ("gamma", "rho") if quantity in ("gamma", "rho") else (quantity,)
    vmax = max(float(np.nanmax(np.abs(_signed_reduction(run, name, q, th)[0].values)))
               for name in run.sites for q in shared)
    vmax = vmax if vmax > 0 else 1.0
    norm = SymLogNorm(linthresh=vmax * linear_width, vmin=-vmax, vmax=vmax, base=10)
    fig = Figure(figsize=(9, 2.6 * len(sites) + 0.8), layout="constrained")
    axes = fig.subplots(len(sites), 1, squeeze=False)[:, 0]
    mesh = None
    for ax, name in zip(axes, sites):
        values, how = data[name]
        n = values.sizes["step"]
        idx = np.unique(np.linspace(0, n - 1, min(n, max_columns)).round().astype(int))
        steps = values["step"].values[idx].astype(float)
        edges = np.concatenate([steps[:1] - 0.5, (steps[1:] + steps[:-1]) / 2, steps[-1:] + 0.5])
        rows = np.arange(values.sizes["neuron"] + 1) - 0.5
        mesh = ax.pcolormesh(edges, rows, values.values[idx].T, cmap="RdBu_r", norm=norm, shading="flat")
        ax.set_ylabel("neuron")
        ax.set_xlabel("step")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
        ax.invert_yaxis()
        ax.set_title(f"site {name}: {values.attrs['long_name']} per neuron ({how})")
    label = data[sites[0]][0].attrs["long_name"]
    scale = "one colour scale for γ and ρ of all sites" if len(shared) > 1 else "one colour scale for all sites"
    bar = fig.colorbar(mesh, ax=list(axes), label=label)  # short: the label must fit beside one site's axes
    bar.set_ticks(_symlog_ticks(vmax, vmax * linear_width))
    fig.suptitle(f"{run.name}: {label}\n(symmetric log colours, linear within ±{vmax * linear_width:.1g}; {scale})",
                 fontsize="medium")
    return fig


def _symlog_ticks(vmax: float, linthresh: float) -> list[float]:
    """Colour-bar ticks of a symmetric log scale: 0 and ± every decade above the linear part (never the decades
    at its edge, whose labels would overlap the 0 label).

    Examples
    --------
    >>> _symlog_ticks(2.0, 2e-3)
    [-1.0, -0.1, -0.01, 0.0, 0.01, 0.1, 1.0]
    """
    top = math.floor(math.log10(vmax))
    decades = [10.0 ** k for k in range(top, math.floor(math.log10(linthresh)), -1) if 10.0 ** k > 3 * linthresh]
    if not decades:
        return [-vmax, 0.0, vmax]
    return [-d for d in decades] + [0.0] + decades[::-1]
