"""Size, time and peak memory of each export format for one run store (default: a figure-1 store).

Each export runs in its own process (peak RSS of that process alone, from ``os.wait4``)::

    python benchmarks/export_formats.py runs/multi.zarr [--formats csv parquet netcdf grid-netcdf grid-zarr]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUFFIX = {"csv": ".csv", "parquet": ".parquet", "netcdf": ".nc", "grid-netcdf": ".grid.nc", "grid-zarr": ".grid.zarr"}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--formats", nargs="+", default=list(SUFFIX))
    args = parser.parse_args()
    store = Path(args.store)
    print(f"store {store}: {_size(store) / 2**20:.1f} MiB")
    print(f"{'format':<12} {'size MiB':>9} {'time s':>8} {'peak RSS MiB':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            out = Path(tmp) / f"export{SUFFIX[fmt]}"
            code = ("import sys; from dyn.viz.export import export; "
                    f"export({str(store)!r}, {str(out)!r}, format={fmt!r})")
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", code])
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            if status != 0:
                print(f"{fmt:<12} failed (status {status})")
                continue
            print(f"{fmt:<12} {_size(out) / 2**20:>9.1f} {seconds:>8.1f} {usage.ru_maxrss / 1024:>13.0f}")
            shutil.rmtree(out) if out.is_dir() else out.unlink()


if __name__ == "__main__":
    main()
