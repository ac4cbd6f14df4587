"""Runs per second: B runs trained as one batch (dyn.setups.huang2024.batched) vs one dyn.train after another.

    python benchmarks/batched.py                       # paper scale, B in {8, 32}, 3 repeats (a few minutes)
    python benchmarks/batched.py --scale phase         # the phase-diagram grid's run size (d=600, n=40, m=20)
    python benchmarks/batched.py --sweep               # + the phase-diagram grid end to end, sequential sweep
                                                       #   with batch=1 (one run at a time) vs batches
    python benchmarks/batched.py --quick               # tiny, for a smoke run

Every run is recorded (its own store, every step, as a sequential run would be) unless marked "bare". Sequential
and batched runs are interleaved within each repeat, in one process, so the ratio is fair on a noisy machine;
the medians and the ranges over repeats are printed. Torch uses ``--threads`` threads (default 1, as a Dask
sweep worker does). Different seeds and signal norms per run, as in a sweep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dyn.setups.huang2024 import Config
from dyn.setups.huang2024.batched import train_batch
from dyn.setups.huang2024.train import train

SCALES = {
    "paper": dict(d=2000, n=100, n_test=200, m=50, steps=200),
    "phase": dict(d=600, n=40, n_test=100, m=20, steps=150),
    "quick": dict(d=200, n=20, n_test=20, m=10, steps=30),
}


def _configs(count: int, modality: str, device: str, **shape: Any) -> list[Config]:
    return [Config(modality=modality, seed=i, mu_norm=3.0 + 0.25 * (i % 8), device=device, **shape)
            for i in range(count)]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(
    *,
    scale: str = "paper",
    batch_sizes: tuple[int, ...] = (8, 32),
    repeats: int = 3,
    sequential_runs: int = 4,
    modality: str = "single",
    device: str = "cpu",
    threads: int | None = 1,
    bare: bool = True,
    workdir: str | os.PathLike | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Runs/s of sequential ``dyn.train`` and of ``train_batch`` for each batch size, recorded (and bare).

    Parameters
    ----------
    scale : a key of :data:`SCALES` (the run's d, n, n_test, m, steps).
    batch_sizes : the batch sizes B to time.
    repeats : repeats; medians and ranges are over them.
    sequential_runs : runs trained one after another per repeat for the sequential figure.
    modality, device : of every run.
    threads : torch threads (None leaves torch's default).
    bare : also time training without recording (where the time goes).
    workdir : where the stores go (a temporary folder by default; removed after each measurement).
    verbose : print each measurement as it is taken.

    Returns
    -------
    dict
        ``{"sequential": [runs/s per repeat], "sequential_bare": [...], "batched": {B: [...]},
        "batched_bare": {B: [...]}, "speedup": {B: [ratio per repeat]}}``; each repeat's ratio uses the
        sequential figure of the same repeat.

    Examples
    --------
    >>> out = measure(scale="quick", batch_sizes=(3,), repeats=1, sequential_runs=2, verbose=False)
    >>> sorted(out), out["speedup"][3][0] > 0
    (['batched', 'batched_bare', 'sequential', 'sequential_bare', 'speedup'], True)
    """
    if threads is not None:
        torch.set_num_threads(threads)
    shape = SCALES[scale]
    root = Path(tempfile.mkdtemp(prefix="dyn-batched-", dir=workdir))
    result: dict[str, Any] = {"sequential": [], "sequential_bare": [], "batched": {b: [] for b in batch_sizes},
                              "batched_bare": {b: [] for b in batch_sizes}, "speedup": {b: [] for b in batch_sizes}}
    try:
        train(_configs(1, modality, device, **shape)[0], root / "warmup.zarr")  # imports, allocator, zarr
        for r in range(repeats):
            seq_cfgs = _configs(sequential_runs, modality, device, **shape)

            def sequential(record: bool) -> None:
                for i, cfg in enumerate(seq_cfgs):
                    train(cfg, root / f"s{r}-{i}.zarr" if record else None)
                _sync(device)

            seq = sequential_runs / _time(lambda: sequential(True))
            result["sequential"].append(seq)
            if bare:
                result["sequential_bare"].append(sequential_runs / _time(lambda: sequential(False)))
            for b in batch_sizes:
                cfgs = _configs(b, modality, device, **shape)
                rate = b / _time(lambda: (train_batch(cfgs, [root / f"b{r}-{b}-{i}.zarr" for i in range(b)]),
                                          _sync(device)))
                result["batched"][b].append(rate)
                result["speedup"][b].append(rate / seq)
                if bare:
                    result["batched_bare"][b].append(b / _time(lambda: (train_batch(cfgs, [None] * b), _sync(device))))
            if verbose:
                line = ", ".join(f"B={b} {result['batched'][b][-1]:.2f} runs/s ({result['speedup'][b][-1]:.1f}x)"
                                 for b in batch_sizes)
                print(f"  repeat {r + 1}: sequential {seq:.2f} runs/s; {line}", flush=True)
            for p in root.iterdir():  # keep the disk small between repeats
                if p.name != "warmup.zarr":
                    shutil.rmtree(p)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def measure_sweep(*, workdir: str | os.PathLike | None = None, threads: int | None = 1, repeats: int = 1,
                  axes: dict[str, list] | None = None) -> dict[str, list[float]]:
    """The phase-diagram grid end to end, ``sweep(..., sequential=True)`` with ``batch=1`` (the old behaviour, one
    run after another) vs the default batches: runs/s of each, per repeat, and their ratio."""
    from dyn.experiments.sweep import DEFAULT_BATCH, load_grid, sweep

    if threads is not None:
        torch.set_num_threads(threads)
    grid = load_grid("phase-diagram")
    if axes is not None:
        grid["axes"] = axes
    root = Path(tempfile.mkdtemp(prefix="dyn-batched-sweep-", dir=workdir))
    out: dict[str, list[float]] = {"old": [], "new": [], "speedup": []}
    try:
        for r in range(repeats):
            rates = {}
            for name, batch in (("old", 1), ("new", DEFAULT_BATCH)):
                frame = sweep(grid, root / f"{name}{r}", sequential=True, batch=batch, progress=False)
                assert (frame["status"] == "complete").all(), frame[frame["status"] != "complete"]["error"].tolist()
                rates[name] = len(frame) / frame.attrs["seconds"]
                out[name].append(rates[name])
            out["speedup"].append(rates["new"] / rates["old"])
            print(f"  sweep repeat {r + 1}: {len(frame)} runs, batch=1 {rates['old']:.2f} runs/s, batches "
                  f"{rates['new']:.2f} runs/s ({out['speedup'][-1]:.1f}x)", flush=True)
            for p in root.iterdir():
                shutil.rmtree(p)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="paper")
    parser.add_argument("--quick", action="store_true", help="the quick scale, one repeat")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32], help="batch sizes B")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequential-runs", type=int, default=4, help="sequential runs timed per repeat")
    parser.add_argument("--modality", choices=["single", "multi"], default="single")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--no-bare", action="store_true", help="skip the unrecorded figures")
    parser.add_argument("--sweep", action="store_true", help="also the phase-diagram grid end to end")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    scale, repeats = ("quick", 1) if args.quick else (args.scale, args.repeats)
    threads = args.threads or None
    print(f"batched vs sequential dyn.train: {scale} scale {SCALES[scale]}, {args.modality}-modal, device "
          f"{args.device}, {threads or torch.get_num_threads()} torch thread(s), {repeats} repeat(s)", flush=True)
    res = measure(scale=scale, batch_sizes=tuple(args.batches), repeats=repeats,
                  sequential_runs=args.sequential_runs, modality=args.modality, device=args.device, threads=threads,
                  bare=not args.no_bare, workdir=args.workdir)
    print("\nruns/s, median [min–max] over repeats (recorded = every step into its own store)")
    print(f"  sequential dyn.train  recorded {_fmt(res['sequential'])}   bare {_fmt(res['sequential_bare'])}")
    for b in args.batches:
        print(f"  batched B={b:<4}        recorded {_fmt(res['batched'][b])}   bare {_fmt(res['batched_bare'][b])}"
              f"   speed-up (recorded/recorded) {_fmt(res['speedup'][b])}x")
    if args.sweep:
        print("\nphase-diagram grid end to end (60 runs, d=600 n=40 m=20 150 steps), sequential sweep")
        sw = measure_sweep(workdir=args.workdir, threads=threads, repeats=1 if args.quick else repeats)
        print(f"  batch=1 {_fmt(sw['old'])} runs/s, batches {_fmt(sw['new'])} runs/s, speed-up {_fmt(sw['speedup'])}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
