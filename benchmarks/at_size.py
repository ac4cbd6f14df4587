"""A user's CNN at real size (issue 22.7): all 1,797 digits, a CNN of 4 conv/linear layers, several recorded layers
with >= 10,000 probes per conv site (``probes.sites_for`` defaults), every step for 500 full-batch SGD steps.

    python benchmarks/at_size.py                 # 500 steps (~3-6 min on 2 busy cores)
    python benchmarks/at_size.py --steps 100     # quicker

Prints one table: recorded / bare training time (same loop, same seed, measured in this process), store size, peak
memory (RSS high-water mark of a child process) of recording and of the analysis (``dyn.summary`` + per-sample
table of every site), and dyn's write throughput over ``numpy.tofile`` of the same bytes, three ways:

- **replayed**: the recording's first ``--replay-mib`` MiB appended again, chunk by chunk as the recorder hands them
  over (same arrays, chunk shapes and commit rule: at most one commit per ``commit_interval``, and one at the end,
  inside the timed span), against ``numpy.tofile`` of the same blocks, one file each in a folder per array as the
  store has them, interleaved, with the
  crc32c checksums (the default) and without; wall and CPU-time ratios, median [range] of ``--repeats``;
- **in the run, CPU**: CPU seconds of the writer thread (user + system) against those of ``numpy.tofile``;
- **in the run, wall**: the writer thread's wall time, which shares two cores and the GIL with the training loop
  (a figure of the contention, not of the writer).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import json, os, sys, time, resource
    import numpy as np, torch
    sys.path.insert(0, {root!r})
    import dyn
    from dyn.record import probes
    from sklearn.datasets import load_digits

    mode, steps, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(2)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(y)

    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if mode == "analyse":
        t0 = time.perf_counter()
        run = dyn.Run(path)
        from dyn.analysis.samples import sample_table
        table = dyn.summary(run)
        for site in run.sites:
            sample_table(run, site)
        print(json.dumps({{"analysis_s": time.perf_counter() - t0, "analysis_peak_mb": peak_mb(),
                          "methods": table["method"].tolist()}}))
        sys.exit(0)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16 * 64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = None
    probes_per_site = {{}}
    if mode == "record":
        sites = probes.sites_for(model, ["0", "2", "5"], x, y)
        probes_per_site = {{k: int(s.noise.shape[0]) for k, s in sites.items()}}
        rec = dyn.Recorder(path, sites, optimizer=opt, steps=steps)
    t0 = time.perf_counter()
    if rec is not None:
        rec.open()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        if rec is not None:
            rec.log(loss=loss)
    if rec is not None:
        rec.close()
    seconds = time.perf_counter() - t0
    out = {{"seconds": seconds, "peak_mb": peak_mb(), "probes": probes_per_site}}
    if rec is not None:
        out.update(written_bytes=rec.stats["bytes"], write_seconds=rec.stats["write_seconds"],
                   write_cpu_seconds=rec.stats["write_cpu_seconds"], commit_interval=rec.commit_interval)
    print(json.dumps(out))
""")


def child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), *args], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def tofile_seconds(nbytes: int, folder: Path, chunk: int = 8 << 20) -> tuple[float, float]:
    """Raw numpy.tofile of ``nbytes`` in 8 MiB pieces, one file each (no fsync, as the writer): wall and CPU
    seconds."""
    import numpy as np

    block = np.random.default_rng(0).standard_normal(chunk // 4).astype(np.float32)
    t0, c0 = time.perf_counter(), time.thread_time()
    written, i = 0, 0
    while written < nbytes:
        block.tofile(folder / f"raw{i}.bin")
        written += block.nbytes
        i += 1
    seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
    for f in folder.glob("raw*.bin"):
        f.unlink()
    return seconds * nbytes / written, cpu * nbytes / written


def replay(path: str, folder: Path, mib: int, repeats: int, checksum: bool) -> dict:
    """Append the recording's first ``mib`` MiB again with :class:`dyn.store.StoreWriter`, as the recorder does
    (its chunks, its commit rule), against numpy.tofile of the same blocks (one file each), interleaved."""
    import os
    import shutil
    import statistics

    import numpy as np

    sys.path.insert(0, str(ROOT))
    import dyn
    from dyn.record.recorder import DEFAULT_COMMIT_INTERVAL
    from dyn.store import StoreWriter, read_attrs

    tree = dyn.open(path)
    k = int(read_attrs(path)["chunk_steps"])
    sites = {name: {v: tree[name][v] for v in tree[name].ds.data_vars if tree[name][v].dims[:1] == ("step",)}
             for name in tree.attrs["sites"]}
    per_step = sum(int(np.prod(a.shape[1:])) * 4 for arrays in sites.values() for a in arrays.values())
    n = min(tree.sizes["step"], max(k, (mib << 20) // per_step // k * k))
    blocks = []  # one append per recorder chunk: {site: {var: (k, ...) float32}}
    for start in range(0, n, k):
        blocks.append({name: {v: np.ascontiguousarray(a.values[start:start + k], np.float32) for v, a in arrays.items()}
                       for name, arrays in sites.items()})
    loss = np.asarray(tree["loss"].values[:n], np.float64)
    nbytes = sum(x.nbytes for b in blocks for arrays in b.values() for x in arrays.values())
    wall, cpu = [], []
    for rep in range(repeats):
        # the baseline mirrors the store's layout: a folder per array (made before the clock starts, as the
        # store's are by add_site), one file per appended block in it
        raw_root = folder / f"raw{rep}"
        targets = {(name, v): raw_root / f"{name}.{v}" for name, arrays in sites.items() for v in arrays}
        for t in targets.values():
            t.mkdir(parents=True)
        os.sync()
        t0, c0 = time.perf_counter(), time.thread_time()
        for j, b in enumerate(blocks):
            for name, arrays in b.items():
                for v, x in arrays.items():
                    x.tofile(targets[(name, v)] / f"{j}.bin")
        raw, raw_cpu = time.perf_counter() - t0, time.thread_time() - c0
        shutil.rmtree(raw_root)
        w = StoreWriter(folder / f"replay{rep}.zarr", checksum=checksum)
        w.create({"sites": list(sites)}, k)
        for name, arrays in sites.items():
            a0 = next(iter(arrays.values()))
            coords = {d: np.arange(s) for a in arrays.values() for d, s in zip(a.dims[1:], a.shape[1:])}
            w.add_site(name, coords=coords, step_vars={v: a.dims[1:] for v, a in arrays.items()}, static={})
        os.sync()
        t0, c0, due = time.perf_counter(), time.thread_time(), float("inf")
        for j, b in enumerate(blocks):  # the recorder's rule (Recorder._write)
            now = time.perf_counter()
            due = now + DEFAULT_COMMIT_INTERVAL if due == float("inf") else due
            w.append(np.arange(j * k, j * k + len(next(iter(next(iter(b.values())).values())))), b,
                     {"loss": loss[j * k:(j + 1) * k]}, commit=now >= due)
            due = float("inf") if now >= due else due
        w.commit()
        took, took_cpu = time.perf_counter() - t0, time.thread_time() - c0
        w.close("complete")
        shutil.rmtree(folder / f"replay{rep}.zarr")
        wall.append(raw / took)
        cpu.append(raw_cpu / max(took_cpu, 1e-9))
    return {"bytes": nbytes, "appends": len(blocks), "wall": wall, "cpu": cpu,
            "text": (f"wall {statistics.median(wall):.2f} [{min(wall):.2f}-{max(wall):.2f}], "
                     f"CPU {statistics.median(cpu):.2f} [{min(cpu):.2f}-{max(cpu):.2f}]")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--replay-mib", type=int, default=512, help="MiB of the recording replayed (default 512)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the replay (default 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        path = str(tmp / "cnn.zarr")
        bare = child("bare", str(args.steps), path)
        rec = child("record", str(args.steps), path)
        size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
        ana = child("analyse", str(args.steps), path)
        raw, raw_cpu = tofile_seconds(rec["written_bytes"], tmp)
        with_crc = replay(path, tmp, args.replay_mib, args.repeats, checksum=True)
        without = replay(path, tmp, args.replay_mib, args.repeats, checksum=False)
    rows = [
        ("model", "CNN conv(1→8) conv(8→16) linear(1024→32) linear(32→10), 1,797 digits, full-batch SGD"),
        ("recorded sites, probes (noise)", ", ".join(f"{k}: {v:,}" for k, v in rec["probes"].items())),
        ("steps (every step recorded)", f"{args.steps}"),
        ("recorded / bare time", f"{rec['seconds'] / bare['seconds']:.2f} ({rec['seconds']:.1f} s / {bare['seconds']:.1f} s)"),
        ("store size", f"{size / 1e6:.0f} MB"),
        ("peak memory, recording (RSS)", f"{rec['peak_mb']:.0f} MB (bare loop {bare['peak_mb']:.0f} MB)"),
        ("peak memory, analysis (summary + per-sample tables)", f"{ana['analysis_peak_mb']:.0f} MB in {ana['analysis_s']:.0f} s"),
        ("write throughput / numpy.tofile, replayed, crc32c checksums (default)",
         f"{with_crc['text']} ({with_crc['bytes'] / 2**20:.0f} MiB in {with_crc['appends']} appends)"),
        ("write throughput / numpy.tofile, replayed, no checksums", without["text"]),
        ("write throughput / numpy.tofile, in the run (writer thread CPU time)",
         f"{raw_cpu / max(rec['write_cpu_seconds'], 1e-9):.2f} ({rec['written_bytes'] / 1e6:.0f} MB)"),
        ("write throughput / numpy.tofile, in the run (writer thread wall time, shared cores and GIL)",
         f"{raw / rec['write_seconds']:.2f}"),
        ("commits", f"at most one per {rec['commit_interval']:g} s (Recorder commit_interval): a live reader sees "
                    "a written step within that delay"),
        ("decomposition per site", ", ".join(ana["methods"])),
    ]
    width = max(len(r[0]) for r in rows)
    print("| what | measured |\n|---|---|")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
