"""The ``dyn`` command line.

Exit status: 0 success; 1 a run that diverged or a check that failed; 2 bad input (a one-line message, no
traceback, nothing already written touched); 130 interrupted by Ctrl-C (the store is flushed and marked).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from . import __version__
from .errors import DivergenceError, DynError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _cmd_presets(args: argparse.Namespace) -> int:
    from .config import list_presets

    presets = list_presets()
    width = max(map(len, presets), default=0)
    for name, description in presets.items():
        print(f"{name:<{width}}  {description}")
    from .config import _preset_dir

    grids = sorted(p for p in _preset_dir().glob("*.toml") if p.stem not in presets)
    if grids:
        print("\ngrids for `dyn sweep --grid`:")
        for path in grids:
            print(f"  {path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import Config, load_preset, parse_overrides
    from .errors import ConfigError
    from .store import read_attrs
    from .train import train

    if args.resume:
        extra = [flag for flag, value in (("--preset", args.preset), ("--out", args.out), ("--set", args.set),
                                          ("--modality", args.modality), ("--seed", args.seed), ("--steps", args.steps))
                 if value]
        if extra:
            raise ConfigError(f"--resume continues the stored run as it was configured; drop {', '.join(extra)}")
        attrs = read_attrs(args.resume)
        config = Config.from_dict(attrs.get("config") or {})
        summary = train(config, args.resume, progress=not args.quiet, resume=True,
                        checkpoint_every=args.checkpoint_every)
        print(f"dyn run: resumed; {summary}")
        return 0
    if not args.preset or not args.out:
        raise ConfigError("dyn run needs --preset and --out (or --resume STORE)")
    overrides = parse_overrides(args.set or [])
    for key in ("modality", "seed", "steps"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    config = load_preset(args.preset, **overrides)
    summary = train(config, args.out, overwrite=args.overwrite, progress=not args.quiet,
                    attrs={"preset": args.preset}, checkpoint_every=args.checkpoint_every)
    print(f"dyn run: {summary}")
    return 0


def _markdown_table(table) -> str:
    cols = ["claim", "predicted", "observed", "verdict"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table[cols].itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import plot
    from .compare import compare, format_table
    from .outputs import save_figure, staged_folder
    from .run import Run
    from .theory import get_theory

    theory = get_theory(args.theory)
    out = Path(args.out)
    runs = [Run(path) for path in args.runs]  # validates every store before anything is written
    names: list[str] = []
    for run in runs:
        name = run.name
        while name in names:
            name += "_"
        names.append(name)
    with staged_folder(out, overwrite=args.overwrite) as tmp:
        report = [f"# dyn analysis: {theory.name}", "", theory.description, ""]
        for name, run in zip(names, runs):
            table = compare(run, theory)
            reg = table.attrs["regime"]
            counts = table["verdict"].value_counts().to_dict()
            print(f"== {name} ({run.path})")
            print(format_table(table))
            summary = (f"regime: observed {reg.get('observed_winner')} at step {reg.get('at_step')} "
                       f"(max|gamma| {reg.get('max_gamma', float('nan')):.4g} vs max rho {reg.get('max_rho', float('nan')):.4g}); "
                       f"predicted: {reg.get('predicted_winner')} [{reg.get('condition')}]") if reg else "regime: n/a"
            print(summary)
            print("verdicts: " + ", ".join(f"{v} {counts.get(v, 0)}" for v in ("holds", "violated", "not checkable")))
            print()
            table.to_csv(tmp / f"{name}-verdicts.csv", index=False)
            save_figure(plot.coefficients(run, theory=theory.name, title=name), tmp, f"{name}-coefficients")
            save_figure(plot.heatmap(run, quantity="gamma"), tmp, f"{name}-heatmap-gamma")
            save_figure(plot.heatmap(run, quantity="rho"), tmp, f"{name}-heatmap-rho")
            cfg = run.attrs.get("config") or {}
            report += [f"## {name}", "", f"Store: `{run.path}`, status {run.attrs.get('status')}, "
                       f"{len(run.steps)} recorded steps.", ""]
            if cfg:
                keys = ("modality", "d", "n", "m", "steps", "eta", "tau", "sigma0", "mu_norm", "mu_tilde_norm", "seed")
                report += ["Config: " + ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg), ""]
            report += [f"**Regime.** {summary}", "", _markdown_table(table), "",
                       f"![{name} coefficients]({name}-coefficients.png)", "",
                       f"![{name} gamma heatmap]({name}-heatmap-gamma.png)", "",
                       f"![{name} rho heatmap]({name}-heatmap-rho.png)", ""]
        if len(runs) > 1:
            save_figure(plot.signal_vs_noise(dict(zip(names, runs))), tmp, "signal-vs-noise")
            report += ["## Signal learning vs noise memorization", "", "![signal vs noise](signal-vs-noise.png)", ""]
        (tmp / "report.md").write_text("\n".join(report))
    print(f"dyn analyze: report, tables and figures in {out}/ (report.md)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    path = export(args.run, args.out, format=args.format, reduce=args.reduce, overwrite=args.overwrite)
    print(f"dyn export: wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import PAPER_FIGURE1, figure1, table1

    if args.experiment == "table1":
        seeds = args.seeds or 3
        table1(args.out, seeds=seeds, small=args.small, overwrite=args.overwrite)
        with open(os.path.join(args.out, "table1.md"), encoding="utf-8") as report:
            print(report.read(), end="")
        print(f"dyn reproduce: table1.md, ablation.csv, directions.png, ablation.png and the runs in {args.out}/")
        return 0
    args.seeds = args.seeds or 5

    summary = figure1(args.out, seeds=args.seeds, small=args.small, overwrite=args.overwrite,
                      progress=not args.quiet)
    print(f"Figure 1 ({args.seeds} seeds): value at the last step, mean ± std over seeds")
    wide = summary.pivot(index="metric", columns="modality", values=["mean", "std"])
    for metric in wide.index:
        cells = [f"{m}: {wide.loc[metric, ('mean', m)]:.4g} ± {wide.loc[metric, ('std', m)]:.2g}"
                 for m in ("single", "multi")]
        print(f"  {metric:<18} " + "   ".join(cells))
    for modality, text in PAPER_FIGURE1.items():
        print(f"  paper, {modality}-modal: {text}")
    print(f"dyn reproduce: figures, curves.parquet, summary.csv and the runs in {args.out}/")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .outputs import save_figure
    from .sweep import expand, load_grid, phase_diagram, sweep

    grid = load_grid(args.grid)
    total = len(expand(grid))
    done = {"n": 0, "failed": 0}

    def progress(row: dict) -> None:
        done["n"] += 1
        done["failed"] += row.get("status") != "complete"
        if not args.quiet:
            print(f"  [{done['n']}/{total}] {row['id']}: {row.get('status')}"
                  + (f" ({row.get('error')})" if row.get("status") != "complete" else f", {row.get('winner')}"),
                  flush=True)

    where = "sequentially" if args.sequential else (args.scheduler or f"a LocalCluster of {args.workers} workers")
    print(f"dyn sweep: {total} runs on {where}")
    results = sweep(grid, args.out, scheduler=args.scheduler, workers=args.workers, overwrite=args.overwrite,
                    sequential=args.sequential, on_result=progress)
    save_figure(phase_diagram(results), args.out, "phase-diagram")
    seconds = results.attrs.get("seconds", float("nan"))
    complete = int((results["status"] == "complete").sum())
    print(f"dyn sweep: {complete} complete, {len(results) - complete} failed, {seconds:.1f} s "
          f"({len(results) / seconds:.2f} runs/s); results.parquet and phase-diagram.png in {args.out}/")
    return 0 if complete == len(results) else 1


def _cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    checks = verify(args.store)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
    sound = all(c.ok for c in checks)
    print(f"dyn verify: {args.store} is {'sound' if sound else 'NOT sound'}")
    return 0 if sound else 1


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dyn", description="Record and analyse feature-learning dynamics (signal learning vs "
                                                "noise memorization) of neural-network training.")
    parser.add_argument("--version", action="version", version=f"dyn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("presets", help="list the shipped presets", description="List the shipped presets.")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser(
        "run",
        help="train a preset and record every step into a zarr store",
        description="Train a preset (e.g. huang2024-figure1) and record every neuron's inner products with the "
                    "signal vectors and noise patches at every step into a zarr store.",
        epilog="examples: dyn run --preset huang2024-figure1 --modality multi --out runs/multi.zarr; "
               "dyn run --resume runs/multi.zarr",
    )
    p.add_argument("--preset", help="preset name (see `dyn presets`) or path to a preset TOML file")
    p.add_argument("--out", help="path of the new run store (a directory, e.g. runs/single.zarr)")
    p.add_argument("--modality", choices=["single", "multi"], help="override the preset's modality")
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--steps", type=int, help="override the number of optimizer steps")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field, e.g. --set tau=0.2 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="write recorded steps and a resumable checkpoint every N steps "
                        "(default: at chunk boundaries, at most once a minute)")
    p.add_argument("--resume", metavar="STORE",
                   help="continue an interrupted run from its last checkpoint (takes no other run options)")
    p.set_defaults(func=_cmd_run)

    from .export import FORMATS, REDUCTIONS
    from .theory import available_theories

    theories = available_theories()
    p = sub.add_parser(
        "analyze",
        help="compare runs with a theorem claim by claim; write a report with figures",
        description="Compute exact signal learning (gamma) and noise memorization (rho), check every claim of a "
                    "theorem against each run (holds / violated / not checkable), print the verdict tables and "
                    "write figures (PNG, SVG), CSV tables and a Markdown report.",
        epilog="theories: " + "; ".join(f"{k}: {v}" for k, v in theories.items()),
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run stores (e.g. runs/single.zarr runs/multi.zarr)")
    p.add_argument("--out", required=True, help="output folder for report.md, tables and figures")
    p.add_argument("--theory", default="huang2024", help="theorem to compare with (default: huang2024)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser(
        "export",
        help="write tidy long-form coefficient curves (CSV, Parquet, NetCDF)",
        description="Write one row per (run, site, step, neuron, probe, quantity) with quantity in signal_inner, "
                    "noise_inner, gamma, rho; --reduce max|absmax|mean reduces over neurons (and samples).",
        epilog="example: dyn export runs/single.zarr --format parquet --out curves.parquet --reduce max",
    )
    p.add_argument("run", metavar="RUN", help="run store")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from the --out suffix)")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--reduce", choices=REDUCTIONS, default="none", help="reduce over neurons/samples (default none)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "verify",
        help="check a run store: schema, steps, status, values, decomposition",
        description="Check a run store: schema version, dims and coordinates, no gaps in step, status against "
                    "contents, NaN/inf and undecodable chunks, and that the exact decomposition rebuilds the stored "
                    "weights. Exit 0 if sound, 1 if not, 2 if the path is not a usable dyn store.",
    )
    p.add_argument("store", metavar="STORE", help="run store")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "reproduce",
        help="reproduce the paper's experiments (figure1, table1)",
        description="figure1: train single- and multi-modal runs of the paper's synthetic setup for several seeds, "
                    "record every step, evaluate the OOD linear probe every 10 epochs, and draw the four panels "
                    "(loss, OOD accuracy, signal learning, noise memorization) with mean ± 1 sd bands. "
                    "table1: the ColoredMNIST protocol on scikit-learn's bundled digits (nothing downloaded), "
                    "single-modal SimCLR-style vs multi-modal image+caption, linear-probe train/test accuracy "
                    "beside the paper's, and what the image encoder's first layer aligned with.",
    )
    p.add_argument("experiment", choices=["figure1", "table1"], help="which experiment")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seeds", type=int, help="number of seeds (default 5 for figure1, 3 for table1)")
    p.add_argument("--small", action="store_true", help="a small version (seconds) with the same SNR regime")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser(
        "sweep",
        help="run a parameter grid on Dask and draw the phase diagram",
        description="Run every point of a grid file (see data/presets/phase-diagram.toml) as its own recorded run "
                    "on Dask distributed - a LocalCluster by default, or an existing scheduler - and write "
                    "results.parquet (winner at T1 from the exact coefficients, final OOD probe accuracy) and the "
                    "phase diagram. Re-running into the same --out resumes; failed runs are recorded with their error.",
        epilog="example: dyn sweep --grid data/presets/phase-diagram.toml --out runs/phase",
    )
    p.add_argument("--grid", required=True, help="grid TOML file")
    p.add_argument("--out", required=True, help="sweep folder (runs/, results.parquet, phase-diagram.png)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    p.add_argument("--sequential", action="store_true", help="no Dask: run in this process (throughput baseline)")
    p.add_argument("--overwrite", action="store_true", help="start afresh, deleting a previous sweep in --out")
    p.add_argument("--quiet", action="store_true", help="no per-run lines")
    p.set_defaults(func=_cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dyn`` console script; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DivergenceError as exc:
        print(f"dyn {args.command}: diverged: {exc}", file=sys.stderr)
        return 1
    except DynError as exc:
        print(f"dyn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dyn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
