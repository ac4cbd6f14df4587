"""Every row of dyn's performance table, measured in one process (issue 14), with a summary at the end.

    python benchmarks/record_overhead.py            # every row (~6-10 min on 2 cores)
    python benchmarks/record_overhead.py --quick    # fewer steps and repeats, ~2-3 min
    python benchmarks/record_overhead.py --device cuda   # absolute figures on a GPU

Prints ratios measured in this one run (never absolute targets; machines are noisy):

1. whole run at paper scale (d=2000, n=100, m=50, 200 steps, store created and closed): ``dyn.train`` (inner
   products captured from the forward pass) / the same training unrecorded; per-step slope and fixed cost too.
2. the user-loop hook path against its floor (the bare loop plus the probe GEMM alone), and forward capture
   (:mod:`hook_path`).
3. the fixed cost of creating and closing a store, by phase, at paper and 10x scale (:mod:`store_costs`).
4. ``StoreWriter.append`` throughput / raw ``numpy.tofile`` of the same bytes (:mod:`store_costs`).
5. dyn vs the user's alternative, ``torch.save(W)`` at every step then post-hoc inner products: extra time, disk.
6. runs/s of batched training (:mod:`dyn.setups.huang2024.batched`) vs sequential ``dyn.train`` (:mod:`batched`).
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules

import dyn
from dyn.record import Recorder
from dyn.setups.huang2024.train import Huang2024Setup
from dyn.setups.base import store_size

PAPER = dict(d=2000, n=100, n_test=200, m=50)
TENX = dict(d=8000, n=1000, n_test=200, m=200)


def _bare(cfg):
    t0 = time.perf_counter()
    dyn.train(cfg, None)
    return time.perf_counter() - t0


def _recorded(cfg, out):
    t0 = time.perf_counter()
    dyn.train(cfg, out, overwrite=True)
    return time.perf_counter() - t0


def _hook_loop(cfg, out, save_dir=None):
    """A user-written loop: the recorder's optimizer hook computes W @ probes (or torch.save when save_dir)."""
    t0 = time.perf_counter()
    setup = Huang2024Setup(cfg)
    opt = torch.optim.SGD(setup.parameters(), lr=cfg.eta)
    rec = None if out is None else Recorder(out, setup.sites, optimizer=opt, overwrite=True)
    if rec is not None:
        rec.open()
    for t in range(cfg.steps):
        if save_dir is not None:
            for name, enc in setup.encoders.items():
                torch.save(enc.weight.detach().clone(), os.path.join(save_dir, f"{name}_{t:06d}.pt"))
        loss = setup.loss().loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if rec is not None:
            rec.log(loss=loss)
    if save_dir is not None:
        for name, enc in setup.encoders.items():
            torch.save(enc.weight.detach().clone(), os.path.join(save_dir, f"{name}_{cfg.steps:06d}.pt"))
    if rec is not None:
        rec.close()
    return time.perf_counter() - t0, setup


def _posthoc(save_dir, setup, steps):
    """What the alternative needs afterwards: load every snapshot and compute its inner products."""
    t0 = time.perf_counter()
    for name, site in setup.sites.items():
        probes = site.probe_matrix()
        out = np.empty((steps + 1, site.weight.shape[0], probes.shape[1]), dtype=np.float32)
        for t in range(steps + 1):
            w = torch.load(os.path.join(save_dir, f"{name}_{t:06d}.pt"), weights_only=True)
            out[t] = (w @ probes).numpy()
    return time.perf_counter() - t0


def overhead(label, sizes, steps, repeats, workdir):
    """dyn.train recorded vs unrecorded: per-step cost by the slope between runs of T and 2T steps (the fixed cost
    of creating and closing a store cancels), the fixed cost itself, and the whole-run ratio at T steps.
    Returns ``{modality: {"step": ratio, "fixed_ms": ms, "run": [whole-run ratio per repeat]}}``."""
    print(f"\n## {label}: d={sizes['d']} n={sizes['n']} m={sizes['m']}, every step recorded by dyn.train; "
          f"slope between {steps} and {2 * steps} steps, median of {repeats} interleaved repeats")
    print(f"{'modality':<8} {'bare ms/step':>12} {'rec ms/step':>12} {'step ratio':>10} {'fixed ms':>9} "
          f"{f'run ratio @{steps} (median [min-max])':>34}")
    results = {}
    for modality in ("single", "multi"):
        cfgs = {k: dyn.Config(**sizes, steps=k * steps, modality=modality) for k in (1, 2)}
        _bare(cfgs[1])  # warm-up: allocator, kernels, imports
        _recorded(cfgs[1], workdir / f"{modality}.zarr")
        times = {(path, k): [] for path in ("bare", "recorded") for k in (1, 2)}
        for _ in range(repeats):  # interleaved, so drift hits every variant alike
            for k, cfg in cfgs.items():
                times[("bare", k)].append(_bare(cfg))
                times[("recorded", k)].append(_recorded(cfg, workdir / f"{modality}.zarr"))
        med = {key: statistics.median(v) for key, v in times.items()}
        bare_step = (med[("bare", 2)] - med[("bare", 1)]) / steps
        step = (med[("recorded", 2)] - med[("recorded", 1)]) / steps
        fixed = med[("recorded", 1)] - med[("bare", 1)] - (step - bare_step) * steps
        runs = [r / b for r, b in zip(times[("recorded", 1)], times[("bare", 1)])]
        results[modality] = {"step": step / bare_step, "fixed_ms": fixed * 1e3, "run": runs}
        print(f"{modality:<8} {bare_step * 1e3:>12.3f} {step * 1e3:>12.3f} {step / bare_step:>10.3f} "
              f"{fixed * 1e3:>9.1f} {_range(runs):>34}")
    return results


def checksum_cost(sizes, steps, repeats, workdir):
    """Whole-run ratio (dyn.train recorded / bare) with every numeric chunk checksummed (crc32c, the default) and
    without, interleaved in one process; returns ``{modality: {"crc": [ratios], "plain": [ratios]}}``."""
    import dyn.store.writer as writer

    print(f"\n## crc32c checksums: d={sizes['d']} n={sizes['n']} m={sizes['m']}, {steps} steps, whole-run ratio "
          f"recorded / bare with and without checksums, {repeats} interleaved repeats")
    print(f"{'modality':<8} {'with crc32c':>28} {'without':>28} {'change of medians':>18}")
    results = {}
    default = writer.CHECKSUM
    try:
        for modality in ("single", "multi"):
            cfg = dyn.Config(**sizes, steps=steps, modality=modality)
            _bare(cfg)
            _recorded(cfg, workdir / f"crc-{modality}.zarr")  # warm-up
            ratios = {"crc": [], "plain": []}
            for _ in range(repeats):
                for variant in ("crc", "plain"):
                    writer.CHECKSUM = variant == "crc"
                    rec = _recorded(cfg, workdir / f"crc-{modality}.zarr")
                    ratios[variant].append(rec / _bare(cfg))
            writer.CHECKSUM = default
            change = statistics.median(ratios["crc"]) - statistics.median(ratios["plain"])
            # the same cost measured directly, robust to a busy machine: the time a recorded run spends computing
            # checksums (every CRC-32C and every zero-extension over a padded chunk's hole, timed inside the run;
            # fastest of repeats) over the bare run (fastest of repeats)
            stored = store_size(workdir / f"crc-{modality}.zarr")
            crc_s = min(_checksum_seconds(cfg, workdir / f"crc-{modality}.zarr") for _ in range(repeats))
            bare_s = min(_bare(cfg) for _ in range(repeats))
            results[modality] = {**ratios, "change": change, "direct": crc_s / bare_s, "bytes": stored,
                                 "crc_ms": crc_s * 1e3, "bare_s": bare_s}
            print(f"{modality:<8} {_range(ratios['crc']):>28} {_range(ratios['plain']):>28} {change:>+18.3f}")
            print(f"{'':<8} direct: a recorded run ({stored / 2**20:.1f} MiB stored) spends {crc_s * 1e3:.1f} ms in "
                  f"checksums, the bare run takes {bare_s:.2f} s -> ratio change {crc_s / bare_s:+.4f}")
    finally:
        writer.CHECKSUM = default
    return results


def _checksum_seconds(cfg, out) -> float:
    """Seconds one recorded run spends in dyn's checksum code (timed around each call)."""
    import dyn.store.v3 as v3

    spent = [0.0]
    originals = {name: getattr(v3, name) for name in ("_crc32c", "crc32c_zeros")}

    def timed(fn):
        def call(*args):
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[0] += time.perf_counter() - t0
        return call

    for name, fn in originals.items():
        setattr(v3, name, timed(fn))
    try:
        _recorded(cfg, out)
    finally:
        for name, fn in originals.items():
            setattr(v3, name, fn)
    return spent[0]


def _range(values) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def alternative(sizes, steps, workdir):
    print(f"\n## dyn vs torch.save(W) every step + post-hoc inner products: d={sizes['d']} n={sizes['n']} "
          f"m={sizes['m']}, multi-modal, {steps} steps")
    cfg = dyn.Config(**sizes, steps=steps, modality="multi")
    bare = statistics.median(_bare(cfg) for _ in range(2))
    rec = statistics.median(_recorded(cfg, workdir / "alt.zarr") for _ in range(2))
    save_dir = workdir / "snapshots"
    shutil.rmtree(save_dir, ignore_errors=True)
    save_dir.mkdir()
    train_save, setup = _hook_loop(cfg, None, save_dir=str(save_dir))
    post = _posthoc(str(save_dir), setup, steps)
    alt_extra = train_save - bare + post
    # dyn's extra time is the difference of two noisy medians; below 1% of the bare run it is noise, not a cost
    floor = 0.01 * bare
    dyn_extra = max(rec - bare, floor)
    at_least = ">= " if rec - bare < floor else ""
    alt_disk = sum(f.stat().st_size for f in save_dir.iterdir())
    dyn_disk = store_size(workdir / "alt.zarr")
    print(f"extra time over bare training: alternative {alt_extra:.3f} s (save {train_save - bare:.3f} s + "
          f"post-hoc {post:.3f} s), dyn {rec - bare:.3f} s  -> {at_least}{alt_extra / dyn_extra:.1f}x less with dyn")
    print(f"total time: alternative {bare + alt_extra:.3f} s, dyn {rec:.3f} s -> {(bare + alt_extra) / rec:.2f}x")
    print(f"disk: alternative {alt_disk / 2**20:.1f} MiB, dyn {dyn_disk / 2**20:.1f} MiB "
          f"(whole store, probes and weights included) -> {alt_disk / dyn_disk:.1f}x less with dyn")
    shutil.rmtree(save_dir)
    return {"time": alt_extra / dyn_extra, "at_least": at_least, "disk": alt_disk / dyn_disk}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary folder under runs/)")
    parser.add_argument("--device", default="cpu", help="torch device for training and recording (e.g. cuda)")
    parser.add_argument("--sections", default="paper,checksum,hook,store,throughput,alternative,batched",
                        help="comma-separated subset of paper,checksum,hook,store,throughput,alternative,batched,tenx "
                             "(tenx: the 10x-scale dyn.train and hook rows, slow)")
    args = parser.parse_args(argv)
    import batched
    import hook_path
    import store_costs

    PAPER["device"] = TENX["device"] = args.device
    root = Path(args.workdir or "runs")
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=root))
    print(f"dyn {dyn.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"device {args.device}")
    sections = set(args.sections.split(","))
    repeats = 2 if args.quick else args.repeats
    rows = []  # (what, measured, target)
    try:
        if "paper" in sections:
            res = overhead("paper scale", PAPER, 50 if args.quick else 200, repeats, workdir)
            for modality, r in res.items():
                rows.append((f"whole run, paper scale, {50 if args.quick else 200} steps, dyn.train ({modality}-modal) / bare",
                             _range(r["run"]) + f" (per step {r['step']:.3f}, fixed {r['fixed_ms']:.0f} ms)", "<= 1.10"))
        if "checksum" in sections:
            steps = 50 if args.quick else 200
            res = checksum_cost(PAPER, steps, max(repeats, 3), workdir)
            for modality, r in res.items():
                rows.append((f"whole-run ratio change from crc32c checksums, paper scale, {steps} steps ({modality})",
                             f"{r['change']:+.3f} interleaved (with {_range(r['crc'])}, without {_range(r['plain'])}); "
                             f"{r['direct']:+.4f} direct ({r['crc_ms']:.1f} ms of CRC / {r['bare_s']:.2f} s bare)",
                             "<= +0.02"))
        if "tenx" in sections:
            overhead("10x scale", TENX, 25, max(2, repeats // 2), workdir)
        if "hook" in sections:
            steps = 50 if args.quick else 200
            hook = hook_path.report("paper scale, user loop", {k: v for k, v in PAPER.items() if k != "device"},
                                    steps, max(repeats, 3), args.device, workdir)
            rows.append(("user-loop hook path / (bare loop + probe GEMM alone)",
                         f"{hook['hook/floor']:.3f} median, {hook['hook/floor(min)']:.3f} min of repeats", "<= 1.10"))
            rows.append(("same, forward capture (Recorder.capture) / floor",
                         f"{hook['capture/floor']:.3f} median, {hook['capture/floor(min)']:.3f} min", "-"))
            if "tenx" in sections:
                hook_path.report("10x scale, user loop", {k: v for k, v in TENX.items() if k != "device"},
                                 max(steps // 10, 2), 3, args.device, workdir)
        if "store" in sections:
            print()
            paper = store_costs.create_close(store_costs.PAPER, 5 if args.quick else 7, workdir)
            ms = {k: [v * 1e3 for v in paper[k]] for k in ("writer", "total", "recorder")}
            rows.append(("fixed cost of creating and closing a store, paper scale: StoreWriter alone; + host copies "
                         "and Gram; Recorder open+close (incl. step 0's GEMM)",
                         "; ".join(f"{statistics.median(v):.0f} [{min(v):.0f}-{max(v):.0f}] ms" for v in ms.values()),
                         "<= 50 ms"))
            if not args.quick:
                tenx = store_costs.create_close(store_costs.TENX, 3, workdir)
                rec_ms = [v * 1e3 for v in tenx["recorder"]]
                rows.append(("same, 10x scale (Recorder open+close; ~99 MB of statics)",
                             f"{statistics.median(rec_ms):.0f} [{min(rec_ms):.0f}-{max(rec_ms):.0f}] ms", "-"))
        if "throughput" in sections:
            print()
            ratios = store_costs.append_throughput(None, 3, workdir=workdir)
            rows.append(("store write throughput / raw numpy.tofile (8 MiB appends, uncompressed)",
                         _range(ratios), ">= 0.85"))
        if "alternative" in sections:
            alt = alternative(PAPER, 60 if args.quick else 200, workdir)
            rows.append(("extra time vs torch.save(W) every step + post-hoc inner products", f"{alt['at_least']}{alt['time']:.1f}x less",
                         ">= 5x less"))
            rows.append(("disk vs that alternative", f"{alt['disk']:.1f}x less", ">= 15x less"))
        if "batched" in sections:
            print("\n## batched runs vs sequential dyn.train (1 torch thread each, as a Dask worker)")
            for scale in ("paper", "phase"):
                res = batched.measure(scale="quick" if args.quick else scale, batch_sizes=(8,),
                                      repeats=1 if args.quick else repeats, sequential_runs=2 if args.quick else 4,
                                      device=args.device, workdir=workdir)
                rows.append((f"runs/s, batched B=8 / sequential dyn.train, recorded, {scale} size"
                             + (" (quick)" if args.quick else ""),
                             _range(res["speedup"][8]) + f" (bare: {statistics.median(res['batched_bare'][8]):.2f} vs "
                             f"{statistics.median(res['sequential_bare']):.2f} runs/s)", ">= 10x"))
                if args.quick:
                    break
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n## Summary (issue 14's table; medians [min-max] over repeats within this run)")
    width = max((len(r[0]) for r in rows), default=10)
    for what, measured, target in rows:
        print(f"{what:<{width}}  {measured}   target {target}")


if __name__ == "__main__":
    sys.exit(main())
