"""Figures of claims across runs: the phase diagram with the fitted boundary, its CI band and the theory's line, and
the data-collapse plot. Each takes a :class:`dyn.theory.transitions.TransitionFit` and returns its figure; the
statistics live in :mod:`dyn.analysis.transitions`, these functions only draw them."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from ..analysis.transitions import LEVEL
from ..theory.transitions import TransitionFit

__all__ = ["plot_transition", "plot_collapse"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _log_axis(ax, which: str) -> None:
    """A log axis labelled at 1, 2, 5 × 10^k in plain numbers (a sweep's axes often span less than a decade)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    lo, hi = (ax.get_xlim() if which == "x" else ax.get_ylim())
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    # 1, 2, 5 x 10^k over a few decades; only the powers of ten (thinned) over many, so labels never overlap
    subs = (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=8))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _cell_table(fit: TransitionFit, cols: list[str]):
    t = fit.transition
    frame = fit.runs[cols + [t.outcome]].astype(float)
    return frame.groupby(cols, as_index=False)[t.outcome].mean()


def plot_transition(fit: TransitionFit, *, title: str | None = None) -> Figure:
    """The phase diagram of one transition on continuous (log) axes.

    With two or more varying fields: the grid's cells coloured by the mean outcome over seeds, the fitted boundary
    (where the outcome crosses half its range) with its bootstrap band, and the theory's line (``variable =
    threshold`` when the theorem gives one, else the theory's exponents through the fitted boundary's centre).
    With fewer: the outcome against the theory's variable, the fitted curve, the fitted boundary and the theory's
    threshold. Other varying fields are averaged out in the colours (the fit uses every run).
    """
    t = fit.transition
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    title = title or t.name
    if fit.problem or fit.runs.empty:
        ax.text(0.5, 0.5, f"not fitted: {fit.problem or 'no runs'}", ha="center", va="center", wrap=True)
        ax.set_axis_off()
        ax.set_title(title)
        return fig
    loc = fit.location
    if len(fit.fields) >= 2 and loc is not None:
        _plane(ax, fig, fit)
    else:
        _line(ax, fit)
    verdict = "spans the transition" if loc is not None and loc.spanned else "does not span the transition"
    ax.set_title(f"{title}: {t.variable_label or 'variable'} ({verdict})", fontsize=10)
    return fig


def _plane(ax, fig: Figure, fit: TransitionFit) -> None:
    t, loc = fit.transition, fit.location
    i, j = (loc.reference, 1 - loc.reference) if len(fit.fields) == 2 else _pair(fit)
    fx, fy = fit.fields[j], fit.fields[i]  # the reference field on the vertical axis: the boundary is a function
    cells = _cell_table(fit, [fx, fy])
    # the colour scale spans the theory's two sides, so a grid that stays on one side looks like one
    values = cells[t.outcome].to_numpy()
    vmin = min(t.low, float(values.min()))
    vmax = max(t.high_min if t.high_min is not None else float(values.max()), float(values.max()))
    sc = ax.scatter(cells[fx], cells[fy], c=values, cmap="coolwarm", s=140, marker="s", vmin=vmin,
                    vmax=vmax if vmax > vmin else vmin + 1.0, edgecolors="k", linewidths=0.3, zorder=2)
    fig.colorbar(sc, ax=ax, label=f"{t.outcome} (mean over seeds)")
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    ax.set_xlabel(fx)
    ax.set_ylabel(fy)
    lx = np.log(cells[fx].to_numpy())
    grid = np.linspace(lx.min() - 0.3 * np.ptp(lx), lx.max() + 0.3 * np.ptp(lx), 100)
    others = [k for k in range(len(fit.fields)) if k not in (i, j)]
    rest = np.array([np.median(np.log(fit.runs[fit.fields[k]].astype(float))) for k in others])

    def boundary(b0: float, b: np.ndarray) -> np.ndarray:  # log fy where b0 + b·log x = 0
        return -(b0 + b[j] * grid + (b[others] @ rest if others else 0.0)) / b[i]

    ylim = np.log(cells[fy].to_numpy())
    pad = 0.5 * max(np.ptp(ylim), 1e-9)
    if loc.spanned:
        ax.plot(np.exp(grid), np.exp(boundary(loc.intercept, loc.coef)), color="k", lw=2, label="fitted boundary")
        if len(loc.boot):
            lines = np.array([boundary(b0, b) for b0, b in zip(loc.boot_intercept, loc.boot)
                              if np.isfinite(b).all() and b[i] != 0])
            a = (1 - LEVEL) / 2
            lo, hi = np.nanquantile(lines, a, axis=0), np.nanquantile(lines, 1 - a, axis=0)
            ax.fill_between(np.exp(grid), np.exp(lo), np.exp(hi), color="k", alpha=0.15,
                            label=f"{LEVEL:.0%} bootstrap band")
    e = np.array(t.exponents(fit.fields))
    if e[i] != 0:
        fixed = sum(float(ex) * math.log(float(fit.runs[f].iloc[0])) for f, ex in t.variable.items()
                    if f not in fit.fields)
        if t.threshold is not None:
            level, how = math.log(t.threshold) - fixed, f"theory: {t.variable_label or 'variable'} = {t.threshold:g}"
        elif math.isfinite(fit.boundary):
            level, how = fit.boundary - fixed, "theory's exponents through the fitted boundary"
        else:
            level = None
        if level is not None:
            ys = (level - e[j] * grid - (e[others] @ rest if others else 0.0)) / e[i]
            ax.plot(np.exp(grid), np.exp(ys), color="tab:green", lw=2, ls="--", label=how)
    ax.set_xlim(np.exp(lx.min() - 0.15 * np.ptp(lx)), np.exp(lx.max() + 0.15 * np.ptp(lx)))
    ax.set_ylim(np.exp(ylim.min() - pad), np.exp(ylim.max() + pad))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")


def _pair(fit: TransitionFit) -> tuple[int, int]:
    spread = [float(np.ptp(np.log(fit.runs[f].astype(float)))) for f in fit.fields]
    order = np.argsort(spread)[::-1]
    return int(order[0]), int(order[1])


def _line(ax, fit: TransitionFit) -> None:
    t = fit.transition
    y = fit.runs[t.outcome].astype(float).to_numpy()
    v = fit.v
    ax.scatter(np.exp(v), y, s=18, alpha=0.7, label="runs")
    _log_axis(ax, "x")
    ax.set_xlabel(t.variable_label or "variable")
    ax.set_ylabel(t.outcome)
    if fit.r is not None and math.isfinite(fit.boundary):
        from ..analysis.transitions import fit_logistic

        b0, b = fit_logistic(v[:, None], fit.r)
        grid = np.linspace(v.min(), v.max(), 200)
        loc = fit.location
        ax.plot(np.exp(grid), loc.bottom + (loc.top - loc.bottom) * _sigmoid(b0 + b[0] * grid), color="k",
                label="fitted curve")
        ax.axvline(math.exp(fit.boundary), color="k", ls=":", label="fitted boundary")
    if t.threshold is not None:
        ax.axvline(t.threshold, color="tab:green", ls="--", label=f"theory: {t.threshold:g}")
    ax.legend(fontsize=8)


def plot_collapse(fit: TransitionFit, *, title: str | None = None) -> Figure:
    """The outcome of every run against the theory's variable and against the wrong variable, side by side, each
    with its best logistic curve (the spread around it is the collapse verdict's number)."""
    from ..analysis.transitions import fit_logistic

    t = fit.transition
    panels = [(fit.v, t.variable_label or "theory's variable")]
    if fit.w is not None:
        panels.append((fit.w, t.wrong_label or "wrong variable"))
    fig = Figure(figsize=(5.0 * len(panels), 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    y = fit.runs[t.outcome].astype(float).to_numpy() if not fit.runs.empty else np.array([])
    color_by = fit.fields[0] if fit.fields else None
    c = np.log(fit.runs[color_by].astype(float)) if color_by else None
    for ax, (v, label) in zip(axes, panels):
        if v is None or not len(y):
            ax.set_axis_off()
            continue
        sc = ax.scatter(np.exp(v), y, c=c, cmap="viridis", s=18, alpha=0.8)
        if fit.r is not None:
            b0, b = fit_logistic(v[:, None], fit.r)
            grid = np.linspace(v.min(), v.max(), 200)
            loc = fit.location
            ax.plot(np.exp(grid), loc.bottom + (loc.top - loc.bottom) * _sigmoid(b0 + b[0] * grid), color="k")
        _log_axis(ax, "x")
        ax.set_xlabel(label)
        ax.set_ylabel(t.outcome)
    if color_by:
        fig.colorbar(sc, ax=axes[-1], label=f"log {color_by}")
    spread = (f": spread {fit.collapse.spread:.3g} vs {fit.collapse.spread_wrong:.3g}" if fit.collapse is not None
              else "")
    fig.suptitle(f"{title or t.name}: data collapse{spread}", fontsize=10)
    return fig
