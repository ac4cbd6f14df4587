"""Parameter sweeps on Dask distributed, and the phase diagram the paper does not have.

A grid file (TOML) names a base preset, fixed overrides and axes; every combination is one run::

    description = "..."
    preset = "huang2024-figure1"
    [fixed]              # config fields set for every run
    d = 600
    [axes]               # lists; config fields, or the derived axes n_snr2 and c_mu
    n_snr2 = [0.25, 0.5, 1.0]     # sets mu_norm = sqrt(n_snr2 · σ_ξ² d / n) (ν scaled along, ‖ν‖/‖μ‖ kept)
    c_mu = [1.0, 3.0]             # sets mu_tilde_norm = c_mu · mu_norm (multi-modal runs only)
    modality = ["single", "multi"]
    seed = [0, 1]

Layout: one ordinary run store per run (``out/runs/<id>.zarr``) plus a collected index ``out/results.parquet``
(and ``.csv``). Why not one store with a ``run`` dimension: runs finish in any order on different workers, each
store has exactly one writer (no coordination, no lock contention), a crashed worker can only damage its own
run, every dyn tool (analyze, verify, export, resume) works on each run unchanged, and resuming a sweep is
"skip the runs whose store is complete".
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import time
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .config import Config, load_preset
from .errors import ConfigError, DynError, StoreError

__all__ = ["load_grid", "expand", "run_one", "sweep", "phase_diagram"]

DERIVED_AXES = ("n_snr2", "c_mu")


def load_grid(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a grid file; errors name the file and the offending key."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"grid file {p} does not exist")
    try:
        doc = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"grid {p}: invalid TOML: {exc}") from None
    axes = doc.get("axes")
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"grid {p}: needs a non-empty [axes] table")
    names = {f.name for f in fields(Config)} - {"notes"}
    fixed = doc.get("fixed", {})
    for key in fixed:
        if key not in names:
            raise ConfigError(f"grid {p}: unknown field {key!r} in [fixed]")
    for key, values in axes.items():
        if key not in names and key not in DERIVED_AXES:
            raise ConfigError(f"grid {p}: unknown axis {key!r} (config fields or {', '.join(DERIVED_AXES)})")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid {p}: axis {key!r} is empty (give a non-empty list)")
    grid = {"preset": doc.get("preset", "huang2024-figure1"), "fixed": dict(fixed), "axes": dict(axes),
            "description": str(doc.get("description", "")), "source": str(p)}
    expand(grid)  # every point must make a valid config: fail now, not on a worker
    return grid


def _point_config(grid: dict[str, Any], point: dict[str, Any]) -> Config:
    base = load_preset(grid["preset"], **grid["fixed"])
    direct = {k: v for k, v in point.items() if k not in DERIVED_AXES}
    cfg = base.replace(**direct)
    if "n_snr2" in point:
        mu = math.sqrt(point["n_snr2"] * cfg.sigma_xi**2 * cfg.d / cfg.n)
        ratio_nu = cfg.nu_norm / cfg.mu_norm if cfg.mu_norm > 0 else 0.0
        ratio_tilde = cfg.mu_tilde_norm / cfg.mu_norm if cfg.mu_norm > 0 else 3.0
        cfg = cfg.replace(mu_norm=mu, nu_norm=ratio_nu * mu, mu_tilde_norm=ratio_tilde * mu)
    if "c_mu" in point:
        cfg = cfg.replace(mu_tilde_norm=point["c_mu"] * cfg.mu_norm)
    return cfg


def expand(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of the grid: ``{"id", "point", "config"}``. ``c_mu`` is dropped for single-modal runs (it does
    not enter them), so they are not repeated per C_μ."""
    keys = list(grid["axes"])
    runs: dict[str, dict[str, Any]] = {}
    for values in itertools.product(*(grid["axes"][k] for k in keys)):
        point = dict(zip(keys, values))
        try:
            cfg = _point_config(grid, point)
        except DynError as exc:
            raise ConfigError(f"grid point {point}: {exc}") from None
        if cfg.modality == "single":
            point.pop("c_mu", None)
        key = json.dumps(point, sort_keys=True)
        run_id = "-".join(f"{k}{v}" for k, v in point.items()).replace("/", "_").replace(" ", "")
        run_id = f"{run_id}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
        runs.setdefault(key, {"id": run_id, "point": point, "config": cfg.to_dict()})
    return list(runs.values())


def run_one(spec: dict[str, Any], runs_dir: str) -> dict[str, Any]:
    """Train one grid point (or read it back if its store is complete) and return its result row.

    Runs on a Dask worker: everything it needs is in ``spec``; failures come back as rows, never exceptions.
    """
    from .run import Run
    from .store import read_attrs
    from .theory.huang2024 import Huang2024
    from .train import train

    t0 = time.perf_counter()
    path = Path(runs_dir) / f"{spec['id']}.zarr"
    row: dict[str, Any] = {"id": spec["id"], **spec["point"], "store": str(path)}
    try:
        cfg = Config.from_dict(spec["config"])
        done = path.exists() and (path / "zarr.json").exists() and read_attrs(path).get("status") == "complete"
        if not done:
            train(cfg, path, overwrite=True, evaluate_every=cfg.steps)
        run = Run(path)
        regime = Huang2024().regime(run)
        acc = run.scalar("probe_acc")
        row.update(status="complete", error="", winner=regime["observed_winner"], at_step=regime["at_step"],
                   max_gamma=regime["max_gamma"], max_rho=regime["max_rho"],
                   ratio=regime["ratio_gamma_over_rho"], probe_acc=float(acc[-1]) if acc is not None else math.nan,
                   n_snr2=spec["point"].get("n_snr2", round(cfg.n * cfg.snr**2, 6)),
                   c_mu=spec["point"].get("c_mu", round(cfg.c_mu, 6)), modality=cfg.modality,
                   predicted=regime["predicted_winner"], seconds=time.perf_counter() - t0, reused=done)
    except Exception as exc:  # a failed run is a result: recorded with its error, the sweep goes on
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                   seconds=time.perf_counter() - t0)
    return row


def _client(scheduler: str | None, workers: int):
    from distributed import Client, LocalCluster

    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="5s"), None
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {str(exc).splitlines()[0]}") from None


def _write_results(out: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).sort_values("id").reset_index(drop=True)
    for name, writer in (("results.parquet", frame.to_parquet), ("results.csv", frame.to_csv)):
        tmp = out / f".{name}.partial"
        writer(tmp, index=False)
        os.replace(tmp, out / name)
    return frame


def sweep(
    grid: str | os.PathLike | dict[str, Any],
    out: str | os.PathLike,
    *,
    scheduler: str | None = None,
    workers: int = 2,
    overwrite: bool = False,
    sequential: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> pd.DataFrame:
    """Run every point of ``grid`` into ``out`` on Dask (a LocalCluster, or the scheduler at ``scheduler``).

    Re-running into the same ``out`` resumes: finished runs are read back, not retrained. A run that fails is
    recorded with its error; the others go on. The index is rewritten as results arrive.

    Parameters
    ----------
    grid : grid file path or a dict from :func:`load_grid`.
    out : sweep folder.
    scheduler : address of a running Dask scheduler (``tcp://host:port``); None starts a LocalCluster.
    workers : processes of the LocalCluster.
    overwrite : start afresh, deleting the previous sweep in ``out``.
    sequential : run in this process without Dask (the baseline for throughput).
    on_result : called with each result row as it arrives.
    """
    grid = load_grid(grid) if not isinstance(grid, dict) else grid
    out = Path(out)
    if out.exists() and overwrite:
        if any(out.iterdir()) and not (out / "sweep.json").exists():
            raise StoreError(f"{out} exists and is not a dyn sweep; refusing to overwrite it")
        shutil.rmtree(out)
    if out.exists() and any(out.iterdir()):
        if not (out / "sweep.json").exists():
            raise ConfigError(f"{out} exists and is not a dyn sweep (use another --out)")
        previous = json.loads((out / "sweep.json").read_text())
        if previous.get("axes") != grid["axes"] or previous.get("fixed") != grid["fixed"] or previous.get("preset") != grid["preset"]:
            raise ConfigError(f"{out} holds a sweep of a different grid (use --overwrite to replace it)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise StoreError(f"cannot write {out}: folder {parent} is not writable")
    specs = expand(grid)
    client = cluster = None
    if not sequential:
        client, cluster = _client(scheduler, workers)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({k: grid[k] for k in ("preset", "fixed", "axes", "description", "source")}, indent=2))
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        if sequential:
            for spec in specs:
                rows.append(run_one(spec, str(out / "runs")))
                if on_result:
                    on_result(rows[-1])
                _write_results(out, rows)
        else:
            from distributed import as_completed

            futures = [client.submit(run_one, spec, str(out / "runs"), key=f"dyn-run-{spec['id']}", pure=False,
                                     retries=2) for spec in specs]
            for future in as_completed(futures):
                try:
                    row = future.result()
                except Exception as exc:  # e.g. the task's workers kept dying: record, go on
                    spec = specs[futures.index(future)]
                    row = {"id": spec["id"], **spec["point"], "status": "failed",
                           "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
                rows.append(row)
                if on_result:
                    on_result(row)
                _write_results(out, rows)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    frame = _write_results(out, rows)
    frame.attrs["seconds"] = time.perf_counter() - t0
    return frame


def phase_diagram(results: pd.DataFrame):
    """Two panels: the winner at T₁ (fraction of seeds where signal learning wins) over n·SNR² × C_μ for
    multi-modal runs and over n·SNR² for single-modal runs, with the theory's lines n·SNR² = 1.8 and
    C_μ·n·SNR² = 4.51; and the final OOD probe accuracy."""
    import seaborn as sns
    from matplotlib.figure import Figure

    ok = results[results["status"] == "complete"].copy()
    ok["signal_wins"] = (ok["winner"] == "signal learning").astype(float)
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    multi = ok[ok["modality"] == "multi"]
    for ax, value, label in ((axes[0], "signal_wins", "multi-modal: P(signal wins at T1)"),
                             (axes[1], "probe_acc", "multi-modal: final OOD accuracy")):
        if multi.empty:
            ax.set_visible(False)
            continue
        table = multi.pivot_table(index="c_mu", columns="n_snr2", values=value, aggfunc="mean")
        sns.heatmap(table.sort_index(ascending=False), ax=ax, vmin=0 if value == "signal_wins" else 0.5, vmax=1,
                    cmap="viridis", annot=True, fmt=".2f", cbar=False)
        xs = np.array(table.columns, dtype=float)
        ys = np.array(table.sort_index(ascending=False).index, dtype=float)

        def to_x(v):  # heatmap cells are unit-spaced: interpolate the value onto cell positions
            return np.interp(v, xs, np.arange(len(xs)) + 0.5)

        def to_y(v):
            return np.interp(-v, -ys, np.arange(len(ys)) + 0.5)

        c_line = np.linspace(ys.min(), ys.max(), 50)
        n_line = 4.51 / c_line
        keep = (n_line >= xs.min()) & (n_line <= xs.max())
        ax.plot(to_x(n_line[keep]), to_y(c_line[keep]), color="white", lw=2, ls="--", label="C_mu n SNR^2 = 4.51")
        ax.set_title(label)
        ax.set_xlabel("n SNR^2")
        ax.set_ylabel("C_mu")
        ax.legend(loc="lower left", fontsize=7)
    single = ok[ok["modality"] == "single"]
    ax = axes[2]
    if not single.empty:
        agg = single.groupby("n_snr2")[["signal_wins", "probe_acc"]].mean().reset_index()
        ax.plot(agg["n_snr2"], agg["signal_wins"], "o-", label="P(signal wins at T1)")
        ax.plot(agg["n_snr2"], agg["probe_acc"], "s-", label="final OOD accuracy")
        ax.axvline(1.8, color="gray", ls="--", label="n SNR^2 = 1.8")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("n SNR^2")
        ax.set_title("single-modal")
        ax.legend(fontsize=7)
        sns.despine(ax=ax)
    return fig
