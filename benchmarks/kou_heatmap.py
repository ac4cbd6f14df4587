"""dyn's reproduction of Kou et al. 2023's heatmap against the numbers the authors published, cell by cell.

    python benchmarks/kou_heatmap.py                        # --small grid (10 |mu| x 6 d), 2 repeats, both networks
    python benchmarks/kou_heatmap.py --rows 25 --repeats 10 # every 4th d of the authors' grid, all 100 |mu|, 10 repeats
    python benchmarks/kou_heatmap.py --full                 # the authors' whole grid: 100 x 100 cells x 10 repeats

Prints, per network (the authors' code network, and the theory's network at eta 0.5), the mean and max |difference|
of the mean test error over the shared cells, the |mu| at which the test error falls to 0.2 per d (theirs and
dyn's) and the runs/s of the batched, unrecorded training. The authors' numbers ship with dyn
(data/reference/kou2023/, with attribution); nothing is fetched.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from dyn.experiments.kou2023 import compare, heatmap_configs, reference_heatmap, train_cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the authors' whole grid (100k runs per network: hours)")
    ap.add_argument("--rows", type=int, default=0, help="take every (100/rows)-th d of the authors' grid, all |mu|")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per cell (default 10; 2 for the small grid)")
    ap.add_argument("--networks", default="code,theory")
    args = ap.parse_args()
    reference = reference_heatmap()
    if reference is None:
        raise SystemExit("the authors' numbers are not installed (data/reference/kou2023/)")
    for net in args.networks.split(","):
        small = not (args.full or args.rows)
        cells = heatmap_configs(net, small=small, repeats=args.repeats)
        if args.rows:
            keep = sorted({c[0]["d"] for c in cells})[:: max(1, 100 // args.rows)]
            cells = [c for c in cells if c[0]["d"] in keep]
        t0 = time.perf_counter()
        table = train_cells(cells, progress=False)
        seconds = time.perf_counter() - t0
        c = compare(table, reference)
        print(f"{net} network: {len(cells)} runs in {seconds:.0f} s ({len(cells) / seconds:.2f} runs/s, batched, unrecorded)")
        print(f"  test error vs the authors over {c['cells']} cells: mean |diff| {c['mean_abs_diff']:.4f}, "
              f"max {c['max_abs_diff']:.4f}")
        print(f"  |mu| where the test error falls to 0.2, mean |diff| over {c['crossing_d']} d: "
              f"{c['crossing_mean_abs_diff']:.3f}")
        with pd.option_context("display.width", 120):
            print(c["crossing"].T.round(2).to_string())


if __name__ == "__main__":
    main()
