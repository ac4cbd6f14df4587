"""Tidy long-form exports of recorded curves: CSV, Parquet, NetCDF.

One row per (run, site, step, neuron, probe, quantity) with quantity in ``signal_inner``, ``noise_inner``,
``gamma``, ``rho``; ``probe`` is the signal name or the sample index. With ``reduce`` the neurons (and samples)
are reduced per step, giving compact curves whose ``neuron`` is missing (<NA>) and ``probe`` is the signal name
or ``"all"``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ConfigError
from ..store import reading
from ..store.outputs import claim_output, staged_file

if TYPE_CHECKING:
    from ..analysis.run import Run

__all__ = ["FORMATS", "REDUCTIONS", "tidy", "export"]

FORMATS = ("csv", "parquet", "netcdf")
REDUCTIONS = ("none", "max", "absmax", "mean")
COLUMNS = ["run", "site", "step", "neuron", "probe", "quantity", "value"]


def _reduce(da: xr.DataArray, dims: list[str], how: str) -> xr.DataArray:
    if how == "max":
        return da.max(dims)
    if how == "absmax":
        return abs(da).max(dims)
    return da.mean(dims)


def _blocks(run: Run, reduce: str, step_block: int) -> Iterator[pd.DataFrame]:
    with reading(run.path, "the recorded curves"):
        yield from _blocks_unchecked(run, reduce, step_block)


def _blocks_unchecked(run: Run, reduce: str, step_block: int) -> Iterator[pd.DataFrame]:
    for site in run.sites:
        ds = run.site(site)
        coeffs = run.coefficients(site)
        sources = {
            "signal_inner": ds["signal_inner"].astype(np.float64),
            "noise_inner": ds["noise_inner"].astype(np.float64),
            "gamma": coeffs["gamma"],
            "rho": coeffs["rho"],
        }
        n = ds.sizes["step"]
        for start in range(0, n, step_block):
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
                frame["run"], frame["site"], frame["quantity"] = run.name, site, quantity
                yield frame[COLUMNS]


def tidy(run: str | os.PathLike | xr.DataTree | Run, *, reduce: str = "none", step_block: int = 10_000) -> pd.DataFrame:
    """The whole long-form table in memory (use :func:`export` to stream big runs to disk).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.Config(d=60, n=8, m=4, steps=5), path)
    >>> frame = tidy(path, reduce="max")
    >>> list(frame.columns), sorted(frame["quantity"].unique())
    (['run', 'site', 'step', 'neuron', 'probe', 'quantity', 'value'], ['gamma', 'noise_inner', 'rho', 'signal_inner'])
    """
    if reduce not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduce!r} (choose from {', '.join(REDUCTIONS)})")
    from ..analysis.run import Run  # imported on use: the CLI reads FORMATS without loading the analysis

    run = Run.coerce(run)
    return pd.concat(list(_blocks(run, reduce, step_block)), ignore_index=True)


def export(
    run: str | os.PathLike | xr.DataTree | Run,
    out: str | os.PathLike,
    *,
    format: str | None = None,
    reduce: str = "none",
    overwrite: bool = False,
    step_block: int = 2_000,
) -> Path:
    """Write the long-form table to ``out`` as CSV, Parquet or NetCDF (format from the suffix if not given).

    CSV and Parquet are streamed block by block of steps; NetCDF is assembled in memory. The file is written under
    a temporary name and moved into place only when complete, so a failed export never leaves a partial file or
    touches an existing one. ``out`` follows :func:`dyn.store.outputs.claim_output`: missing parent folders are
    created, and ``overwrite`` replaces only an export dyn wrote (marked by a sidecar ``.<name>.dyn-output.json``
    holding its hash) that nobody changed since — never the run itself, a store's file or another file.

    Raises
    ------
    ConfigError
        Unknown format or reduction; the output exists without ``overwrite``, or is the run itself.
    StoreError
        The output cannot be created or may not be replaced; the run cannot be read (damaged, missing chunks).
    WriteError
        The disk refused a write.
    """
    out = Path(out)
    if format is None:
        format = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".nc": "netcdf"}.get(out.suffix.lower())
        if format is None:
            raise ConfigError(f"cannot tell the format from {out.name!r}; pass format= one of {', '.join(FORMATS)}")
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r} (choose from {', '.join(FORMATS)})")
    if reduce not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduce!r} (choose from {', '.join(REDUCTIONS)})")
    # fail before the (slow) read; checked again, with the run's path, before the file is replaced
    claim_output(out, kind="export", inputs=[run] if isinstance(run, (str, os.PathLike)) else [], overwrite=overwrite)
    from ..analysis.run import Run

    run = Run.coerce(run)
    with staged_file(out, overwrite=overwrite, inputs=[run.path] if run.path else []) as tmp:
        blocks = _blocks(run, reduce, step_block)
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
                        writer = pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
            finally:
                if writer is not None:
                    writer.close()
        else:
            frame = pd.concat(list(blocks), ignore_index=True)
            ds = xr.Dataset({c: ("row", frame[c].to_numpy()) for c in COLUMNS if c != "neuron"})
            ds["neuron"] = ("row", frame["neuron"].fillna(-1).to_numpy(dtype=np.int64))
            ds["neuron"].attrs["missing"] = -1
            ds = ds.assign_coords(row=np.arange(len(frame)))
            ds.attrs.update(description="dyn tidy export: one row per (run, site, step, neuron, probe, quantity)",
                            reduce=reduce)
            ds.to_netcdf(tmp, engine="netcdf4")
    return out
