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


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.0f}%)" if n else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=32, help="number of kills (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    parser.add_argument("--root", default="runs/crash-campaign", help="scratch folder (removed at the end)")
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
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
