"""Reading run stores: attributes from JSON, validated trees through xarray, damaged data as one-line errors."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from ..errors import StoreError
from .safety import check_codecs
from .schema import SCHEMA_VERSION, validate_tree

__all__ = ["read_attrs", "reading", "open_run", "read_static"]


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
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"{path}: cannot read {what} (corrupt or truncated data?): {msg}") from None


def _is_consolidated(path: Path) -> bool:
    try:
        return json.loads((path / "zarr.json").read_text()).get("consolidated_metadata") is not None
    except (OSError, ValueError):
        return False


def open_run(path: str | os.PathLike, *, validate: bool = True, chunks: dict | None = None) -> xr.DataTree:
    """Open a dyn run store as an :class:`xarray.DataTree`, validating its schema.

    A store that is still running or was interrupted is trimmed to the steps whose chunks were fully written.

    Parameters
    ----------
    path : str or Path
        The run store.
    validate : bool
        Check sites, variables and dimensions against the schema.
    chunks : dict, optional
        ``{}`` opens every variable as a dask array in its stored chunks (for recordings larger than memory).

    Raises
    ------
    StoreError
        A one-line message naming what is wrong.

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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = xr.open_datatree(p, engine="zarr", consolidated=_is_consolidated(p), chunks=chunks)
    except Exception as exc:  # zarr/xarray raise many types for damaged stores; name the store and the cause
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"{p} could not be read as a dyn store: {msg}") from None
    if attrs.get("status") != "complete":
        n = _written_steps(tree)
        if n is not None and n < tree.sizes.get("step", 0):
            tree = tree.isel(step=slice(0, n))
    if validate:
        validate_tree(p, tree, attrs)
    return tree


def _written_steps(tree: xr.DataTree) -> int | None:
    """Steps fully written: the shortest prefix of set (``>= 0``) step coordinates over the root and the sites."""
    counts = []
    for node in tree.subtree:
        if "step" in node.ds.variables and "step" in node.ds.dims:
            values = node.ds["step"].values
            unset = np.flatnonzero(values < 0)
            counts.append(int(unset[0]) if unset.size else len(values))
    return min(counts) if counts else None


def read_static(path: str | os.PathLike, site: str, name: str) -> np.ndarray:
    """One static array of a site (e.g. ``noise_vectors``), read without opening the whole tree."""
    p = Path(path)
    check_codecs(p)
    with reading(p, f"{site}/{name}"):
        return np.asarray(zarr.open_array(str(p / site / name), mode="r")[...])
