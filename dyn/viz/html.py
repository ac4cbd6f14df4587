"""The interactive HTML report: one self-contained file (scripts inlined, opens without network access).

It holds the summary table comparing the runs side by side, the claim tables with their statements, and zoomable
figures per run and site: per-neuron traces of the exact coefficients (hover names the neuron), their maximum, the
theory's T₁ markers, and a log/linear toggle on every figure.

Figures are drawn with Plotly: its JavaScript bundle is inlined once per report (about 4.7 MB, whatever the number
of figures), it works from ``file://`` with no server, zoom/pan/hover are built in, and the Python package is pure
and actively maintained (MIT). Bokeh would give a smaller file (about 1.3 MB) but needs custom JavaScript for a log
toggle and pulls a web server (tornado) into the dependencies; uPlot is smaller still but has no Python side.
"""

from __future__ import annotations

import html
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..analysis.run import Run
from ..analysis.coefficients import describe
from ..analysis.thin import thin_indices
from .theory_free import html_section, last_logged, per_run, scalar_figures
from ..theory.base import Theory
from ..theory.compare import compare, theory_or_none

__all__ = ["write_html_report", "MAX_NEURONS", "MAX_POINTS"]

#: per-neuron traces drawn per figure (the neurons with the largest final value; the maximum is always drawn)
MAX_NEURONS = 64
#: at most this many steps per trace (evenly thinned, last step kept)
MAX_POINTS = 1000

#: the Okabe-Ito colour-blind-safe palette (black left out), one colour per (run, site) curve pair
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")

_VERDICT_COLOURS = {"holds": "#d9f2d9", "violated": "#f8d7d7", "not checkable": "#eeeeee"}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1300px;padding:1em 2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;vertical-align:top;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.fig{border:1px solid #e3e3e3;border-radius:4px;margin:.5em 0 1.2em;padding:.3em}
.toggle{font-size:12px;margin:.2em .4em} dt{font-weight:600} .small{color:#666;font-size:12px}
.wide{overflow-x:auto} img{max-width:100%;height:auto;display:block;margin:.5em 0 1em}
"""

_TOGGLE_JS = """
function dynToggle(id){
  var gd=document.getElementById(id); var logNow=gd.layout.yaxis.type==='log';
  Plotly.relayout(gd,{'yaxis.type':logNow?'linear':'log','yaxis.autorange':true});
  document.getElementById(id+'-toggle').textContent=logNow?'y: linear (click for log)':'y: log (click for linear)';
}
"""


def _thin(n: int, values: np.ndarray | None = None) -> np.ndarray:
    """At most ~MAX_POINTS of ``n`` steps: with ``values`` (``(n,)`` or ``(n, k)``) min-max decimation that keeps
    the first and last steps and every spike (:func:`dyn.analysis.thin.thin_indices`), else an even stride."""
    return thin_indices(n if values is None else values, MAX_POINTS)


def _figure_div(fig: Any, div_id: str, *, log: bool, note: str = "") -> str:
    fig.update_layout(yaxis_type="log" if log else "linear", margin=dict(l=60, r=20, t=50, b=45), height=420,
                      hovermode="closest", legend=dict(orientation="h", y=-0.18))
    # 1e-4, never Plotly's SI prefixes: "100μ" on a γ axis reads as a multiple of the signal vector μ
    fig.update_xaxes(exponentformat="e")
    fig.update_yaxes(exponentformat="e")
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                      config={"displaylogo": False, "responsive": True})
    label = "y: log (click for linear)" if log else "y: linear (click for log)"
    return (f'<div class="fig"><button class="toggle" id="{div_id}-toggle" onclick="dynToggle(\'{div_id}\')">'
            f'{label}</button>{div}' + (f'<div class="small">{html.escape(note)}</div>' if note else "") + "</div>")


def _coefficient_figure(run: Run, site: str, quantity: str, theory: Theory | None, title: str) -> tuple[Any, str]:
    import plotly.graph_objects as go

    c = run.coefficients(site)[quantity]
    probe = "signal" if quantity == "gamma" else "sample"
    values = np.asarray(c.transpose("step", "neuron", probe).values)
    if quantity == "gamma":
        per_neuron, what = np.abs(values).max(axis=2), "max over signals k of |γ_rk|"
    else:
        per_neuron, what = values.max(axis=2), "max over samples i of ρ_ri"
    steps = np.asarray(run.steps)
    idx = _thin(len(steps), per_neuron)
    neurons = np.asarray(c["neuron"].values)
    order = np.argsort(-per_neuron[-1])[:MAX_NEURONS] if len(steps) else []
    symbol = "|γ|" if quantity == "gamma" else "ρ"
    fig = go.Figure()
    for r in order:
        fig.add_trace(go.Scatter(
            x=steps[idx], y=per_neuron[idx, r], mode="lines", name=f"neuron {neurons[r]}", showlegend=False,
            line=dict(width=0.8, color="rgba(31,119,180,0.35)" if quantity == "gamma" else "rgba(214,39,40,0.35)"),
            hovertemplate=f"neuron {neurons[r]}<br>step %{{x}}<br>{symbol} %{{y:.4g}}<extra></extra>"))
    fig.add_trace(go.Scatter(x=steps[idx], y=per_neuron[idx].max(axis=1), mode="lines", name=f"max over neurons",
                             line=dict(width=2.5, color="#1f77b4" if quantity == "gamma" else "#d62728"),
                             hovertemplate=f"max over neurons<br>step %{{x}}<br>{symbol} %{{y:.4g}}<extra></extra>"))
    for label, step in _markers(run, site, theory):
        fig.add_vline(x=step, line_dash="dash" if "formula" in label else "dot", line_color="#555",
                      annotation_text=f"{label} = {step:.4g}", annotation_position="top")
    fig.update_layout(title=title, xaxis_title="step", yaxis_title=f"{symbol} per neuron ({what})")
    shown = len(order)
    note = (f"{what}; one thin line per neuron ({shown} of {len(neurons)} neurons, largest final value first), "
            f"bold: max over neurons. Hover a line for its neuron; drag to zoom, double-click to reset.")
    return fig, note


def _markers(run: Run, site: str, theory: Theory | None) -> list[tuple[str, float]]:
    if theory is None:
        return []
    try:
        return [(str(label), float(step)) for label, step in theory.overlays(run, site, "").get("markers", [])]
    except Exception:  # markers are decoration: a theory that cannot place them leaves the figure unmarked
        return []


def _loss_figure(runs: Sequence[Run], names: Sequence[str]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, run in zip(names, runs):
        loss = run.scalar("loss")
        if loss is None:
            continue
        idx = _thin(len(loss), loss)
        fig.add_trace(go.Scatter(x=np.asarray(run.steps)[idx], y=loss[idx], mode="lines", name=name,
                                 hovertemplate=f"{html.escape(name)}<br>step %{{x}}<br>loss %{{y:.4g}}<extra></extra>"))
    fig.update_layout(title="training loss", xaxis_title="step", yaxis_title="loss")
    return fig


def _versus_figure(runs: Sequence[Run], names: Sequence[str]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    k = -1
    for name, run in zip(names, runs):
        for site in run.sites:
            k += 1  # one colour per (run, site): multi/h and multi/g must not look alike
            c = run.coefficients(site)
            g = np.abs(np.asarray(c["gamma"].values)).max(axis=(1, 2))
            r = np.asarray(c["rho"].values).max(axis=(1, 2))
            idx = _thin(len(run.steps), np.stack([g, r], 1))
            steps, g, r = np.asarray(run.steps)[idx], g[idx], r[idx]
            colour = _COLOURS[k % len(_COLOURS)]
            fig.add_trace(go.Scatter(x=steps, y=g, mode="lines", name=f"{name} / {site}: max |γ|",
                                     line=dict(color=colour, width=2)))
            fig.add_trace(go.Scatter(x=steps, y=r, mode="lines", name=f"{name} / {site}: max ρ",
                                     line=dict(color=colour, width=2, dash="dash")))
    fig.update_layout(title="signal learning (max |γ|, solid) vs noise memorization (max ρ, dashed)",
                      xaxis_title="step", yaxis_title="max over neurons and probes")
    return fig


def _cell(v: Any) -> str:
    if isinstance(v, float):
        text, cls = ("–" if not math.isfinite(v) else f"{v:.4g}"), ' class="num"'
    elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        text, cls = str(v), ' class="num"'
    else:
        text, cls = ("–" if v is None else str(v)), ""
    return f"<td{cls}>{html.escape(text)}</td>"


#: regime keys shown in words (others: underscores become spaces)
_REGIME_WORDS = {"observed_winner": "leader observed", "predicted_winner": "leader predicted",
                 "at_step": "observed at step", "reached_T1": "run reached T₁", "T1": "T₁ (formula)",
                 "max_gamma": "max |γ| there", "max_rho": "max ρ there", "ratio_gamma_over_rho": "max |γ| / max ρ",
                 "assumptions_met": "assumptions met", "assumptions_unmet": "assumptions not met",
                 "agrees": "prediction agrees"}


def _regime_rows(regime: dict[str, Any]) -> list[tuple[str, Any]]:
    """The theory's regime as table rows in words: no Python reprs (lists joined, booleans as yes/no)."""
    rows = []
    for key, value in regime.items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, (list, tuple)):
            value = ", ".join(str(v).removeprefix("assumption.") for v in value) or "none"
        elif value is None:
            value = "–"
        elif isinstance(value, dict):
            value = "; ".join(f"{k}: {v}" for k, v in value.items())
        rows.append((_REGIME_WORDS.get(key, key.replace("_", " ")), value))
    return rows


def _summary_table(runs: Sequence[Run], names: Sequence[str], tables: Sequence[pd.DataFrame]) -> str:
    rows: dict[str, list[Any]] = {}

    def put(key: str, i: int, value: Any) -> None:
        rows.setdefault(key, [None] * len(runs))[i] = value

    from .report import digest

    for i, (run, table) in enumerate(zip(runs, tables)):
        # what was found first (the counts, the regime), then where it came from (store, config)
        for label, text in (digest(table).items() if table.attrs.get("theory") else ()):
            put(label, i, text)
        regime = dict(table.attrs.get("regime") or {})
        for key, value in _regime_rows(regime):  # in words: the unmet assumptions by name, yes/no, no reprs
            put(f"regime: {key}", i, value)
        loss = run.scalar("loss")
        put("store", i, str(run.path) if run.path else None)
        put("status", i, run.attrs.get("status"))
        put("setup", i, run.setup)
        put("theory", i, table.attrs.get("theory"))
        put("seed", i, run.attrs.get("seed"))
        put("sites", i, ", ".join(run.sites))
        put("recorded steps", i, len(run.steps))
        put("last step", i, int(run.steps[-1]) if len(run.steps) else None)
        put("final loss", i, last_logged(loss))  # the last logged value: with log_at="previous" the last step is NaN
        cfg = run.attrs.get("config") if isinstance(run.attrs.get("config"), dict) else {}
        for key, value in cfg.items():
            if isinstance(value, (bool, int, float, str)):
                put(f"config: {key}", i, value)
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    body = "".join(f"<tr><th>{html.escape(k)}</th>" + "".join(_cell(v) for v in vs) + "</tr>" for k, vs in rows.items())
    return f'<table id="summary">{head}{body}</table>'


def _claims_side_by_side(names: Sequence[str], tables: Sequence[pd.DataFrame]) -> str:
    claims: dict[str, dict[str, Any]] = {}
    for name, table in zip(names, tables):
        for row in table.itertuples(index=False):
            entry = claims.setdefault(row.claim, {"stage": row.stage, "statement": row.statement})
            entry[name] = row.verdict
    head = "<tr><th>claim</th><th>stage</th><th>statement</th>" + "".join(
        f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    body = ""
    for claim, entry in claims.items():
        verdicts = "".join(
            f'<td style="background:{_VERDICT_COLOURS.get(entry.get(n), "#fff")}">{html.escape(entry.get(n) or "–")}</td>'
            for n in names)
        body += (f"<tr><td>{html.escape(claim)}</td><td>{html.escape(str(entry['stage']))}</td>"
                 f"<td>{html.escape(str(entry['statement']))}</td>{verdicts}</tr>")
    if not claims:  # runs no theory judges: say so, never an empty table
        return ('<p id="claims">No registered theory judges these runs, so there are no claims to check; each '
                "run's theory-free summary follows below.</p>")
    return f'<table id="claims">{head}{body}</table>'


def _claim_table(name: str, table: pd.DataFrame) -> str:
    cols = ["claim", "stage", "statement", "predicted", "observed", "verdict", "hypotheses_met", "reason", "numbers"]
    numbers = table.attrs.get("numbers") or {}
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    body = ""
    for row in table.to_dict("records"):
        cells = ""
        for c in cols:
            if c == "numbers":
                value = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in (numbers.get(row["claim"]) or {}).items())
            else:
                value = row.get(c, "")
                value = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else value
                if c == "hypotheses_met" and isinstance(value, (bool, np.bool_)):  # the unmet ones by name
                    value = "met" if value else f"not met: {row.get('unmet') or ''}"
            style = f' style="background:{_VERDICT_COLOURS[value]}"' if c == "verdict" and value in _VERDICT_COLOURS else ""
            cells += f'<td class="{c}"{style}>{html.escape(str(value))}</td>'
        body += f"<tr>{cells}</tr>"
    return f'<table class="claim-table" data-run="{html.escape(name)}">{head}{body}</table>'


_DEFINITIONS = """
<dl>
<dt>γ (signal learning)</dt><dd>γ<sub>r,k</sub>(step): the coefficient of neuron r's weight change along the
signal vector μ<sub>k</sub> in w<sub>r</sub>(t) = w<sub>r</sub>(0) + Σ<sub>k</sub> γ<sub>r,k</sub> μ<sub>k</sub>/‖μ<sub>k</sub>‖²
+ Σ<sub>i</sub> ρ<sub>r,i</sub> ξ<sub>i</sub>/‖ξ<sub>i</sub>‖², solved from the recorded inner products: exact when
the signals and noise probes are an independent basis that holds the updates, else the minimum-norm projection
onto their span, named in each figure's title with its coverage.</dd>
<dt>ρ (noise memorization)</dt><dd>ρ<sub>r,i</sub>(step): the coefficient along the noise patch ξ<sub>i</sub> of
training sample i, from the same decomposition.</dd>
<dt>site</dt><dd>one recorded weight matrix (one neuron per row), named by the run (e.g. h, g); what each site of
these runs is follows below.</dd>
<dt>T₁</dt><dd>the end of the first stage of training: by the theory's formula and by a fit to the recorded
curves, when the theory gives them.</dd>
<dt>verdicts</dt><dd><b>holds</b>: the recorded run satisfies the claim; <b>violated</b>: it does not;
<b>not checkable</b>: the run cannot decide it (assumption not met, run too short, quantity not recorded), with the
reason in the observed column.</dd>
</dl>
"""


def _site_definitions(runs: Sequence[Run], theories: Sequence[Theory | None]) -> str:
    """What the sites of these runs are: each site's shape and signal probes, and the theory's own words for its
    sites (a ``definitions`` entry whose key starts with "site")."""
    items, seen = [], set()
    for run in runs:
        for site in run.sites:
            ds = run.site(site)
            if site in seen:
                continue
            seen.add(site)
            signals = ", ".join(map(str, ds["signal"].values)) if "signal" in ds.coords else "–"
            shape = f"{ds.sizes.get('neuron', '?')} neurons"
            items.append(f"<dt>site {html.escape(site)}</dt><dd>{html.escape(shape)}; signal probes "
                         f"{html.escape(signals)}</dd>")
    for th in {th.name: th for th in theories if th is not None}.values():
        for key, text in th.definitions.items():
            if key.startswith("site"):
                items.append(f"<dt>{html.escape(key)} ({html.escape(th.name)})</dt><dd>{html.escape(text)}</dd>")
    return '<dl id="sites">' + "".join(items) + "</dl>"


def _no_claims() -> pd.DataFrame:
    """The claim table of a run no theory judges: no rows."""
    table = pd.DataFrame(columns=["claim", "stage", "statement", "predicted", "observed", "verdict"])
    table.attrs.update(theory=None, regime={})
    return table


def write_html_report(runs: Sequence[str | os.PathLike | Run], path: str | os.PathLike, *,
                      names: Sequence[str] | None = None,
                      theories: Sequence[str | Theory | None] | str | Theory | None = None,
                      tables: Sequence[pd.DataFrame] | None = None, title: str = "dyn analysis",
                      shuffled: Any = None) -> Path:
    """Write the self-contained interactive report of ``runs`` to ``path`` (one HTML file).

    Parameters
    ----------
    runs : run stores or :class:`~dyn.analysis.run.Run` objects.
    path : the HTML file to write.
    names : column names for the runs (default: each run's name).
    theories : one theory (or name) for all runs, one per run, or None for each run's registered theory.
    tables : the :func:`dyn.compare` tables of the runs, if already computed (else computed here).
    title : the page title.
    shuffled : the shuffled-label control of the runs no theory judges (one store for every run, or one per run,
        None where there is none): its margins join the controls' statement of each site.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny", steps=20), os.path.join(folder, "r.zarr"))
    >>> out = write_html_report([os.path.join(folder, "r.zarr")], os.path.join(folder, "report.html"))
    >>> text = out.read_text()
    >>> "<script>" in text and "<script src" not in text and 'id="summary"' in text
    True
    """
    from plotly.offline import get_plotlyjs

    runs = [Run.coerce(r) for r in runs]
    controls = [Run.coerce(c) if c is not None else None for c in per_run(shuffled, len(runs))]
    names = list(names) if names is not None else [r.name for r in runs]
    if theories is None or isinstance(theories, (str, Theory)):
        theories = [theories] * len(runs)
    resolved = [theory_or_none(run, th) for run, th in zip(runs, theories)]
    if tables is None:
        tables = [compare(run, th) if th is not None else _no_claims() for run, th in zip(runs, resolved)]

    sections = [f"<h1>{html.escape(title)}</h1>",
                f'<p class="small">written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by dyn; '
                f"theories: {html.escape(', '.join(sorted({th.name for th in resolved if th is not None})) or 'none')}. Every figure zooms "
                "(drag; double-click resets) and has a log/linear toggle; hover a line to see its neuron.</p>",
                "<h2>Runs side by side</h2>", _summary_table(runs, names, tables),
                "<h2>Claims</h2>", _claims_side_by_side(names, tables), "<h3>Definitions</h3>", _DEFINITIONS,
                _site_definitions(runs, resolved)]
    figures = [_figure_div(_loss_figure(runs, names), "fig-loss", log=True)]
    if len(runs) > 1:
        figures.append(_figure_div(_versus_figure(runs, names), "fig-versus", log=True))
    sections += ["<h2>Figures</h2>", *figures]
    for k, (name, run, th, table, control) in enumerate(zip(names, runs, resolved, tables, controls)):
        sections += [f'<h2 id="run-{k}">{html.escape(name)}</h2>',
                     f'<p class="small">store {html.escape(str(run.path))}, status {html.escape(str(run.attrs.get("status")))}, '
                     f"{len(run.steps)} recorded steps, sites {html.escape(', '.join(run.sites))}</p>"]
        for j, site in enumerate(run.sites):
            for quantity, word in (("gamma", "signal learning γ"), ("rho", "noise memorization ρ")):
                coeffs = run.coefficients(site)  # "exact" only when it is; else "projection (coverage …)" in the title
                kind = "" if coeffs.attrs.get("exact") else f" ({describe(coeffs, short=True)})"
                fig, note = _coefficient_figure(run, site, quantity, th, f"{name}, site {site}: {word}{kind}")
                sections.append(_figure_div(fig, f"fig-{k}-{j}-{quantity}", log=True, note=note))
        if th is not None:
            sections += [f"<h3>Claims of {html.escape(th.name)} on {html.escape(name)}</h3>", _claim_table(name, table)]
        else:
            sections.append("<p>No registered theory judges this run: the theory-free summary follows.</p>")
            sections += html_section(run, key=str(k), shuffled=control)
            sections += [_figure_div(fig, f"fig-{k}-scalar-{key}", log=True) for key, fig in scalar_figures(run, name)]
    page = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
            f"<script>{get_plotlyjs()}</script><script>{_TOGGLE_JS}</script></head><body>"
            + "\n".join(sections) + "</body></html>")
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
