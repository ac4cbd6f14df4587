"""The report of a sweep: a theorem's claims across runs (:func:`dyn.theory.check_transitions`) beside the phase
diagram with the fitted boundary and the collapse plot, in the terminal, as Markdown and as one HTML page.

``dyn analyze SWEEP_FOLDER --out R`` is :func:`write_sweep_report`.
"""

from __future__ import annotations

import base64
import html
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..analysis.transitions import BOOTSTRAP, FAR, LEVEL
from ..store.outputs import save_figure, staged_folder
from ..theory.base import Theory
from ..theory.compare import numbers_table, verdict_table
from ..theory.sweeps import open_sweep, sweep_table, sweep_theory
from ..theory.transitions import fit_transitions, transition_verdicts
from .report import format_table, markdown_table
from .transitions import plot_collapse, plot_transition

__all__ = ["write_sweep_report", "MEANING"]

#: What an across-runs verdict means, printed once at the top of a sweep's report.
MEANING = (f"Each verdict compares the whole sweep with one statement about a family of runs. *location*: the boundary "
           f"where the outcome crosses half its range, fitted as a logistic function of the log config fields the "
           f"grid varies; its exponent ratios with {LEVEL:.0%} bootstrap CIs ({BOOTSTRAP} replicates, over seeds "
           f"within cells, or over cells) against the theory's (*violated* when a CI excludes the theory's ratio; "
           f"*not checkable* when the grid varies fewer than two fields of the variable or does not span the "
           f"transition). *collapse*: the spread of the runs around one curve in the theory's variable divided by the "
           f"spread in a wrong variable (holds when its CI lies below 1). *low/high side*: the runs at least "
           f"{FAR:g}x from the fitted boundary show the predicted outcome within two standard errors. *sharpness*: "
           f"the transition's width shrinks along the named axis.")


def _png_inline(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def _stale(table: pd.DataFrame, theory: Theory) -> list[str]:
    """Outcome columns the theory's transitions read that the sweep's table lacks or leaves all empty."""
    out = []
    for t in theory.transitions():
        for col in (t.outcome, t.outcome_se):
            if col and (col not in table or pd.to_numeric(table[col], errors="coerce").isna().all()):
                out.append(col)
    return sorted(set(out))


def write_sweep_report(sweep: str | os.PathLike, out: str | os.PathLike, *, theory: str | Theory | None = None,
                       overwrite: bool = False, echo: Callable[[str], Any] | None = None,
                       n_boot: int = BOOTSTRAP) -> Path:
    """Check a sweep's transitions and write ``out/report.md``, ``out/report.html``, ``transitions.csv`` (the
    verdicts), ``transitions-numbers.csv``, ``results.csv`` (one row per run) and per transition
    ``<name>-phase.png``/``.svg`` and ``<name>-collapse.png``/``.svg``.

    A sweep written by an older dyn (its table lacks a result column a transition reads) is re-read from its run
    stores (:func:`dyn.open_sweep` with ``refresh=True``); nothing in the sweep folder is changed.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> for mu in (0.5, 3.0):
    ...     cfg = dyn.load_preset("huang2024-tiny", steps=20, mu_norm=mu)
    ...     _ = dyn.train(cfg, os.path.join(folder, f"mu{mu}.zarr"))
    >>> out = write_sweep_report(folder, os.path.join(folder, "rep"), echo=lambda line: None, n_boot=20)
    >>> sorted(p.name for p in out.glob("report.*")), (out / "transitions.csv").exists()
    (['report.html', 'report.md'], True)
    """
    echo = echo if echo is not None else print
    ds = open_sweep(sweep)
    th = sweep_theory(ds, theory)
    table = sweep_table(ds)
    if _stale(table, th):
        ds = open_sweep(sweep, refresh=True)
        table = sweep_table(ds)
    fits = fit_transitions(table, th, n_boot=n_boot)
    verdicts = [v for fit in fits for v in transition_verdicts(fit)]
    vt = verdict_table(verdicts)
    out = Path(out)
    title = f"dyn analysis of a sweep: {th.name}"
    with staged_folder(out, overwrite=overwrite) as tmp:
        lines = [f"# {title}", "", f"- **{th.name}**: {th.description}",
                 f"- sweep: `{sweep}` ({ds.attrs.get('runs')} complete runs; grid axes: "
                 f"{', '.join(ds.attrs.get('axes', []))})", ""]
        if ds.attrs.get("description"):
            lines += [f"Grid: {ds.attrs['description']}", ""]
        lines += ["## Claims across runs", "", MEANING, ""]
        echo(f"== sweep {sweep}: {len(table)} runs, theory {th.name}")
        if not fits:
            lines += ["The theory declares no transition.", ""]
            echo("the theory declares no transition")
        counts = vt["verdict"].value_counts().to_dict()
        summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("holds", "violated", "not checkable"))
        lines += [f"**Summary.** {summary}.", ""]
        echo(f"across runs: {summary}")
        echo(format_table(vt))
        echo("")
        html_sections = []
        for fit in fits:
            t = fit.transition
            stem = t.name.replace(".", "-")
            rows = vt[vt["claim"].str.startswith(t.name + ".")]
            save_figure(plot_transition(fit), tmp, f"{stem}-phase")
            save_figure(plot_collapse(fit), tmp, f"{stem}-collapse")
            where = f" (runs where {', '.join(f'{k} = {v}' for k, v in t.where.items())})" if t.where else ""
            lines += [f"### {t.name}{where}", "", t.statement, "",
                      f"Outcome `{t.outcome}`, variable {t.variable_label or ''} = "
                      + " · ".join(f"{f}^{e:g}" for f, e in t.variable.items())
                      + f"; {len(fit.runs)} runs; fields varied: {', '.join(fit.fields) or 'none'}.", "",
                      markdown_table(rows, ("claim", "predicted", "observed", "verdict")), "",
                      f"![{t.name} phase diagram]({stem}-phase.png)", "",
                      f"![{t.name} collapse]({stem}-collapse.png)", ""]
            html_sections += [f"<h3>{html.escape(t.name + where)}</h3><p>{html.escape(t.statement)}</p>",
                              rows[["claim", "predicted", "observed", "verdict", "reason"]].to_html(index=False),
                              _png_inline(tmp / f"{stem}-phase.png"), _png_inline(tmp / f"{stem}-collapse.png")]
        vt.to_csv(tmp / "transitions.csv", index=False)
        numbers_table(vt).to_csv(tmp / "transitions-numbers.csv", index=False)
        table.to_csv(tmp / "results.csv", index=False)
        lines += ["## Runs", "", f"One row per run in `results.csv` ({len(table)} rows).", ""]
        (tmp / "report.md").write_text("\n".join(lines))
        page = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;"
                "margin:auto}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
                "padding:3px 6px;vertical-align:top}</style></head><body>"
                f"<h1>{html.escape(title)}</h1><p>written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by dyn; "
                f"sweep {html.escape(str(sweep))}, {len(table)} runs.</p><p>{html.escape(MEANING)}</p>"
                f"<h2>Claims across runs</h2>{vt[['claim', 'verdict', 'observed', 'reason']].to_html(index=False)}"
                + "".join(html_sections) + "</body></html>")
        (tmp / "report.html").write_text(page, encoding="utf-8")
    return out
