"""Runs per second of the signal–noise CNN family: B runs as one batch (``signal_noise_cnn.batched``) vs lone runs.

    python benchmarks/batched_cnn.py                     # Kou heatmap cells at d in {100, 600, 1090}, B in {8, 32, 64}
    python benchmarks/batched_cnn.py --sweep             # + a 20 x 20 x 3 grid (||mu|| x d x seed) through
                                                         #   sweep(..., sequential=True), default batch, record_every=10
    python benchmarks/batched_cnn.py --quick             # small, for a smoke run

A cell of Kou et al.'s heatmap as their code runs it: the code network (bias, mean over patches, sum over filters,
PyTorch's default init), ReLU (q = 1), n = 20, m = 10 filters per class, 100 full-batch GD steps at lr 0.1,
n_test = 1000, label flips p = 0.1, noise not orthogonalised, float32; ``test_every`` 10 (the config's default).
"Recorded" runs write every step into their own store, as ``train(config, out)`` does; "bare" runs train with
``out=None`` (what a 100k-cell heatmap of test errors needs). Different seeds and ‖μ‖ per run, as in a heatmap.

Lone and batched runs are interleaved within each repeat, in one process, so that the ratios are fair on a busy
machine; runs/s are printed both per wall second and per CPU second of this process (``time.process_time``: the
second is less disturbed by other processes on a shared machine; neither counts the writer threads' waits apart).
Torch uses ``--threads`` threads (default 1, as a Dask sweep worker does).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from dyn.setups.signal_noise_cnn import CNNConfig, train
from dyn.setups.signal_noise_cnn.batched import train_batch

#: A cell of Kou et al.'s heatmap as their code trains it (module docstring); d and ||mu|| vary per cell.
KOU_CELL = dict(q=1.0, network="code", n=20, m=10, steps=100, eta=0.1, n_test=1000, flip_rate=0.1,
                orthogonal_noise=False, dtype="float32", test_every=10)
QUICK_CELL = {**KOU_CELL, "steps": 20, "n_test": 100}


def _configs(count: int, d: int, cell: dict[str, Any], offset: int = 0) -> list[CNNConfig]:
    """``count`` cells at patch dimension ``d``: seeds ``offset..``, ‖μ‖ spread over Kou's range 0.1–9.9."""
    return [CNNConfig(d=d, seed=offset + i, mu_norm=0.1 + (0.37 * (offset + i)) % 9.8, **cell) for i in range(count)]


def _clock(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def measure(
    *,
    ds: tuple[int, ...] = (100, 600, 1090),
    batch_sizes: tuple[int, ...] = (8, 32, 64),
    repeats: int = 1,
    lone_runs: int = 8,
    cell: dict[str, Any] | None = None,
    threads: int | None = 1,
    workdir: str | None = None,
    verbose: bool = True,
) -> dict[int, dict[str, Any]]:
    """Runs/s of lone ``train`` and of ``train_batch`` for each d and batch size, recorded and bare.

    Returns
    -------
    dict
        ``{d: {"lone": {"recorded": [(wall, cpu) runs/s per repeat], "bare": [...]},
        B: {"recorded": [...], "bare": [...]}}}``.

    Examples
    --------
    >>> out = measure(ds=(40,), batch_sizes=(3,), lone_runs=2, cell={**QUICK_CELL, "steps": 5, "n_test": 20},
    ...               verbose=False)
    >>> list(out[40]), out[40][3]["bare"][0][0] > 0
    (['lone', 3], True)
    """
    cell = cell or KOU_CELL
    if threads is not None:
        torch.set_num_threads(threads)
    root = Path(tempfile.mkdtemp(prefix="dyn-batched-cnn-", dir=workdir))
    result: dict[int, dict[str, Any]] = {}
    try:
        warm = _configs(2, ds[0], cell)
        train(warm[0], root / "warmup.zarr")  # imports, allocator, zarr
        train_batch(warm, [None, None])
        for d in ds:
            res: dict[Any, dict[str, list]] = {key: {"recorded": [], "bare": []} for key in ("lone", *batch_sizes)}
            for r in range(repeats):
                lone_cfgs = _configs(lone_runs, d, cell)
                for mode in ("recorded", "bare"):
                    w, c = _clock(lambda: [train(cfg, root / f"l{r}-{i}.zarr" if mode == "recorded" else None)
                                           for i, cfg in enumerate(lone_cfgs)])
                    res["lone"][mode].append((lone_runs / w, lone_runs / c))
                for b in batch_sizes:
                    cfgs = _configs(b, d, cell)
                    for mode in ("recorded", "bare"):
                        outs = [root / f"b{r}-{b}-{i}.zarr" if mode == "recorded" else None for i in range(b)]
                        w, c = _clock(lambda: train_batch(cfgs, outs))
                        res[b][mode].append((b / w, b / c))
                for p in root.iterdir():  # keep the disk small between repeats
                    if p.name != "warmup.zarr":
                        shutil.rmtree(p)
            result[d] = res
            if verbose:
                _print_d(d, res, batch_sizes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def _med(pairs: list[tuple[float, float]], k: int) -> float:
    return statistics.median(p[k] for p in pairs)


def _print_d(d: int, res: dict[Any, dict[str, list]], batch_sizes: tuple[int, ...]) -> None:
    print(f"\nd = {d}: runs/s per wall second (per CPU second), median over repeats; ratio to lone runs", flush=True)
    for mode in ("recorded", "bare"):
        lw, lc = _med(res["lone"][mode], 0), _med(res["lone"][mode], 1)
        line = [f"lone {lw:6.2f} ({lc:6.2f})"]
        for b in batch_sizes:
            bw, bc = _med(res[b][mode], 0), _med(res[b][mode], 1)
            line.append(f"B={b} {bw:6.2f} ({bc:6.2f}) {bw / lw:4.1f}x ({bc / lc:4.1f}x)")
        print(f"  {mode:<8} " + " | ".join(line), flush=True)


def sweep_grid(workdir: Path, *, mus: list[float], ds: list[int], seeds: list[int], record_every: int,
               cell: dict[str, Any]) -> Path:
    """Write a preset (one Kou cell) and a grid file (‖μ‖ × d × seed) for :func:`dyn.experiments.sweep.sweep`."""
    preset = workdir / "kou-cell.toml"

    def toml(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else f'"{v}"' if isinstance(v, str) else repr(v)

    body = "\n".join(f"{k} = {toml(v)}" for k, v in {**cell, "d": max(ds), "record_every": record_every}.items())
    preset.write_text(f'setup = "signal-noise-cnn"\ndescription = "a Kou et al. heatmap cell (benchmark)"\n'
                      f"[config]\n{body}\n")
    grid = workdir / "kou-grid.toml"
    grid.write_text(f'preset = "{preset}"\ndescription = "benchmark grid"\n[axes]\nmu_norm = {mus!r}\nd = {ds!r}\n'
                    f"seed = {seeds!r}\n")
    return grid


def measure_sweep(*, mus: list[float], ds: list[int], seeds: list[int], record_every: int = 10,
                  batch: int | None = None, cell: dict[str, Any] | None = None, threads: int | None = 1,
                  workdir: str | None = None, verbose: bool = True) -> dict[str, Any]:
    """Wall time of the grid ``mus × ds × seeds`` through ``sweep(..., sequential=True)`` (default batch unless
    ``batch``), every run recorded every ``record_every`` steps; how many stores completed and rows came back."""
    from dyn.experiments.sweep import DEFAULT_BATCH, load_grid, sweep
    from dyn.store import read_attrs

    if threads is not None:
        torch.set_num_threads(threads)
    root = Path(tempfile.mkdtemp(prefix="dyn-batched-cnn-sweep-", dir=workdir))
    try:
        grid = load_grid(sweep_grid(root, mus=mus, ds=ds, seeds=seeds, record_every=record_every,
                                    cell=cell or KOU_CELL))
        batch = batch or DEFAULT_BATCH
        frames: list[Any] = []
        w, c = _clock(lambda: frames.append(sweep(grid, root / "sweep", sequential=True, batch=batch,
                                                  progress=False)))
        frame = frames[0]
        complete = sum(read_attrs(p).get("status") == "complete" for p in frame["store"])
        errors = frame.loc[frame["status"] != "complete", "error"]
        res = {"runs": len(frame), "batch": batch, "wall": w, "cpu": c, "stores_complete": complete,
               "rows_complete": int((frame["status"] == "complete").sum()),
               "first_error": errors.iloc[0] if len(errors) else ""}
        if verbose:  # before the clean-up, which takes minutes for a thousand stores on a slow disk
            print(f"  batch={res['batch']}: {res['runs']} runs in {res['wall']:.1f} s wall ({res['cpu']:.1f} s CPU), "
                  f"{res['runs'] / res['wall']:.2f} runs/s; stores complete {res['stores_complete']}/{res['runs']}, "
                  f"rows complete {res['rows_complete']}/{res['runs']}"
                  + (f" (first error: {res['first_error']})" if res["first_error"] else ""), flush=True)
        return res
    finally:
        shutil.rmtree(root, ignore_errors=True)



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cells (20 steps, n_test=100), small batches")
    parser.add_argument("--ds", type=int, nargs="+", default=[100, 600, 1090], help="patch dimensions d")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 64], help="batch sizes B")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--lone-runs", type=int, default=8, help="lone runs timed per repeat and mode")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--sweep", action="store_true", help="also the 20 x 20 x 3 grid through sweep()")
    parser.add_argument("--sweep-batch", type=int, default=None, help="the sweep's batch (default: DEFAULT_BATCH)")
    parser.add_argument("--record-every", type=int, default=10, help="the sweep runs' record_every")
    parser.add_argument("--no-runs", action="store_true", help="skip the runs/s table (with --sweep)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    cell = QUICK_CELL if args.quick else KOU_CELL
    ds = (40, 100) if args.quick else tuple(args.ds)
    batch_sizes = (4, 8) if args.quick else tuple(args.batches)
    threads = args.threads or None
    print(f"signal-noise CNN, batched vs lone train: cell {cell}, {threads or torch.get_num_threads()} torch "
          f"thread(s), {args.repeats} repeat(s), {args.lone_runs} lone runs per mode", flush=True)
    if not args.no_runs:
        measure(ds=ds, batch_sizes=batch_sizes, repeats=args.repeats, lone_runs=args.lone_runs, cell=cell,
                threads=threads, workdir=args.workdir)
    if args.sweep:
        mus = [round(0.5 * (s + 1), 2) for s in range(20)]  # 0.5 .. 10.0
        grid_ds = [100 + 50 * t for t in range(20)]  # 100 .. 1050
        seeds = [0, 1, 2]
        if args.quick:
            mus, grid_ds, seeds = mus[::5], [40, 60], [0, 1]
        print(f"\ngrid {len(mus)} ||mu|| x {len(grid_ds)} d x {len(seeds)} seeds = {len(mus) * len(grid_ds) * len(seeds)} "
              f"runs (||mu|| {mus[0]}..{mus[-1]}, d {grid_ds[0]}..{grid_ds[-1]}), record_every={args.record_every}, "
              "sweep(..., sequential=True)", flush=True)
        measure_sweep(mus=mus, ds=grid_ds, seeds=seeds, record_every=args.record_every, batch=args.sweep_batch,
                      cell=cell, threads=threads, workdir=args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
