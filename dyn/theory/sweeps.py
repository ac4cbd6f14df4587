"""A sweep is one dataset: the result rows of many runs, indexed by the grid's axes and seed.

A run's result row is its theory's :meth:`~dyn.theory.Theory.results` (who won, max γ, max ρ, test error, ...)
beside the grid point and every scalar config field (:func:`result_row`); ``dyn sweep`` writes one row per run to
``results.parquet``. :func:`open_sweep` opens a sweep folder (or any folder of run stores) as one
:class:`xarray.Dataset` whose dims are the grid's axes and ``seed``; the runs' recordings are not loaded (each row
names its store). :func:`sweep_table` turns any of these back into one row per run, the form the across-runs fits
(:func:`dyn.theory.check_transitions`) read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from ..analysis.run import Run
from ..errors import ConfigError, StoreError
from .base import Theory, get_theory, theory_for

__all__ = ["result_row", "open_sweep", "sweep_table", "sweep_theory"]


def result_row(run: Run, theory: Theory | None = None) -> dict[str, Any]:
    """The theory's result columns of ``run`` and its scalar config fields (one row of a sweep's table).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny", steps=20), path)
    >>> row = result_row(dyn.Run(path))
    >>> row["winner"] in dyn.theory.WINNERS, row["n"], row["setup"]
    (True, 20, 'huang2024')
    """
    theory = theory if theory is not None else theory_for(run)
    row: dict[str, Any] = dict(theory.results(run))
    row["setup"] = run.attrs.get("setup")
    cfg = run.attrs.get("config") or {}
    row.update({k: v for k, v in cfg.items() if k not in row and isinstance(v, (bool, int, float, str))})
    return row


def _stores(folder: Path) -> list[Path]:
    """Run stores (folders with a ``zarr.json`` whose attrs name a setup) in ``folder`` and its ``runs/``."""
    out = []
    for parent in (folder, folder / "runs"):
        if parent.is_dir():
            out += sorted(p for p in parent.iterdir() if p.is_dir() and (p / "zarr.json").is_file())
    return out


def _rows_from_stores(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    from ..store import read_attrs

    rows = []
    for path in _stores(folder):
        try:
            attrs = read_attrs(path)
        except (StoreError, OSError, ValueError):
            continue
        if attrs.get("status") != "complete" or not attrs.get("setup"):
            continue
        run = Run(path)
        rows.append({"id": path.name.removesuffix(".zarr"), "store": str(path), "status": "complete",
                     **result_row(run)})
    if not rows:
        raise ConfigError(f"{folder}: no complete run stores (a sweep folder holds results.parquet or runs/*.zarr)")
    frame = pd.DataFrame(rows)
    skip = {"id", "store", "status", "seed"}
    # a folder of runs has no grid file: its axes are the config fields that differ between the runs
    config_cols = [c for c in frame.columns if c not in skip and c in _config_fields(frame)]
    axes = [c for c in config_cols if frame[c].nunique(dropna=False) > 1 and not _derived(frame, c, config_cols)]
    return frame, axes


def _config_fields(frame: pd.DataFrame) -> set[str]:
    first = Run(frame["store"].iloc[0]).attrs.get("config") or {}
    return set(first)


def _derived(frame: pd.DataFrame, col: str, cols: list[str]) -> bool:
    """A column that follows another axis one to one (e.g. a field a derived axis scales along) is not an axis."""
    for other in cols:
        if other == col or cols.index(other) > cols.index(col):
            continue
        if frame[other].nunique() > 1 and frame.groupby(other)[col].nunique().max() == 1 \
                and frame.groupby(col)[other].nunique().max() == 1:
            return True
    return False


def open_sweep(folder: str | os.PathLike, *, refresh: bool = False) -> xr.Dataset:
    """A sweep folder (``dyn sweep``'s output) or any folder of run stores as one dataset.

    Parameters
    ----------
    folder : the sweep's ``--out`` folder, or a folder holding run stores (``*.zarr``, or ``runs/*.zarr``).
    refresh : recompute every row from the run stores (the theory's result columns as this dyn defines them)
        instead of reading ``results.parquet`` (e.g. a sweep written by an older dyn).

    Returns
    -------
    xarray.Dataset
        Dims: the grid's axes (a folder without a grid file: the config fields that differ between its runs) and
        ``seed``; one variable per result column and config field, NaN (or None) where the grid has no run. A run
        that an axis does not enter (a setup's ignored axis, e.g. a parameter of one algorithm only) appears at
        every value of that axis. Failed runs are left out. ``attrs``: ``setup``, ``axes``, ``folder``, ``runs``
        (how many runs) and the grid's ``preset`` and ``description`` when known.

    Raises
    ------
    ConfigError
        Not a sweep or run folder, no complete run, or two runs at the same grid point and seed.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> for seed in (0, 1):
    ...     _ = dyn.train(dyn.load_preset("huang2024-tiny", steps=20, seed=seed), os.path.join(folder, f"s{seed}.zarr"))
    >>> ds = open_sweep(folder)
    >>> ds["winner"].dims, ds.sizes["seed"]
    (('seed',), 2)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder (give a sweep's --out folder or a folder of run stores)")
    grid: dict[str, Any] = {}
    if (folder / "sweep.json").is_file():
        try:
            grid = json.loads((folder / "sweep.json").read_text())
        except (OSError, ValueError):
            raise ConfigError(f"{folder}: unreadable sweep.json") from None
    table = folder / "results.parquet"
    old = None
    if grid and table.is_file():
        old = pd.read_parquet(table)
        if "status" in old:
            old = old[old["status"] == "complete"].reset_index(drop=True)
        if old.empty and not refresh:
            raise ConfigError(f"{folder}: the sweep has no complete run")
    if old is not None and not refresh:
        frame, axes = old, [a for a in grid.get("axes", {}) if a != "seed"]
    else:
        frame, axes = _rows_from_stores(folder)
        if old is not None:  # the grid points (derived axes are no config field) from the sweep's own table
            axes = [a for a in grid.get("axes", {}) if a != "seed"]
            points = old.set_index("id")
            for a in axes:
                if a in points:
                    frame[a] = frame["id"].map(points[a])
    if "setup" not in frame and grid.get("setup"):
        frame["setup"] = grid["setup"]
    ds = _dataset(frame, axes, folder)
    ds.attrs.update(setup=str(grid.get("setup") or _one(frame, "setup")), axes=list(ds.dims),
                    folder=str(folder), runs=int(len(frame)))
    for key in ("preset", "description"):
        if grid.get(key):
            ds.attrs[key] = grid[key]
    return ds


def _one(frame: pd.DataFrame, col: str) -> str:
    values = frame[col].dropna().unique() if col in frame else []
    return str(values[0]) if len(values) else ""


def _dataset(frame: pd.DataFrame, axes: list[str], folder: Path) -> xr.Dataset:
    frame = frame.copy()
    if "seed" not in frame:
        frame["seed"] = 0
    dims = [a for a in axes if a in frame] + ["seed"]
    # a run an axis does not enter (NaN there) stands at every value of that axis
    for a in dims:
        values = frame[a].dropna().unique()
        missing = frame[a].isna()
        if missing.any() and len(values):
            copies = [frame[missing].assign(**{a: v}) for v in values]
            frame = pd.concat([frame[~missing], *copies], ignore_index=True)
    dup = frame.duplicated(dims, keep=False)
    if dup.any():
        ids = ", ".join(frame.loc[dup, "id"].astype(str).head(4))
        raise ConfigError(f"{folder}: several runs share one grid point and seed ({ids}); "
                          f"the axes {dims} do not tell them apart")
    frame = frame.set_index(dims).sort_index()
    ds = xr.Dataset.from_dataframe(frame)
    for name in ds.data_vars:
        if ds[name].dtype == object:
            ds[name] = ds[name].where(ds[name].notnull(), None)
    return ds


def sweep_table(sweep: xr.Dataset | pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """One row per run of a sweep (a dataset from :func:`open_sweep`, a folder, or a table already).

    Examples
    --------
    >>> ds = xr.Dataset({"id": ("seed", ["a", "b"]), "winner": ("seed", ["tie", "tie"])}, coords={"seed": [0, 1]})
    >>> sweep_table(ds)[["id", "seed"]].values.tolist()
    [['a', 0], ['b', 1]]
    """
    if isinstance(sweep, pd.DataFrame):
        return sweep.reset_index(drop=True)
    if not isinstance(sweep, xr.Dataset):
        sweep = open_sweep(sweep)
    frame = sweep.to_dataframe().reset_index()
    frame = frame[frame["id"].notna()].drop_duplicates("id").reset_index(drop=True)
    frame.attrs.update(sweep.attrs)
    return frame


def sweep_theory(sweep: xr.Dataset | pd.DataFrame, theory: str | Theory | None = None) -> Theory:
    """The named theory, or the one registered for the sweep's setup."""
    if theory is not None:
        return get_theory(theory)
    setup = sweep.attrs.get("setup") if hasattr(sweep, "attrs") else None
    if not setup and isinstance(sweep, pd.DataFrame) and "setup" in sweep:
        setup = _one(sweep, "setup")
    config: dict[str, Any] = {}
    table = sweep if isinstance(sweep, pd.DataFrame) else sweep_table(sweep)
    if "store" in table:  # a theory on a family of setups chooses by config too: read one run's
        stores = [Path(str(p)) for p in table["store"].dropna() if (Path(str(p)) / "zarr.json").is_file()]
        if stores:
            attrs = Run(stores[0]).attrs
            setup, config = setup or attrs.get("setup"), attrs.get("config") or {}

    class _Setup:  # theory_for reads a run's attrs only
        attrs = {"setup": setup, "config": config}

    return theory_for(_Setup())

