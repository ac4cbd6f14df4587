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

Batches: runs whose configs the setup says may train together (``Setup.batch_key``; for huang2024 equal shapes,
any seed, signal norms, η, τ) are grouped into batches of at most ``batch`` runs and each batch is one Dask task
(or one step of a sequential sweep) trained by the setup's batch trainer (``Setup.train_batch``): one process
trains B runs as a batch dimension, each still recorded into its own store exactly as a lone run would be. Runs
the batch trainer cannot take (or a batch it refuses) are trained one by one; the results table is the same.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import time
import tomllib
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..errors import ConfigError, DynError, option
from ..progress import progress_bar
from ..setups.base import Setup, find_grid, get_setup, load_preset
from ..store.outputs import (check_recorded, claim_output, io_errors, make_parents, output_kind, recover_sweep,
                             write_recorded)

__all__ = ["load_grid", "expand", "run_one", "run_batch", "batches", "sweep", "phase_diagram", "DEFAULT_BATCH"]

#: Most runs trained together in one batch (one Dask task) by default. Larger batches amortise more per-step
#: overhead but hold more runs in memory at once and lose more work when a worker dies; on 2 CPU cores B=8 was as
#: fast as B=32 at the phase-diagram size and faster at the paper's size (benchmarks/batched.py).
DEFAULT_BATCH = 8


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
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"grid {p}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        raise ConfigError(f"grid {p}: not a UTF-8 text file (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"grid {p}: cannot read ({exc.strerror or exc})") from None
    axes = doc.get("axes")
    if not isinstance(axes, dict) or not axes:
        raise ConfigError(f"grid {p}: needs a non-empty [axes] table")
    if not isinstance(doc.get("preset"), str):
        raise ConfigError(f"grid {p}: needs `preset = \"<name>\"` (the base run)")
    setup = _setup_of_preset(doc["preset"])
    names = {f.name for f in fields(setup.config)} - {"notes"}
    fixed = doc.get("fixed", {})
    if not isinstance(fixed, dict):
        raise ConfigError(f"grid {p}: [fixed] must be a table of config fields (got {type(fixed).__name__} "
                          f"{fixed!r})")
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


def _store_complete(path: Path) -> bool:
    from ..store import read_attrs

    return path.exists() and (path / "zarr.json").exists() and read_attrs(path).get("status") == "complete"


def _result_row(spec: dict[str, Any], path: Path, cfg: Any, *, seconds: float, reused: bool) -> dict[str, Any]:
    """The result row of a finished run store: its theory's result columns (:meth:`dyn.theory.Theory.results`:
    winner, max γ, max ρ, test error, ...), the grid point, the config."""
    from ..analysis.run import Run
    from ..theory import result_row

    row: dict[str, Any] = {"id": spec["id"], **spec["point"], "store": str(path), "status": "complete", "error": ""}
    row.update({k: v for k, v in result_row(Run(path)).items() if k not in row})
    row.update(seconds=seconds, reused=reused)
    row.update({k: v for k, v in cfg.to_dict().items() if k not in row and isinstance(v, (bool, int, float, str))})
    return row


def _failed_row(spec: dict[str, Any], path: Path, exc: BaseException | str, seconds: float) -> dict[str, Any]:
    error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return {"id": spec["id"], **spec["point"], "store": str(path), "status": "failed",
            "error": error.splitlines()[0] if error else "", "seconds": seconds}


def run_one(spec: dict[str, Any], runs_dir: str) -> dict[str, Any]:
    """Train one grid point (or read it back if its store is complete) and return its result row.

    Runs on a Dask worker: everything it needs is in ``spec``; failures come back as rows, never exceptions.
    """
    t0 = time.perf_counter()
    path = Path(runs_dir) / f"{spec['id']}.zarr"
    try:
        setup = get_setup(spec["setup"])
        cfg = setup.config.from_dict(spec["config"])
        done = _store_complete(path)
        if not done:
            options = setup.sweep_options(cfg) if setup.sweep_options else {}
            setup.train(cfg, path, overwrite=True, **options)
        return _result_row(spec, path, cfg, seconds=time.perf_counter() - t0, reused=done)
    except Exception as exc:  # a failed run is a result: recorded with its error, the sweep goes on
        return _failed_row(spec, path, exc, time.perf_counter() - t0)


def run_batch(specs: list[dict[str, Any]], runs_dir: str) -> list[dict[str, Any]]:
    """Train grid points of one batch together (reading back those whose store is complete); one row per spec.

    The points must share their setup's ``batch_key`` (see :func:`batches`). The runs still to train go to the
    setup's batch trainer in one call; a run it stops (divergence) is a failed row like a lone run's. If the batch
    trainer refuses the batch (:class:`~dyn.ConfigError`) or the batch fails as a whole, each of those runs is
    trained alone with :func:`run_one`, so a batch never loses a run a lone run would have finished. A batch run's
    ``seconds`` is its share of the batch's time. Runs on a Dask worker; failures come back as rows.

    Examples
    --------
    >>> import tempfile
    >>> grid = load_grid("phase-diagram")
    >>> grid["fixed"].update(d=40, n=8, n_test=8, m=4, steps=5)
    >>> grid["axes"] = {"seed": [0, 1, 2], "modality": ["multi"]}
    >>> rows = run_batch(expand(grid), tempfile.mkdtemp())
    >>> [r["status"] for r in rows], all(r["reused"] is False for r in rows)
    (['complete', 'complete', 'complete'], True)
    """
    t0 = time.perf_counter()
    paths = [Path(runs_dir) / f"{spec['id']}.zarr" for spec in specs]
    rows: list[dict[str, Any] | None] = [None] * len(specs)
    try:
        setup = get_setup(specs[0]["setup"])
        cfgs = [setup.config.from_dict(spec["config"]) for spec in specs]
        done = [_store_complete(p) for p in paths]
    except Exception:  # let each run report its own error
        return [run_one(spec, runs_dir) for spec in specs]
    todo = [i for i, d in enumerate(done) if not d]
    if len(todo) > 1 and setup.batch_trainer is not None:
        options = setup.sweep_options(cfgs[todo[0]]) if setup.sweep_options else {}
        try:
            summaries = setup.train_batch([cfgs[i] for i in todo], [paths[i] for i in todo], overwrite=True, **options)
        except Exception:  # refused (ConfigError) or failed as a whole: each run alone, as without batches
            summaries = None
        if summaries is not None:
            share = (time.perf_counter() - t0) / len(todo)
            for i, summary in zip(todo, summaries):
                try:
                    if summary.status == "complete":
                        rows[i] = _result_row(specs[i], paths[i], cfgs[i], seconds=share, reused=False)
                    else:  # as the lone trainer's DivergenceError reads
                        from ..store import read_attrs

                        error = read_attrs(paths[i]).get("error") or summary.status
                        rows[i] = _failed_row(specs[i], paths[i], f"DivergenceError: {error}; store {paths[i]} is "
                                                                  f"marked {summary.status}", share)
                except Exception as exc:
                    rows[i] = _failed_row(specs[i], paths[i], exc, share)
    return [row if row is not None else run_one(spec, runs_dir) for spec, row in zip(specs, rows)]


def batches(specs: list[dict[str, Any]], *, size: int = DEFAULT_BATCH, workers: int = 1) -> list[list[dict[str, Any]]]:
    """Group ``specs`` into batches the setup's batch trainer can train together.

    Specs join a group when their setup's ``batch_key`` and sweep options are equal; a spec whose key is None (or
    whose setup has no batch trainer) is a batch of its own. Each group is split evenly into
    ``max(ceil(len / size), min(workers, len))`` batches, so that ``workers`` Dask workers all get work.

    Examples
    --------
    >>> grid = load_grid("phase-diagram")
    >>> [len(b) for b in batches(expand(grid), size=32, workers=2)]
    [6, 6, 24, 24]
    >>> len(batches(expand(grid), size=1))
    60
    """
    if size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {size!r}")
    groups: dict[Any, list[dict[str, Any]]] = {}
    for i, spec in enumerate(specs):
        setup = get_setup(spec["setup"])
        key = None
        if size > 1 and setup.batch_trainer is not None and setup.batch_key is not None:
            cfg = setup.config.from_dict(spec["config"])
            key = setup.batch_key(cfg)
            if key is not None:
                options = setup.sweep_options(cfg) if setup.sweep_options else {}
                key = (setup.name, key, json.dumps(options, sort_keys=True, default=str))
        groups.setdefault(key if key is not None else ("alone", i), []).append(spec)
    out = []
    for group in groups.values():
        k = max(math.ceil(len(group) / size), min(max(workers, 1), len(group)))
        q, r = divmod(len(group), k)
        start = 0
        for j in range(k):
            out.append(group[start:start + q + (j < r)])
            start += q + (j < r)
    return out


def _client(scheduler: str | None, workers: int):
    """A Client (and the LocalCluster it started, if any) and the Dask dashboard's link, printed to stderr."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        try:  # the dashboard needs bokeh; without it the cluster runs the same, unobserved
            import bokeh  # noqa: F401

            has_dashboard = True
        except ImportError:
            has_dashboard = False
        # A free port on this machine only (its HTTP server starts even without bokeh; None would mean :8787 on
        # every interface, and a warning when another cluster holds that port).
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0")
        client = Client(cluster)
        if not has_dashboard:
            print("Dask dashboard: off (install bokeh to get one)", file=sys.stderr)
            return client, cluster, None
    else:
        try:
            client, cluster = Client(scheduler, timeout="5s"), None
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {str(exc).splitlines()[0]}") from None
    link = _dashboard_link(client)
    print(f"Dask dashboard: {link}" if link else "Dask dashboard: off (the scheduler serves none)", file=sys.stderr)
    return client, cluster, link


def _dashboard_link(client: Any) -> str | None:
    try:
        info = client.scheduler_info()
        if "dashboard" not in info.get("services", {}):
            return None
        return client.dashboard_link
    except Exception:  # a scheduler too old or too far to ask: no link rather than no sweep
        return None


def _write_results(out: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).sort_values("id").reset_index(drop=True)
    for name, writer in (("results.parquet", frame.to_parquet), ("results.csv", frame.to_csv)):
        write_recorded(out, name, lambda tmp, writer=writer: writer(tmp, index=False))  # hashed, as report files
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
    batch: int = DEFAULT_BATCH,
    progress: bool | None = None,
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
    sequential : run in this process without Dask.
    on_result : called with each result row as it arrives.
    batch : most runs trained together as one batch (one Dask task; see :func:`batches`); 1 trains every run
        alone (one task per run, the throughput baseline).
    progress : a progress bar over runs (None: auto, see :mod:`dyn.progress`).

    Returns
    -------
    pandas.DataFrame
        One row per run, sorted by id; ``attrs["seconds"]`` is the sweep's wall time and ``attrs["dashboard"]``
        the Dask dashboard's link (None without one or without Dask).
    """
    if not sequential and scheduler is None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")  # 0 would wait forever
    grid = load_grid(grid) if not isinstance(grid, dict) else grid
    out = Path(out)
    if not overwrite and output_kind(out) == "sweep":  # re-running into the same folder resumes
        try:
            previous = json.loads((out / "sweep.json").read_text())
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict):
            raise ConfigError(f"{out}: unreadable sweep.json (use another {option('out', '--out')}, or "
                              f"{option('overwrite=True', '--overwrite')} to start afresh)")
        if previous.get("axes") != grid["axes"] or previous.get("fixed") != grid["fixed"] or previous.get("preset") != grid["preset"]:
            raise ConfigError(f"{out} holds a sweep of a different grid (use {option('overwrite=True', '--overwrite')} "
                              "to replace it)")
        check_recorded(out)  # a results table or figure the user changed is never replaced
        recover_sweep(out)  # what killed sweeps left (temporary tables, an old folder beside) is removed
    else:
        source = Path(grid["source"])
        claim_output(out, kind="sweep", inputs=[source] if source.exists() else [], overwrite=overwrite)
        if out.exists():  # a dyn sweep with nothing foreign inside: moved aside, then deleted
            with io_errors(str(out)):
                old = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
                os.rename(out, old)
                out.mkdir()  # at once: a kill while the old one is deleted must not have it put back half gone
            shutil.rmtree(old, ignore_errors=True)
    make_parents(out)
    specs = expand(grid)
    groups = batches(specs, size=batch, workers=1 if sequential else workers)
    client = cluster = link = None
    if not sequential:
        client, cluster, link = _client(scheduler, workers)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_recorded(out, "sweep.json", lambda tmp: tmp.write_text(json.dumps(
        {k: grid[k] for k in ("preset", "setup", "fixed", "axes", "description", "source")}, indent=2)))
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    bar = progress_bar(len(specs), desc="sweep", unit="run", progress=progress)

    def arrived(new_rows: list[dict[str, Any]]) -> None:
        for row in new_rows:
            rows.append(row)
            bar.update(1)
            if on_result:
                on_result(row)
        _write_results(out, rows)

    try:
        if sequential:
            for group in groups:
                arrived(run_batch(group, str(out / "runs")) if len(group) > 1 else [run_one(group[0], str(out / "runs"))])
        else:
            from distributed import as_completed

            futures = {}
            for group in groups:
                if len(group) == 1:
                    future = client.submit(run_one, group[0], str(out / "runs"), key=f"dyn-run-{group[0]['id']}",
                                           pure=False, retries=2)
                else:
                    future = client.submit(run_batch, group, str(out / "runs"), pure=False, retries=2,
                                           key=f"dyn-batch-{group[0]['id']}-{len(group)}")
                futures[future] = group
            for future in as_completed(list(futures)):
                group = futures[future]
                try:
                    result = future.result()
                    new_rows = result if isinstance(result, list) else [result]
                except Exception as exc:  # e.g. the task's workers kept dying: record, go on
                    new_rows = [{"id": spec["id"], **spec["point"], "status": "failed",
                                 "error": f"{type(exc).__name__}: {exc}".splitlines()[0]} for spec in group]
                arrived(new_rows)
    finally:
        bar.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    frame = _write_results(out, rows)
    frame.attrs["seconds"] = time.perf_counter() - t0
    frame.attrs["dashboard"] = link
    return frame


def phase_diagram(results: pd.DataFrame, *, setup: str):
    """The phase diagram of a sweep's ``results`` as drawn by its setup (None if the setup draws none)."""
    spec = get_setup(setup)
    return spec.load(spec.phase_diagram)(results) if spec.phase_diagram else None
