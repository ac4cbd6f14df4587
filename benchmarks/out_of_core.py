"""Exact γ/ρ and a per-step summary of a recording larger than comfortable in memory, with peak RSS.

    python benchmarks/out_of_core.py            # ~3 GiB of inner products (takes ~2-4 min on 2 cores)
    python benchmarks/out_of_core.py --gib 0.5  # quicker

Synthesises a recording through the store writer (random-walk inner products; m=200 neurons, n=2000 samples, one
signal, d=2100), then, in a fresh process, opens it lazily (``dyn.open(path, chunks={})``), computes the exact
decomposition and the max over neurons per step of γ and ρ, and reports peak resident memory against the size
of one chunk and of the whole store.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

M, N, D = 200, 2000, 2100


def synthesise(path: Path, gib: float) -> dict:
    from dyn.record import DEFAULT_CHUNK_BYTES
    from dyn.store import StoreWriter
    from dyn.setups.base import store_size

    rng = np.random.default_rng(0)
    per_step = M * (N + 1) * 4
    steps = max(int(gib * 2**30 / per_step), 4)
    chunk_steps = max(DEFAULT_CHUNK_BYTES // per_step, 1)
    signal = rng.standard_normal((1, D)).astype(np.float32) * 3
    noise = rng.standard_normal((N, D)).astype(np.float32)
    basis = np.concatenate([signal, noise]).astype(np.float64)
    writer = StoreWriter(path, overwrite=True)
    writer.create({"sites": ["h"], "schedule": "every(1)", "log_at": "current"}, chunk_steps)
    coords = {"neuron": np.arange(M), "signal": np.array(["mu"]), "sample": np.arange(N), "feature": np.arange(D),
              "basis": np.array(["signal:mu"] + [f"sample:{i}" for i in range(N)])}
    coords["basis_dual"] = coords["basis"]
    writer.add_site("h", coords=coords, step_vars={"signal_inner": ("neuron", "signal"), "noise_inner": ("neuron", "sample")},
                    static={"gram": (("basis", "basis_dual"), basis @ basis.T)})
    state = rng.standard_normal((M, N + 1)).astype(np.float32)
    t0 = time.perf_counter()
    for start in range(0, steps, chunk_steps):
        k = min(chunk_steps, steps - start)
        walk = np.cumsum(rng.standard_normal((k, M, N + 1)).astype(np.float32) * 1e-2, axis=0) + state
        state = walk[-1]
        writer.append(np.arange(start, start + k), {"h": {"signal_inner": walk[:, :, :1], "noise_inner": walk[:, :, 1:]}},
                      {"loss": np.ones(k)})
    writer.close("complete")
    return {"steps": steps, "chunk_steps": chunk_steps, "chunk_mib": chunk_steps * per_step / 2**20,
            "store_gib": store_size(path) / 2**30, "raw_gib": steps * per_step / 2**30,
            "write_s": time.perf_counter() - t0}


ANALYSE = textwrap.dedent("""
    import json, resource, sys, time
    import dask
    import dyn
    from dyn.analysis.coefficients import coefficients, decomposition_operator

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def rss_mib():
        return status("VmRSS")

    path = sys.argv[1]
    site = dyn.open(path, chunks={})["h"].to_dataset()
    base = rss_mib()
    t0 = time.perf_counter()
    op = decomposition_operator(site)  # factorised once (O((n+K)·min(n+K, d))), independent of the number of steps
    after_op = rss_mib()
    c = coefficients(site)
    summary = {"gamma_max": abs(c["gamma"]).max(("neuron", "signal")), "rho_max": c["rho"].max("neuron")}
    with dask.config.set(scheduler="threads"):
        out = dict(zip(summary, dask.compute(*summary.values())))
    print(json.dumps({"baseline_mib": base, "after_operator_mib": after_op, "peak_mib": status("VmHWM"),
                      "seconds": time.perf_counter() - t0, "rho_max_shape": list(out["rho_max"].shape),
                      "operator_mib": op.nbytes / 2**20}))
""")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=3.0, help="size of the synthetic recording (GiB, uncompressed)")
    parser.add_argument("--workdir", default="runs", help="where to write the store (default runs/)")
    args = parser.parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ooc-", dir=args.workdir))
    try:
        store = work / "big.zarr"
        info = synthesise(store, args.gib)
        print(f"store: {info['steps']} steps x {M} neurons x {N + 1} probes = {info['raw_gib']:.2f} GiB raw, "
              f"{info['store_gib']:.2f} GiB on disk; chunks of {info['chunk_steps']} steps = {info['chunk_mib']:.1f} MiB "
              f"(float32); written in {info['write_s']:.0f} s")
        res = subprocess.run([sys.executable, "-c", ANALYSE, str(store)], capture_output=True, text=True, check=True)
        import json

        r = json.loads(res.stdout.strip().splitlines()[-1])
        work_mib = r["peak_mib"] - r["after_operator_mib"]
        print(f"decomposition + max over neurons per step: {r['seconds']:.0f} s; result shape {r['rho_max_shape']}")
        print(f"peak RSS {r['peak_mib']:.0f} MiB = interpreter and libraries {r['baseline_mib']:.0f} MiB + "
              f"O(n^2) operator and Gram {r['after_operator_mib'] - r['baseline_mib']:.0f} MiB (operator alone "
              f"{r['operator_mib']:.0f} MiB) + streaming {work_mib:.0f} MiB")
        print(f"streaming memory / one chunk: {work_mib / info['chunk_mib']:.1f}x;  "
              f"peak RSS / store size: {r['peak_mib'] / 1024 / info['raw_gib']:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
