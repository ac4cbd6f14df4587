"""Reading run stores: attributes from JSON, validated trees through xarray, damaged data as one-line errors.

A store is a local folder, or (read-only) an fsspec URL: ``memory://``, ``zip://run.zarr::store.zip``, ``s3://``,
``gs://``, ... (needs ``fsspec``, the ``remote`` extra, and the protocol's own package, e.g. ``s3fs``). Both are
read by the same rules: the root ``zarr.json`` is the commit record, every chunk of the committed range must
exist, codecs are checked before any data is read and chunk checksums are verified as they are read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlparse

import numpy as np
import xarray as xr
import zarr
from zarr.core.metadata import ArrayV3Metadata

from ..errors import StoreError
from .safety import check_codecs, check_metadata
from .schema import SCHEMA_VERSION, validate_tree

__all__ = ["read_attrs", "reading", "open_run", "read_static", "missing_chunks", "damaged_chunk", "CHECKPOINT_GROUP",
           "is_url", "local_path", "refuse_url", "REMOTE_EXTRA"]

#: The group holding a run's checkpoints (:mod:`dyn.store.checkpoint`); not part of the recording.
CHECKPOINT_GROUP = "_checkpoint"


_OPEN_EXPORT = ("open it with xarray (xr.open_datatree(path, engine='zarr') for .zarr, engine='netcdf4' for .nc) "
                "or pandas (read_csv, read_parquet); dyn's commands take the run store it was exported from")


#: How to install what reading a store from a URL needs.
REMOTE_EXTRA = "pip install 'dyn[remote]'"

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: Any) -> bool:
    """Whether ``path`` is an fsspec URL (``memory://``, ``zip://…::…``, ``s3://``) rather than a local path.
    ``file://`` URLs name local paths (:func:`local_path`).

    Examples
    --------
    >>> is_url("s3://bucket/run.zarr"), is_url("zip://run.zarr::runs.zip"), is_url("runs/a.zarr")
    (True, True, False)
    >>> is_url("file:///tmp/run.zarr"), is_url(Path("memory://x"))
    (False, False)
    """
    return isinstance(path, str) and bool(_URL.match(path)) and not path.startswith("file://")


def local_path(path: str | os.PathLike) -> Path:
    """``path`` as a local :class:`~pathlib.Path`; a ``file://`` URL becomes the path it names.

    Examples
    --------
    >>> local_path("file:///tmp/my%20runs/a.zarr").as_posix(), local_path("runs/a.zarr").as_posix()
    ('/tmp/my runs/a.zarr', 'runs/a.zarr')
    """
    if isinstance(path, str) and path.startswith("file://"):
        return Path(unquote(urlparse(path).path))
    return Path(path)


def refuse_url(path: Any, what: str = "dyn writes") -> None:
    """Raise a one-line :class:`StoreError` when ``path`` is a URL: dyn writes (and its commands read) local
    stores only; a URL is read from Python with ``dyn.open(url)`` / ``dyn.Run(url)``.

    Examples
    --------
    >>> refuse_url("runs/a.zarr")
    >>> refuse_url("s3://bucket/a.zarr")
    Traceback (most recent call last):
    ...
    dyn.errors.StoreError: s3://bucket/a.zarr: dyn writes local stores only; record to a local path and upload the folder (W&B: artifact.add_dir(path)); dyn.open(url) and dyn.Run(url) read a store at a URL
    """
    if is_url(path):
        raise StoreError(f"{path}: {what} local stores only; record to a local path and upload the folder (W&B: "
                         "artifact.add_dir(path)); dyn.open(url) and dyn.Run(url) read a store at a URL")


class _Remote:
    """The files of a store behind an fsspec URL, read-only: listed once, read through fsspec."""

    def __init__(self, url: str):
        try:
            import fsspec
            from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper  # noqa: F401 (zarr wraps with it)
        except ImportError:
            raise StoreError(f"{url}: reading a store from a URL needs fsspec >= 2025.3 ({REMOTE_EXTRA}); or "
                             "download the store (W&B: artifact.download()) and open its folder") from None
        # filesystems raise their own types (zipfile.BadZipFile, botocore's credential errors, ...): one line each
        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except ImportError as exc:  # the protocol's package (s3fs, gcsfs, ...) is missing
            raise StoreError(f"{url}: {_first_line(exc)}") from None
        except ValueError as exc:
            raise StoreError(f"{url}: not a URL fsspec can open: {_first_line(exc)}") from None
        except Exception as exc:
            raise StoreError(f"{url}: cannot open it: {_first_line(exc)}") from None
        self.url, self.root = url, root.rstrip("/")
        try:
            found = self.fs.find(self.root) if self.fs.isdir(self.root) else []
        except Exception as exc:
            raise StoreError(f"{url}: cannot list the store: {_first_line(exc)}") from None
        if not found:
            raise StoreError(f"{url} does not exist (or is empty)")
        prefix = self.root + "/"
        self.files = {f[len(prefix):] for f in (str(x) for x in found) if f.startswith(prefix)}

    def read(self, rel: str) -> bytes | None:
        """The bytes of the store's file ``rel``, or None when it is absent or cannot be read."""
        if rel not in self.files:
            return None
        try:
            return self.fs.cat_file(f"{self.root}/{rel}")
        except Exception:  # unreadable is absent here: the checks that call this name the file
            return None

    def zarr_store(self):
        """The store as zarr sees it, read-only: zarr opens the URL's filesystem in asynchronous mode (object
        stores) or wraps a synchronous one (memory, zip, local)."""
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(self.url, read_only=True)


def _attrs(where: Any, meta: Any) -> dict[str, Any]:
    """The dyn root attributes in a root ``zarr.json``'s parsed contents, checked (schema, written by dyn)."""
    p = where
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


def _remote_root(remote: _Remote) -> dict[str, Any]:
    data = remote.read("zarr.json")
    if data is None:
        raise StoreError(f"{remote.url} is not a dyn store (no zarr.json; not a zarr v3 store)")
    try:
        meta = json.loads(data)
    except ValueError as exc:
        raise StoreError(f"{remote.url} is not a dyn store (unreadable zarr.json: {exc})") from None
    if not isinstance(meta, dict):
        raise StoreError(f"{remote.url} is not a dyn store (its root is not a zarr group)")
    return meta


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """Root attributes of a dyn store, read from ``zarr.json`` as JSON (no zarr, no code execution); ``path`` may
    be an fsspec URL (:func:`is_url`).

    Raises
    ------
    StoreError
        If ``path`` is not a zarr v3 group written by dyn, or comes from a newer schema.
    """
    if is_url(path):
        remote = _Remote(str(path))
        return _attrs(remote.url, _remote_root(remote))
    p = local_path(path)
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
    return _attrs(p, meta)


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
    if is_url(path):
        remote = _Remote(str(path))
        return _first_damaged(_committed_metas(remote.url, _remote_root(remote)), remote.read)
    p = local_path(path)
    metas = dict(_array_metas(p, _root_meta(p)))
    for meta_path in sorted((p / CHECKPOINT_GROUP).rglob("zarr.json")):
        meta = json.loads(meta_path.read_text())
        if isinstance(meta, dict) and meta.get("node_type") == "array":
            metas[meta_path.parent.relative_to(p).as_posix()] = meta

    def read(rel: str) -> bytes | None:
        try:
            return (p / rel).read_bytes()
        except OSError:
            return None

    return _first_damaged(metas, read)


def _first_damaged(metas: Mapping[str, Mapping[str, Any]], read: Callable[[str], bytes | None]) -> str | None:
    """:func:`damaged_chunk` over the arrays ``metas`` (path → metadata), their chunk files read by ``read``."""
    from .v3 import _checksummed, _crc32c

    for name, meta in sorted(metas.items()):
        codecs = meta.get("codecs")
        if not isinstance(codecs, list) or not _checksummed(codecs):
            continue
        parsed = ArrayV3Metadata.from_dict(dict(meta))
        for coords in parsed.chunk_grid.all_chunk_coords(parsed.shape):
            key = parsed.encode_chunk_key(coords)
            data = read(f"{name}/{key}")
            if data is None:
                continue  # missing: missing_chunks names it
            if len(data) < 4 or _crc32c(memoryview(data)[:-4]) != int.from_bytes(data[-4:], "little"):
                where = ""
                if parsed.dimension_names and parsed.dimension_names[0] == "step" and parsed.shape:
                    size = parsed.chunk_grid.chunk_shape[0]
                    where = f" (steps {coords[0] * size}..{min((coords[0] + 1) * size, parsed.shape[0]) - 1} by index)"
                return f"{name} chunk {key} has a checksum (CRC-32C) that does not match its bytes{where}"
    return None


def missing_chunks(p: Path | str, path: str, meta: Mapping[str, Any], rows: int | None = None, *,
                   exists: Callable[[str], bool] | None = None) -> str | None:
    """The first chunk file of array ``path`` (first ``rows`` rows, default all) that is not on disk, as a phrase
    naming it (and the steps it holds), or None. dyn writes every chunk, so a missing one means damage; zarr would
    silently return fill values for it. ``exists`` tells whether a file (its path in the store) is there
    (default: a file under the folder ``p``)."""
    exists = exists if exists is not None else (lambda rel: (Path(p) / rel).is_file())
    try:
        parsed = ArrayV3Metadata.from_dict(dict(meta))
    except Exception as exc:  # zarr raises many types for malformed metadata
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"{p}: array {path} has unreadable metadata: {msg}") from None
    shape = parsed.shape if rows is None else (min(rows, parsed.shape[0]), *parsed.shape[1:])
    for coords in parsed.chunk_grid.all_chunk_coords(shape):
        key = parsed.encode_chunk_key(coords)
        if not exists(f"{path}/{key}"):
            where = ""
            if parsed.dimension_names and parsed.dimension_names[0] == "step" and len(shape):
                size = parsed.chunk_grid.chunk_shape[0]
                first = coords[0] * size
                where = f" (steps {first}..{min(first + size, shape[0]) - 1} by index)"
            return f"{path} is missing its chunk {key}{where}"
    return None


def _check_chunks(p: Path | str, metas: Mapping[str, Mapping[str, Any]], *, schema: int, rows: int | None,
                  exists: Callable[[str], bool] | None = None) -> None:
    """Refuse a store with a chunk file missing in the range a reader sees (``rows`` steps, default all).

    Schema 1 stores did not write chunks that held only fill values; for them only the ``step`` coordinates and
    the recorded inner products (never all fill values) are checked.
    """
    for path, meta in metas.items():
        name = path.rsplit("/", 1)[-1]
        if schema < 2 and not (name == "step" or name.endswith("_inner")):
            continue
        is_step = (meta.get("dimension_names") or [None])[0] == "step"
        gap = missing_chunks(p, path, meta, rows if is_step else None, exists=exists)
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
        The run store: a folder, or an fsspec URL read-only (``memory://``, ``zip://run.zarr::runs.zip``,
        ``s3://bucket/run.zarr``; needs ``fsspec``, the ``remote`` extra) with the same checks: commit record,
        codecs, every chunk of the committed range present, checksums verified as chunks are read.
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

    The same store from an fsspec URL (here copied into fsspec's in-memory filesystem):

    >>> import fsspec
    >>> fsspec.filesystem("memory").put(path, "/doc/run.zarr", recursive=True)
    >>> dyn.open("memory://doc/run.zarr")["h"]["noise_inner"].shape
    (2, 3, 4)
    """
    if is_url(path):
        return _open_url(str(path), validate=validate, chunks=chunks)
    p = local_path(path)
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


def _committed_metas(url: str, root: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The arrays the commit record (the root ``zarr.json``'s consolidated metadata) shows; a store without one
    (schema 1) is refused: it is read from a local folder only."""
    if not isinstance(root.get("consolidated_metadata"), dict):
        raise StoreError(f"{url}: its zarr.json holds no commit record (consolidated metadata; a schema-1 or "
                         "unfinished old store): download it and open the folder")
    metas = root["consolidated_metadata"].get("metadata")
    if not isinstance(metas, dict):
        raise StoreError(f"{url}: malformed consolidated metadata in zarr.json")
    return {k: v for k, v in metas.items() if isinstance(v, dict) and v.get("node_type") == "array"}


def _open_url(url: str, *, validate: bool, chunks: dict | None) -> xr.DataTree:
    """:func:`open_run` of a store at an fsspec URL, read-only, by the same rules as a local folder."""
    remote = _Remote(url)
    root = _remote_root(remote)
    attrs = _attrs(url, root)
    metadata = []
    for rel in sorted(remote.files):  # every zarr.json, as for a local store (a reader may look at any of them)
        if rel == "zarr.json" or rel.endswith("/zarr.json"):
            data = remote.read(rel)
            try:
                meta = json.loads(data) if data is not None else None
            except ValueError:
                meta = None
            if meta is None:
                raise StoreError(f"{url}: unreadable metadata {rel}")
            metadata.append((rel.rpartition("zarr.json")[0].rstrip("/") or ".", meta))
    check_metadata(url, metadata)
    metas = _committed_metas(url, root)
    if attrs.get("n_recorded") == 0 or "step" not in metas:
        raise StoreError(f"{url} holds no recorded step yet (status {attrs.get('status')}: it stopped or is still "
                         "running before its first write)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = xr.open_datatree(remote.zarr_store(), engine="zarr", consolidated=True, chunks=chunks)
    except Exception as exc:  # zarr/xarray raise many types for damaged stores; name the store and the cause
        msg = _first_line(exc)
        if "checksum" in msg.lower():
            msg = _first_damaged(metas, remote.read) or msg
        raise StoreError(f"{url} could not be read as a dyn store: {msg}") from None
    _check_chunks(url, metas, schema=attrs["dyn_schema_version"], rows=None, exists=remote.files.__contains__)
    if validate:
        validate_tree(url, tree, attrs)
    tree.encoding["source"] = url  # xarray records the path inside the filesystem ("/t/run.zarr"): keep the URL
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
    if is_url(path):
        with reading(path, f"{site}/{name}"):
            return np.asarray(open_run(path)[site][name].values)
    p = local_path(path)
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
