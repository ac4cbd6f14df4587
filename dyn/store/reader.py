"""Reading run stores: attributes from JSON, validated trees through xarray, damaged data as one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr
import zarr
from zarr.core.metadata import ArrayV3Metadata

from ..errors import StoreError
from .safety import check_codecs
from .schema import SCHEMA_VERSION, validate_tree

__all__ = ["read_attrs", "reading", "open_run", "read_static", "missing_chunks", "damaged_chunk", "CHECKPOINT_GROUP"]

#: The group holding a run's checkpoints (:mod:`dyn.store.checkpoint`); not part of the recording.
CHECKPOINT_GROUP = "_checkpoint"


_OPEN_EXPORT = ("open it with xarray (xr.open_datatree(path, engine='zarr') for .zarr, engine='netcdf4' for .nc) "
                "or pandas (read_csv, read_parquet); dyn's commands take the run store it was exported from")


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """Root attributes of a dyn store, read from ``zarr.json`` as JSON (no zarr, no code execution).

    Raises
    ------
    StoreError
        If ``path`` is not a zarr v3 group written by dyn, or comes from a newer schema.
    """
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p} does not exist")
    meta_path = p / "zarr.json"
    if p.is_file() and p.with_name(f".{p.name}.dyn-output.json").is_file():
        raise StoreError(f"{p} is a dyn export of a run (a table or NetCDF file), not a run store: {_OPEN_EXPORT}")
    if not p.is_dir() or not meta_path.is_file():
        raise StoreError(f"{p} is not a dyn store (no zarr.json; not a zarr v3 store)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{p} is not a dyn store (unreadable zarr.json: {exc})") from None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        raise StoreError(f"{p} is not a dyn store (its root is not a zarr group)")
    attrs = meta.get("attributes") or {}
    version = attrs.get("dyn_schema_version")
    if version is None and attrs.get("dyn_output") == "export":
        raise StoreError(f"{p} is a dyn export of a run (its gridded recording), not a run store: {_OPEN_EXPORT}")
    if version is None:
        raise StoreError(f"{p} is not a dyn store (no dyn_schema_version attribute; written by another program?)")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise StoreError(
            f"{p} uses dyn store schema {version!r}, newer than this dyn supports ({SCHEMA_VERSION}); upgrade dyn"
        )
    return attrs


@contextlib.contextmanager
def reading(path: str | os.PathLike | None, what: str):
    """Turn the errors zarr and its codecs raise on damaged data (truncated or corrupt chunk files, missing
    files) into a one-line :class:`StoreError` naming the store and what was being read."""
    try:
        yield
    except (RuntimeError, OSError, EOFError, zarr.errors.BaseZarrError) as exc:
        raise StoreError(f"{path}: cannot read {what} (corrupt or truncated data?): {_first_line(exc)}") from None
    except ValueError as exc:
        if not _raised_by_zarr(exc):
            raise
        if "checksum" in str(exc).lower():  # zarr's crc32c codec: name the chunk (found by checking them all)
            bad = None
            if path is not None:
                with contextlib.suppress(Exception):
                    bad = damaged_chunk(path)
            raise StoreError(f"{path}: cannot read {what}: " + (bad or "a chunk's checksum (CRC-32C) does not "
                             "match its bytes") + "; the store is damaged") from None
        # e.g. an array whose data type was edited in its metadata: its chunks no longer decode to its shape
        raise StoreError(f"{path}: cannot read {what} (its metadata does not match its data): {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _raised_by_zarr(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside zarr or its codecs (decoding data), not by the caller's own code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return any(f"{os.sep}{pkg}{os.sep}" in where for pkg in ("zarr", "numcodecs"))


def _root_meta(p: Path) -> dict[str, Any]:
    try:
        meta = json.loads((p / "zarr.json").read_text())
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise StoreError(f"{p} is not a dyn store (unreadable zarr.json)")
    return meta


def _array_metas(p: Path, root: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The metadata of every array a reader sees: the consolidated metadata, else each array's zarr.json."""
    consolidated = root.get("consolidated_metadata")
    if isinstance(consolidated, dict):
        metas = consolidated.get("metadata")
        if not isinstance(metas, dict):
            raise StoreError(f"{p}: malformed consolidated metadata in zarr.json")
        return {k: v for k, v in metas.items() if isinstance(v, dict) and v.get("node_type") == "array"}
    out = {}
    for meta_path in sorted(p.rglob("zarr.json")):
        rel = meta_path.parent.relative_to(p)
        if rel.parts and rel.parts[0] == CHECKPOINT_GROUP:
            continue
        meta = json.loads(meta_path.read_text())  # check_codecs has parsed every zarr.json already
        if meta.get("node_type") == "array":
            out[str(rel)] = meta
    return out


def damaged_chunk(path: str | os.PathLike) -> str | None:
    """The first chunk file of the store ``path`` whose CRC-32C (zarr's ``crc32c`` codec, which dyn ends every
    numeric chunk with) does not match its bytes, as a phrase naming the array and the chunk, or None.

    Reads every checksummed chunk of the recording (the arrays the commit record shows) and of the checkpoints.

    Examples
    --------
    >>> import dyn, torch, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> _ = dyn.train(dyn.Config(d=30, n=6, m=3, steps=3), path)
    >>> damaged_chunk(path) is None
    True
    >>> chunk = os.path.join(path, "h", "noise_inner", "c.0.0.0")
    >>> data = bytearray(open(chunk, "rb").read()); data[9] ^= 0x10  # one flipped bit
    >>> _ = open(chunk, "wb").write(bytes(data))
    >>> damaged_chunk(path)
    'h/noise_inner chunk c.0.0.0 has a checksum (CRC-32C) that does not match its bytes (steps 0..3 by index)'
    """
    from .v3 import _checksummed, _crc32c

    p = Path(path)
    metas = dict(_array_metas(p, _root_meta(p)))
    for meta_path in sorted((p / CHECKPOINT_GROUP).rglob("zarr.json")):
        meta = json.loads(meta_path.read_text())
        if isinstance(meta, dict) and meta.get("node_type") == "array":
            metas[meta_path.parent.relative_to(p).as_posix()] = meta
    for name, meta in sorted(metas.items()):
        codecs = meta.get("codecs")
        if not isinstance(codecs, list) or not _checksummed(codecs):
            continue
        parsed = ArrayV3Metadata.from_dict(dict(meta))
        for coords in parsed.chunk_grid.all_chunk_coords(parsed.shape):
            key = parsed.encode_chunk_key(coords)
            try:
                data = (p / name / key).read_bytes()
            except OSError:
                continue  # missing: missing_chunks names it
            if len(data) < 4 or _crc32c(memoryview(data)[:-4]) != int.from_bytes(data[-4:], "little"):
                where = ""
                if parsed.dimension_names and parsed.dimension_names[0] == "step" and parsed.shape:
                    size = parsed.chunk_grid.chunk_shape[0]
                    where = f" (steps {coords[0] * size}..{min((coords[0] + 1) * size, parsed.shape[0]) - 1} by index)"
                return f"{name} chunk {key} has a checksum (CRC-32C) that does not match its bytes{where}"
    return None


def missing_chunks(p: Path, path: str, meta: Mapping[str, Any], rows: int | None = None) -> str | None:
    """The first chunk file of array ``path`` (first ``rows`` rows, default all) that is not on disk, as a phrase
    naming it (and the steps it holds), or None. dyn writes every chunk, so a missing one means damage; zarr would
    silently return fill values for it."""
    try:
        parsed = ArrayV3Metadata.from_dict(dict(meta))
    except Exception as exc:  # zarr raises many types for malformed metadata
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"{p}: array {path} has unreadable metadata: {msg}") from None
    shape = parsed.shape if rows is None else (min(rows, parsed.shape[0]), *parsed.shape[1:])
    for coords in parsed.chunk_grid.all_chunk_coords(shape):
        key = parsed.encode_chunk_key(coords)
        if not (p / path / key).is_file():
            where = ""
            if parsed.dimension_names and parsed.dimension_names[0] == "step" and len(shape):
                size = parsed.chunk_grid.chunk_shape[0]
                first = coords[0] * size
                where = f" (steps {first}..{min(first + size, shape[0]) - 1} by index)"
            return f"{path} is missing its chunk {key}{where}"
    return None


def _check_chunks(p: Path, metas: Mapping[str, Mapping[str, Any]], *, schema: int, rows: int | None) -> None:
    """Refuse a store with a chunk file missing in the range a reader sees (``rows`` steps, default all).

    Schema 1 stores did not write chunks that held only fill values; for them only the ``step`` coordinates and
    the recorded inner products (never all fill values) are checked.
    """
    for path, meta in metas.items():
        name = path.rsplit("/", 1)[-1]
        if schema < 2 and not (name == "step" or name.endswith("_inner")):
            continue
        is_step = (meta.get("dimension_names") or [None])[0] == "step"
        gap = missing_chunks(p, path, meta, rows if is_step else None)
        if gap is not None:
            raise StoreError(f"{p}: {gap}; the store is damaged (a chunk file was deleted or never copied)")


def open_run(path: str | os.PathLike, *, validate: bool = True, chunks: dict | None = None) -> xr.DataTree:
    """Open a dyn run store as an :class:`xarray.DataTree`, validating its schema.

    A store that is still being written, or was killed, opens at its last commit: the steps it shows are fully
    written, every group aligned (see :mod:`dyn.store.writer`). A chunk file missing from that range is an error,
    never a silent fill value.

    Parameters
    ----------
    path : str or Path
        The run store.
    validate : bool
        Check sites, variables, dimensions and data types against the schema.
    chunks : dict, optional
        ``{}`` opens every variable as a dask array in its stored chunks (for recordings larger than memory).

    Raises
    ------
    StoreError
        A one-line message naming what is wrong (including a store with no recorded step yet).

    Examples
    --------
    >>> import dyn, torch, tempfile, os
    >>> w = torch.nn.Parameter(torch.randn(3, 5))
    >>> site = dyn.Site(w, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> with dyn.Recorder(path, sites={"h": site}) as rec:
    ...     rec.step()
    >>> tree = dyn.open(path)
    >>> tree["h"]["noise_inner"].shape
    (2, 3, 4)
    """
    p = Path(path)
    attrs = read_attrs(p)
    check_codecs(p)
    root = _root_meta(p)
    consolidated = root.get("consolidated_metadata") is not None
    metas = _array_metas(p, root)
    legacy = attrs["dyn_schema_version"] < 2 and not consolidated
    if not legacy and (attrs.get("n_recorded") == 0 or "step" not in metas):
        hint = "; `dyn run --resume` restarts it" if attrs.get("setup") else ""
        raise StoreError(f"{p} holds no recorded step yet (status {attrs.get('status')}: it stopped or is still "
                         f"running before its first write){hint}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = xr.open_datatree(p, engine="zarr", consolidated=consolidated, chunks=chunks)
    except Exception as exc:  # zarr/xarray raise many types for damaged stores; name the store and the cause
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "checksum" in msg.lower():
            with contextlib.suppress(Exception):
                msg = damaged_chunk(p) or msg
        raise StoreError(f"{p} could not be read as a dyn store: {msg}") from None
    rows = None
    if legacy:  # schema 1, unfinished: arrays were allocated ahead, unwritten steps hold -1
        rows = _written_steps(p, tree)
        if rows is not None and rows < tree.sizes.get("step", 0):
            tree = tree.isel(step=slice(0, rows))
    _check_chunks(p, metas, schema=attrs["dyn_schema_version"], rows=rows)
    if validate:
        validate_tree(p, tree, attrs)
    return tree


def _written_steps(p: Path, tree: xr.DataTree) -> int | None:
    """Steps fully written in a schema-1 store: the shortest prefix of set (``>= 0``) step coordinates."""
    counts = []
    for node in tree.subtree:
        if "step" in node.ds.variables and "step" in node.ds.dims:
            with reading(p, "step"):
                values = node.ds["step"].values
            unset = np.flatnonzero(values < 0)
            counts.append(int(unset[0]) if unset.size else len(values))
    return min(counts) if counts else None


def read_static(path: str | os.PathLike, site: str, name: str) -> np.ndarray:
    """One static array of a site (e.g. ``noise_vectors``), read without opening the whole tree."""
    p = Path(path)
    schema = read_attrs(p)["dyn_schema_version"]
    check_codecs(p)
    meta = _array_metas(p, _root_meta(p)).get(f"{site}/{name}")
    if meta is None:
        raise StoreError(f"{p}: the store has no array {site}/{name}")
    gap = missing_chunks(p, f"{site}/{name}", meta) if schema >= 2 else None
    if gap is not None:
        raise StoreError(f"{p}: {gap}; the store is damaged")
    with reading(p, f"{site}/{name}"):
        return np.asarray(zarr.open_array(str(p / site / name), mode="r")[...])
