"""The analysis report: the runs side by side, then each claim with its statement and verdict, in the terminal and
as Markdown; figures and per-run CSV tables.

``dyn analyze`` is :func:`write_report`; the tables come from :func:`dyn.compare`, the figures from
:mod:`dyn.viz.plot`. Nothing here knows a particular theorem: the theory is the one registered for each run's
setup, or the one named, and it supplies the side-by-side numbers (:meth:`dyn.theory.Theory.headline`) and the
definitions of its symbols (:attr:`dyn.theory.Theory.definitions`).

The answer has two levels: a claim whose hypotheses hold for the run is a test of the theorem; a claim checked on a
run outside the theorem's assumptions is the theorem's prediction there (still shown, counted apart). Conditions
(the assumptions themselves) are listed apart and never counted as claims.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ..analysis.run import Run
from ..progress import progress_bar, progress_enabled, progress_write
from ..store.outputs import save_figure, staged_folder
from ..theory.base import CONDITION_STAGES, Theory
from ..theory.compare import compare, numbers_table, theory_or_none
from . import plot

__all__ = ["digest", "format_table", "markdown_table", "summary_lines", "side_by_side", "write_report"]

#: What a verdict means, printed once at the top of a report (the README's analysis section says more).
MEANING = ("A verdict compares one run with one statement of the theorem. *holds*: the run is consistent with the "
           "statement on the steps it covers, which is evidence, not a demonstration. *violated*: the run contradicts it. "
           "*not checkable*: the run cannot decide (too short, nothing moved, an interval that straddles the "
           "prediction, or a bound that cannot fail on this run); the reason is given. A claim whose hypotheses hold "
           "for the run is a **test of the theorem**; one checked outside the theorem's assumptions is the theorem's "
           "**prediction outside its assumptions** (shown, counted apart).")


def _hyp(row: Any) -> str:
    met = row["hypotheses_met"]
    if met is pd.NA or met is None:
        return ""
    return "met" if bool(met) else "not met: " + row["unmet"]


def _counts(c: dict[str, int]) -> str:
    return ", ".join(f"{c[k]} {k}" for k in ("holds", "violated", "not checkable"))


def digest(table: pd.DataFrame) -> dict[str, str]:
    """The two-level count of a :func:`dyn.compare` table, label → text: tests of the theorem, predictions outside
    its assumptions, the assumptions (the unmet ones named) and other conditions. The one count the terminal,
    ``report.md`` and ``report.html`` show (conditions are never counted as claims).

    Examples
    --------
    >>> from dyn.theory import Verdict
    >>> from dyn.theory.compare import verdict_table
    >>> t = verdict_table([Verdict("assumption.d", "assumption", "", "", "", "violated"),
    ...                    Verdict("c", "T1", "", "", "", "holds", hypotheses_met=False, unmet=("assumption.d",))])
    >>> digest(t)["assumptions"]
    '0 of 1 met (not met: assumption.d)'
    """
    s = table.attrs.get("summary")
    if s is None:
        from ..theory.base import summarize, Verdict

        s = summarize([Verdict(r.claim, r.stage, "", "", "", r.verdict, hypotheses_met=None
                               if pd.isna(r.hypotheses_met) else bool(r.hypotheses_met)) for r in table.itertuples()])
    out = {"tests of the theorem (hypotheses met)": _counts(s["tests"]),
           "predictions outside its assumptions": _counts(s["outside"])}
    for key, label in (("conditions", "assumptions"), ("other conditions", "other conditions (not required)")):
        cond = s.get(key) or {"met": 0, "not met": 0, "unknown": 0, "unmet": []}
        total = cond["met"] + cond["not met"] + cond["unknown"]
        if total or key == "conditions":
            unmet = f" (not met: {', '.join(cond['unmet'])})" if cond["unmet"] else ""
            out[label] = f"{cond['met']} of {total} met{unmet}"
    return out


def summary_lines(table: pd.DataFrame) -> list[str]:
    """:func:`digest` as lines, one each: tests of the theorem, predictions outside its assumptions, and the
    conditions.

    Examples
    --------
    >>> from dyn.theory import Verdict
    >>> from dyn.theory.compare import verdict_table
    >>> t = verdict_table([Verdict("assumption.d", "assumption", "", "", "", "violated"),
    ...                    Verdict("c", "T1", "", "", "", "holds", hypotheses_met=False, unmet=("assumption.d",))])
    >>> print("\\n".join(summary_lines(t)))
    tests of the theorem (hypotheses met): 0 holds, 0 violated, 0 not checkable
    predictions outside its assumptions: 1 holds, 0 violated, 0 not checkable
    assumptions: 0 of 1 met (not met: assumption.d)
    """
    return [f"{label}: {text}" for label, text in digest(table).items()]


def format_table(table: pd.DataFrame, *, width: int = 110) -> str:
    """A plain-text rendering of a :func:`dyn.compare` table for terminals: the conditions one per line, then each
    claim as a block with its statement, prediction, observation and reason, wrapped at ``width`` (never cut)."""
    lines: list[str] = []
    conditions = table[table["stage"].isin(CONDITION_STAGES)]
    claims = table[~table["stage"].isin(CONDITION_STAGES)]
    if len(conditions):
        lines.append("conditions:")
        w = max(len(c) for c in conditions["claim"])
        for r in conditions.to_dict("records"):
            mark = {"holds": "met", "violated": "NOT MET"}.get(r["verdict"], r["verdict"])
            lines.append(f"  {r['claim']:<{w}}  {mark:<7}  {r['observed']}  (needs {r['predicted']})")
    for r in claims.to_dict("records"):
        hyp = _hyp(r)
        lines.append(f"{r['claim']}: {r['verdict'].upper()}" + (f"  [hypotheses {hyp}]" if hyp else ""))
        for label in ("statement", "predicted", "observed", "reason"):
            if r[label]:
                lines += textwrap.wrap(r[label], width=width, initial_indent=f"    {label + ':':<11}",
                                       subsequent_indent=" " * 15, break_on_hyphens=False)
    return "\n".join(lines)


def markdown_table(table: pd.DataFrame, columns: Sequence[str] = ("claim", "statement", "predicted", "observed",
                                                                   "verdict", "hypotheses")) -> str:
    """A Markdown rendering of a :func:`dyn.compare` table (cells are not truncated); ``hypotheses`` renders
    ``hypotheses_met`` with the unmet ones named."""
    cols = list(columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table.to_dict("records"):
        cells = [_hyp(r) if c == "hypotheses" else ("" if r.get(c) is None else str(r[c])) for c in cols]
        if "verdict" in cols and r.get("reason"):
            cells[cols.index("verdict")] += f" ({r['reason']})"
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def side_by_side(heads: dict[str, dict[str, Any]], tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One column per run: the theory's headline numbers, then the two-level verdict summary."""
    frame = pd.DataFrame({name: pd.Series(head, dtype=object) for name, head in heads.items()})
    extra = {}
    for name, table in tables.items():
        counts = digest(table)
        extra[name] = {"tests of the theorem": counts["tests of the theorem (hypotheses met)"],
                       "outside its assumptions": counts["predictions outside its assumptions"]}
    return pd.concat([frame, pd.DataFrame(extra)]).fillna("")


def _markdown_frame(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| | " + " | ".join(cell(c) for c in frame.columns) + " |", "|---|" + "---|" * len(frame.columns)]
    for label, row in frame.iterrows():
        lines.append(f"| {cell(label)} | " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


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
    echo: Callable[[str], Any] | None = None,
    progress: bool | None = None,
    shuffled: Any = None,
) -> Path:
    """Compare each run with its theory and write ``out/report.md``, ``<run>-verdicts.csv``, ``<run>-numbers.csv``
    and figures.

    The report opens with the runs side by side (the theory's headline numbers and each run's two-level summary),
    defines the theory's symbols once, then gives every claim with its statement. Every store is opened (and
    validated) before anything is written; the folder is assembled under a temporary name and moved into place when
    complete. ``echo`` receives the terminal output, line by line (default: printed, through ``tqdm.write`` while a
    bar is shown so that lines and bar do not mix). ``progress``: one bar over the work (each run's
    comparison, each run's figures, the interactive page; its postfix names the current one); None (default): on
    in notebooks and terminals, off otherwise (:func:`dyn.progress.progress_enabled`). ``shuffled``: the
    shuffled-label control of the runs no theory judges (one store for every run, or a sequence with one or None per
    run); its margins join each site's "more than chance?" statement (:mod:`dyn.analysis.controls`).

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny", steps=20), os.path.join(folder, "r.zarr"))
    >>> out = write_report([os.path.join(folder, "r.zarr")], os.path.join(folder, "rep"), echo=lambda line: None,
    ...                    progress=False)
    >>> sorted(p.name for p in out.glob("report.*"))
    ['report.html', 'report.md']
    """
    runs = [Run.coerce(r) for r in runs]
    from .theory_free import per_run

    controls = [Run.coerce(c) if c is not None else None for c in per_run(shuffled, len(runs))]
    theories = [theory_or_none(run, theory) for run in runs]  # None: a run no theory judges (summary instead)
    names = _unique_names(runs)
    out = Path(out)
    judged = [(name, run, th) for name, run, th in zip(names, runs, theories) if th is not None]
    show = progress_enabled(progress)
    echo = echo if echo is not None else progress_write if show else print
    with progress_bar(len(judged) + len(runs) + (len(runs) > 1) + 1, desc="analyze", unit="task",
                      progress=show, leave=True) as bar:
        tables = {}
        for name, run, th in judged:
            bar.set_postfix_str(f"{name}: checking the claims of {th.name}")
            tables[name] = compare(run, th)
            bar.update(1)
        return _write(runs, names, theories, judged, tables, out, overwrite, echo, bar, controls)


def _write(runs: list[Run], names: list[str], theories: list[Theory | None], judged: list[tuple[str, Run, Theory]],
           tables: dict[str, pd.DataFrame], out: Path, overwrite: bool, echo, bar: Any,
           controls: list[Run | None]) -> Path:
    """:func:`write_report`'s files, once the runs are compared; ``bar`` advances per run and figure."""
    heads = {name: th.headline(run) for name, run, th in judged}
    overview = side_by_side(heads, tables) if judged else None
    with staged_folder(out, overwrite=overwrite) as tmp:
        unique = {th.name: th for _, _, th in judged}
        titles = sorted(unique) + (["theory-free summary"] if len(judged) < len(runs) else [])
        report = [f"# dyn analysis: {', '.join(titles)}", ""]
        report += [f"- **{th.name}**: {th.description}" for th in unique.values()] + [""]
        if overview is not None:
            report += ["## The runs side by side", "", _markdown_frame(overview), "", MEANING, ""]
            echo("runs side by side:")
            echo(overview.to_string())
            echo("")
        for th in unique.values():
            if th.definitions:
                report += [f"## Definitions ({th.name})", ""]
                report += [f"- **{k}**: {v}" for k, v in th.definitions.items()] + [""]
        for name, run, th, control in zip(names, runs, theories, controls):
            bar.set_postfix_str(f"{name}: tables and figures")
            if th is None:
                report += _summary_section(name, run, tmp, echo, control)
                bar.update(1)
                continue
            table = tables[name]
            summary = summary_lines(table)
            echo(f"== {name} ({run.path})")
            for line in summary:
                echo(line)
            echo(format_table(table))
            echo("")
            table.to_csv(tmp / f"{name}-verdicts.csv", index=False)
            numbers_table(table).to_csv(tmp / f"{name}-numbers.csv", index=False)
            save_figure(plot.plot_coefficients(run, theory=th, title=name), tmp, f"{name}-coefficients")
            save_figure(plot.plot_heatmap(run, quantity="gamma"), tmp, f"{name}-heatmap-gamma")
            save_figure(plot.plot_heatmap(run, quantity="rho"), tmp, f"{name}-heatmap-rho")
            cfg = run.attrs.get("config") or {}
            report += [f"## {name}", "", "**Summary.** " + "; ".join(summary) + ".", "",
                       f"Store: `{run.path}`, status {run.attrs.get('status')}, {len(run.steps)} recorded steps.", ""]
            if cfg:
                shown = {k: v for k, v in cfg.items() if isinstance(v, (bool, int, float, str))}
                report += ["Config: " + ", ".join(f"{k}={v}" for k, v in shown.items()), ""]
            conditions = table[table["stage"].isin(CONDITION_STAGES)]
            claims = table[~table["stage"].isin(CONDITION_STAGES)]
            if len(conditions):
                report += ["### Conditions", "",
                           markdown_table(conditions, ("claim", "statement", "predicted", "observed", "verdict")), ""]
            report += ["### Claims", "", markdown_table(claims), "",
                       f"![{name} coefficients]({name}-coefficients.png)", "",
                       f"![{name} gamma heatmap]({name}-heatmap-gamma.png)", "",
                       f"![{name} rho heatmap]({name}-heatmap-rho.png)", ""]
            bar.update(1)
        if len(runs) > 1:
            bar.set_postfix_str("signal vs noise figure")
            save_figure(plot.plot_signal_vs_noise(dict(zip(names, runs))), tmp, "signal-vs-noise")
            report += ["## Signal learning vs noise memorization", "", "![signal vs noise](signal-vs-noise.png)", ""]
            bar.update(1)
        (tmp / "report.md").write_text("\n".join(report))
        from .html import _no_claims, write_html_report  # the interactive, self-contained page beside report.md

        bar.set_postfix_str("interactive report.html")
        # the comparisons made above, not made again (each one solves for the coefficients of every site)
        write_html_report(runs, tmp / "report.html", names=names, theories=theories,
                          tables=[tables[name] if th is not None else _no_claims()
                                  for name, th in zip(names, theories)], shuffled=controls)
        bar.update(1)
    return out


# -- runs no theory judges (a user's own model) ------------------------------------------------------------------
def _summary_section(name: str, run: Run, tmp: Path, echo, shuffled: Run | None = None) -> list[str]:
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
    from .theory_free import markdown_section  # definitions, logged scalars, decomposition wording, per-sample views

    return lines + markdown_section(name, run, table, tmp, shuffled=shuffled)
