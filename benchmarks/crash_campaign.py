"""Crash campaign: kill `dyn run` with SIGKILL at random moments and check that nothing recorded is lost.

Each trial starts `dyn run` (a preset, a modality, a checkpoint policy) in a subprocess, half of them with a
*live reader*: a thread that opens the store over and over while it is written, with plain
``xr.open_datatree(path, engine="zarr")`` and with ``dyn.open``. The run is killed at a random moment (a quarter
of the kills anywhere from process start, the others while it trains), then the campaign checks

- **plain xarray**: the killed store opens with default arguments and shows a contiguous, aligned prefix of the
  uninterrupted run (``step = 0..n-1`` in every group, no padding rows, values bitwise equal);
- **dyn.open**: shows the same ``n`` steps (a store killed before its first write gives the documented one-line
  "holds no recorded step yet" instead);
- **resumed**: ``dyn run --resume`` finishes it, and the result is bitwise equal to the uninterrupted run;
- **live reads**: every read during the run saw such a prefix.

Then (issue 24) the **replacements**: ``dyn export`` (CSV, NetCDF, grid-zarr), ``dyn analyze`` and ``dyn sweep``
replacing their earlier output with ``--overwrite``, and ``dyn run`` creating a store, each SIGKILLed at a random
moment of its uninterrupted duration; the output must be whole afterwards (the old or the new one; for a new store,
nothing or an openable store), the same command run again must succeed and leave no debris (no hidden
``.<name>.<hex>.partial`` / ``.old`` beside or inside), and a user's file beside the output must be untouched.
Before each rerun the campaign also plants what *earlier* dyn versions left (their ``tempfile.mkdtemp`` report
folders ``.<name>.<8 random>/``, ``tempfile.mkstemp`` export files ``.<name>.<8 random>.partial``, ``.<name>.partial``,
a sweep's ``.results.{csv,parquet}.partial``; dated an hour back, as left before the upgrade: those versions held no
lock, so younger ones are kept) and a user's look-alikes of those names (``.<name>.backup``, ``.<name>.previous/``,
``.<name>.notes/``, ``.results.mine.partial``, ...): the rerun (for a sweep, also a plain rerun without
``--overwrite``) must remove every planted debris and keep every look-alike byte for byte. Last,
**a user's data** in every place the issue lists (zarr groups at a store's root, in a site group, in
``_checkpoint/``, in a grid-zarr export and in a sweep's run store; notes in ``_checkpoint/`` and its slots; an array
with a ``step`` dimension; an edited ``results.csv`` / ``phase-diagram.svg``) against ``run --overwrite``,
``run --resume``, ``export --overwrite`` and ``sweep`` (``--overwrite`` and re-run): 0 user files may be lost.

Prints a table and exits 1 unless every figure is 100%. Kills before the store folder exists are counted apart
(there is nothing to open or resume). One torch thread everywhere, so the runs compare bitwise.

Usage (from the repository root)::

    .venv/bin/python benchmarks/crash_campaign.py            # 32 kills, ~4 min on 2 cores
    .venv/bin/python benchmarks/crash_campaign.py --kills 8 --seed 3

Stores go under ``runs/crash-campaign/`` (git-ignored) and are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import dyn
from dyn.cli import main as dyn_main
from dyn.store.outputs import EARLIER_DEBRIS_AGE

#: name -> `dyn run` arguments (no --out): both modalities of the tiny preset, the tiny preset with minibatch SGD
#: and redrawn augmentation (every RNG stream must be restored), and a small multi-modal Figure-1 run.
CONFIGS = {
    "tiny single": ["--preset", "huang2024-tiny", "--modality", "single", "--steps", "300"],
    "tiny multi": ["--preset", "huang2024-tiny", "--modality", "multi", "--steps", "300"],
    "tiny single sgd+redraw": ["--preset", "huang2024-tiny", "--steps", "300", "--set", "optimizer=sgd",
                               "--set", "batch_size=8", "--set", "redraw_eps=true"],
    "small multi": ["--preset", "huang2024-figure1", "--modality", "multi", "--steps", "200", "--set", "d=400",
                    "--set", "n=40", "--set", "m=16"],
}
#: Checkpoint policies: every k steps, or dyn's default (time-based; short runs then resume from step 0).
POLICIES = (["--checkpoint-every", "10"], ["--checkpoint-every", "45"], [])
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DYN = [sys.executable, "-c", "import sys; from dyn.cli import main; sys.exit(main())"]


@dataclass
class Trial:
    config: str
    policy: list[str]
    live: bool
    killed_at: float = 0.0
    created: bool = False
    steps: int = 0
    plain: bool = False
    opened: bool = False
    resumed: bool = False
    reads: int = 0
    bad_reads: list[str] = field(default_factory=list)
    problem: str = ""


def _prefix_problem(tree: xr.DataTree, ref: xr.DataTree) -> str:
    """Why ``tree`` is not an aligned prefix of ``ref`` (empty if it is one)."""
    n = tree.sizes.get("step", 0)
    if n == 0:
        return ""  # created, nothing committed yet: an empty tree is a consistent view
    steps = tree["step"].values
    if steps.tolist() != list(range(n)):
        return f"root steps are not 0..{n - 1}"
    for site in ref.attrs["sites"]:
        if tree[site]["step"].values.tolist() != steps.tolist():
            return f"site {site} is not aligned with the root"
        for var in ref[site].data_vars:
            if "step" in ref[site][var].dims and not np.array_equal(tree[site][var].values, ref[site][var].values[:n]):
                return f"{site}/{var} differs from the uninterrupted run"
    for var in ref.ds.data_vars:
        if not np.array_equal(tree[var].values, ref[var].values[:n], equal_nan=True):
            return f"{var} differs from the uninterrupted run"
    return ""


def _plain(path: Path) -> xr.DataTree:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "falling back to unconsolidated metadata" would be a failure
        return xr.open_datatree(path, engine="zarr").load()


def _check_dyn_open(path: Path, n: int | None, ref: xr.DataTree) -> str:
    """Why dyn.open does not show a prefix of ``ref`` (of ``n`` steps, unless None: a store still written)."""
    try:
        tree = dyn.open(path).load()
    except dyn.StoreError as exc:
        nothing = n in (0, None) and "holds no recorded step yet" in str(exc)
        return "" if nothing else f"dyn.open: {exc}"
    if n is not None and tree.sizes["step"] != n:
        return f"dyn.open shows {tree.sizes['step']} steps, plain xarray {n}"
    return _prefix_problem(tree, ref)


class LiveReader(threading.Thread):
    """Opens the store again and again while it is written; records every read that was not a clean prefix."""

    def __init__(self, path: Path, ref: xr.DataTree, trial: Trial):
        super().__init__(daemon=True)
        self.path, self.ref, self.trial = path, ref, trial
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if not (self.path / "zarr.json").is_file():
                time.sleep(0.01)
                continue
            try:
                tree = _plain(self.path)
                problem = _prefix_problem(tree, self.ref) or _check_dyn_open(self.path, None, self.ref)
            except Exception as exc:  # noqa: BLE001 - any failure to read is what this counts
                problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.trial.reads += 1
            if problem:
                self.trial.bad_reads.append(problem)


def _dyn(argv: list[str]) -> int:
    """``dyn`` in this process (the same code path as the console script), its summary line silenced."""
    with contextlib.redirect_stdout(io.StringIO()):
        return dyn_main(argv)


def _references(root: Path, names: list[str]) -> tuple[dict[str, xr.DataTree], dict[str, float]]:
    """The uninterrupted runs, and how long each trained (to spread the kills over training)."""
    refs, seconds = {}, {}
    for name in names:
        out = root / f"ref-{name.replace(' ', '-').replace('+', '-')}.zarr"
        tick = time.monotonic()
        assert _dyn(["run", *CONFIGS[name], "--out", str(out), "--quiet"]) == 0
        seconds[name] = max(time.monotonic() - tick, 0.5)
        refs[name] = dyn.open(out).load()
    return refs, seconds


def _trial(trial: Trial, path: Path, ref: xr.DataTree, rng: random.Random, run_seconds: float) -> None:
    proc = subprocess.Popen([*DYN, "run", *CONFIGS[trial.config], *trial.policy, "--out", str(path), "--quiet"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reader = LiveReader(path, ref, trial) if trial.live else None
    if reader is not None:
        reader.start()
    t0 = time.monotonic()
    try:
        if rng.random() < 0.25:  # anywhere from process start: interpreter start-up, store creation, training
            delay = rng.uniform(0, 3.0 + run_seconds)
        else:  # while it trains
            while not (path / "zarr.json").is_file() and proc.poll() is None:
                time.sleep(0.002)
            delay = rng.uniform(0, run_seconds)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if reader is not None:
            reader.stop.set()
            reader.join()
    trial.killed_at = time.monotonic() - t0
    trial.created = (path / "zarr.json").is_file()
    if not trial.created:
        if path.exists():  # created under a staging name and renamed in with its first commit: never a bare folder
            trial.problem = "the kill left a store folder with no commit record (plain xarray cannot open it)"
        return
    try:
        tree = _plain(path)
        trial.steps = tree.sizes.get("step", 0)
        trial.problem = _prefix_problem(tree, ref)
        trial.plain = not trial.problem
    except Exception as exc:  # noqa: BLE001
        trial.problem = f"plain xarray: {type(exc).__name__}: {exc}"
        return
    trial.problem = _check_dyn_open(path, trial.steps, ref)
    trial.opened = not trial.problem
    status = json.loads((path / "zarr.json").read_text())["attributes"]["status"]
    if status != "complete":
        code = _dyn(["run", "--resume", str(path), "--quiet"])
        if code != 0:
            trial.problem = f"dyn run --resume exited {code}"
            return
    done = dyn.open(path).load()
    trial.problem = _prefix_problem(done, ref)
    if not trial.problem and done.sizes["step"] != ref.sizes["step"]:
        trial.problem = f"resumed run has {done.sizes['step']} steps, not {ref.sizes['step']}"
    for site in ref.attrs["sites"]:
        if not trial.problem and not np.array_equal(done[site]["weight_final"].values, ref[site]["weight_final"].values):
            trial.problem = f"{site}/weight_final differs from the uninterrupted run"
    trial.resumed = not trial.problem and done.attrs["status"] == "complete"


def campaign(kills: int = 32, *, seed: int = 0, root: str | os.PathLike = "runs/crash-campaign",
             configs: list[str] | None = None, echo=print) -> dict:
    """Run ``kills`` trials; return the counts (``created``, ``plain``, ``opened``, ``resumed``, ``reads``,
    ``bad_reads``, ...) and the trials. ``configs`` restricts :data:`CONFIGS` (the test uses two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    names = configs or list(CONFIGS)
    rng = random.Random(seed)
    t0 = time.monotonic()
    try:
        refs, run_seconds = _references(root, names)
        trials = []
        for i in range(kills):
            trial = Trial(config=names[i % len(names)], policy=POLICIES[(i // len(names)) % len(POLICIES)],
                          live=i % 2 == 0)
            _trial(trial, root / f"kill-{i}.zarr", refs[trial.config], rng, run_seconds[trial.config])
            trials.append(trial)
            echo(f"  kill {i + 1:>2}/{kills} {trial.config:<24} {' '.join(trial.policy) or 'default policy':<20} "
                 f"{'live reader' if trial.live else '':<11} at {trial.killed_at:5.2f} s: "
                 + ("no store yet" if not trial.created else f"{trial.steps:>4} steps committed")
                 + (f"  PROBLEM: {trial.problem}" if trial.problem else "")
                 + (f"  BAD READS: {trial.bad_reads[:2]}" if trial.bad_reads else ""))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        torch.set_num_threads(threads)
    created = [t for t in trials if t.created]
    result = {
        "kills": kills, "seconds": time.monotonic() - t0, "created": len(created),
        "empty": sum(t.steps == 0 for t in created),
        "plain": sum(t.plain for t in created), "opened": sum(t.opened for t in created),
        "resumed": sum(t.resumed for t in created),
        "live_runs": sum(t.live for t in trials), "reads": sum(t.reads for t in trials),
        "bad_reads": sum(len(t.bad_reads) for t in trials), "trials": trials,
    }
    result["ok"] = (result["plain"] == result["opened"] == result["resumed"] == len(created)
                    and result["bad_reads"] == 0)
    return result


# -- replacements killed at random moments, and a user's data inside and beside dyn's outputs (issue 24) ------------

#: name -> (``dyn`` arguments with {src}, {out}, {grid} placeholders, the output's name). Each replaces an existing
#: output of the same command (``--overwrite``), except ``run-create``, which creates a new store.
REPLACEMENTS = {
    "export csv": (["export", "{src}", "--out", "{out}", "--overwrite"], "x.csv"),
    "export nc": (["export", "{src}", "--out", "{out}", "--overwrite"], "x.nc"),
    "export grid-zarr": (["export", "{src}", "--out", "{out}", "--overwrite"], "x.zarr"),
    "analyze": (["analyze", "{src}", "--out", "{out}", "--overwrite"], "report"),
    "sweep": (["sweep", "--grid", "{grid}", "--out", "{out}", "--overwrite", "--sequential", "--quiet"], "sweep"),
    "run-create": (["run", "--preset", "huang2024-tiny", "--steps", "40", "--out", "{out}", "--quiet"], "new.zarr"),
}
GRID = 'preset = "huang2024-tiny"\n[fixed]\nsteps = 10\n[axes]\nn_snr2 = [1.0]\nmodality = ["single"]\n'
USER_NOTE = "a user's note: dyn must never delete or change this file\n"


@dataclass
class Replacement:
    command: str
    killed_at: float = 0.0
    readable: bool = False  # the output after the kill: the old or the new one, whole (or none, for run-create)
    rerun: int = -1  # exit status of the same command run again
    debris: list[str] = field(default_factory=list)  # what a kill left beside or inside the output after the rerun
    planted: int = 0  # an earlier dyn's debris planted before the rerun (what is left of it counts in ``debris``)
    lookalikes: int = 0  # a user's files planted beside (and in a sweep folder) with names like dyn's debris
    lost: list[str] = field(default_factory=list)  # look-alikes missing or changed after the rerun
    problem: str = ""


def _argv(command: str, folder: Path, src: Path) -> tuple[list[str], Path]:
    args, name = REPLACEMENTS[command]
    out = folder / name
    return [a.format(src=src, out=out, grid=folder.parent / "grid.toml") for a in args], out


def _readable(command: str, out: Path) -> str:
    """'' if ``out`` is a whole output of ``command`` (or, for run-create, absent or an openable store)."""
    from dyn.store.outputs import output_kind

    try:
        if command == "run-create":
            if out.exists():
                _plain(out)
        elif command == "export csv":
            import pandas as pd

            pd.read_csv(out)
        elif command == "export nc":
            xr.open_datatree(out, engine="netcdf4").load().close()
        elif command == "export grid-zarr":
            _plain(out).load()
        elif output_kind(out) != {"analyze": "report", "sweep": "sweep"}[command]:
            return f"{out.name} is not a whole dyn output (kind {output_kind(out)})"
    except Exception as exc:  # noqa: BLE001
        return f"{out.name} unreadable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return ""


def _debris(out: Path, keep: set[Path] = frozenset()) -> list[str]:
    """Hidden staging names a killed command may leave: beside the output, and inside a sweep folder (a user's
    look-alikes ``keep`` aside)."""
    found = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")
             and p.name != f".{out.name}.dyn-output.json" and p not in keep]
    if out.is_dir() and (out / "sweep.json").exists():
        found += [f"{out.name}/{p.name}" for p in out.iterdir() if p.name.endswith((".partial", ".old"))
                  and p not in keep]
    return found


#: command -> names an earlier dyn's writer of it left beside its output (``{n}``: the output's name; a trailing
#: ``/``: a folder), as :func:`dyn.store.outputs._earlier_stage` recognises them
EARLIER = {
    "export csv": ["{n}.k3j_a9zq.partial", "{n}.abcdefgh.partial", "{n}.partial"],
    "export nc": ["{n}.x71bq0m2.partial", "{n}.partial"],
    "export grid-zarr": ["{n}.partial/"],
    "analyze": ["{n}.k3j_a9zq/", "{n}.0q_9m2x7/", "{n}." + "ab12" * 8 + ".old/"],
    "sweep": [],
    "run-create": [],
}
#: a sweep's own temporary files inside its folder, an earlier dyn's and the current (a kill between creating and
#: renaming one), planted before a plain rerun
EARLIER_INSIDE_SWEEP = [".results.csv.partial", ".results.parquet.partial", f".results.csv.{'0' * 32}.partial",
                        f".dyn-output.json.{'1' * 32}.partial"]
#: a user's files with names like dyn's debris (beside every output; inside a sweep folder)
LOOKALIKES = ["{n}.backup", "{n}.previous/", "{n}.notes/", "{n}.k3j_a9zq.partial.bak", "{n}.K3J_A9ZQ.partial",
              "{n}.k3j_a9zq9/", "{n}.part"]
LOOKALIKES_INSIDE_SWEEP = [".results.mine.partial", ".results.csv.partial.bak", ".results.csv.k3j_a9zq.partial"]


def _plant(folder: Path, names: list[str], out_name: str, *, age: float = 0.0) -> list[Path]:
    """Create ``names`` (see :data:`EARLIER`) in ``folder``: files and folders holding USER_NOTE, dated ``age``
    seconds back."""
    made = []
    when = time.time() - age
    for pattern in names:
        path = folder / ("." + pattern.format(n=out_name) if pattern.startswith("{n}") else pattern)
        path = path.with_name(path.name.rstrip("/"))
        if pattern.endswith("/"):
            path.mkdir()
            (path / "note.txt").write_text(USER_NOTE)
            os.utime(path / "note.txt", (when, when))
        else:
            path.write_text(USER_NOTE)
        os.utime(path, (when, when))
        made.append(path)
    return made


def _lost(paths: list[Path]) -> list[str]:
    """The planted look-alikes that are missing or changed."""
    lost = []
    for path in paths:
        note = path / "note.txt" if path.is_dir() else path
        if not note.is_file() or note.read_text() != USER_NOTE:
            lost.append(path.name)
    return lost


def _timed(argv: list[str]) -> float:
    tick = time.monotonic()
    code = subprocess.run([*DYN, *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    assert code == 0, f"dyn {' '.join(argv)} exited {code}"
    return time.monotonic() - tick


def _replacement(trial: Replacement, folder: Path, src: Path, seconds: float, rng: random.Random) -> None:
    folder.mkdir()
    note = folder / "notes.txt"  # the user's file beside the output
    note.write_text(USER_NOTE)
    argv, out = _argv(trial.command, folder, src)
    if trial.command != "run-create":
        _timed(argv)  # the output to replace
    proc = subprocess.Popen([*DYN, *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    deadline = t0 + rng.uniform(0, seconds)
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    trial.killed_at = time.monotonic() - t0
    trial.problem = _readable(trial.command, out)
    trial.readable = not trial.problem
    if trial.command == "run-create" and out.exists():
        argv = [*argv, "--overwrite"]  # a killed store is replaced (or --resume'd)
    trial.planted = len(_plant(folder, EARLIER[trial.command], out.name, age=EARLIER_DEBRIS_AGE + 60))
    users = _plant(folder, LOOKALIKES, out.name)
    trial.rerun = subprocess.run([*DYN, *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True).returncode
    if trial.command == "sweep" and trial.rerun == 0:  # a plain rerun (no --overwrite) of a sweep: item 2
        trial.planted += len(_plant(out, EARLIER_INSIDE_SWEEP, out.name, age=EARLIER_DEBRIS_AGE + 60))
        users += _plant(out, LOOKALIKES_INSIDE_SWEEP, out.name)
        trial.rerun = subprocess.run([*DYN, *[a for a in argv if a != "--overwrite"]], env=ENV,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    trial.lookalikes = len(users)
    trial.debris = _debris(out, set(users))
    trial.lost = _lost(users)
    if trial.rerun != 0:
        trial.problem = trial.problem or f"the rerun exited {trial.rerun}"
    elif trial.lost:
        trial.problem = f"a user's look-alike files lost or changed: {trial.lost}"
    elif not trial.problem:
        trial.problem = _readable(trial.command, out)
    if note.read_text() != USER_NOTE:
        trial.problem = trial.problem or "the user's notes.txt beside the output changed"


def _user_group(store: Path, group: str, **data) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset(data or {"n": ("k", np.arange(5.0))}).to_zarr(store, mode="a", group=group)


def _snapshot(paths: list[Path]) -> dict[Path, bytes]:
    return {f: f.read_bytes() for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()}


def user_data(root: Path, src: Path) -> dict:
    """Put a user's zarr groups and files in every place issue 24 lists, run every command that replaces, resumes or
    re-runs into them, and count the user's files lost or changed (must be 0) and commands that did not refuse."""
    cases, lost, total = [], 0, 0

    def check(name: str, argv: list[str], user: list[Path], want: int, after=None) -> None:
        nonlocal lost, total
        before = _snapshot(user)
        code = subprocess.run([*DYN, *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        now = _snapshot(user)
        gone = [str(f) for f, data in before.items() if now.get(f) != data]
        problem = f"exit {code}, expected {want}" if code != want else ""
        if after is not None and not problem:
            problem = after()
        total += len(before)
        lost += len(gone)
        cases.append((name, len(before), gone, problem))

    base = root / "user"
    base.mkdir()
    # 1. groups inside a run store, nested, and inside _checkpoint/, against run --overwrite
    for group in ("mine", "h/mine", "_checkpoint/mine"):
        store = base / f"run-{group.replace('/', '-')}.zarr"
        argv = ["run", "--preset", "huang2024-tiny", "--steps", "300", "--checkpoint-every", "10", "--out", str(store)]
        proc = subprocess.Popen([*DYN, *argv, "--quiet"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and "checkpoint_step" not in json.loads(
                (store / "zarr.json").read_text() if (store / "zarr.json").is_file() else "{}").get("attributes", {}):
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        _user_group(store, group)
        check(f"run --overwrite, user group {group}", [*argv, "--overwrite", "--quiet"], [store / group], 2)
        if group == "_checkpoint/mine":
            # 3. notes in _checkpoint/ and its slots, 4. an array with a step dimension: --resume keeps them
            for where in ("_checkpoint", "_checkpoint/slot_0", "_checkpoint/slot_1"):
                (store / where).mkdir(parents=True, exist_ok=True)
                (store / where / "note.txt").write_text(USER_NOTE)
            _user_group(store, "metrics", my_metric=("step", np.arange(7.0)))
            user = [store / "_checkpoint" / "mine", store / "metrics",
                    *(store / w / "note.txt" for w in ("_checkpoint", "_checkpoint/slot_0", "_checkpoint/slot_1"))]

            def shape_kept(store=store) -> str:
                shape = json.loads((store / "metrics" / "my_metric" / "zarr.json").read_text())["shape"]
                return "" if shape == [7] else f"the user's metrics/my_metric has shape {shape}"

            check("run --resume, user notes in _checkpoint/ and slots, a user array with a step dim",
                  ["run", "--resume", str(store), "--quiet"], user, 0, shape_kept)
    # 1. a group inside a grid-zarr export, and inside a reproduction-style report folder's store
    export = base / "x.zarr"
    _timed(["export", str(src), "--out", str(export)])
    _user_group(export, "h/mine")
    check("export grid-zarr --overwrite, user group h/mine", ["export", str(src), "--out", str(export), "--overwrite"],
          [export / "h" / "mine"], 2)
    # 1, 2. a sweep: a group in one of its run stores; an edited results.csv / phase-diagram.svg
    grid = root / "grid.toml"
    sweep = base / "sweep"
    sweep_argv = ["sweep", "--grid", str(grid), "--out", str(sweep), "--sequential", "--quiet"]
    _timed(sweep_argv)
    run = next((sweep / "runs").iterdir())
    _user_group(run, "mine")
    check("sweep --overwrite, user group in a run store", [*sweep_argv, "--overwrite"], [run / "mine"], 2)
    shutil.rmtree(run / "mine")
    for name in ("results.csv", "phase-diagram.svg"):
        with open(sweep / name, "a") as f:
            f.write("\n")
        check(f"sweep --overwrite, user-edited {name}", [*sweep_argv, "--overwrite"], [sweep / name], 2)
        check(f"sweep re-run, user-edited {name}", sweep_argv, [sweep / name], 2)
        (sweep / name).unlink()
    return {"cases": cases, "user_files": total, "lost": lost,
            "ok": lost == 0 and not any(problem for *_, problem in cases)}


def replacements(kills: int = 12, *, seed: int = 0, root: str | os.PathLike = "runs/crash-replacements",
                 commands: list[str] | None = None, with_user_data: bool = True, echo=print) -> dict:
    """SIGKILL each command of :data:`REPLACEMENTS` at random moments while it replaces its output (or creates a
    store), then check that the output is whole (old or new), that the same command run again succeeds and leaves
    no debris, and that a user's file beside it is untouched; then :func:`user_data`."""
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = random.Random(seed)
    names = commands or list(REPLACEMENTS)
    t0 = time.monotonic()
    try:
        src = root / "src.zarr"
        _timed(["run", "--preset", "huang2024-tiny", "--steps", "60", "--out", str(src), "--quiet"])
        (root / "grid.toml").write_text(GRID)
        seconds = {}
        for name in names:  # how long each command takes uninterrupted: kills are spread over that
            (probe := root / f"time-{len(seconds)}").mkdir()
            argv, out = _argv(name, probe, src)
            if name != "run-create":
                _timed(argv)
            seconds[name] = _timed(argv)
        trials = []
        for i in range(kills):
            trial = Replacement(names[i % len(names)])
            _replacement(trial, root / f"kill-{i}", src, seconds[trial.command], rng)
            trials.append(trial)
            echo(f"  kill {i + 1:>2}/{kills} {trial.command:<17} at {trial.killed_at:5.2f} s of "
                 f"{seconds[trial.command]:5.2f} s: " + ("whole" if trial.readable else "NOT WHOLE")
                 + f", rerun exit {trial.rerun}" + (f", DEBRIS {trial.debris}" if trial.debris else "")
                 + f"; earlier debris planted {trial.planted}, look-alikes kept {trial.lookalikes - len(trial.lost)}"
                 f"/{trial.lookalikes}"
                 + (f"  PROBLEM: {trial.problem}" if trial.problem else ""))
        users = user_data(root, src) if with_user_data else {"cases": [], "user_files": 0, "lost": 0, "ok": True}
        for name, n, gone, problem in users["cases"]:
            echo(f"  user data: {name:<78} {n:>3} user files, {len(gone)} lost"
                 + (f"  PROBLEM: {problem}" if problem else "") + (f" {gone[:2]}" if gone else ""))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"kills": kills, "seconds": time.monotonic() - t0, "trials": trials,
              "unreadable": sum(not t.readable for t in trials), "debris": sum(len(t.debris) for t in trials),
              "failed_reruns": sum(t.rerun != 0 for t in trials), "user": users,
              "planted": sum(t.planted for t in trials), "lookalikes": sum(t.lookalikes for t in trials),
              "lookalikes_lost": sum(len(t.lost) for t in trials)}
    result["ok"] = (not any(t.problem or t.debris for t in trials)) and users["ok"]
    return result


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.0f}%)" if n else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=32, help="number of kills (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    parser.add_argument("--root", default="runs/crash-campaign", help="scratch folder (removed at the end)")
    parser.add_argument("--replacement-kills", type=int, default=18,
                        help="SIGKILLs of export/analyze/sweep replacements and store creation (default 18)")
    args = parser.parse_args()
    print(f"crash campaign: {args.kills} SIGKILLs of `dyn run` over {len(CONFIGS)} configurations "
          f"x {len(POLICIES)} checkpoint policies, half with a live reader")
    r = campaign(args.kills, seed=args.seed, root=args.root)
    n = r["created"]
    print()
    print(f"kills: {r['kills']} in {r['seconds']:.0f} s; store created before the kill: {n} "
          f"({r['empty']} of them with no step committed yet)")
    print(f"opens with plain xarray, aligned prefix, no padding:  {_pct(r['plain'], n)}")
    print(f"dyn.open shows the same prefix:                       {_pct(r['opened'], n)}")
    print(f"resumed bitwise equal to an uninterrupted run:        {_pct(r['resumed'], n)}")
    print(f"live reads (plain xarray + dyn.open) that saw a clean prefix: "
          f"{_pct(r['reads'] - r['bad_reads'], r['reads'])} over {r['live_runs']} runs")
    print(f"\nreplacements: {args.replacement_kills} SIGKILLs of {', '.join(REPLACEMENTS)}; then a user's data in "
          "every place issue 24 lists")
    q = replacements(args.replacement_kills, seed=args.seed, root=Path(args.root).with_name("crash-replacements"))
    print()
    print(f"kills: {q['kills']} in {q['seconds']:.0f} s; outputs whole after the kill: "
          f"{_pct(q['kills'] - q['unreadable'], q['kills'])}; reruns that succeeded: "
          f"{_pct(q['kills'] - q['failed_reruns'], q['kills'])}; debris after the rerun: {q['debris']} files "
          f"(an earlier dyn's planted: {q['planted']})")
    print(f"a user's look-alikes of debris names beside and inside the outputs: {q['lookalikes_lost']} of "
          f"{q['lookalikes']} lost or changed")
    u = q["user"]
    print(f"user files lost or changed: {u['lost']} of {u['user_files']} over {len(u['cases'])} commands; "
          f"commands that did not do as expected: {sum(bool(c[3]) for c in u['cases'])}")
    return 0 if r["ok"] and q["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
