"""Parameter sweeps on Dask distributed, and the phase diagram the paper does not have.

A grid file (TOML) names a base preset (which fixes the setup), fixed overrides and axes; every combination is
one run::

    description = "..."
    preset = "huang2024-figure1"
    [fixed]              # config fields set for every run
    d = 600
    [axes]               # lists; config fields, or the setup's derived axes (e.g. huang2024's n_snr2, c_mu)
    n_snr2 = [0.25, 0.5, 1.0]
    modality = ["single", "multi"]
    seed = [0, 1]

Each run is trained by its setup's trainer and summarised by the theory registered for that setup (who wins at
T₁, the theory's prediction); the phase diagram is drawn by the setup.

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
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..errors import ConfigError, DynError
from ..setups.base import Setup, find_grid, get_setup, load_preset
from ..store.outputs import claim_output, io_errors, make_parents, output_kind

__all__ = ["load_grid", "expand", "run_one", "sweep", "phase_diagram"]


def _setup_of_preset(preset: str) -> Setup:
    cfg = load_preset(preset)
    for setup_name, setup in _setups().items():
        if isinstance(cfg, setup.config):
            return setup
    raise ConfigError(f"preset {preset!r} belongs to no registered setup")


def _setups() -> dict[str, Setup]:
    from ..setups.base import available_setups

    return available_setups()


def load_grid(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a grid file (a path, or the name of a shipped grid); errors name the file and key."""
    p = find_grid(path)
    try:
        doc = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"grid {p}: invalid TOML: {exc}") from None
    axes = doc.get("axes")
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"grid {p}: needs a non-empty [axes] table")
    if not isinstance(doc.get("preset"), str):
        raise ConfigError(f"grid {p}: needs `preset = \"<name>\"` (the base run)")
    setup = _setup_of_preset(doc["preset"])
    names = {f.name for f in fields(setup.config)} - {"notes"}
    fixed = doc.get("fixed", {})
    for key in fixed:
        if key not in names:
            raise ConfigError(f"grid {p}: unknown field {key!r} in [fixed]")
    for key, values in axes.items():
        if key not in names and key not in setup.derived_axes:
            derived = f" or {', '.join(setup.derived_axes)}" if setup.derived_axes else ""
            raise ConfigError(f"grid {p}: unknown axis {key!r} (config fields{derived})")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid {p}: axis {key!r} is empty (give a non-empty list)")
    grid = {"preset": doc["preset"], "setup": setup.name, "fixed": dict(fixed), "axes": dict(axes),
            "description": str(doc.get("description", "")), "source": str(p)}
    expand(grid)  # every point must make a valid config: fail now, not on a worker
    return grid


def _point_config(grid: dict[str, Any], point: dict[str, Any]) -> Any:
    setup = get_setup(grid["setup"])
    base = load_preset(grid["preset"], **grid["fixed"])
    cfg = base.replace(**{k: v for k, v in point.items() if k not in setup.derived_axes})
    for name, apply in setup.derived_axes.items():  # in the setup's order, e.g. n·SNR² before C_μ
        if name in point:
            cfg = apply(cfg, point[name])
    return cfg


def expand(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of the grid: ``{"id", "point", "config"}``. Axes the setup says do not enter a run (e.g. C_μ for
    a single-modal run) are dropped from its point, so such runs are not repeated."""
    setup = get_setup(grid["setup"])
    keys = list(grid["axes"])
    runs: dict[str, dict[str, Any]] = {}
    for values in itertools.product(*(grid["axes"][k] for k in keys)):
        point = dict(zip(keys, values))
        try:
            cfg = _point_config(grid, point)
        except DynError as exc:
            raise ConfigError(f"grid point {point}: {exc}") from None
        for axis in setup.ignored_axes(cfg) if setup.ignored_axes else ():
            point.pop(axis, None)
        key = json.dumps(point, sort_keys=True)
        run_id = "-".join(f"{k}{v}" for k, v in point.items()).replace("/", "_").replace(" ", "")
        run_id = f"{run_id}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
        runs.setdefault(key, {"id": run_id, "point": point, "setup": setup.name, "config": cfg.to_dict()})
    return list(runs.values())


def run_one(spec: dict[str, Any], runs_dir: str) -> dict[str, Any]:
    """Train one grid point (or read it back if its store is complete) and return its result row.

    Runs on a Dask worker: everything it needs is in ``spec``; failures come back as rows, never exceptions.
    """
    from ..analysis.run import Run
    from ..store import read_attrs
    from ..theory import theory_for

    t0 = time.perf_counter()
    path = Path(runs_dir) / f"{spec['id']}.zarr"
    row: dict[str, Any] = {"id": spec["id"], **spec["point"], "store": str(path)}
    try:
        setup = get_setup(spec["setup"])
        cfg = setup.config.from_dict(spec["config"])
        done = path.exists() and (path / "zarr.json").exists() and read_attrs(path).get("status") == "complete"
        if not done:
            options = setup.sweep_options(cfg) if setup.sweep_options else {}
            setup.train(cfg, path, overwrite=True, **options)
        run = Run(path)
        regime = theory_for(run).regime(run)
        acc = run.scalar("probe_acc")
        row.update(status="complete", error="", winner=regime.get("observed_winner"), at_step=regime.get("at_step"),
                   max_gamma=regime.get("max_gamma"), max_rho=regime.get("max_rho"),
                   ratio=regime.get("ratio_gamma_over_rho"), predicted=regime.get("predicted_winner"),
                   probe_acc=float(acc[-1]) if acc is not None else math.nan,
                   seconds=time.perf_counter() - t0, reused=done)
        row.update({k: v for k, v in cfg.to_dict().items() if k not in row and isinstance(v, (bool, int, float, str))})
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
    overwrite : start afresh, replacing the previous dyn sweep in ``out`` (only a sweep folder dyn wrote, with
        nothing else inside; see :func:`dyn.store.outputs.claim_output`).
    sequential : run in this process without Dask (the baseline for throughput).
    on_result : called with each result row as it arrives.
    """
    grid = load_grid(grid) if not isinstance(grid, dict) else grid
    out = Path(out)
    if not overwrite and output_kind(out) == "sweep":  # re-running into the same folder resumes
        try:
            previous = json.loads((out / "sweep.json").read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict):
            raise ConfigError(f"{out}: unreadable sweep.json (use another --out, or --overwrite to start afresh)")
        if previous.get("axes") != grid["axes"] or previous.get("fixed") != grid["fixed"] or previous.get("preset") != grid["preset"]:
            raise ConfigError(f"{out} holds a sweep of a different grid (use --overwrite to replace it)")
    else:
        source = Path(grid["source"])
        claim_output(out, kind="sweep", inputs=[source] if source.exists() else [], overwrite=overwrite)
        if out.exists():  # a dyn sweep with nothing foreign inside: moved aside, then deleted
            with io_errors(str(out)):
                old = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
                os.rename(out, old)
            shutil.rmtree(old, ignore_errors=True)
    make_parents(out)
    specs = expand(grid)
    client = cluster = None
    if not sequential:
        client, cluster = _client(scheduler, workers)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({k: grid[k] for k in ("preset", "setup", "fixed", "axes", "description", "source")}, indent=2))
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


def phase_diagram(results: pd.DataFrame, *, setup: str):
    """The phase diagram of a sweep's ``results`` as drawn by its setup (None if the setup draws none)."""
    spec = get_setup(setup)
    return spec.load(spec.phase_diagram)(results) if spec.phase_diagram else None
