"""The report of a run no theory judges (a user's own model): the summary with its column definitions, how exact
each site's decomposition is ("projection (coverage …)" wherever it is not exact, titles included), every logged
scalar as a figure with its last logged value, and the per-sample views (:mod:`dyn.analysis.samples`).

Used by :func:`dyn.viz.report.write_report` (Markdown) and :func:`dyn.viz.html.write_html_report` (HTML).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..analysis.coefficients import describe
from ..analysis.run import Run
from ..analysis.samples import per_sample_values, sample_table
from ..errors import ConfigError
from ..store.outputs import save_figure

__all__ = ["COLUMN_DEFINITIONS", "logged_scalars", "last_logged", "per_run", "markdown_section", "html_section",
           "scalar_figures"]

#: What each column of :func:`dyn.summary` means, shown under the table.
COLUMN_DEFINITIONS = {
    "site": "the recorded weight matrix (a store group)",
    "neurons / features": "rows and columns of the weight (filters and channels·kernel for a conv layer)",
    "signals / samples": "signal vectors μ_k and noise probes ξ_i (samples, or patches of them)",
    "steps / last_step": "recorded steps and the last one",
    "method / rank": "how γ, ρ were solved: exact (independent basis) or a minimum-norm projection, and the basis rank",
    "coverage_min / coverage_median": "over neurons, the share of ‖w(T) − w(0)‖² inside the probes' span at the last "
                                      "step (1 = the probes explain the whole change)",
    "coverage_source": "where the coverage comes from (recorded weight change, stored weights)",
    "gamma_max / gamma_mean": "max and mean over neurons and signals of |γ| at the last step (signal learning)",
    "rho_max / rho_mean": "max and mean over neurons and samples of |ρ| at the last step (noise memorization)",
    "gamma_max_growth / rho_max_growth": "the last max over the first positive max after initialisation",
    "winner": "which max is larger at the last step: signal, noise or tie",
    "signal_dominates_from / noise_dominates_from": "the step from which that max stays larger until the end",
    "gamma_t1 / rho_t1": "the phase change (T₁) of the log-max curve, NaN when there is none",
    "noise_vs_random": "largest change of a noise inner product over that of a random direction with the same norm "
                       "(> 1: the noise probes moved more than chance)",
}


def logged_scalars(run: Run) -> list[str]:
    """Names of the per-step scalars logged in ``run`` (root variables along ``step``), in store order."""
    return [str(k) for k, v in run.tree.ds.data_vars.items() if v.dims == ("step",)]


def last_logged(values: np.ndarray | None) -> float | None:
    """The last finite value of a logged scalar (with ``log_at="previous"`` the final step holds NaN), or None.

    Examples
    --------
    >>> last_logged(np.array([2.0, 1.5, np.nan])), last_logged(np.array([np.nan])), last_logged(None)
    (1.5, None, None)
    """
    if values is None:
        return None
    finite = np.flatnonzero(np.isfinite(values))
    return float(values[finite[-1]]) if finite.size else None


def _markdown(frame: pd.DataFrame) -> str:
    """A plain Markdown table (no optional dependency)."""
    cols = [str(c) for c in frame.columns]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += ["| " + " | ".join(str(v).replace("|", "\\|") for v in rec) + " |" for rec in frame.itertuples(index=False)]
    return "\n".join(rows)


def _scalars_figure(run: Run, name: str) -> Figure | None:
    names = logged_scalars(run)
    if not names:
        return None
    fig = Figure(figsize=(4.2 * min(len(names), 3), 3.0 * -(-len(names) // 3)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(-(-len(names) // 3), min(len(names), 3))).ravel()
    steps = np.asarray(run.steps)
    for ax, key in zip(axes, names):
        values = run.scalar(key)
        keep = np.isfinite(values)
        ax.plot(steps[keep], values[keep], color="C0", lw=1.5)
        last = last_logged(values)
        ax.set_title(f"{key} (last logged {last:.4g})" if last is not None else f"{key} (never finite)", fontsize=9)
        ax.set_xlabel("step")
        if keep.any() and (values[keep] > 0).all() and values[keep].max() / values[keep].min() > 100:
            ax.set_yscale("log")
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[len(names):]:
        ax.set_axis_off()
    fig.suptitle(f"{name}: every logged scalar", fontsize=10)
    return fig


def markdown_section(name: str, run: Run, table: pd.DataFrame, tmp: Path, *, top: int = 10,
                     shuffled: Any = None) -> list[str]:
    """Report lines after the summary table: column definitions, each site's decomposition, the controls (random
    directions and random signals recorded in the run; a shuffled-label run when given), logged scalars and the
    per-sample views (figures written to ``tmp``)."""
    from . import plot
    from .samples import plot_memorized_curves, plot_top_samples

    lines = ["Columns: " + "; ".join(f"**{k}**: {v}" for k, v in COLUMN_DEFINITIONS.items()) + ".", ""]
    values = {key: last_logged(run.scalar(key)) for key in logged_scalars(run)}
    if values:
        lines += ["**Last logged values**: " + ", ".join(
            f"final {k} {v:.4g}" if v is not None else f"final {k} – (never finite)" for k, v in values.items())
            + ".", ""]
        fig = _scalars_figure(run, name)
        save_figure(fig, tmp, f"{name}-scalars")
        lines += [f"![{name} logged scalars]({name}-scalars.png)", ""]
    from ..analysis.controls import controls, statement

    checks = controls(run, shuffled=shuffled)
    for site in run.sites:
        c = run.coefficients(site)
        kind = describe(c)
        lines += [f"### {name}, site {site}", "", f"γ and ρ: {kind}.", "",
                  f"**More than chance?** {statement(checks, site)} (final changes of the raw inner products over "
                  "those of the controls; `dyn.analysis.controls`).", ""]
        save_figure(plot.plot_coefficients(run, site=site, theory=False,
                                           title=f"{name}: {site} (γ, ρ: {describe(c, short=True)})"),
                    tmp, f"{name}-{site}-coefficients")
        lines += [f"![{name} {site} coefficients]({name}-{site}-coefficients.png)", ""]
        samples = sample_table(run, site)
        shown = [col for col in ("rank", "sample", "label", "patch_image", "patch_row", "patch_col", "rho_max",
                                 "onset", "memorized", "noise_change", "above_random") if col in samples]
        shown += [col for col in samples.columns if col not in shown and col not in ("patch_pos",)]
        head = samples.head(top)[shown].map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
        memorized = int(samples["memorized"].sum())
        above = (f"; {int(samples['above_random'].sum())} moved more than any random direction "
                 f"(largest random change {samples.attrs['random_change']:.3g})" if "above_random" in samples else "")
        lines += [f"**Which samples are memorized** ({memorized} of {len(samples)} end above the threshold "
                  f"{samples.attrs['threshold']:.3g}, {samples.attrs['threshold_source']}{above}; ρ: "
                  f"{describe(c, short=True)}). The {len(head)} most memorized:", "",
                  _markdown(head), "", _per_sample_note(_per_sample_names(run)), ""]
        save_figure(plot_top_samples(run, site), tmp, f"{name}-{site}-top-samples")
        save_figure(plot_memorized_curves(run, site), tmp, f"{name}-{site}-memorized")
        lines += [f"![{name} {site} most memorized samples]({name}-{site}-top-samples.png)", "",
                  f"![{name} {site} memorized first]({name}-{site}-memorized.png)", ""]
    return lines


def per_run(shuffled: Any, n: int) -> list[Any]:
    """``shuffled`` as one entry per run: None, one control for every run, or a sequence with one (or None) per run.

    Examples
    --------
    >>> per_run(None, 2), per_run("s.zarr", 2), per_run(["a.zarr", None], 2)
    ([None, None], ['s.zarr', 's.zarr'], ['a.zarr', None])
    """
    if shuffled is None or isinstance(shuffled, (str, os.PathLike, Run)) or not isinstance(shuffled, Sequence):
        return [shuffled] * n
    if len(shuffled) != n:
        raise ConfigError(f"shuffled has {len(shuffled)} entries for {n} runs (give one control, or one per run)")
    return list(shuffled)


def _png_uri(fig: Figure) -> str:
    """A matplotlib figure as an inline PNG (``data:`` URI): the HTML report stays one self-contained file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _per_sample_names(run: Run) -> list[str]:
    """Names of the values logged per training example (``rec.log_per_sample``), in store order."""
    extra = per_sample_values(run)
    return [] if extra is None else [str(k) for k in extra.data_vars]


def _per_sample_note(names: list[str]) -> str:
    """Which per-example values were logged, or that none were (plain text; the same words in both reports)."""
    if not names:
        return ("No per-sample values were logged: rec.log_per_sample(loss=per_sample_loss) adds each example's "
                "loss or margin to this table.")
    return f"Logged per sample (rec.log_per_sample), last logged value per example: {', '.join(names)}."


def html_section(run: Run, *, key: str = "0", top: int = 10, shuffled: Any = None) -> list[str]:
    """HTML blocks for a run no theory judges: the summary with its column definitions, every logged scalar's last
    value, and per site its decomposition, the controls' statement with its margins, the most memorized samples
    (table and figure) and the "memorized first" curves. ``key`` makes the element ids unique per run;
    ``shuffled``: the shuffled-label control run, when given."""
    from ..analysis.controls import controls, statement
    from ..analysis.summary import summary
    from .samples import plot_memorized_curves, plot_top_samples

    table = summary(run).map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
    out = ["<h3>Theory-free summary (dyn.summary)</h3>",
           f'<div class="wide" id="summary-{key}">' + table.to_html(index=False, classes="summary-table", border=0)
           + "</div>",
           f'<dl class="small column-definitions" id="columns-{key}">' + "".join(
               f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in COLUMN_DEFINITIONS.items()) + "</dl>"]
    values = {name: last_logged(run.scalar(name)) for name in logged_scalars(run)}
    out.append(f'<p class="last-logged" id="last-logged-{key}">' + (html.escape("Last logged values: " + ", ".join(
        f"final {k} {v:.4g}" if v is not None else f"final {k} –" for k, v in values.items())) if values else
        "No scalars were logged (<code>rec.log(loss=...)</code> adds them).") + "</p>")
    checks = controls(run, shuffled=shuffled)
    logged = _per_sample_names(run)
    for site in run.sites:
        c = run.coefficients(site)
        samples = sample_table(run, site)
        cols = [col for col in ("rank", "sample", "label", "patch_image", "patch_row", "patch_col", "rho_max",
                                "onset", "memorized", "above_random", *logged) if col in samples]
        memorized = int(samples["memorized"].sum())
        where = f'id="site-{key}-{html.escape(site)}" data-site="{html.escape(site)}"'
        out += [f'<section class="site-section" {where}>',
                f"<h3>Site {html.escape(site)}: decomposition, controls, which samples are memorized</h3>",
                f'<p class="decomposition">γ and ρ: {html.escape(describe(c))}.</p>',
                f'<p class="controls">More than chance? {html.escape(statement(checks, site))}. <span class="small">'
                "Margins: final changes of the raw inner products over those of the controls "
                "(dyn.analysis.controls).</span></p>",
                f'<p class="samples-note">{memorized} of {len(samples)} samples end above the threshold '
                f"{samples.attrs['threshold']:.3g} ({html.escape(samples.attrs['threshold_source'])}). "
                f"The {min(top, len(samples))} most memorized:</p>",
                samples.head(top)[cols].map(lambda v: f"{v:.4g}" if isinstance(v, float) else v).to_html(
                    index=False, classes="samples-table", border=0),
                f'<p class="per-sample">{html.escape(_per_sample_note(logged))}</p>',
                f'<img class="top-samples" alt="site {html.escape(site)}: the most memorized samples" '
                f'src="{_png_uri(plot_top_samples(run, site))}">',
                f'<img class="memorized-first" alt="site {html.escape(site)}: memorized first" '
                f'src="{_png_uri(plot_memorized_curves(run, site))}">',
                "</section>"]
    return out


def scalar_figures(run: Run, name: str) -> list[Any]:
    """One plotly figure per logged scalar (for the HTML report), titled with its last logged value."""
    import plotly.graph_objects as go

    figs = []
    steps = np.asarray(run.steps)
    for key in logged_scalars(run):
        values = run.scalar(key)
        keep = np.isfinite(values)
        last = last_logged(values)
        fig = go.Figure(go.Scatter(x=steps[keep], y=values[keep], mode="lines", name=key))
        fig.update_layout(title=f"{name}: {key} (last logged {last:.4g})" if last is not None else f"{name}: {key}",
                          xaxis_title="step", yaxis_title=key)
        figs.append((key, fig))
    return figs
