"""The on-disk schema of a dyn run: one zarr v3 store, readable by plain xarray.

Layout (every dimension has a coordinate of the same name)::

    /                       attrs: dyn_schema_version, dyn_version, created, libraries, config, seed,
                                   status, last_step, n_recorded, sites, chunk_steps, ...
      step(step)            int64, recorded optimizer steps (0 = initialisation)
      loss(step), ...       float64, scalars logged with Recorder.log
    /<site>                 one group per site (e.g. h, g)
      step(step), neuron(neuron), sample(sample), signal(signal), feature(feature), basis(basis), basis_dual
      signal_inner(step, neuron, signal)   float32   ⟨w_r(t), μ_k⟩
      noise_inner(step, neuron, sample)    float32   ⟨w_r(t), ξ_i⟩
      <extra>_inner(step, neuron, <dim>)   float32   user probe sets
      label(sample)                        labels of the noise patches (when given)
      gram(basis, basis_dual)              float64   Gram matrix of (μ_1..μ_K, ξ_1..ξ_n), for the exact γ/ρ solve
      signal_vectors(signal, feature), noise_vectors(sample, feature)   the probes (when stored)
      weight_init(neuron, feature), weight_final(neuron, feature)       (when stored)

Per-step arrays are chunked only along ``step`` (a few MB a chunk, fixed at creation) and compressed with Blosc.
While a run is live the metadata is not consolidated, arrays are allocated ahead in whole chunks, and a step is
fully written once its ``step`` coordinate is set (unwritten steps hold ``-1``; :func:`open_run` trims them).
``close`` cuts the arrays to the recorded length, records ``n_recorded``/``last_step`` and consolidates once. One
writer per store is enforced with an OS lock on the store directory, held while writing.

Open with ``xr.open_datatree(path, engine="zarr")`` or, validated, :func:`dyn.open`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import fcntl
import json
import os
import platform
import shutil
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync as zarr_sync

from .errors import StoreError

__all__ = ["SCHEMA_VERSION", "StoreWriter", "open_run", "read_attrs", "library_versions", "STATUSES", "reading",
           "check_codecs"]

SCHEMA_VERSION = 1
STATUSES = ("running", "complete", "diverged", "interrupted")
# Inner products of float32 weights compress by only ~10-15%; fast lz4 keeps the writer at disk speed.
_COMPRESSOR = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")
STEP_VARS = ("signal_inner", "noise_inner")


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a run depends on, stored with every run."""
    import torch

    from . import __version__

    return {
        "dyn": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "zarr": zarr.__version__,
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class StoreWriter:
    """Creates a run store and appends step chunks to it; the only code that writes run stores.

    Parameters
    ----------
    path : str or Path
        Directory of the new zarr store.
    overwrite : bool
        Replace an existing store (only a dyn store or an empty directory; never another kind of folder).
    append : bool
        Open an existing store to continue it (:meth:`reopen`) instead of creating one.

    Notes
    -----
    Nothing is created until :meth:`create`, so a caller can validate all its inputs first and leave no
    half-written store behind on bad input.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False, append: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        if append:
            read_attrs(self.path)  # must be an existing dyn store
        elif self.path.exists():
            if not overwrite:
                raise StoreError(f"{self.path} already exists (use overwrite=True / --overwrite to replace it)")
            if self.path.is_dir() and any(self.path.iterdir()) and not (self.path / "zarr.json").is_file():
                raise StoreError(f"{self.path} exists and is not a dyn store; refusing to overwrite it")
            if not self.path.is_dir():
                raise StoreError(f"{self.path} exists and is not a directory; refusing to overwrite it")
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if parent.exists() and not os.access(parent, os.W_OK):
            raise StoreError(f"cannot write to {parent}: permission denied")
        self.group: zarr.Group | None = None
        self._lock_fd: int | None = None
        self._created = False
        self.chunk_steps = 0
        self.n_recorded = 0
        self.last_step = -1
        self._capacity = 0
        self._arrays: dict[tuple[str, str], Any] = {}  # zarr AsyncArrays of the per-step variables

    # -- creation -----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Claim the path: remove a store being overwritten, make the directory, take the writer lock.

        Fast and synchronous, so a caller learns at once when the path cannot be used; :meth:`create` (zarr
        metadata and static arrays) may then run on a background thread.
        """
        if self.path.exists() and self.overwrite:
            fd = self._lock(self.path)  # never delete a store another process is writing
            try:
                shutil.rmtree(self.path)
            finally:
                os.close(fd)
        try:
            self.path.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path}: {exc.strerror or exc}") from None
        self._created = True
        self._lock_fd = self._lock(self.path)

    def create(self, attrs: Mapping[str, Any], chunk_steps: int) -> None:
        """Create the store with root ``attrs`` and the root ``step`` coordinate (calls :meth:`prepare` if needed)."""
        if not self._created:
            self.prepare()
        self.chunk_steps = int(chunk_steps)
        root_attrs = {
            "dyn_schema_version": SCHEMA_VERSION,
            "created": _now(),
            "libraries": library_versions(),
            "status": "running",
            "last_step": -1,
            "n_recorded": 0,
            "chunk_steps": self.chunk_steps,
            **attrs,
        }
        self.group = zarr.create_group(str(self.path), zarr_format=3, attributes=root_attrs)
        self._groups: dict[str, Any] = {"": self.group._async_group}
        zarr_sync(self._step_array("", "step", (), np.int64))

    @staticmethod
    def _lock(path: Path) -> int:
        """Take the store's writer lock: an exclusive flock on the store directory itself (released by the OS
        when the process dies, so a crashed writer never leaves a stale lock)."""
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{path} is being written by another process (one writer per store)") from None
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _step_array(self, site: str, name: str, trailing: tuple[tuple[str, int], ...], dtype: Any) -> None:
        fill = -1 if np.dtype(dtype).kind == "i" else np.nan
        self._arrays[(site, name)] = await self._groups[site].create_array(
            name,
            shape=(self._capacity, *(n for _, n in trailing)),
            chunks=(self.chunk_steps, *(n for _, n in trailing)),
            dtype=dtype,
            dimension_names=["step", *(d for d, _ in trailing)],
            fill_value=fill,
            compressors=[_COMPRESSOR] if trailing else None,
        )

    @staticmethod
    async def _static_array(group: Any, name: str, dims: tuple[str, ...], values: np.ndarray, attrs: Mapping | None) -> None:
        values = np.asarray(values)
        if values.dtype.kind in "UO":
            values = values.astype(str)
            arr = await group.create_array(name, shape=values.shape, dtype=str, dimension_names=list(dims),
                                           overwrite=True, attributes=dict(attrs or {}))
        else:
            arr = await group.create_array(name, shape=values.shape, dtype=values.dtype, dimension_names=list(dims),
                                           compressors=[_COMPRESSOR], overwrite=True, attributes=dict(attrs or {}))
        if values.size:
            await arr.setitem(..., values)

    def add_site(
        self,
        site: str,
        *,
        coords: Mapping[str, np.ndarray],
        step_vars: Mapping[str, tuple[str, str]],
        static: Mapping[str, tuple[tuple[str, ...], np.ndarray]],
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a site group: its coordinates, per-step variables ``name -> (dim2, dim3)`` and static arrays.

        All arrays are created and filled concurrently in one round trip to zarr's event loop.
        """

        async def build() -> None:
            self._groups[site] = await self._groups[""].create_group(site, attributes=dict(attrs or {}))
            await asyncio.gather(
                *(self._static_array(self._groups[site], dim, (dim,), values, None) for dim, values in coords.items()),
                *(self._static_array(self._groups[site], name, dims, values, None) for name, (dims, values) in static.items()),
                self._step_array(site, "step", (), np.int64),
                *(self._step_array(site, name, ((d2, len(coords[d2])), (d3, len(coords[d3]))), np.float32)
                  for name, (d2, d3) in step_vars.items()),
            )

        zarr_sync(build())

    def write_static(self, site: str, name: str, dims: tuple[str, ...], values: np.ndarray, attrs: Mapping | None = None) -> None:
        """Write (or replace) a static array of a site, e.g. ``weight_final``."""
        zarr_sync(self._static_array(self._groups[site], name, dims, values, attrs))

    # -- appending ----------------------------------------------------------------------------------------------
    def append(
        self,
        steps: np.ndarray,
        inner: Mapping[str, Mapping[str, np.ndarray]],
        scalars: Mapping[str, np.ndarray],
    ) -> None:
        """Append ``len(steps)`` recorded steps: per-site inner products and root scalars.

        Arrays grow geometrically (few metadata writes); the data are written first and the ``step`` coordinates
        last, so a step whose coordinate is set (``>= 0``) is fully written. Readers of a live or crashed store
        trim the unwritten tail (fill value ``-1``); :meth:`close` cuts the arrays to the recorded length.
        """
        k = len(steps)
        if k == 0:
            return
        start, stop = self.n_recorded, self.n_recorded + k
        new_scalars = [name for name in scalars if ("", name) not in self._arrays]
        if new_scalars:
            async def add_scalars() -> None:
                await asyncio.gather(*(self._step_array("", name, (), np.float64) for name in new_scalars))

            zarr_sync(add_scalars())
        data: list[tuple[Any, np.ndarray]] = []
        coords: list[tuple[Any, np.ndarray]] = []
        for (site, var), arr in self._arrays.items():
            if var == "step":
                coords.append((arr, steps))
            elif site == "":
                values = scalars.get(var)
                data.append((arr, np.full(k, np.nan) if values is None else np.asarray(values, np.float64)))
            else:
                data.append((arr, inner[site][var]))
        grow = stop > self._capacity
        if grow:
            chunk = self.chunk_steps
            self._capacity = max(stop, -(-2 * self._capacity // chunk) * chunk)

        async def write() -> None:
            # All arrays are written concurrently on zarr's event loop: one round trip instead of one per array.
            if grow:
                await asyncio.gather(*(arr.resize((self._capacity, *arr.shape[1:])) for arr, _ in data + coords))
            await asyncio.gather(*(arr.setitem(slice(start, stop), v) for arr, v in data))
            await asyncio.gather(*(arr.setitem(slice(start, stop), v) for arr, v in coords))

        zarr_sync(write())
        self.n_recorded = stop
        self.last_step = int(steps[-1])

    def reopen(self, before_step: int) -> dict[str, Any]:
        """Reopen an existing run store for appending (``dyn run --resume``), cut to the steps before ``before_step``.

        Takes the writer lock, drops the consolidated metadata (it would describe the old shapes), truncates
        every per-step array and marks the store ``running``. Returns the root attributes.
        """
        attrs = read_attrs(self.path)
        self._lock_fd = self._lock(self.path)
        meta_path = self.path / "zarr.json"
        meta = json.loads(meta_path.read_text())
        if meta.get("consolidated_metadata") is not None:
            meta["consolidated_metadata"] = None
            tmp = meta_path.with_name(".zarr.json.partial")
            tmp.write_text(json.dumps(meta, indent=2))
            os.replace(tmp, meta_path)
        self.group = zarr.open_group(str(self.path), mode="r+", zarr_format=3)
        self.chunk_steps = int(attrs["chunk_steps"])
        self._groups = {"": self.group._async_group}
        for site in attrs["sites"]:
            self._groups[site] = self.group[site]._async_group
        for site, grp in self._groups.items():
            node = self.group if site == "" else self.group[site]
            for name, arr in node.arrays():
                if arr.metadata.dimension_names and arr.metadata.dimension_names[0] == "step":
                    self._arrays[(site, name)] = arr._async_array
        steps = np.asarray(self.group["step"][:])
        unset = np.flatnonzero(steps < 0)
        written = steps[: unset[0]] if unset.size else steps
        keep_steps = int(np.searchsorted(written, before_step))
        self.n_recorded = self._capacity = keep_steps

        async def cut() -> None:
            await asyncio.gather(*(a.resize((keep_steps, *a.shape[1:])) for a in self._arrays.values()))

        zarr_sync(cut())
        self.last_step = int(written[keep_steps - 1]) if keep_steps else -1
        self.group.update_attributes({"status": "running", "n_recorded": self.n_recorded, "last_step": self.last_step,
                                      "resumed": _now()})
        return attrs

    def write_checkpoint(self, next_step: int, arrays: Mapping[str, tuple[tuple[str, ...], np.ndarray]]) -> None:
        """Store the state needed to resume at ``next_step`` (group ``_checkpoint``), then point the root at it.

        The pointer (``checkpoint_step``) is written last, so a crash mid-checkpoint leaves the previous one valid:
        arrays are written under the new step's name and the old ones removed only after the pointer moved.
        """
        name = f"step_{next_step}"

        async def write() -> None:
            if "_checkpoint" not in self._groups:
                self._groups["_checkpoint"] = await self._groups[""].require_group("_checkpoint")
            grp = await self._groups["_checkpoint"].require_group(name)
            await asyncio.gather(*(self._static_array(grp, key, dims, values, None) for key, (dims, values) in arrays.items()))

        zarr_sync(write())
        previous = self.group.attrs.get("checkpoint_step")
        self.group.update_attributes({"checkpoint_step": int(next_step), "n_recorded": self.n_recorded,
                                      "last_step": self.last_step})
        if previous is not None and previous != next_step:
            shutil.rmtree(self.path / "_checkpoint" / f"step_{previous}", ignore_errors=True)

    def close(self, status: str, **attrs: Any) -> None:
        """Cut arrays to the recorded length, set the final status, consolidate metadata, release the lock."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        try:
            if self.group is not None:
                n = self.n_recorded

                async def trim() -> None:
                    await asyncio.gather(*(a.resize((n, *a.shape[1:])) for a in self._arrays.values() if a.shape[0] != n))

                zarr_sync(trim())
                self.group.update_attributes({"status": status, "closed": _now(), "n_recorded": n,
                                         "last_step": self.last_step, **attrs})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    zarr.consolidate_metadata(str(self.path))
        finally:
            self._release_lock()

    def abort(self) -> None:
        """Remove a store whose creation failed, if this writer created it; anything else is left alone."""
        self._release_lock()
        if self._created and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)


# -- reading ------------------------------------------------------------------------------------------------------
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


# Codecs dyn decodes. Anything else is refused before any data is read: some codecs (pickle, object arrays)
# execute code from the file when decoded.
SAFE_CODECS = {"bytes", "blosc", "zstd", "gzip", "crc32c", "transpose", "vlen-utf8", "vlen-bytes", "sharding_indexed"}


def check_codecs(path: str | os.PathLike) -> None:
    """Refuse a store containing arrays whose codecs or data types dyn does not decode safely (JSON only)."""
    root = Path(path)
    for meta_path in root.rglob("zarr.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            raise StoreError(f"{root}: unreadable metadata {meta_path.relative_to(root)}") from None
        if not isinstance(meta, dict) or meta.get("node_type") != "array":
            continue
        name = str(meta_path.parent.relative_to(root))
        dtype = meta.get("data_type")
        if isinstance(dtype, str) and dtype.lower() in ("object", "|o", "o"):
            raise StoreError(f"{root}: array {name} has object data type, which dyn does not read")
        codecs = list(meta.get("codecs") or [])
        while codecs:
            codec = codecs.pop()
            cname = codec.get("name") if isinstance(codec, dict) else None
            if cname not in SAFE_CODECS:
                raise StoreError(f"{root}: array {name} uses codec {cname!r}, which dyn does not read "
                                 "(only compression codecs; some codecs execute code when decoding)")
            codecs.extend((codec.get("configuration") or {}).get("codecs") or [])


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
        _validate(p, tree, attrs)
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


def _validate(p: Path, tree: xr.DataTree, attrs: Mapping[str, Any]) -> None:
    if attrs.get("status") not in STATUSES:
        raise StoreError(f"{p}: unknown status {attrs.get('status')!r}")
    if "step" not in tree.ds.variables:
        raise StoreError(f"{p}: missing root variable 'step'")
    sites = attrs.get("sites")
    if not isinstance(sites, list) or not sites:
        raise StoreError(f"{p}: missing or empty 'sites' attribute")
    for site in sites:
        if site not in tree.children:
            raise StoreError(f"{p}: missing site group '{site}'")
        ds = tree[site].ds
        for var in STEP_VARS:
            if var not in ds.variables:
                raise StoreError(f"{p}: site '{site}' is missing variable '{var}'")
        expected = {"signal_inner": ("step", "neuron", "signal"), "noise_inner": ("step", "neuron", "sample")}
        for var, dims in expected.items():
            if ds[var].dims != dims:
                raise StoreError(f"{p}: {site}/{var} has dims {ds[var].dims}, expected {dims}")
        for dim in ds.dims:
            if dim not in tree[site].coords:
                raise StoreError(f"{p}: site '{site}' has no coordinate for dimension '{dim}'")
        if ds.sizes["step"] != tree.sizes["step"]:
            raise StoreError(f"{p}: site '{site}' has {ds.sizes['step']} steps, root has {tree.sizes['step']}")
