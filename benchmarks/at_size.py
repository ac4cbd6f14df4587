"""A user's CNN at real size (issue 22.7): all 1,797 digits, a CNN of 4 conv/linear layers, several recorded layers
with >= 10,000 probes per conv site (``probes.sites_for`` defaults), every step for 500 full-batch SGD steps.

    python benchmarks/at_size.py                 # 500 steps (~3-6 min on 2 busy cores)
    python benchmarks/at_size.py --steps 100     # quicker

Prints one table: recorded / bare training time (same loop, same seed, measured in this process), store size, peak
memory (RSS high-water mark of a child process) of recording and of the analysis (``dyn.summary`` + per-sample
table of every site), and dyn's write throughput over ``numpy.tofile`` of the same bytes during the recording.
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
        out.update(written_bytes=rec.stats["bytes"], write_seconds=rec.stats["write_seconds"])
    print(json.dumps(out))
""")


def child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), *args], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def tofile_seconds(nbytes: int, folder: Path, chunk: int = 8 << 20) -> float:
    """Raw numpy.tofile of ``nbytes`` in 8 MiB pieces, fsync'd like nothing else (the writer does not fsync)."""
    import numpy as np

    block = np.random.default_rng(0).standard_normal(chunk // 4).astype(np.float32)
    t0 = time.perf_counter()
    written, i = 0, 0
    while written < nbytes:
        block.tofile(folder / f"raw{i}.bin")
        written += block.nbytes
        i += 1
    seconds = time.perf_counter() - t0
    for f in folder.glob("raw*.bin"):
        f.unlink()
    return seconds * nbytes / written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        path = str(tmp / "cnn.zarr")
        bare = child("bare", str(args.steps), path)
        rec = child("record", str(args.steps), path)
        size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
        ana = child("analyse", str(args.steps), path)
        raw = tofile_seconds(rec["written_bytes"], tmp)
    rows = [
        ("model", "CNN conv(1→8) conv(8→16) linear(1024→32) linear(32→10), 1,797 digits, full-batch SGD"),
        ("recorded sites, probes (noise)", ", ".join(f"{k}: {v:,}" for k, v in rec["probes"].items())),
        ("steps (every step recorded)", f"{args.steps}"),
        ("recorded / bare time", f"{rec['seconds'] / bare['seconds']:.2f} ({rec['seconds']:.1f} s / {bare['seconds']:.1f} s)"),
        ("store size", f"{size / 1e6:.0f} MB"),
        ("peak memory, recording (RSS)", f"{rec['peak_mb']:.0f} MB (bare loop {bare['peak_mb']:.0f} MB)"),
        ("peak memory, analysis (summary + per-sample tables)", f"{ana['analysis_peak_mb']:.0f} MB in {ana['analysis_s']:.0f} s"),
        ("write throughput / numpy.tofile", f"{(rec['written_bytes'] / rec['write_seconds']) / (rec['written_bytes'] / raw):.2f}"
                                            f" ({rec['written_bytes'] / 1e6:.0f} MB)"),
        ("decomposition per site", ", ".join(ana["methods"])),
    ]
    width = max(len(r[0]) for r in rows)
    print("| what | measured |\n|---|---|")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
