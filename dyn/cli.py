"""The ``dyn`` command line.

Exit status (also in ``dyn --help``):

=====  ==========================================================================================================
0      success
1      the result is negative: a run diverged (its store is marked ``diverged``), ``verify`` found the store not
       sound, a ``sweep`` had failed runs
2      bad input: a one-line message naming it, no traceback, nothing already written touched (unknown preset,
       invalid value, an ``--out`` dyn may not create or replace, a damaged or foreign store, ...)
3      I/O failure: the disk refused a write (full, quota, I/O error); everything written before is intact and
       ``dyn run --resume`` continues an interrupted run once there is room
130    interrupted by Ctrl-C: a run finishes its step, writes a checkpoint and is marked ``interrupted``
=====  ==========================================================================================================
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import DivergenceError, DynError, WriteError, speaking_cli

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2, and an epilog computed only when help is shown."""

    #: builds the epilog when help is printed (it may import registries; parsing never does, so --help is fast)
    lazy_epilog = None

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")

    def format_help(self) -> str:
        if self.lazy_epilog is not None:
            self.epilog = self.lazy_epilog()
        return super().format_help()


def _theories_epilog() -> str:
    from .theory.base import available_theories

    return "theories: " + "; ".join(f"{k}: {v}" for k, v in available_theories().items())


def _positive_int(flag: str):
    """An argparse ``type`` for a positive integer option, named in its error."""

    def check(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number <= 0:
            raise argparse.ArgumentTypeError(f"{flag} must be a positive integer, got {value!r}")
        return number

    return check


def _one_of(name: str):
    """An argparse ``type`` checking a value against ``dyn.viz.export.<name>``, imported only when the option is
    given (so parsing other commands, and --help, stays light)."""

    def check(value: str) -> str:
        from .viz import export

        allowed = getattr(export, name)
        if value not in allowed:
            raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(allowed)})")
        return value

    return check


def _export_epilog() -> str:
    from .viz.export import FORMATS, REDUCTIONS

    return (f"formats: {', '.join(FORMATS)} (csv, parquet: the long table; netcdf = grid-netcdf, grid-zarr: the "
            "(step, neuron, probe) grid for xarray, .nc and .zarr suffixes; tensorboard: an event file of the logged "
            "scalars and gamma/max_abs, rho/max, rho/q90 per site in the folder --out; --reduce applies to the long "
            "table); "
            f"reductions: {', '.join(REDUCTIONS)}. "
            "example: dyn export runs/single.zarr --format parquet --out curves.parquet --reduce max; "
            "dyn export runs/single.zarr --format tensorboard --out tb/single (then tensorboard --logdir tb)")


def _add_progress(p: argparse.ArgumentParser, quiet: str | None = None) -> None:
    """``--progress/--no-progress`` (default: auto, see :mod:`dyn.progress`) and, where the command had it,
    ``--quiet`` (``quiet`` is its help text), which implies ``--no-progress``."""
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on standard error (default: on when it is a terminal or in Jupyter, off "
                        "otherwise; DYN_PROGRESS=0/1 overrides the default)")
    if quiet is not None:
        p.add_argument("--quiet", action="store_true", help=quiet)


def _progress(args: argparse.Namespace) -> bool:
    """The command's progress choice, resolved once (:func:`dyn.progress.progress_enabled`) so that every bar of
    the command (outer and per step) follows the same decision."""
    from .errors import ConfigError
    from .progress import progress_enabled

    quiet = getattr(args, "quiet", False)
    if quiet and args.progress:
        raise ConfigError("--quiet and --progress both given (--quiet means --no-progress)")
    return progress_enabled(False if quiet else args.progress)


def _cmd_presets(args: argparse.Namespace) -> int:
    from .setups.base import available_setups, presets

    if args.show:
        return _show_preset(args.show)
    setups = available_setups()
    items = presets()
    width = max((len(p.name) for p in items), default=0)
    for name, setup in setups.items():
        print(f"{name}: {setup.description}")
        for p in items:
            if p.setup == name and p.kind == "preset":
                print(f"  {p.name:<{width}}  {p.description}")
        grids = [p for p in items if p.setup == name and p.kind == "grid"]
        if grids:
            print("  grids for `dyn sweep --grid NAME`:")
            for p in grids:
                print(f"  {p.name:<{width}}  {p.description}")
        print()
    return 0


def _show_preset(name: str) -> int:
    """``dyn presets --show NAME``: every config field of a preset with its type, value and meaning."""
    import shutil
    import textwrap

    from .setups.base import describe_config, list_presets, load_preset

    config = load_preset(name)
    rows = describe_config(config)
    description = list_presets().get(name, "")
    setup = next(n for n, s in _setups().items() if isinstance(config, s.config))
    print(f"{name} ({setup})" + (f": {description}" if description else ""))
    widths = [max(len(str(r[i]) if i != 2 else repr(r[i])) for r in rows) for i in range(3)]
    indent = 2 + widths[0] + 2 + widths[1] + 2 + widths[2] + 2
    width = max(shutil.get_terminal_size((120, 24)).columns, indent + 30)
    for key, kind, value, meaning in rows:
        head = f"  {key:<{widths[0]}}  {kind:<{widths[1]}}  {value!r:<{widths[2]}}  "
        print(head + ("\n" + " " * indent).join(textwrap.wrap(meaning, width - indent)) if meaning else head.rstrip())
    print(f"change any of them with `dyn run --preset {name} --set KEY=VALUE`")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .setups.base import get_setup, load_preset, parse_overrides
    from .store import read_attrs

    if args.resume:
        extra = [flag for flag, value in (("--preset", args.preset), ("--out", args.out), ("--set", args.set),
                                          ("--modality", args.modality), ("--seed", args.seed), ("--steps", args.steps),
                                          ("--overwrite", args.overwrite), ("--evaluate-every", args.evaluate_every))
                 if value]
        if extra:
            raise ConfigError(f"--resume continues the stored run as it was configured; drop {', '.join(extra)}")
        # Only to find the trainer: the root zarr.json is replaced atomically, and the trainer takes the store's
        # writer lock before it reads anything it resumes from (and checks the config again).
        attrs = read_attrs(args.resume)
        setup = get_setup(str(attrs.get("setup")))
        config = setup.config.from_dict(attrs.get("config") or {})
        summary = setup.train(config, args.resume, progress=_progress(args), resume=True,
                              checkpoint_every=args.checkpoint_every, **_sinks(args))
        print(f"dyn run: resumed; {summary}")
        return 0
    if not args.preset or not args.out:
        raise ConfigError("dyn run needs --preset and --out (or --resume STORE)")
    base = load_preset(args.preset)
    overrides = parse_overrides(args.set or [], type(base))
    for key in ("modality", "seed", "steps"):
        value = getattr(args, key)
        if value is not None:
            if key in overrides:
                raise ConfigError(f"--{key} and --set {key}=... both given")
            overrides[key] = value
    config = load_preset(args.preset, **overrides)
    setup = next(s for s in _setups().values() if isinstance(config, s.config))
    options = {}
    if args.evaluate_every is not None:
        import inspect

        if "evaluate_every" not in inspect.signature(setup.load(setup.trainer)).parameters:
            raise ConfigError(f"--evaluate-every: setup {setup.name!r} has no evaluation to schedule "
                              "(see its config fields, e.g. --set test_every=N)")
        if args.evaluate_every < 1:
            raise ConfigError(f"--evaluate-every must be a positive number of steps, got {args.evaluate_every}")
        options["evaluate_every"] = args.evaluate_every
    options.update(_sinks(args))
    summary = setup.train(config, args.out, overwrite=args.overwrite, progress=_progress(args),
                          attrs={"preset": args.preset}, checkpoint_every=args.checkpoint_every, **options)
    print(f"dyn run: {summary}")
    if options.get("sinks"):
        print(f"dyn run: TensorBoard events streamed to {options['sinks'][0].path} "
              f"(view: tensorboard --logdir {args.tensorboard})")
    return 0


def _sinks(args: argparse.Namespace) -> dict:
    """``--tensorboard DIR``: the stream that feeds it (checked before anything is trained or written)."""
    if not args.tensorboard:
        return {}
    from .viz.tensorboard import TensorBoardStream

    return {"sinks": [TensorBoardStream(args.tensorboard)]}


def _setups():
    from .setups.base import available_setups

    return available_setups()


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .store.outputs import claim_output
    from .viz.report import write_report

    progress = _progress(args)
    claim_output(args.out, kind="report", inputs=[*args.runs, *(args.shuffled or [])], overwrite=args.overwrite)
    if len(args.runs) == 1 and _is_sweep_folder(args.runs[0]):
        if args.shuffled:
            from .errors import ConfigError

            raise ConfigError("--shuffled is a control of single runs, not of a sweep folder")
        return _analyze_sweep(args)
    for run in args.runs:
        _check_stored_config(run)
    shuffled = None
    if args.shuffled:
        from .errors import ConfigError

        if len(args.shuffled) not in (1, len(args.runs)):
            raise ConfigError(f"--shuffled takes one control store for every run or one per run ({len(args.runs)}), "
                              f"got {len(args.shuffled)}")
        shuffled = args.shuffled[0] if len(args.shuffled) == 1 else list(args.shuffled)
    out = write_report(args.runs, args.out, theory=args.theory, overwrite=args.overwrite, progress=progress,
                       shuffled=shuffled)
    print(f"dyn analyze: report, tables and figures in {out}/ (report.md, interactive report.html)")
    return 0


def _is_sweep_folder(path: str) -> bool:
    """A sweep's --out folder (sweep.json) or a folder holding run stores (``*.zarr``); a damaged run store (no
    zarr.json of its own, but its site groups' ones) is neither, so it gets the store's own error."""
    p = Path(path)
    if not p.is_dir() or (p / "zarr.json").exists() or p.suffix == ".zarr":
        return False
    if (p / "sweep.json").is_file():
        return True
    return any((c / "zarr.json").is_file() for parent in (p, p / "runs") if parent.is_dir()
               for c in parent.iterdir() if c.is_dir() and c.suffix == ".zarr")


def _analyze_sweep(args: argparse.Namespace) -> int:
    """``dyn analyze SWEEP_FOLDER``: the theory's claims across runs (see :mod:`dyn.viz.sweep_report`)."""
    from .viz.sweep_report import write_sweep_report

    out = write_sweep_report(args.runs[0], args.out, theory=args.theory, overwrite=args.overwrite)
    print(f"dyn analyze: claims across runs, phase diagrams and collapse plots in {out}/ (report.md, report.html)")
    return 0


def _echo(progress: bool):
    """``print``, or with a bar on the terminal a print that clears and redraws it (lines and bar not mixed)."""
    if not progress:
        return print
    from .progress import progress_write

    return progress_write


def _check_stored_config(path: str) -> None:
    """Refuse a run recorded with a config its setup now rejects (e.g. a zero noise scale from an older dyn):
    the theory's numbers would be meaningless or undefined."""
    from .errors import ConfigError
    from .store import read_attrs

    attrs = read_attrs(path)
    setup = _setups().get(str(attrs.get("setup")))
    if setup is not None and isinstance(attrs.get("config"), dict):
        try:
            setup.config.from_dict(attrs["config"])
        except ConfigError as exc:
            raise ConfigError(f"{path} was recorded with a config dyn rejects: {exc}") from None


def _cmd_export(args: argparse.Namespace) -> int:
    from .viz.export import export

    path = export(args.run, args.out, format=args.format, reduce=args.reduce or "none", overwrite=args.overwrite,
                  progress=_progress(args))
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]  # grid-zarr: a folder
    print(f"dyn export: wrote {path} ({_size(sum(f.stat().st_size for f in files))})")
    return 0


def _size(nbytes: int) -> str:
    """``nbytes`` for people: KiB below one MiB (a small export is not "0.0 MiB"), else MiB or GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 2**10:.1f} KiB"


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .experiments.reproduce import reproduce
    from .store.outputs import claim_output

    progress = _progress(args)
    claim_output(args.out, kind="reproduction", overwrite=args.overwrite)
    print(reproduce(args.experiment, args.out, seeds=args.seeds, small=args.small, overwrite=args.overwrite,
                    progress=progress))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments.sweep import expand, load_grid, phase_diagram, sweep
    from .store.outputs import save_figure

    progress = _progress(args)
    grid = load_grid(args.grid)
    total = len(expand(grid))
    done = {"n": 0, "failed": 0}
    echo = _echo(progress)

    def on_result(row: dict) -> None:
        done["n"] += 1
        done["failed"] += row.get("status") != "complete"
        if not args.quiet:  # one line per run (stdout, also in logs); the bar, if any, is the sweep's (stderr)
            echo(f"  [{done['n']}/{total}] {row['id']}: {row.get('status')}"
                 + (f" ({row.get('error')})" if row.get("status") != "complete" else f", {row.get('winner')}"))
            sys.stdout.flush()

    where = "sequentially" if args.sequential else (args.scheduler or f"a LocalCluster of {args.workers} workers")
    print(f"dyn sweep: {total} runs on {where}", flush=True)
    results = sweep(grid, args.out, scheduler=args.scheduler, workers=args.workers, overwrite=args.overwrite,
                    sequential=args.sequential, on_result=on_result, progress=progress,
                    **({} if args.batch is None else {"batch": args.batch}))
    figure = phase_diagram(results, setup=grid["setup"])
    if figure is not None:
        save_figure(figure, args.out, "phase-diagram", recorded=True)
    seconds = results.attrs.get("seconds", float("nan"))
    complete = int((results["status"] == "complete").sum())
    drawn = (" and phase-diagram.png" if figure is not None
             else " (no phase diagram: no run finished, or no axis to draw)")
    print(f"dyn sweep: {complete} complete, {len(results) - complete} failed, {seconds:.1f} s "
          f"({len(results) / seconds:.2f} runs/s); results.parquet{drawn} in {args.out}/")
    return 0 if complete == len(results) else 1


def _cmd_watch(args: argparse.Namespace) -> int:
    from .viz.live import watch

    return watch(args.stores, interval=args.interval, once=args.once, as_json=args.json, port=args.serve,
                 quantile=args.quantile, wait=args.wait)


def _cmd_verify(args: argparse.Namespace) -> int:
    from .analysis.verify import verify

    checks = verify(args.store)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
    sound = all(c.ok for c in checks)
    status = next((c for c in checks if c.name == "status"), None)
    unfinished = status is not None and not status.detail.startswith(("complete", "diverged"))
    print(f"dyn verify: {args.store} is {'sound' if sound else 'NOT sound'}"
          + (f"; {status.detail}" if unfinished else ""))
    return 0 if sound else 1


_EXIT_STATUS = ("exit status: 0 success; 1 diverged, not sound or failed runs; 2 bad input (one line, nothing "
                "written touched); 3 I/O failure (disk full: what was written is intact); 130 Ctrl-C (checkpointed)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dyn", description="Record and analyse feature-learning dynamics (signal learning vs "
                                                "noise memorization) of neural-network training.",
                     epilog=_EXIT_STATUS)
    parser.add_argument("--version", action="version", version=f"dyn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("presets", help="list the shipped presets and sweep grids, by setup",
                       description="List the registered setups with their shipped presets and sweep grids; "
                                   "--show NAME lists one preset's config fields with types, values and meanings.",
                       epilog="example: dyn presets --show huang2024-figure1")
    p.add_argument("--show", metavar="NAME", help="a preset's fields: type, value, meaning (what --set can change)")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser(
        "run",
        help="train a preset and record every step into a zarr store",
        description="Train a preset (e.g. huang2024-figure1; see `dyn presets`) with its setup's trainer and record "
                    "every neuron's inner products with the signal vectors and noise patches at every step into a "
                    "zarr store.",
        epilog="examples: dyn run --preset huang2024-figure1 --modality multi --out runs/multi.zarr; "
               "dyn run --resume runs/multi.zarr. " + _EXIT_STATUS,
    )
    p.add_argument("--preset", help="preset name (see `dyn presets`) or path to a preset TOML file")
    p.add_argument("--out", help="path of the new run store (a directory, e.g. runs/single.zarr)")
    p.add_argument("--modality", help="override the preset's modality (huang2024: single or multi)")
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--steps", type=int, help="override the number of optimizer steps")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field, e.g. --set tau=0.2 (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run store dyn wrote at --out (never another folder, nor one holding other files)")
    p.add_argument("--evaluate-every", type=int, metavar="N",
                   help="also evaluate the setup's downstream probe every N steps and at the last (huang2024: the "
                        "OOD linear probe, probe_acc; makes theorem.downstream checkable)")
    _add_progress(p, quiet="no progress bar (same as --no-progress)")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="write recorded steps and a resumable checkpoint every N steps (default: every 10 s of "
                        "training); stored with the run, kept by --resume")
    p.add_argument("--resume", metavar="STORE",
                   help="continue an unfinished run from its last checkpoint, or from step 0 if it has none "
                        "(takes no other run options but --checkpoint-every and --tensorboard)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also stream the logged scalars and gamma/rho summaries to a TensorBoard event file in DIR "
                        "while the run trains (a new file per run; view: tensorboard --logdir DIR)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "analyze",
        help="compare runs with a theorem claim by claim; write a report with figures",
        description="Compute exact signal learning (gamma) and noise memorization (rho), check every claim of a "
                    "theorem against each run (holds / violated / not checkable), print the verdict tables and "
                    "write figures (PNG, SVG), CSV tables and a Markdown report.",
    )
    p.lazy_epilog = _theories_epilog
    p.add_argument("runs", nargs="+", metavar="RUN", help="run stores (e.g. runs/single.zarr runs/multi.zarr), or one "
                   "sweep folder (dyn sweep's --out, or any folder of run stores): the theory's claims across runs")
    p.add_argument("--out", required=True, help="output folder for report.md, tables and figures (parents created)")
    p.add_argument("--theory", help="theorem to compare with (default: the one registered for each run's setup)")
    p.add_argument("--shuffled", nargs="+", metavar="CONTROL",
                   help="shuffled-label control run(s) of runs no theory judges (your own model trained on permuted "
                        "labels, recorded the same way): one for every run, or one per run; its margins join each "
                        "site's 'more than chance?' statement")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a report folder dyn wrote at --out (never another folder, nor one holding other files)")
    _add_progress(p)
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser(
        "export",
        help="write coefficient curves: tidy long form (CSV, Parquet), the grid (NetCDF, zarr) or TensorBoard events",
        description="CSV/Parquet: one row per (run, site, step, neuron, probe, quantity) with quantity in "
                    "signal_inner, noise_inner (every probe set), gamma, rho; --reduce max|absmax|mean reduces over "
                    "neurons (and samples). NetCDF/zarr: every probe set and gamma, rho on their (step, neuron, "
                    "probe) grid, compressed, with provenance. TensorBoard: logged scalars and gamma/rho summaries "
                    "per site as an event file in the folder --out.",
    )
    p.lazy_epilog = _export_epilog
    p.add_argument("run", metavar="RUN", help="run store")
    p.add_argument("--format", type=_one_of("FORMATS"), help="output format, listed below (default: from the --out suffix)")
    p.add_argument("--out", required=True, help="output file, or log folder for --format tensorboard (parents created)")
    p.add_argument("--reduce", type=_one_of("REDUCTIONS"),
                   help="reduce over neurons/samples, listed below (default none)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an export file dyn wrote at --out and nobody changed since")
    _add_progress(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "verify",
        help="check a run store: schema, steps, status, values, decomposition",
        description="Check a run store: schema version, dims and coordinates, no gaps in step, status against "
                    "contents, NaN/inf and undecodable chunks, and that the exact decomposition rebuilds the stored "
                    "weights. Exit 0 if sound (an interrupted run is sound up to where it stopped: the status "
                    "line says how to resume it), 1 if not, 2 if the path is not a usable dyn store.",
    )
    p.add_argument("store", metavar="STORE", help="run store")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "watch",
        help="follow running stores live: loss, signal/noise, regime so far, steps/s, ETA",
        description="Follow one or more run stores while they are written (plain reads: no lock, no write, the "
                    "training process is not slowed) and show, as steps land: loss, max and quantile of the exact "
                    "coefficients gamma/rho (raw inner products until a decomposition is possible), the regime so "
                    "far when a theory applies, steps/s and ETA. --serve also serves a live page on 127.0.0.1.",
        epilog="example: dyn watch runs/single.zarr runs/multi.zarr --serve 8765",
    )
    p.add_argument("stores", nargs="+", metavar="STORE",
                   help="run stores (a path that does not exist is refused at once, unless --wait)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between reads (default 2)")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit")
    p.add_argument("--wait", action="store_true",
                   help="wait for stores that do not exist yet (a run about to start) instead of refusing them")
    p.add_argument("--json", action="store_true", help="one JSON line per read instead of text")
    p.add_argument("--serve", type=int, nargs="?", const=0, metavar="PORT",
                   help="also serve a live page on http://127.0.0.1:PORT/ (JSON at /data.json; no PORT: a free one)")
    p.add_argument("--quantile", type=float, default=0.9, help="quantile shown beside the maxima (default 0.9)")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser(
        "reproduce",
        help="reproduce the papers' experiments (figure1, table1, figure2, figure3, optimizers)",
        description="figure1: train single- and multi-modal runs of the paper's synthetic setup for several seeds, "
                    "record every step, evaluate the OOD linear probe every 10 epochs, and draw the four panels "
                    "(loss, OOD accuracy, signal learning, noise memorization) with mean ± 1 sd bands. "
                    "table1: the ColoredMNIST protocol on scikit-learn's bundled digits (nothing downloaded), "
                    "single-modal SimCLR-style vs multi-modal image+caption, linear-probe train/test accuracy "
                    "beside the paper's, and what the image encoder's first layer aligned with. "
                    "figure2 (huang2025-label-noise): standard vs label-noise GD over seeds, ratio of noise "
                    "memorization to signal learning, training loss, test accuracy. figure3: test accuracy over "
                    "SNR x n for both algorithms (a resumable Dask sweep). optimizers: GD, label-noise GD, SGD with "
                    "momentum and Adam on the same data. benign-vs-harmful (signal-noise-cnn): Kou et al.'s benign "
                    "and harmful runs side by side, claim by claim. kou-heatmap: Kou et al.'s test-error heatmap as "
                    "the authors' code runs it and under the theory's network, compared cell by cell with the "
                    "authors' published numbers.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", help="which experiment: figure1, table1 (huang2024); figure2, figure3, optimizers "
                                                         "(huang2025-label-noise); benign-vs-harmful, kou-heatmap "
                                                         "(signal-noise-cnn)")
    p.add_argument("--out", required=True, help="output folder (parents created)")
    p.add_argument("--seeds", type=int, help="number of seeds (default 5 for figure1, 3 for table1 and figure2, "
                                                      "1 for figure3 and optimizers; kou-heatmap: repeats per cell, 10 or 2 with --small)")
    p.add_argument("--small", action="store_true", help="a small version (seconds) with the same SNR regime")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a reproduction folder dyn wrote at --out (never another folder)")
    _add_progress(p, quiet="no progress bars (same as --no-progress)")
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser(
        "sweep",
        help="run a parameter grid on Dask and draw the phase diagram",
        description="Run every point of a grid (a shipped name from `dyn presets`, or a TOML file) as its own recorded run "
                    "on Dask distributed - a LocalCluster by default, or an existing scheduler - and write "
                    "results.parquet (the theory's result columns: winner, max gamma and rho, test error or probe "
                    "accuracy) and the phase diagram. Re-running into the same --out resumes; failed runs are "
                    "recorded with their error. `dyn analyze OUT` then checks the theory's claims across runs.",
        epilog="example: dyn sweep --grid phase-diagram --out runs/phase && dyn analyze runs/phase --out reports/phase",
    )
    p.add_argument("--grid", required=True, help="shipped grid name (see `dyn presets`) or grid TOML file")
    p.add_argument("--out", required=True, help="sweep folder (runs/, results.parquet, phase-diagram.png)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--workers", type=_positive_int("--workers"), default=2,
                   help="LocalCluster worker processes (default 2)")
    p.add_argument("--sequential", action="store_true", help="no Dask: run in this process (throughput baseline)")
    p.add_argument("--batch", type=_positive_int("--batch"), default=None,
                   help="runs of one shape trained together as a batch dimension in one task, where the setup has a "
                        "batched trainer (default 8; 1 = one run per task)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh, replacing a previous dyn sweep in --out (never another folder)")
    _add_progress(p, quiet="no progress bar and no per-run lines")
    p.set_defaults(func=_cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dyn`` console script; returns the exit status (see the module docstring)."""
    command, args = "dyn", None
    try:
        parser = _build_parser()  # imports xarray and pandas: Ctrl-C may land here too
        args = parser.parse_args(argv)
        command = f"dyn {args.command}"
        with speaking_cli():  # messages name options as flags (--overwrite), not keywords (overwrite=True)
            _refuse_urls(args)
            return args.func(args)
    except DivergenceError as exc:
        print(f"{command}: diverged: {exc}", file=sys.stderr)
        return 1
    except WriteError as exc:
        print(f"{command}: I/O error: {exc}", file=sys.stderr)
        return 3
    except DynError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an I/O failure outside dyn's own checks (e.g. while a figure was being saved)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{command}: I/O error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{command}: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130


#: the arguments that name stores or outputs (URLs refused there; --scheduler tcp://... is a URL that is fine)
_STORE_ARGS = ("runs", "run", "store", "stores", "out", "resume", "grid")


def _refuse_urls(args: argparse.Namespace) -> None:
    """dyn's commands read and write local stores: a URL is one line naming what reads it (Python) instead."""
    values = [getattr(args, dest, None) for dest in _STORE_ARGS]
    items = [v for value in values for v in (value if isinstance(value, list) else [value])]
    if not any(isinstance(v, str) and "://" in v for v in items):
        return  # the usual case: nothing imported (xarray, zarr), so light commands stay fast
    from .errors import StoreError
    from .store.reader import REMOTE_EXTRA, is_url

    for item in items:
        if is_url(item):
            raise StoreError(f"{item}: dyn's commands take local paths; in Python, dyn.open(url) and "
                             f"dyn.Run(url) read a store at a URL ({REMOTE_EXTRA}), or download it first "
                             "(W&B: artifact.download())")


def _resume_hint(args: argparse.Namespace | None) -> str:
    """After Ctrl-C in ``dyn run``: where the run stopped and the command that continues it (when its store is
    marked interrupted), else nothing."""
    if args is None or getattr(args, "command", None) != "run":
        return ""
    path = args.resume or args.out
    try:
        from .store import read_attrs

        attrs = read_attrs(path) if path else {}
    except (DynError, OSError):
        return ""
    if attrs.get("status") != "interrupted" or not attrs.get("setup"):
        return ""
    import shlex

    ckpt = attrs.get("checkpoint_step")
    where = (f" at step {ckpt} (checkpointed)" if isinstance(ckpt, int)
             else " before its first checkpoint (resuming restarts it from step 0)")
    return f"{where}; continue with: dyn run --resume {shlex.quote(str(path))}"


if __name__ == "__main__":
    sys.exit(main())
