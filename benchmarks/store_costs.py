"""What a run store costs: creating and closing one, the codec of its data, and its write throughput.

    python benchmarks/store_costs.py              # paper scale + 10x scale, codecs on real recordings (~3 min)
    python benchmarks/store_costs.py --quick      # paper scale only, fewer repeats (~40 s)

Importable (``benchmarks/record_overhead.py`` calls these):

- :func:`create_close` — median (and range) over repeats of creating and closing a store of a multi-modal
  Huang2024 setup, by phase: ``prepare`` (claim + lock; the walk of an overwritten store), ``host`` (torch ->
  numpy copies of the probes), ``layout`` (:func:`dyn.store.site_arrays`, the Gram matrix), ``create``,
  ``add_site`` (all sites), ``append`` (step 0), ``close``; plus ``recorder``: the whole
  ``Recorder(path, sites).open(); close()`` as a user pays it.
- :func:`codec_table` — trains a run, takes its recorded inner-product chunks and reports, per lossless codec,
  compressed size / raw, encode MiB/s, and the write-throughput ratio (raw ``numpy.tofile`` time / encode+write
  time of the same chunks). Values must round-trip exactly (checked).
- :func:`append_throughput` — ``StoreWriter.append`` of real-sized float32 chunks vs ``numpy.tofile``.

Timings on a shared machine are noisy: every figure is a ratio or a median measured within one process, and
the functions return the raw samples so a caller can report ranges.
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

import numcodecs
import numpy as np

PAPER = dict(d=2000, n=100, n_test=200, m=50)
TENX = dict(d=8000, n=1000, n_test=200, m=200)

#: Codecs compared on real recordings: numcodecs objects (all lossless), by the name the table prints.
CANDIDATES: dict[str, Any] = {
    "none": None,
    "zstd-1": numcodecs.Zstd(level=1),
    "zstd-3": numcodecs.Zstd(level=3),
    "zstd-(-3)": numcodecs.Zstd(level=-3),
    "blosc-lz4-noshuffle": numcodecs.Blosc(cname="lz4", clevel=1, shuffle=0, typesize=4),
    "blosc-blosclz-noshuffle": numcodecs.Blosc(cname="blosclz", clevel=1, shuffle=0, typesize=4),
    "blosc-lz4-shuffle": numcodecs.Blosc(cname="lz4", clevel=1, shuffle=1, typesize=4),
    "blosc-zstd1-shuffle": numcodecs.Blosc(cname="zstd", clevel=1, shuffle=1, typesize=4),
    "blosc-zstd3-shuffle": numcodecs.Blosc(cname="zstd", clevel=3, shuffle=1, typesize=4),
    "blosc-lz4-bitshuffle": numcodecs.Blosc(cname="lz4", clevel=1, shuffle=2, typesize=4),
    "blosc-zstd1-bitshuffle": numcodecs.Blosc(cname="zstd", clevel=1, shuffle=2, typesize=4),
}


def _setup(sizes: dict[str, int]):
    import dyn
    from dyn.setups.huang2024.train import Huang2024Setup

    cfg = dyn.Config(**sizes, steps=1, modality="multi")
    return cfg, Huang2024Setup(cfg)


def _phases_once(path: Path, cfg, setup, codec: str | None = None) -> dict[str, float]:
    """One store created and closed through the writer, phase by phase, as :meth:`dyn.Recorder.open` does it."""
    import torch

    from dyn.record import DEFAULT_CHUNK_BYTES, Recorder
    from dyn.store import StoreWriter, site_arrays
    from dyn.store.schema import CHANGE_DIM

    sites = setup.sites
    out: dict[str, float] = {}
    clock = [time.perf_counter(), time.process_time()]

    def lap(name: str) -> None:  # wall seconds, and CPU seconds of the whole process (all threads) as <name>_cpu
        wall, cpu = time.perf_counter(), time.process_time()
        out[name], out[f"{name}_cpu"] = wall - clock[0], cpu - clock[1]
        clock[:] = [time.perf_counter(), time.process_time()]

    writer = StoreWriter(path, overwrite=True, **({} if codec is None else {"codec": codec}))
    writer.prepare()
    lap("prepare")
    clock[:] = [time.perf_counter(), time.process_time()]
    statics = {name: Recorder._site_statics(site) for name, site in sites.items()}
    lap("host")
    clock[:] = [time.perf_counter(), time.process_time()]
    layouts = {}
    for name, site in sites.items():
        st = statics[name]
        layouts[name] = site_arrays(
            neurons=site.weight.shape[0], signal_names=list(site.signals), signals=st["signals"], noise=st["noise"],
            labels=st["labels"], extra=st["extra"], weight=st["weight"], store_probes=site.store_probes,
            step_dims={var: dim for var, (dim, _) in site.layout().items()},
            coords={**site.coords, **({CHANGE_DIM: (CHANGE_DIM, ["sum_sq"])} if site.track_change else {})},
            attrs=site.attrs)
    lap("layout")
    per_step = max(site.weight.shape[0] * site.n_columns * 4 for site in sites.values())
    chunk_steps = int(min(max(DEFAULT_CHUNK_BYTES // per_step, 1), 4096))
    clock[:] = [time.perf_counter(), time.process_time()]
    writer.create({"sites": list(sites), "config": cfg.to_dict()}, chunk_steps)
    lap("create")
    clock[:] = [time.perf_counter(), time.process_time()]
    for name, layout in layouts.items():
        writer.add_site(name, coords=layout["coords"], step_vars=layout["step_vars"], static=layout["static"],
                        attrs=layout["attrs"])
    lap("add_site")
    inner = {}  # step 0's inner products, computed outside the timed phases (torch's GEMM is not the store's)
    with torch.no_grad():
        for name, site in sites.items():
            products = np.zeros((1, site.weight.shape[0], site.n_columns), np.float32)  # + the change column
            products[0, :, : site.n_probes] = (site.weight @ site.probe_matrix()).to("cpu", torch.float32).numpy()
            inner[name] = {var: products[:, :, cols] for var, (_, cols) in site.layout().items()}
    clock[:] = [time.perf_counter(), time.process_time()]
    writer.append(np.array([0]), inner, {"loss": np.array([0.5])})
    lap("append")
    clock[:] = [time.perf_counter(), time.process_time()]
    writer.close("complete")
    lap("close")
    out["total"] = sum(v for k, v in out.items() if not k.endswith("_cpu"))
    out["total_cpu"] = sum(v for k, v in out.items() if k.endswith("_cpu"))
    out["writer"] = sum(out[k] for k in ("prepare", "create", "add_site", "append", "close"))
    out["writer_cpu"] = sum(out[f"{k}_cpu"] for k in ("prepare", "create", "add_site", "append", "close"))
    return out


def _recorder_once(path: Path, cfg, setup) -> tuple[float, float]:
    from dyn.record import Recorder

    t = time.perf_counter()
    rec = Recorder(path, setup.sites, overwrite=True, config=cfg.to_dict())
    rec.open()
    opened = time.perf_counter()
    rec.close()
    return opened - t, time.perf_counter() - opened


def create_close(sizes: dict[str, int] = PAPER, repeats: int = 7, workdir: str | Path | None = None,
                 echo=print, codec: str | None = None) -> dict[str, list[float]]:
    """Seconds per phase of creating and closing a store (overwriting the previous one, as sweeps do), and of
    ``Recorder(...).open(); close()`` (keys ``recorder_open``, ``recorder_close``, ``recorder``), ``repeats``
    samples each, interleaved. Returns the samples; ``echo`` prints medians and ranges in milliseconds."""
    tmp = Path(tempfile.mkdtemp(dir=workdir))
    try:
        cfg, setup = _setup(sizes)
        _phases_once(tmp / "warm.zarr", cfg, setup)  # imports, first-call costs
        samples: dict[str, list[float]] = {}
        for _ in range(repeats):
            os.sync()  # start each repeat with no dirty pages: measure the store, not the previous repeat's writeback
            for key, value in _phases_once(tmp / "store.zarr", cfg, setup, codec).items():
                samples.setdefault(key, []).append(value)
            os.sync()
            opened, closed = _recorder_once(tmp / "rec.zarr", cfg, setup)
            samples.setdefault("recorder_open", []).append(opened)
            samples.setdefault("recorder_close", []).append(closed)
            samples.setdefault("recorder", []).append(opened + closed)
        files = sum(1 for p in (tmp / "store.zarr").rglob("*") if p.is_file())
        echo(f"## create + close, d={sizes['d']} n={sizes['n']} m={sizes['m']} multi-modal, codec {codec or 'default'}, {repeats} repeats, "
             f"{files} files (median [min-max] ms)")
        for key, values in samples.items():
            echo(f"  {key:<15} {statistics.median(values) * 1e3:8.1f}  [{min(values) * 1e3:.1f}-{max(values) * 1e3:.1f}]")
        return samples
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recorded_chunks(sizes: dict[str, int] = PAPER, steps: int = 600, workdir: str | Path | None = None) -> list[np.ndarray]:
    """The inner-product chunks of a real recording: train ``sizes`` (multi-modal) for ``steps`` steps, read every
    site's ``*_inner`` arrays back and cut them into the store's chunks (``chunk_steps`` rows each)."""
    import dyn

    tmp = Path(tempfile.mkdtemp(dir=workdir))
    try:
        out = tmp / "real.zarr"
        dyn.train(dyn.Config(**sizes, steps=steps, modality="multi"), out)
        tree = dyn.open(out)
        chunk_steps = int(tree.attrs["chunk_steps"])
        chunks = []
        for site in tree.attrs["sites"]:
            for name, var in tree[site].ds.data_vars.items():
                if str(name).endswith("_inner"):
                    values = np.ascontiguousarray(var.values, dtype=np.float32)
                    chunks += [values[i: i + chunk_steps] for i in range(0, len(values), chunk_steps)]
        return chunks
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def codec_table(chunks: list[np.ndarray], repeats: int = 3, workdir: str | Path | None = None,
                echo=print) -> dict[str, dict[str, float]]:
    """Per codec: ``ratio`` (compressed / raw bytes), ``encode_mibs`` (encode MiB/s) and ``write_ratio`` (raw
    tofile time / encode + write time; median over ``repeats``, interleaved with the raw writes). Every chunk is
    decoded again and compared exactly (lossless check)."""
    tmp = Path(tempfile.mkdtemp(dir=workdir))
    nbytes = sum(c.nbytes for c in chunks)
    result: dict[str, dict[str, float]] = {}
    try:
        for name, codec in CANDIDATES.items():
            if codec is not None:
                for c in chunks:
                    back = np.frombuffer(codec.decode(codec.encode(c)), dtype=np.float32).reshape(c.shape)
                    if not np.array_equal(back.view(np.uint32), c.view(np.uint32)):
                        raise AssertionError(f"{name} did not round-trip exactly")
            ratios, encodes, sizes, raws, costs = [], [], [], [], []
            for _ in range(repeats):
                os.sync()
                t = time.perf_counter()
                for i, c in enumerate(chunks):
                    c.tofile(tmp / f"raw{i}")
                raw = time.perf_counter() - t
                for i in range(len(chunks)):  # every write goes to a new file, as in a new recording
                    (tmp / f"raw{i}").unlink()
                t = time.perf_counter()
                encoded = [c if codec is None else codec.encode(c) for c in chunks]
                enc = time.perf_counter() - t
                os.sync()
                t = time.perf_counter()
                for i, data in enumerate(encoded):
                    with open(tmp / f"{name}{i}", "wb") as f:
                        f.write(data)
                wrote = time.perf_counter() - t
                for i in range(len(chunks)):
                    (tmp / f"{name}{i}").unlink()
                raws.append(raw)
                costs.append(enc + wrote)
                ratios.append(raw / (enc + wrote))
                encodes.append(nbytes / max(enc, 1e-9) / 2**20)
                sizes.append(sum(len(memoryview(e).cast("B")) for e in encoded) / nbytes)
            # a chunk of the last, partly filled kind: one row of data, the rest fill values (written whole)
            padded = np.full_like(chunks[0], np.nan)
            padded[0] = chunks[0][0]
            t = time.perf_counter()
            packed = padded if codec is None else codec.encode(padded)
            pad_ms = (time.perf_counter() - t) * 1e3
            # best-of ratio: the least disturbed repeat of each (a shared machine's noise only adds time)
            result[name] = {"ratio": statistics.median(sizes), "encode_mibs": max(encodes),
                            "write_ratio": min(raws) / min(costs), "write_ratio_min": min(ratios),
                            "write_ratio_max": max(ratios), "padded_ratio": len(memoryview(packed).cast("B")) / padded.nbytes,
                            "padded_ms": pad_ms}
        echo(f"## codecs on recorded inner products: {len(chunks)} chunks, {nbytes / 2**20:.1f} MiB float32 "
             f"(best of {repeats}; write ratio = raw tofile time / (encode + write) time, best-of and range of single "
             "repeats; padded = a chunk holding one row, the rest fill values)")
        echo(f"  {'codec':<24}{'size/raw':>9}{'encode MiB/s':>14}{'write ratio':>13}  {'range':<12}{'padded size':>12}"
             f"{'encode ms':>10}")
        for name, r in result.items():
            enc = "-" if CANDIDATES[name] is None else f"{r['encode_mibs']:.0f}"
            echo(f"  {name:<24}{r['ratio']:>9.3f}{enc:>14}{r['write_ratio']:>13.2f}  "
                 f"{'[%.2f-%.2f]' % (r['write_ratio_min'], r['write_ratio_max']):<12}{r['padded_ratio']:>12.4f}"
                 f"{r['padded_ms']:>10.2f}")
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def append_throughput(chunks: list[np.ndarray] | None = None, repeats: int = 3, codec: str = "none",
                      workdir: str | Path | None = None, echo=print, checksum: bool = True,
                      commit_interval: float | None = None) -> list[float]:
    """``StoreWriter.append`` of float32 chunks vs ``numpy.tofile`` of the same bytes: raw time / append time,
    ``repeats`` samples (interleaved). Default chunks: 8 MiB chunks shaped like a 10x-scale site (m=200,
    1001 probes), a smooth random walk. ``commit_interval``: commit as the recorder does (at most once per that
    many seconds, and once at the end, inside the timed span; default: the recorder's
    :data:`~dyn.record.recorder.DEFAULT_COMMIT_INTERVAL`); ``0`` commits every append."""
    from dyn.record.recorder import DEFAULT_COMMIT_INTERVAL
    from dyn.store import StoreWriter

    interval = DEFAULT_COMMIT_INTERVAL if commit_interval is None else commit_interval

    if chunks is None:
        rng = np.random.default_rng(0)
        m, probes, rows = 200, 1001, 10
        start = rng.standard_normal((m, probes)).astype(np.float32)
        chunks = []
        for _ in range(6):
            walk = np.cumsum(rng.standard_normal((rows, m, probes)).astype(np.float32) * 1e-3, axis=0) + start
            start = walk[-1]
            chunks.append(walk)
    # whole chunks of one array shape, as the recorder hands them over (each append fills whole chunks)
    chunks = [c for c in chunks if c.shape == chunks[0].shape]
    m, probes = chunks[0].shape[1:]
    chunk_steps = len(chunks[0])
    nbytes = sum(c.nbytes for c in chunks)
    tmp = Path(tempfile.mkdtemp(dir=workdir))
    ratios, raws, takes, cpu_ratios = [], [], [], []
    try:
        for rep in range(repeats):
            os.sync()  # both start with no dirty pages (the kernel's writeback throttling is not the store's cost)
            t, c0 = time.perf_counter(), time.thread_time()
            with open(tmp / f"raw{rep}.bin", "wb") as f:  # a new file, as a new recording is
                for c in chunks:
                    c.tofile(f)
            raw, raw_cpu = time.perf_counter() - t, time.thread_time() - c0
            (tmp / f"raw{rep}.bin").unlink()
            writer = StoreWriter(tmp / f"tp{rep}.zarr", codec=codec, checksum=checksum)
            writer.create({"sites": ["h"]}, chunk_steps)
            writer.add_site("h", coords={"neuron": np.arange(m), "sample": np.arange(probes),
                                         "signal": np.array(["mu"])},
                            step_vars={"noise_inner": ("neuron", "sample")}, static={})
            os.sync()
            t, c0, due = time.perf_counter(), time.thread_time(), float("inf")
            step0 = 0
            for c in chunks:  # the recorder's rule (Recorder._write): due an interval after the first uncommitted
                now = time.perf_counter()
                due = now + interval if due == float("inf") else due
                writer.append(np.arange(step0, step0 + len(c)), {"h": {"noise_inner": c}}, {"loss": np.zeros(len(c))},
                              commit=now >= due)
                due = float("inf") if now >= due else due
                step0 += len(c)
            writer.commit()
            took, took_cpu = time.perf_counter() - t, time.thread_time() - c0
            ratios.append(raw / took)
            cpu_ratios.append(raw_cpu / max(took_cpu, 1e-9))
            raws.append(raw)
            takes.append(took)
            writer.close("complete")
            shutil.rmtree(tmp / f"tp{rep}.zarr")
        echo(f"## StoreWriter.append (codec {codec}, checksum {'on' if checksum else 'off'}, commit every "
             f"{interval:g} s) / numpy.tofile: {nbytes / 2**20:.0f} MiB in {len(chunks)} appends: "
             f"best-of {min(raws) / min(takes):.2f}, single repeats {statistics.median(ratios):.2f} "
             f"[{min(ratios):.2f}-{max(ratios):.2f}] (raw {nbytes / min(raws) / 2**20:.0f} MiB/s); CPU time "
             f"(user + system, this thread): {statistics.median(cpu_ratios):.2f} "
             f"[{min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}]")
        return ratios
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="paper scale only, fewer repeats")
    parser.add_argument("--workdir", default=None, help="folder for temporary stores (default: the system's)")
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else 7
    create_close(PAPER, repeats, args.workdir)
    if not args.quick:
        create_close(TENX, 5, args.workdir)
    chunks = recorded_chunks(PAPER, 600, args.workdir)
    codec_table(chunks, 3, args.workdir)
    append_throughput(chunks, 3, workdir=args.workdir)
    if not args.quick:
        big = recorded_chunks(TENX, 100, args.workdir)
        codec_table(big, 3, args.workdir)
        append_throughput(big, 3, workdir=args.workdir)
    append_throughput(None, 3, workdir=args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
