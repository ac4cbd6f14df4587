"""Writing run stores: the only code that creates or appends to them (layout in :mod:`dyn.store.schema`).

Per-step arrays are chunked only along ``step`` (a few MB a chunk, fixed at creation) and compressed with Blosc.
While a run is live the metadata is not consolidated, arrays are allocated ahead in whole chunks, and a step is
fully written once its ``step`` coordinate is set (unwritten steps hold ``-1``; :func:`dyn.store.open_run` trims
them). ``close`` cuts the arrays to the recorded length, records ``n_recorded``/``last_step`` and consolidates
once. One writer per store is enforced with an OS lock on the store directory, held while writing.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import fcntl
import json
import os
import platform
import shutil
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync as zarr_sync

from ..errors import StoreError
from .checkpoint import CHECKPOINT_GROUP
from .reader import read_attrs
from .schema import SCHEMA_VERSION, STATUSES

__all__ = ["StoreWriter", "library_versions"]

# Inner products of float32 weights compress by only ~10-15%; fast lz4 keeps the writer at disk speed.
_COMPRESSOR = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a run depends on, stored with every run (no imports needed)."""
    out = {
        "dyn": _version("dyn") or "unknown",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "zarr": zarr.__version__,
    }
    torch_version = _version("torch")
    if torch_version:
        out["torch"] = torch_version
    return out


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
                self._groups["_checkpoint"] = await self._groups[""].require_group(CHECKPOINT_GROUP)
            grp = await self._groups["_checkpoint"].require_group(name)
            await asyncio.gather(*(self._static_array(grp, key, dims, values, None) for key, (dims, values) in arrays.items()))

        zarr_sync(write())
        previous = self.group.attrs.get("checkpoint_step")
        self.group.update_attributes({"checkpoint_step": int(next_step), "n_recorded": self.n_recorded,
                                      "last_step": self.last_step})
        if previous is not None and previous != next_step:
            shutil.rmtree(self.path / CHECKPOINT_GROUP / f"step_{previous}", ignore_errors=True)

    def close(self, status: str, **attrs: Any) -> None:
        """Cut arrays to the recorded length, set the final status, consolidate metadata, release the lock."""
        if status not in STATUSES:
            raise StoreError(f"status must be one of {STATUSES}, got {status!r}")
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


