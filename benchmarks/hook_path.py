"""The recorder's per-step cost on a user-written loop, against its floor, measured in one process.

    python benchmarks/hook_path.py                  # paper scale + 10x scale (~2-4 min on 2 cores)
    python benchmarks/hook_path.py --quick          # paper scale only, fewer steps
    python benchmarks/hook_path.py --device cuda    # absolute figures on a GPU

Four loops train the same :class:`~dyn.setups.huang2024.train.Huang2024Setup` (multi-modal, full-batch GD):

a. ``bare``: forward, backward, ``opt.step()``; nothing recorded.
b. ``floor``: (a) plus, after each step, the probe GEMM alone, ``torch.mm(W, probes, out=buf[t])`` into a
   preallocated buffer: what recording at least costs when the inner products are computed a second time.
c. ``hook``: (a) with a :class:`~dyn.Recorder` attached to the optimizer (its post-step hook records) and
   ``rec.log(loss=loss)`` after each step: the user-loop hook path.
d. ``capture``: (c), but the forward pass evaluates each encoder through a bias-free ``nn.Linear`` on the probe
   vectors and the recorder takes the pre-activations from a forward hook (:meth:`~dyn.Recorder.capture`) instead
   of a second GEMM.

Per-step cost is the slope between runs of T and 2T steps (fixed costs, e.g. creating and closing the store,
cancel), the median over interleaved repeats. Two slopes are printed for the recording paths: ``train`` up to the
end of the loop (what the training thread pays per step) and ``run`` up to the end of ``close()`` (which also
includes writing the steps, the store's work). Ratios are against the floor (b); only ratios within one run mean
anything on a noisy machine.

Measured on a shared 2-core CPU box (``--threads 1``; other jobs running, so ranges are wide), three invocations
each: paper scale, T=200, 5 repeats: hook/floor 0.93-1.18 (median estimator) and 1.02-1.11 (min); capture/floor
0.72-0.94 (median) and 0.82-0.85 (min); the recorder's own bookkeeping (rec.step + rec.log beyond the GEMMs)
+33 to +97 us per step, 0.9-2.7 % of the floor step. 10x scale, T=10, 3 repeats: hook/floor 0.58-1.12 (median),
0.97-1.02 (min); capture/floor 0.45-0.74 (median), 0.41-0.88 (min). With torch's default 2 threads on that loaded
box the paper-scale loop ran ~100x slower (OpenMP threads descheduled), hence ``--threads``.

The functions are importable (``from hook_path import loops, per_step``) by ``benchmarks/record_overhead.py``.
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
from typing import Callable

import torch

import dyn
from dyn.record import Recorder
from dyn.setups.huang2024.objective import multi_modal_loss
from dyn.setups.huang2024.train import Huang2024Setup

PAPER = dict(d=2000, n=100, n_test=200, m=50)
TENX = dict(d=8000, n=1000, n_test=200, m=200)
PATHS = ("bare", "floor", "hook", "capture")


def _sync(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock times cover it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """One setup, its initial weights (restored before every run) and the four loops.

    Parameters
    ----------
    sizes : dict
        ``d``, ``n``, ``n_test``, ``m`` of a :class:`dyn.Config`.
    device : str
    workdir : Path
        Where the recording loops write their stores.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> b = Bench(dict(d=20, n=8, n_test=4, m=4), "cpu", pathlib.Path(tempfile.mkdtemp()))
    >>> sorted(b.run("hook", 3))
    ['run', 'train']
    """

    def __init__(self, sizes: dict, device: str, workdir: Path):
        self.cfg = dyn.Config(**sizes, steps=1, modality="multi", device=device)
        self.setup = Huang2024Setup(self.cfg)
        self.device = torch.device(device)
        self.w0 = {name: enc.weight.detach().clone() for name, enc in self.setup.encoders.items()}
        self.workdir = workdir
        # The capture loop's encoders: bias-free linear layers sharing the setup's weights, fed the probe vectors
        # as rows, so their outputs are (probes, neurons) = (W @ probes).T.
        self.linear = {}
        self.rows = {}
        for name, enc in self.setup.encoders.items():
            lin = torch.nn.Linear(enc.weight.shape[1], enc.weight.shape[0], bias=False, device=self.device)
            lin.weight = enc.weight
            self.linear[name] = lin
            self.rows[name] = self.setup.sites[name].probe_matrix().T.contiguous()

    def _reset(self) -> torch.optim.Optimizer:
        with torch.no_grad():
            for name, enc in self.setup.encoders.items():
                enc.weight.copy_(self.w0[name])
        return torch.optim.SGD(self.setup.parameters(), lr=self.cfg.eta)

    def _linear_loss(self) -> torch.Tensor:
        """The setup's multi-modal loss with pre-activations from the linear layers' forward passes."""
        s, n = self.setup, self.cfg.n
        z = {name: self.linear[name](self.rows[name]).T for name in self.linear}
        f = s._features(z["h"], slice(1, 1 + n))
        g = s._features(z["g"], slice(1, 1 + n))
        return multi_modal_loss(f, g, s.data.negatives, self.cfg.tau).loss

    def run(self, path: str, steps: int) -> dict[str, float]:
        """Seconds for ``steps`` steps of loop ``path``: ``train`` (the loop alone, after the recorder opened)
        and ``run`` (from creating the recorder to the end of ``close()``)."""
        opt = self._reset()
        setup = self.setup
        buffers = None
        if path == "floor":
            probes = {name: s.probe_matrix() for name, s in setup.sites.items()}
            buffers = {name: torch.empty((steps + 1, s.weight.shape[0], probes[name].shape[1]), device=self.device)
                       for name, s in setup.sites.items()}
        _sync(self.device)
        t_open = time.perf_counter()
        rec = None
        if path in ("hook", "capture"):
            rec = Recorder(self.workdir / f"{path}.zarr", setup.sites, optimizer=opt, overwrite=True)
            if path == "capture":
                for name, lin in self.linear.items():
                    rec.capture(name, lin, self.rows[name])
            rec.open()
        _sync(self.device)
        t0 = time.perf_counter()
        loss_fn: Callable[[], torch.Tensor] = self._linear_loss if path == "capture" else (lambda: setup.loss().loss)
        for t in range(steps):
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if buffers is not None:
                with torch.no_grad():
                    for name, s in setup.sites.items():
                        torch.mm(s.weight, probes[name], out=buffers[name][t + 1])
            if rec is not None:
                rec.log(loss=loss)
        _sync(self.device)
        t_train = time.perf_counter() - t0
        if rec is not None:
            rec.close()
        _sync(self.device)
        return {"train": t_train, "run": time.perf_counter() - t_open}


def per_step(bench: Bench, steps: int, repeats: int, paths=PATHS, estimator=statistics.median
             ) -> dict[str, dict[str, float]]:
    """Seconds per step of each loop: slope between ``steps`` and ``2 * steps``, ``estimator`` (median; ``min``
    resists a loaded machine, whose interference only ever adds time) of interleaved repeats.

    Returns ``{path: {"train": s, "run": s}}``.
    """
    return slopes(per_step_times(bench, steps, repeats, paths), steps, estimator)


def per_step_times(bench: Bench, steps: int, repeats: int, paths=PATHS) -> dict[tuple[str, str, int], list[float]]:
    """Raw seconds of every run: ``{(path, "train" | "run", k): [one per repeat]}`` for ``k * steps`` steps."""
    bench.run("bare", max(steps // 4, 2))  # warm-up: allocator, kernels, lazy imports
    bench.run("hook", max(steps // 4, 2))
    times: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(repeats):
        for k in (1, 2):
            for path in paths:  # interleaved, so drift hits every loop alike
                for part, value in bench.run(path, k * steps).items():
                    times.setdefault((path, part, k), []).append(value)
    return times


def slopes(times: dict[tuple[str, str, int], list[float]], steps: int, estimator=statistics.median
           ) -> dict[str, dict[str, float]]:
    """Per-step seconds from :func:`per_step_times`: (estimate at 2T − estimate at T) / T."""
    est = {key: estimator(v) for key, v in times.items()}
    paths = sorted({p for p, _, _ in times}, key=list(PATHS).index)
    return {path: {part: (est[(path, part, 2)] - est[(path, part, 1)]) / steps for part in ("train", "run")}
            for path in paths}


def hook_overhead(bench: Bench, steps: int, repeats: int) -> dict[str, float]:
    """Seconds per step of the recorder's own work, without training: ``rec.step(); rec.log(loss=loss)``
    (its GEMMs included) against the probe GEMMs alone into a preallocated buffer; medians of interleaved
    repeats. Less sensitive to a loaded machine than the whole-loop slopes; chunk writes are excluded by
    giving the recorder one chunk for all steps."""
    setup = bench.setup
    probes = {name: s.probe_matrix() for name, s in setup.sites.items()}
    buffers = {name: torch.empty((steps + 1, s.weight.shape[0], probes[name].shape[1]), device=bench.device)
               for name, s in setup.sites.items()}
    loss = torch.ones((), device=bench.device, requires_grad=True) * 2.0
    per_step_bytes = sum(s.weight.shape[0] * s.n_columns * 4 for s in setup.sites.values())

    def gemm_alone() -> float:
        _sync(bench.device)
        t0 = time.perf_counter()
        for t in range(steps):
            for name, s in setup.sites.items():
                torch.mm(s.weight, probes[name], out=buffers[name][t + 1])
        _sync(bench.device)
        return (time.perf_counter() - t0) / steps

    def recorder() -> float:
        rec = Recorder(bench.workdir / "overhead.zarr", setup.sites, overwrite=True,
                       chunk_bytes=(steps + 2) * per_step_bytes)
        rec.open()
        rec.step()
        rec.log(loss=loss)  # the first log allocates the chunk's scalar buffer
        _sync(bench.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            rec.step()
            rec.log(loss=loss)
        _sync(bench.device)
        dt = (time.perf_counter() - t0) / steps
        rec.close()
        return dt

    gemm_alone(), recorder()  # warm-up
    times: dict[str, list[float]] = {"gemm": [], "recorder": []}
    for _ in range(repeats):
        times["gemm"].append(gemm_alone())
        times["recorder"].append(recorder())
    return {k: statistics.median(v) for k, v in times.items()}


def report(label: str, sizes: dict, steps: int, repeats: int, device: str, workdir: Path) -> dict[str, float]:
    """Print one scale's per-step costs and ratios; return the ratios ``hook/floor`` and ``capture/floor``."""
    print(f"\n## {label}: d={sizes['d']} n={sizes['n']} m={sizes['m']}, multi-modal, every step recorded; "
          f"slope between {steps} and {2 * steps} steps, median of {repeats} interleaved repeats")
    bench = Bench(sizes, device, workdir)
    times = per_step_times(bench, steps, repeats)
    out = {}
    for est_name, est in (("median", statistics.median), ("min", min)):
        res = slopes(times, steps, est)
        floor = res["floor"]["train"]
        print(f"{est_name + ' of repeats':<16} {'train ms/step':>13} {'run ms/step':>12} {'train/floor':>12} "
              f"{'run/floor':>10}")
        for path in PATHS:
            r = res[path]
            print(f"{path:<16} {r['train'] * 1e3:>13.3f} {r['run'] * 1e3:>12.3f} {r['train'] / floor:>12.3f} "
                  f"{r['run'] / floor:>10.3f}")
        out[est_name] = res
    res = out["median"]
    floor = res["floor"]["train"]
    gemm = res["floor"]["train"] - res["bare"]["train"]
    print(f"probe GEMM alone: {gemm * 1e3:.3f} ms/step ({gemm / res['bare']['train']:.1%} of the bare step)")
    over = hook_overhead(bench, 4 * steps, max(repeats, 5))
    extra = over["recorder"] - over["gemm"]
    print(f"recorder alone (rec.step + rec.log, no training): {over['recorder'] * 1e6:.1f} us/step vs the GEMMs "
          f"alone {over['gemm'] * 1e6:.1f} us/step: {extra * 1e6:+.1f} us of bookkeeping per step, "
          f"{extra / floor:+.2%} of the floor step")
    return {"bookkeeping/floor": extra / floor, "hook/floor(min)": out["min"]["hook"]["train"] / out["min"]["floor"]["train"],
            "capture/floor(min)": out["min"]["capture"]["train"] / out["min"]["floor"]["train"],
            "hook/floor": res["hook"]["train"] / floor, "capture/floor": res["capture"]["train"] / floor,
            "hook_run/floor": res["hook"]["run"] / floor, "capture_run/floor": res["capture"]["run"] / floor}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="paper scale only, fewer steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="torch device (e.g. cuda)")
    parser.add_argument("--sections", default="paper,tenx", help="comma-separated subset of paper,tenx")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's); 1 keeps timings sane on an oversubscribed machine")
    parser.add_argument("--steps", type=int, default=None, help="T of the paper-scale slope (default 200; 10x: T/10)")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary folder under runs/)")
    args = parser.parse_args(argv)
    dyn.record.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.workdir or "runs")
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-hook-", dir=root))
    print(f"dyn {dyn.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} "
          f"cores, device {args.device}")
    try:
        sections = {"paper"} if args.quick else set(args.sections.split(","))
        steps = args.steps or (50 if args.quick else 200)
        if "paper" in sections:
            report("paper scale", PAPER, steps, max(args.repeats, 3), args.device, workdir)
        if "tenx" in sections:
            report("10x scale", TENX, max(steps // 10, 2), max(args.repeats, 3), args.device, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
