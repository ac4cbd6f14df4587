"""Exports of recorded curves: tidy long-form tables (CSV, Parquet) and the gridded recording (NetCDF, zarr).

One row per (run, site, step, neuron, probe, quantity) with quantity in ``signal_inner``, ``noise_inner`` (and every
other recorded probe set, e.g. ``noise_aug_inner``), ``gamma``, ``rho``; ``probe`` is the signal name or the sample
index as text, and the typed columns ``signal`` (string) and ``sample`` (integer) hold the same, each missing (<NA>)
on the other kind of row. Parquet files carry the provenance of the source store in their schema metadata (key
``dyn``). With ``reduce`` the neurons (and samples)
are reduced per step, giving compact curves whose ``neuron`` is missing (<NA>) and ``probe`` is the signal name
or ``"all"``.

The gridded exports (:func:`export_grid`, formats ``grid-netcdf`` and ``grid-zarr``) keep the recording on its grid
for xarray users: per site ``signal_inner(step, neuron, signal)``, ``noise_inner(step, neuron, sample)`` and every
other probe set, with the exact ``gamma`` and ``rho`` on the same dims; compressed, CF-style attributes, and the
provenance of the source store. They are written chunk by chunk of steps (dask), so peak memory is bounded by a
chunk, not by the store.

NetCDF is always the grid: format ``netcdf`` and the ``.nc`` suffix mean ``grid-netcdf``. The long table as NetCDF
(one variable per column along a ``row`` dimension, which older versions wrote) holds the same numbers as the grid
but was ~85x larger (1007 MiB against 12 MiB for a figure-1 store), several times slower and had to be assembled in
memory (2.9 GiB peak); xarray users open the grid directly, and table users get the long form from CSV or Parquet,
which stream. A reduced (``reduce``) or selected (``quantities``) export is a table: asked of NetCDF it is refused
with a message naming ``parquet``.

The raw inner products never depend on the γ/ρ solve: ``quantities=("signal_inner", "noise_inner")`` reads the
recording only, and with the default quantities a site whose solve fails is exported without γ/ρ (with a warning).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import xarray as xr

from ..analysis.run import Run
from ..errors import ConfigError, DynError, StoreError, WriteError, option
from ..store import reading
from ..progress import progress_bar
from ..store.outputs import NODES_ATTR, claim_output, hold, io_errors, make_parents, staged_file, staging_path

__all__ = ["FORMATS", "GRID_FORMATS", "REDUCTIONS", "tidy", "export", "grid", "export_grid"]

GRID_FORMATS = ("grid-netcdf", "grid-zarr")
#: ``netcdf`` is ``grid-netcdf`` (the long table is CSV or Parquet; see the module notes)
#: ``tensorboard``: an event file of the logged scalars and γ/ρ summaries in the folder ``out``
#: (:func:`dyn.viz.tensorboard.export_tensorboard`)
FORMATS = ("csv", "parquet", "netcdf", *GRID_FORMATS, "tensorboard")
_ALIASES = {"netcdf": "grid-netcdf"}
REDUCTIONS = ("none", "max", "absmax", "mean")
#: the exact coefficients; every recorded probe set (``<name>_inner``) can be exported too
COEFFICIENTS = ("gamma", "rho")
COLUMNS = ["run", "site", "step", "neuron", "probe", "signal", "sample", "quantity", "value"]


def _reduce(da: xr.DataArray, dims: list[str], how: str) -> xr.DataArray:
    if how == "max":
        return da.max(dims)
    if how == "absmax":
        return abs(da).max(dims)
    return da.mean(dims)


def _quantities(quantities: tuple[str, ...] | None) -> tuple[tuple[str, ...] | None, bool]:
    """The quantities asked for (None: every probe set and γ/ρ) and whether they were asked for explicitly."""
    if quantities is None:
        return None, False
    quantities = tuple(quantities)
    unknown = [q for q in quantities if q not in COEFFICIENTS and not str(q).endswith("_inner")]
    if unknown or not quantities:
        raise ConfigError(f"unknown quantity {unknown[0] if unknown else None!r} "
                          f"(choose from {', '.join(COEFFICIENTS)} or a recorded probe set <name>_inner)")
    return quantities, True


def _blocks(run: Run, reduce: str, step_block: int, quantities: tuple[str, ...] | None = None,
            bar: Any = None) -> Iterator[pd.DataFrame]:
    with reading(run.path, "the recorded curves"):
        yield from _blocks_unchecked(run, reduce, step_block, *_quantities(quantities), bar=bar)


def _sources(run: Run, site: str, quantities: tuple[str, ...] | None, explicit: bool) -> dict[str, xr.DataArray]:
    """Every probe set of the site (``*_inner``), then the exact coefficients, restricted to ``quantities``."""
    ds = run.site(site)
    wanted = lambda q: quantities is None or q in quantities  # noqa: E731
    sources = {name: ds[name].astype(np.float64) for name in ds.data_vars if name.endswith("_inner") and wanted(name)}
    if explicit:
        missing = [q for q in quantities if q.endswith("_inner") and q not in ds.data_vars]
        if missing:
            raise ConfigError(f"site {site!r} has no probe set {missing[0]!r}")
    coefficients = [q for q in COEFFICIENTS if wanted(q)]
    if coefficients:
        try:
            coeffs = run.coefficients(site)
        except DynError as exc:
            if explicit:
                raise
            warnings.warn(f"site {site!r}: exporting the raw inner products only, gamma/rho failed: {exc}", stacklevel=4)
        else:
            sources.update({q: coeffs[q] for q in coefficients})
    return sources


def _blocks_unchecked(run: Run, reduce: str, step_block: int, quantities: tuple[str, ...] | None,
                      explicit: bool, bar: Any = None) -> Iterator[pd.DataFrame]:
    for site in run.sites:
        ds = run.site(site)
        if bar is not None:
            bar.set_postfix_str(f"site {site}")
        sources = _sources(run, site, quantities, explicit)
        n = ds.sizes["step"]
        for start in range(0, n, step_block):
            if bar is not None and start:  # the previous block of steps is written: the consumer asked for more
                bar.update(step_block)
            part = slice(start, min(start + step_block, n))
            for quantity, da in sources.items():
                da = da.isel(step=part)
                probe_dim = "signal" if "signal" in da.dims else "sample"
                if reduce == "none":
                    frame = da.rename("value").to_dataframe().reset_index()
                    frame = frame.rename(columns={probe_dim: "probe"})
                    frame["probe"] = frame["probe"].astype(str)
                else:
                    dims = ["neuron"] if probe_dim == "signal" else ["neuron", "sample"]
                    red = _reduce(da, dims, reduce).rename("value").to_dataframe().reset_index()
                    frame = red.rename(columns={"signal": "probe"}) if probe_dim == "signal" else red.assign(probe="all")
                    frame["neuron"] = pd.array([pd.NA] * len(frame), dtype="Int64")
                frame["neuron"] = frame["neuron"].astype("Int64")
                frame["probe"] = frame["probe"].astype(str)
                # typed probe columns: the signal's name (string) or the sample's index (integer), never mixed
                is_signal = probe_dim == "signal"
                frame["signal"] = pd.array(frame["probe"] if is_signal else [pd.NA] * len(frame), dtype="string")
                frame["sample"] = pd.array(frame["probe"].astype(int) if not is_signal and reduce == "none"
                                           else [pd.NA] * len(frame), dtype="Int64")
                frame["run"], frame["site"], frame["quantity"] = run.name, site, quantity
                yield frame[COLUMNS]
        if bar is not None and n:
            bar.update(n - (n - 1) // step_block * step_block)  # the site's last block


def tidy(run: str | os.PathLike | xr.DataTree | Run, *, reduce: str = "none", step_block: int = 10_000,
         quantities: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The whole long-form table in memory (use :func:`export` to stream big runs to disk).

    ``quantities`` picks probe sets (``signal_inner``, ``noise_inner``, ...) and coefficients (``gamma``, ``rho``);
    default all. The raw inner products alone never run the solve.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.Config(d=60, n=8, m=4, steps=5), path)
    >>> frame = tidy(path, reduce="max")
    >>> list(frame.columns), sorted(frame["quantity"].unique())
    (['run', 'site', 'step', 'neuron', 'probe', 'signal', 'sample', 'quantity', 'value'], ['gamma', 'noise_aug_inner', 'noise_inner', 'rho', 'signal_inner'])
    """
    if reduce not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduce!r} (choose from {', '.join(REDUCTIONS)})")
    run = Run.coerce(run)
    return pd.concat(list(_blocks(run, reduce, step_block, quantities)), ignore_index=True)


def export(
    run: str | os.PathLike | xr.DataTree | Run,
    out: str | os.PathLike,
    *,
    format: str | None = None,
    reduce: str = "none",
    overwrite: bool = False,
    step_block: int = 2_000,
    quantities: tuple[str, ...] | None = None,
    progress: bool | None = None,
) -> Path:
    """Write the long-form table to ``out`` as CSV or Parquet, or the grid as NetCDF or zarr (format from the suffix
    if not given: ``.csv``, ``.parquet``/``.pq``, ``.nc``, ``.zarr``).

    CSV and Parquet are streamed block by block of steps; ``netcdf`` (``.nc``) is the gridded NetCDF of
    :func:`export_grid`, as are ``grid-netcdf`` and ``grid-zarr`` (``.zarr``). ``tensorboard`` (never guessed
    from a suffix) takes ``out`` as a log folder and returns the event file written there
    (:func:`dyn.viz.tensorboard.export_tensorboard`, whose rules for ``out`` and ``overwrite`` apply). The file is written under
    a temporary name and moved into place only when complete, so a failed export never leaves a partial file or
    touches an existing one. ``out`` follows :func:`dyn.store.outputs.claim_output`: missing parent folders are
    created, and ``overwrite`` replaces only an export dyn wrote (marked by a sidecar ``.<name>.dyn-output.json``
    holding its hash) that nobody changed since — never the run itself, a store's file or another file.
    ``quantities`` as in :func:`tidy` (long form only). ``progress``: a bar over the steps written; None (default):
    on in notebooks and terminals, off otherwise (:func:`dyn.progress.progress_enabled`).

    Raises
    ------
    ConfigError
        Unknown format or reduction; the output exists without ``overwrite``, or is the run itself; ``reduce`` or
        ``quantities`` asked of a gridded format (NetCDF, zarr) or of ``tensorboard``.
    StoreError
        The output cannot be created or may not be replaced; the run cannot be read (damaged, missing chunks).
    WriteError
        The disk refused a write.
    """
    out = Path(out)
    if format is None:
        format = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".nc": "netcdf",
                  ".zarr": "grid-zarr"}.get(out.suffix.lower())
        if format is None:
            raise ConfigError(f"cannot tell the format from {out.name!r}; give {option('format=', '--format')} "
                              f"one of {', '.join(FORMATS)}")
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r} (choose from {', '.join(FORMATS)})")
    if reduce not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduce!r} (choose from {', '.join(REDUCTIONS)})")
    _quantities(quantities)
    format = _ALIASES.get(format, format)
    if format == "tensorboard":
        if reduce != "none" or quantities is not None:
            what = f"reduce={reduce!r}" if reduce != "none" else "quantities"
            raise ConfigError(f"tensorboard writes fixed summaries (scalars, gamma/max_abs, rho/max, rho/q90); for "
                              f"{what} write the long table with format 'parquet' (or 'csv')")
        from .tensorboard import export_tensorboard

        return export_tensorboard(run, out, overwrite=overwrite)
    if format in GRID_FORMATS and (reduce != "none" or quantities is not None):
        what = f"reduce={reduce!r}" if reduce != "none" else "quantities"
        raise ConfigError(f"{format} holds the whole (step, neuron, probe) grid; for {what} write the long table "
                          "with format 'parquet' (or 'csv')")
    # fail before the (slow) read; checked again, with the run's path, before the file is replaced
    claim_output(out, kind="export", inputs=[run] if isinstance(run, (str, os.PathLike)) else [], overwrite=overwrite)
    if format in GRID_FORMATS:
        return export_grid(run, out, format=format, overwrite=overwrite, progress=progress)
    run = Run.coerce(run)
    total = sum(run.site(site).sizes["step"] for site in run.sites)
    with staged_file(out, overwrite=overwrite, inputs=[run.path] if run.path else []) as tmp, \
            progress_bar(total, desc=f"export {format}", unit="step", progress=progress, leave=True) as bar:
        blocks = _blocks(run, reduce, step_block, quantities, bar=bar)
        if format == "csv":
            with open(tmp, "w", newline="") as f:
                for i, frame in enumerate(blocks):
                    frame.to_csv(f, header=i == 0, index=False)
        elif format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            try:
                for frame in blocks:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    if writer is None:
                        meta = {**(table.schema.metadata or {}), b"dyn": _json(provenance(run)).encode()}
                        writer = pq.ParquetWriter(tmp, table.schema.with_metadata(meta))
                    table = table.replace_schema_metadata(writer.schema.metadata)
                    writer.write_table(table)
            finally:
                if writer is not None:
                    writer.close()
    return out


_ATTRS = {
    "signal_inner": ("inner product of each neuron's weight with each signal vector, <w_r, mu_k>", "signal"),
    "noise_inner": ("inner product of each neuron's weight with each training noise patch, <w_r, xi_i>", "sample"),
    "gamma": ("signal learning gamma_{r,k}: exact coefficient along mu_k/|mu_k|^2 of w_r(step) - w_r(0)", "signal"),
    "rho": ("noise memorization rho_{r,i}: exact coefficient along xi_i/|xi_i|^2 of w_r(step) - w_r(0)", "sample"),
}


def _lazy(run: str | os.PathLike | xr.DataTree | Run) -> Run:
    """The run with its recording kept on disk (dask), whatever form it was given in."""
    if isinstance(run, Run):
        return Run(run.path, chunks={}) if run.path is not None else run
    if isinstance(run, (str, os.PathLike)):
        return Run(run, chunks={})
    return Run.coerce(run)


def _json(value) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def provenance(run: Run) -> dict[str, str | int]:
    """Attributes naming where an export comes from: source store and its status, config, seed, setup, the
    library versions that recorded it and those that exported it (netCDF-safe: strings and integers)."""
    from datetime import datetime, timezone
    from importlib import metadata


    a = run.attrs
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # a local store by its absolute path, a URL as given (Run.path is a str for a store read from a URL)
    source = (str(run.path.resolve()) if isinstance(run.path, Path) else str(run.path) if run.path is not None
              else "(in-memory tree)")
    versions = {name: metadata.version(name) for name in ("dyn", "xarray", "numpy", "dask", "netCDF4", "zarr")
                if _installed(name)}
    out = {
        "source_store": source,
        "source_status": str(a.get("status")),
        "source_last_step": int(a.get("last_step", -1)),
        "source_created": str(a.get("created")),
        "setup": str(a.get("setup")),
        "seed": int(a["seed"]) if isinstance(a.get("seed"), int) else -1,
        "config": _json(a.get("config") or {}),
        "recorded_with": _json(a.get("libraries") or {}),
        "exported_with": _json(versions),
        "source_schema_version": int(a.get("dyn_schema_version", 0)),  # not dyn_schema_version: not a run store
        "history": f"{now}: exported by dyn {versions.get('dyn', '?')} from {source} (status {a.get('status')})",
    }
    return out


def _installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def grid(run: str | os.PathLike | xr.DataTree | Run) -> xr.DataTree:
    """The recording and its exact coefficients on their (step, neuron, signal|sample) grid, lazily (dask).

    Root: the per-step scalars (``loss``...) and the provenance attributes; one group per site with every
    ``*_inner`` probe set, ``gamma``, ``rho`` (float32, like the recording) and ``label``.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.Config(d=60, n=8, m=4, steps=5), path)
    >>> tree = grid(path)
    >>> tree["h"]["rho"].dims, tree.attrs["Conventions"]
    (('step', 'neuron', 'sample'), 'CF-1.10')
    """
    from ..analysis.coefficients import coefficients

    run = _lazy(run)
    root = run.tree.to_dataset()
    root = root[[v for v in root.data_vars if root[v].dims == ("step",)]]
    root["step"].attrs.update(long_name="optimizer step (0: initialisation)", units="1")
    for v in root.data_vars:
        root[v].attrs.setdefault("long_name", v)
        root[v].attrs["units"] = "1"
    root.attrs = {"Conventions": "CF-1.10", "title": f"dyn recording {run.name}: inner products and exact "
                  "coefficients per step, neuron and probe", "source": "dyn run store", **provenance(run)}
    nodes = {"/": root}
    for site in run.sites:
        ds = run.site(site)
        with reading(run.path, f"site {site!r}"):
            coeffs = coefficients(ds)
        out = xr.Dataset()
        for name in ds.data_vars:
            if name.endswith("_inner"):
                out[name] = ds[name]
        out["gamma"] = coeffs["gamma"].astype(np.float32)
        out["rho"] = coeffs["rho"].astype(np.float32)
        if "label" in ds:
            out["label"] = ds["label"]
        for name in out.data_vars:
            text, _ = _ATTRS.get(name, (f"{name.removesuffix('_inner')} probe set: inner products <w_r, probe>", ""))
            out[name].attrs = {"long_name": text, "units": "1"}
        out["gamma"].attrs["comment"] = out["rho"].attrs["comment"] = (
            f"solved in float64 from the recorded inner products and the Gram matrix (condition "
            f"{coeffs.attrs.get('gram_condition', float('nan')):.3g}); stored as float32 like the recording")
        for dim in ("signal", "sample", "neuron"):
            if dim in out.coords:
                values = out[dim].values
                out = out.assign_coords({dim: np.array([str(v) for v in values], dtype=object) if values.dtype.kind not in "iuf" else values})
                out[dim].attrs.update(long_name={"signal": "signal vector name", "sample": "training sample index",
                                                 "neuron": "neuron index (row of the weight)"}[dim])
        out.attrs = {"site": site}
        nodes[site] = out
    return xr.DataTree.from_dict(nodes)


def export_grid(
    run: str | os.PathLike | xr.DataTree | Run,
    out: str | os.PathLike,
    *,
    format: str = "grid-netcdf",
    overwrite: bool = False,
    complevel: int = 4,
    progress: bool | None = None,
) -> Path:
    """Write :func:`grid` to ``out``: NetCDF-4 (zlib, shuffle; one group per site) or zarr, chunk by chunk.

    The file is written under a temporary name and moved into place when complete. ``format`` ``netcdf`` is
    ``grid-netcdf``. ``progress``: a bar over the chunks computed and written; None (default): on in notebooks and
    terminals, off otherwise (:func:`dyn.progress.progress_enabled`).

    Raises
    ------
    ConfigError
        Unknown format; the output exists without ``overwrite``.
    StoreError
        The output cannot be written.
    """
    import shutil

    format = _ALIASES.get(format, format)
    if format not in GRID_FORMATS:
        raise ConfigError(f"unknown gridded format {format!r} (choose from {', '.join(GRID_FORMATS)})")
    inputs = [run] if isinstance(run, (str, os.PathLike)) else [getattr(run, "path", None)]
    inputs = [i for i in inputs if i is not None]
    out = claim_output(out, kind="export", inputs=inputs, overwrite=overwrite)
    tree = grid(run)
    if format == "grid-netcdf":
        encoding = {}
        for node in tree.subtree:
            enc = {}
            for name, da in node.ds.data_vars.items():
                chunks = tuple(c[0] for c in da.chunks) if da.chunks else None
                enc[name] = {"zlib": True, "complevel": complevel, "shuffle": True,
                             **({"chunksizes": chunks} if chunks and da.ndim else {})}
            encoding[node.path] = enc
        with staged_file(out, overwrite=overwrite, inputs=inputs) as tmp, _DaskBar(format, progress):
            try:
                tree.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
            except RuntimeError as exc:  # netCDF4/HDF5 report a refused write (disk full, quota) as this
                if "NetCDF" not in str(exc) and "HDF" not in str(exc):
                    raise
                raise WriteError(f"cannot write {out}: {str(exc).splitlines()[0]} (the disk refused a write: full, "
                                 "or over quota?)") from None
        return out
    tree.attrs["dyn_output"] = "export"  # the mark that lets --overwrite replace it later (and nothing else)
    # the nodes dyn writes: a group or array a user adds later is theirs, and an --overwrite refuses to delete it
    tree.attrs[NODES_ATTR] = sorted(
        p for node in tree.subtree
        for p in (node.path.strip("/"), *(f"{node.path.strip('/')}/{v}".lstrip("/")
                                          for v in node.to_dataset(inherit=False).variables)) if p)
    make_parents(out)
    tmp = staging_path(out)  # unique: never a folder that was already there
    with io_errors(str(out)):
        tmp.mkdir()
        lock = hold(tmp)  # held while written: a rerun does not take it for debris (recover_output)
    old = None
    try:
        with io_errors(str(out)), warnings.catch_warnings(), _DaskBar(format, progress):  # zarr: consolidated
            warnings.simplefilter("ignore")  # metadata is not in the v3 spec yet
            # consolidated metadata, written last, marks it complete: what plain xr.open_datatree looks for first
            tree.to_zarr(tmp, consolidated=True, mode="a")
            if out.exists():
                claim_output(out, kind="export", inputs=inputs, overwrite=True)
                old = staging_path(out, "old")  # the old one moved aside whole, the new one renamed in, then
                os.rename(out, old)  # the old removed: a kill between leaves what recover_output finishes
            os.replace(tmp, out)
    finally:
        os.close(lock)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


class _DaskBar:
    """A progress bar over the dask tasks of the computations run inside the ``with`` (each write of the gridded
    export is one or more dask computations; the bar's total grows as each one starts)."""

    def __init__(self, format: str, progress: bool | None) -> None:
        self.format, self.progress = format, progress
        self.bar: Any = None
        self.callback: Any = None

    def __enter__(self) -> "_DaskBar":
        from ..progress import progress_enabled

        if not progress_enabled(self.progress):
            return self
        from dask.callbacks import Callback

        bar = self.bar = progress_bar(0, desc=f"export {self.format}", unit="task", progress=True, leave=True)

        class _Tasks(Callback):
            def _start_state(self, dsk: Any, state: dict) -> None:
                bar.total += sum(len(state[k]) for k in ("ready", "waiting", "running"))
                bar.refresh()

            def _posttask(self, key: Any, result: Any, dsk: Any, state: dict, worker_id: Any) -> None:
                bar.update(1)

        self.callback = _Tasks()
        self.callback.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.callback is not None:
            self.callback.__exit__(*exc)
        if self.bar is not None:
            self.bar.close()
