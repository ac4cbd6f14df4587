"""Recording overhead, write throughput and the save-the-weights alternative, measured in one process.

    python benchmarks/record_overhead.py            # paper scale + 10x scale (~3-5 min on 2 cores)
    python benchmarks/record_overhead.py --quick    # smaller, ~30 s

Prints ratios measured in this one run (never absolute targets; machines are noisy):

1. recorded / bare training step, paper scale (d=2000, n=100, m=50, both modalities, every step) and 10x scale
   (d=8000, n=1000, m=200). "recorded" is dyn.train (inner products captured from the forward pass);
   "hook" is a user-style loop where the recorder's optimizer hook computes W @ probes with one GEMM per site.
2. store write throughput (StoreWriter.append, compressed zarr) / raw numpy.tofile of the same bytes.
3. dyn vs the user's alternative: torch.save(W) at every step, then post-hoc inner products: extra time and disk.
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

import dyn
from dyn.record import DEFAULT_CHUNK_BYTES, Recorder
from dyn.store import StoreWriter
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
    """Per-step cost by the slope between runs of T and 2T steps (the fixed cost of creating and closing a
    store cancels), the fixed cost itself, and the whole-run ratio at T steps."""
    print(f"\n## {label}: d={sizes['d']} n={sizes['n']} m={sizes['m']}, every step recorded; "
          f"slope between {steps} and {2 * steps} steps, median of {repeats}")
    print(f"{'modality':<8} {'path':<9} {'bare ms/step':>12} {'rec ms/step':>12} {'step ratio':>10} "
          f"{'fixed ms':>9} {f'run ratio @{steps}':>15}")
    results = {}
    for modality in ("single", "multi"):
        cfgs = {k: dyn.Config(**sizes, steps=k * steps, modality=modality) for k in (1, 2)}
        _bare(cfgs[1])  # warm-up: allocator, kernels, imports
        times = {(path, k): [] for path in ("bare", "recorded", "hook") for k in (1, 2)}
        for _ in range(repeats):  # interleaved, so drift hits every variant alike
            for k, cfg in cfgs.items():
                times[("bare", k)].append(_bare(cfg))
                times[("recorded", k)].append(_recorded(cfg, workdir / f"{modality}.zarr"))
                times[("hook", k)].append(_hook_loop(cfg, workdir / f"{modality}-hook.zarr")[0])
        med = {key: statistics.median(v) for key, v in times.items()}
        bare_step = (med[("bare", 2)] - med[("bare", 1)]) / steps
        for path in ("recorded", "hook"):
            step = (med[(path, 2)] - med[(path, 1)]) / steps
            fixed = med[(path, 1)] - med[("bare", 1)] - (step - bare_step) * steps
            run_ratio = med[(path, 1)] / med[("bare", 1)]
            results[(modality, path)] = step / bare_step
            print(f"{modality:<8} {path:<9} {bare_step * 1e3:>12.3f} {step * 1e3:>12.3f} {step / bare_step:>10.3f} "
                  f"{fixed * 1e3:>9.1f} {run_ratio:>15.3f}")
    return results


def throughput(workdir, total_mb, m=200, probes=1001):
    per_step = m * probes * 4
    chunk_steps = max(DEFAULT_CHUNK_BYTES // per_step, 1)
    print(f"\n## store write throughput: {total_mb} MiB of float32 inner products, m={m}, {probes} probes per step, "
          f"{chunk_steps * per_step / 2**20:.1f} MiB chunks (the recorder's default)")
    n_chunks = max(int(total_mb * (1 << 20) / (per_step * chunk_steps)), 1)
    rng = np.random.default_rng(0)
    # Inner products evolve smoothly in time: a random walk is a fair stand-in for compressibility.
    start = rng.standard_normal((m, probes)).astype(np.float32)
    chunks = []
    for _ in range(n_chunks):
        walk = np.cumsum(rng.standard_normal((chunk_steps, m, probes)).astype(np.float32) * 1e-3, axis=0) + start
        start = walk[-1]
        chunks.append(walk)
    nbytes = sum(c.nbytes for c in chunks)

    raw_path = workdir / "raw.bin"
    t0 = time.perf_counter()
    with open(raw_path, "wb") as f:
        for c in chunks:
            c.tofile(f)
    raw = time.perf_counter() - t0

    writer = StoreWriter(workdir / "tp.zarr", overwrite=True)
    writer.create({"sites": ["h"]}, chunk_steps)
    writer.add_site("h", coords={"neuron": np.arange(m), "sample": np.arange(probes), "signal": np.array(["mu"])},
                    step_vars={"noise_inner": ("neuron", "sample")}, static={})
    t0 = time.perf_counter()
    step0 = 0
    for c in chunks:
        steps = np.arange(step0, step0 + len(c))
        writer.append(steps, {"h": {"noise_inner": c}}, {})
        step0 += len(c)
    store = time.perf_counter() - t0
    writer.close("complete")
    disk = store_size(workdir / "tp.zarr")
    print(f"raw tofile {nbytes / raw / 2**20:8.0f} MiB/s   dyn store {nbytes / store / 2**20:8.0f} MiB/s   "
          f"ratio {raw / store:.3f}   (compressed to {disk / nbytes:.2f} of raw)")
    raw_path.unlink()
    return raw / store


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
    dyn_extra = max(rec - bare, 1e-9)
    alt_disk = sum(f.stat().st_size for f in save_dir.iterdir())
    dyn_disk = store_size(workdir / "alt.zarr")
    print(f"extra time over bare training: alternative {alt_extra:.3f} s (save {train_save - bare:.3f} s + "
          f"post-hoc {post:.3f} s), dyn {rec - bare:.3f} s  -> {alt_extra / dyn_extra:.1f}x less with dyn")
    print(f"total time: alternative {bare + alt_extra:.3f} s, dyn {rec:.3f} s -> {(bare + alt_extra) / rec:.2f}x")
    print(f"disk: alternative {alt_disk / 2**20:.1f} MiB, dyn {dyn_disk / 2**20:.1f} MiB "
          f"(whole store, probes and weights included) -> {alt_disk / dyn_disk:.1f}x less with dyn")
    shutil.rmtree(save_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary folder under runs/)")
    parser.add_argument("--device", default="cpu", help="torch device for training and recording (e.g. cuda)")
    parser.add_argument("--sections", default="paper,tenx,throughput,alternative",
                        help="comma-separated subset of paper,tenx,throughput,alternative")
    args = parser.parse_args(argv)
    PAPER["device"] = TENX["device"] = args.device
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    root = Path(args.workdir or "runs")
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=root))
    print(f"dyn {dyn.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"device {args.device}")
    try:
        if args.quick:
            overhead("paper scale (quick)", PAPER, 50, args.repeats, workdir)
            throughput(workdir, 64)
            alternative(PAPER, 60, workdir)
        else:
            sections = set(args.sections.split(","))
            if "paper" in sections:
                overhead("paper scale", PAPER, 200, args.repeats, workdir)
            if "tenx" in sections:
                overhead("10x scale", TENX, 25, max(2, args.repeats // 2), workdir)
            if "throughput" in sections:
                throughput(workdir, 512)
            if "alternative" in sections:
                alternative(PAPER, 200, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
