"""The analysis report: verdict tables in the terminal and as Markdown, figures, per-run CSV tables.

``dyn analyze`` is :func:`write_report`; the tables come from :func:`dyn.compare`, the figures from
:mod:`dyn.viz.plot`. Nothing here knows a particular theorem: the theory is the one registered for each run's
setup, or the one named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..analysis.run import Run
from ..store.outputs import save_figure, staged_folder
from ..theory.base import Theory
from ..theory.compare import compare, theory_or_none
from . import plot

__all__ = ["format_table", "markdown_table", "write_report"]


def format_table(table: pd.DataFrame, *, width: int = 60) -> str:
    """A plain-text rendering of a :func:`compare` table for terminals (claim, predicted, observed, verdict)."""

    def cut(s: str) -> str:
        s = str(s)
        return s if len(s) <= width else s[: width - 1] + "…"

    rows = [("claim", "predicted", "observed", "verdict")]
    rows += [(r.claim, cut(r.predicted), cut(r.observed), r.verdict) for r in table.itertuples()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table: pd.DataFrame, columns: Sequence[str] = ("claim", "predicted", "observed", "verdict")) -> str:
    """A Markdown rendering of a :func:`dyn.compare` table (cells are not truncated)."""
    cols = list(columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table[cols].itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _regime_line(reg: dict) -> str:
    if not reg:
        return "regime: n/a"
    return (f"regime: observed {reg.get('observed_winner')} at step {reg.get('at_step')} "
            f"(max|gamma| {reg.get('max_gamma', float('nan')):.4g} vs max rho {reg.get('max_rho', float('nan')):.4g}); "
            f"predicted: {reg.get('predicted_winner')} [{reg.get('condition')}]")


def _unique_names(runs: Sequence[Run]) -> list[str]:
    names: list[str] = []
    for run in runs:
        name = run.name
        while name in names:
            name += "_"
        names.append(name)
    return names


def write_report(
    runs: Sequence[str | os.PathLike | Run],
    out: str | os.PathLike,
    *,
    theory: str | Theory | None = None,
    overwrite: bool = False,
    echo=print,
) -> Path:
    """Compare each run with its theory and write ``out/report.md``, ``<run>-verdicts.csv`` and figures.

    Every store is opened (and validated) before anything is written; the folder is assembled under a temporary
    name and moved into place when complete. ``echo`` receives the terminal output, line by line.
    """
    runs = [Run.coerce(r) for r in runs]
    theories = [theory_or_none(run, theory) for run in runs]
    names = _unique_names(runs)
    out = Path(out)
    with staged_folder(out, overwrite=overwrite) as tmp:
        titles = sorted({th.name if th is not None else "theory-free summary" for th in theories})
        report = [f"# dyn analysis: {', '.join(titles)}", ""]
        report += [f"- **{th.name}**: {th.description}"
                   for th in {th.name: th for th in theories if th is not None}.values()] + [""]
        for name, run, th in zip(names, runs, theories):
            if th is None:
                report += _summary_section(name, run, tmp, echo)
                continue
            table = compare(run, th)
            reg = table.attrs["regime"]
            counts = table["verdict"].value_counts().to_dict()
            summary = _regime_line(reg)
            echo(f"== {name} ({run.path})")
            echo(format_table(table))
            echo(summary)
            echo("verdicts: " + ", ".join(f"{v} {counts.get(v, 0)}" for v in ("holds", "violated", "not checkable")))
            echo("")
            table.to_csv(tmp / f"{name}-verdicts.csv", index=False)
            save_figure(plot.plot_coefficients(run, theory=th, title=name), tmp, f"{name}-coefficients")
            save_figure(plot.plot_heatmap(run, quantity="gamma"), tmp, f"{name}-heatmap-gamma")
            save_figure(plot.plot_heatmap(run, quantity="rho"), tmp, f"{name}-heatmap-rho")
            cfg = run.attrs.get("config") or {}
            report += [f"## {name}", "", f"Store: `{run.path}`, status {run.attrs.get('status')}, "
                       f"{len(run.steps)} recorded steps.", ""]
            if cfg:
                shown = {k: v for k, v in cfg.items() if isinstance(v, (bool, int, float, str))}
                report += ["Config: " + ", ".join(f"{k}={v}" for k, v in shown.items()), ""]
            report += [f"**Regime.** {summary}", "", markdown_table(table), "",
                       f"![{name} coefficients]({name}-coefficients.png)", "",
                       f"![{name} gamma heatmap]({name}-heatmap-gamma.png)", "",
                       f"![{name} rho heatmap]({name}-heatmap-rho.png)", ""]
        if len(runs) > 1:
            save_figure(plot.plot_signal_vs_noise(dict(zip(names, runs))), tmp, "signal-vs-noise")
            report += ["## Signal learning vs noise memorization", "", "![signal vs noise](signal-vs-noise.png)", ""]
        (tmp / "report.md").write_text("\n".join(report))
        from .html import write_html_report  # the interactive, self-contained page beside report.md

        write_html_report(runs, tmp / "report.html", names=names, theories=theories)
    return out


# -- runs no theory judges (a user's own model) ------------------------------------------------------------------
def _summary_section(name: str, run: Run, tmp: Path, echo) -> list[str]:
    """Report lines, CSV and figures of :func:`dyn.analysis.summary.summary` for a run no theory judges."""
    from ..analysis.summary import summary

    table = summary(run)
    shown = table.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
    echo(f"== {name} ({run.path})")
    echo("no registered theory judges this run: theory-free summary")
    echo(shown.to_string(index=False))
    echo("")
    table.to_csv(tmp / f"{name}-summary.csv", index=False)
    lines = [f"## {name}", "", f"Store: `{run.path}`, status {run.attrs.get('status')}, {len(run.steps)} recorded "
             "steps. No registered theory judges this run (pass `--theory NAME` to use one); the theory-free "
             "summary follows (`dyn.summary`).", "", markdown_table(shown, columns=list(table.columns)), ""]
    for site in run.sites:
        save_figure(plot.plot_coefficients(run, site=site, theory=False, title=f"{name}: {site}"), tmp,
                    f"{name}-{site}-coefficients")
        lines += [f"![{name} {site} coefficients]({name}-{site}-coefficients.png)", ""]
    return lines
