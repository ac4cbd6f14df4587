"""Writing run stores: the only code that creates, appends to or resumes them (layout in :mod:`dyn.store.schema`).

The commit protocol
-------------------
zarr and xarray read a store through its root ``zarr.json`` when that file holds *consolidated metadata* (the
metadata of every group and array, with their shapes): plain ``xr.open_datatree(path, engine="zarr")`` and
:func:`dyn.open` then look at no other metadata file. dyn makes that file the store's **commit record**: it is
only ever replaced whole (written under a temporary name, then ``os.replace``, atomic on POSIX and Windows), and
appending ``k`` recorded steps to the ``n`` committed ones is

1. grow every per-step array to ``n + k`` in its own ``zarr.json`` (readers do not look there);
2. write the chunks holding steps ``n .. n + k`` of every array — zarr writes each chunk file under a temporary
   name and renames it, so a partly filled chunk that is rewritten is never seen half written and its earlier
   rows never change;
3. replace the root ``zarr.json``: every per-step array ``n + k`` long, ``n_recorded`` and ``last_step`` with it.

So at every instant — between any two file operations, while the writer runs or after it was killed — a reader
sees one committed length in every group (aligned, no padding rows), and every chunk of that range is on disk.
The store is created the same way: the root ``zarr.json`` (with the run's attributes, marking the folder as a dyn
store that ``dyn run --resume`` can restart) comes first, then the arrays, then the commit that shows them.

Checkpoints (``/_checkpoint/slot_0`` and ``slot_1``, :mod:`dyn.store.checkpoint`) take turns: the new one is
written completely into the slot the last commit does not point at, then a commit points at it
(``checkpoint_step``, ``checkpoint_slot``); they are left out of the consolidated metadata, so readers of the
recording never see them. Every chunk is written even
when it holds only fill values, so a chunk file missing from the committed range always means damage, and the
reader refuses it. This protects against a killed process (SIGKILL, out of memory, Ctrl-C); surviving a power cut
would also need an ``fsync`` of every chunk, which dyn does not pay for.

One writer per store: an OS lock (``flock``) on the store folder, taken before anything in it is read or
changed and released by the OS when the process dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import fcntl
import json
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync as zarr_sync

from ..errors import StoreError
from .checkpoint import CHECKPOINT_GROUP, read_checkpoint
from .outputs import atomic_write, claim_output, foreign_in_store, io_errors, make_parents
from .reader import read_attrs
from .schema import SCHEMA_VERSION, STATUSES

__all__ = ["StoreWriter", "library_versions"]

# Inner products of float32 weights compress by only ~10-15%; fast lz4 keeps the writer at disk speed.
_COMPRESSOR = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")
# Write chunks that hold only the fill value too: then a missing chunk file always means damage.
_ARRAY_CONFIG = {"write_empty_chunks": True}
# Attributes that describe an unfinished run; a run that completes drops them.
_UNFINISHED = ("error", "diverged_at", "checkpoint_step", "checkpoint_slot")
#: The two checkpoint slots, written in turn (:meth:`StoreWriter.write_checkpoint`).
_SLOTS = ("slot_0", "slot_1")


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


def _node_json(node: Any) -> dict[str, Any]:
    """A group's or array's metadata exactly as zarr writes it to its ``zarr.json``."""
    meta = json.loads(node.metadata.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes())
    if meta.get("node_type") == "group":
        meta["consolidated_metadata"] = {"kind": "inline", "must_understand": False, "metadata": {}}
    return meta


class StoreWriter:
    """Creates a run store, appends recorded steps to it, checkpoints and resumes it; the only code that does.

    Parameters
    ----------
    path : str or Path
        Folder of the run store.
    overwrite : bool
        Replace an existing run store (only a dyn run store with nothing but zarr's files inside, or an empty
        folder; see :func:`dyn.store.outputs.claim_output`).
    append : bool
        Open the existing store to continue it: the writer lock is taken at once, before anything is read
        (:meth:`reopen` continues it at a checkpoint, :meth:`prepare` starts it afresh from step 0).

    Attributes
    ----------
    attrs : dict
        The root attributes as last committed (for ``append``: as found).

    Notes
    -----
    Nothing is created until :meth:`prepare`/:meth:`create`, so a caller can validate all its inputs first and
    leave no half-written store behind on bad input. See the module docstring for the commit protocol.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False, append: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.attrs: dict[str, Any] = {}
        self._lock_fd: int | None = None
        self._created = False  # this writer made (or emptied) the folder: abort() may remove it
        self._prepared = False
        self.chunk_steps = 0
        self.n_recorded = 0
        self.last_step = -1
        self._nodes: dict[str, Any] = {}  # committed groups and arrays (zarr Async*) by path; "" is the root
        self._meta: dict[str, dict[str, Any]] = {}  # their zarr.json contents, for the commit record
        self._step_arrays: dict[tuple[str, str], Any] = {}  # (group, name) -> per-step AsyncArray
        self._slots: dict[str, Any] = {}  # checkpoint slot -> its AsyncGroup, once this writer wrote it
        self._slot_arrays: dict[str, dict[str, Any]] = {}
        if append:
            if not self.path.is_dir():
                read_attrs(self.path)  # raises the one-line reason
            self._lock_fd = self._lock(self.path)
            try:
                self.attrs = read_attrs(self.path)
            except BaseException:
                self.release()
                raise
        else:
            claim_output(self.path, kind="run", overwrite=overwrite)

    # -- the lock -----------------------------------------------------------------------------------------------
    @staticmethod
    def _lock(path: Path) -> int:
        """Take the store's writer lock: an exclusive flock on the store folder itself."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise StoreError(f"cannot open {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{path} is being written by another process (one writer per store)") from None
        return fd

    def release(self) -> None:
        """Release the writer lock (idempotent)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- creation -----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Claim the folder and take the writer lock; fast and synchronous, so a caller learns at once when the
        path cannot be used (:meth:`create` may then run elsewhere).

        A new path is created with its parents. An existing folder being overwritten is locked, checked again
        (nothing but a dyn run store) and emptied. A store opened with ``append`` is started afresh: everything
        but its root ``zarr.json`` (the run's settings) is removed, so a crash before :meth:`create` rewrites it
        still leaves a store that ``--resume`` restarts.
        """
        if self._lock_fd is not None:
            self._clear(keep_root=True)
            self._prepared = True
            return
        if self.path.exists():
            self._lock_fd = self._lock(self.path)  # never delete a store another process is writing
            try:
                claim_output(self.path, kind="run", overwrite=True)
                self._clear(keep_root=False)
            except BaseException:
                self.release()
                raise
        else:
            make_parents(self.path)
            try:
                self.path.mkdir()
            except OSError as exc:
                raise StoreError(f"cannot create {self.path}: {exc.strerror or exc}") from None
            self._lock_fd = self._lock(self.path)
        self._created = self._prepared = True

    def _clear(self, *, keep_root: bool) -> None:
        foreign = foreign_in_store(self.path)
        if foreign:
            raise StoreError(f"refusing to clear {self.path}: it holds {foreign[0]}, which dyn did not write")
        with io_errors(str(self.path)):
            for entry in self.path.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                elif not (keep_root and entry.name == "zarr.json"):
                    entry.unlink()

    def create(self, attrs: Mapping[str, Any], chunk_steps: int) -> None:
        """Create the store with root ``attrs`` and the root ``step`` coordinate (calls :meth:`prepare` if needed)."""
        if not self._prepared:
            self.prepare()
        self.chunk_steps = int(chunk_steps)
        self.n_recorded, self.last_step = 0, -1
        self.attrs = {
            "dyn_schema_version": SCHEMA_VERSION,
            "created": _now(),
            "libraries": library_versions(),
            "status": "running",
            "last_step": -1,
            "n_recorded": 0,
            "chunk_steps": self.chunk_steps,
            **attrs,
        }
        self._nodes, self._meta, self._step_arrays = {}, {}, {}
        self._write_root()  # from here on the folder is a dyn store (with nothing committed yet)
        with io_errors(str(self.path)):
            self._nodes[""] = zarr.open_group(str(self.path), mode="r+", use_consolidated=False)._async_group
            zarr_sync(self._step_array("", "step", (), np.int64))
        self._commit()

    async def _step_array(self, group: str, name: str, trailing: tuple[tuple[str, int], ...], dtype: Any) -> Any:
        fill = -1 if np.dtype(dtype).kind == "i" else np.nan
        arr = await self._nodes[group].create_array(
            name,
            shape=(self.n_recorded, *(n for _, n in trailing)),
            chunks=(self.chunk_steps, *(n for _, n in trailing)),
            dtype=dtype,
            dimension_names=["step", *(d for d, _ in trailing)],
            fill_value=fill,
            compressors=[_COMPRESSOR] if trailing else None,
            config=_ARRAY_CONFIG,
            overwrite=True,  # an array created after the last commit by a run that was then killed
        )
        self._add_node(f"{group}/{name}".lstrip("/"), arr)
        self._step_arrays[(group, name)] = arr
        return arr

    def _add_node(self, path: str, node: Any) -> None:
        self._nodes[path] = node
        self._meta[path] = _node_json(node)

    async def _static_array(self, group: Any, path: str | None, name: str, dims: tuple[str, ...], values: np.ndarray,
                            attrs: Mapping | None, existing: dict[str, Any] | None = None) -> None:
        """Create or fill a static array; ``path`` names a committed node (None: not part of the recording), and
        ``existing`` holds arrays written before under the same group (a checkpoint slot)."""
        values = np.asarray(values)
        if values.dtype.kind in "UO":
            values = values.astype(str)
        old = self._nodes.get(path) if path else (existing or {}).get(name)
        if old is not None and old.shape == values.shape and old.dtype == values.dtype:
            arr = old  # rewrite its chunks in place (atomically): committed readers never see it missing
        else:
            typed = {"dtype": str} if values.dtype.kind == "U" else {"dtype": values.dtype, "compressors": [_COMPRESSOR]}
            arr = await group.create_array(name, shape=values.shape, dimension_names=list(dims), overwrite=True,
                                           attributes=dict(attrs or {}), config=_ARRAY_CONFIG, **typed)
        if values.size:
            await arr.setitem(..., values)
        if path:
            self._add_node(path, arr)
        elif existing is not None:
            existing[name] = arr

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

        All arrays are created and filled concurrently in one round trip to zarr's event loop, then committed.
        """

        async def build() -> None:
            group = await self._nodes[""].create_group(site, attributes=dict(attrs or {}), overwrite=True)
            self._add_node(site, group)
            await asyncio.gather(
                *(self._static_array(group, f"{site}/{dim}", dim, (dim,), values, None) for dim, values in coords.items()),
                *(self._static_array(group, f"{site}/{name}", name, dims, values, None)
                  for name, (dims, values) in static.items()),
                self._step_array(site, "step", (), np.int64),
                *(self._step_array(site, name, ((d2, len(coords[d2])), (d3, len(coords[d3]))), np.float32)
                  for name, (d2, d3) in step_vars.items()),
            )

        with io_errors(str(self.path)):
            zarr_sync(build())
        self._commit()

    def write_static(self, site: str, name: str, dims: tuple[str, ...], values: np.ndarray, attrs: Mapping | None = None) -> None:
        """Write (or replace) a static array of a site, e.g. ``weight_final``; committed with the next commit."""
        with io_errors(str(self.path)):
            zarr_sync(self._static_array(self._nodes[site], f"{site}/{name}", name, dims, values, attrs))

    def write_group(self, name: str, arrays: Mapping[str, tuple[tuple[str, ...], np.ndarray]],
                    attrs: Mapping[str, Any] | None = None) -> None:
        """Write a static group of the run beside the sites (e.g. a trainer's random draws, with their own
        dimensions and coordinates), committed at once: plain xarray sees it as a child of the run's tree."""

        async def build() -> None:
            group = await self._nodes[""].create_group(name, attributes=dict(attrs or {}), overwrite=True)
            self._add_node(name, group)
            await asyncio.gather(*(self._static_array(group, f"{name}/{key}", key, dims, values, None)
                                   for key, (dims, values) in arrays.items()))

        with io_errors(str(self.path)):
            zarr_sync(build())
        self._commit()

    # -- committing ---------------------------------------------------------------------------------------------
    def _write_root(self) -> None:
        """Replace the root zarr.json (attributes and the consolidated metadata of every committed node)."""
        meta = {
            "attributes": self.attrs,
            "zarr_format": 3,
            # sorted: zarr groups the flat keys by parent assuming siblings are adjacent
            "consolidated_metadata": {"kind": "inline", "must_understand": False,
                                      "metadata": {path: self._meta[path] for path in sorted(self._meta) if path}},
            "node_type": "group",
        }
        atomic_write(self.path / "zarr.json", json.dumps(meta).encode())

    def _commit(self, **changes: Any) -> None:
        """Commit: attribute ``changes`` (None removes one) and the current shapes, in one atomic replace."""
        for key, value in changes.items():
            if value is None:
                self.attrs.pop(key, None)
            else:
                self.attrs[key] = value
        self.attrs["n_recorded"], self.attrs["last_step"] = self.n_recorded, self.last_step
        self._write_root()

    # -- appending ----------------------------------------------------------------------------------------------
    def append(
        self,
        steps: np.ndarray,
        inner: Mapping[str, Mapping[str, np.ndarray]],
        scalars: Mapping[str, np.ndarray],
    ) -> None:
        """Append and commit ``len(steps)`` recorded steps: per-site inner products and root scalars.

        Data first (beyond the committed length, invisible), then the commit; see the module docstring.
        A scalar logged for the first time gets fill values (NaN) for the steps before it, written out.
        """
        k = len(steps)
        if k == 0:
            return
        start, stop = self.n_recorded, self.n_recorded + k
        new_scalars = [name for name in scalars if ("", name) not in self._step_arrays]

        async def write() -> None:
            # All arrays are written concurrently on zarr's event loop: one round trip instead of one per array.
            created = await asyncio.gather(*(self._step_array("", name, (), np.float64) for name in new_scalars))
            arrays = list(self._step_arrays.items())
            await asyncio.gather(*(arr.resize((stop, *arr.shape[1:])) for _, arr in arrays))
            writes = [arr.setitem(slice(0, start), np.full(start, np.nan)) for arr in created if start]
            for (group, var), arr in arrays:
                if var == "step":
                    values = steps
                elif group == "":
                    values = scalars.get(var)
                    values = np.full(k, np.nan) if values is None else np.asarray(values, np.float64)
                else:
                    values = inner[group][var]
                writes.append(arr.setitem(slice(start, stop), values))
            await asyncio.gather(*writes)

        with io_errors(str(self.path)):
            zarr_sync(write())
        for (group, name), arr in self._step_arrays.items():
            self._meta[f"{group}/{name}".lstrip("/")] = _node_json(arr)
        self.n_recorded = stop
        self.last_step = int(steps[-1])
        self._commit()

    # -- resuming -----------------------------------------------------------------------------------------------
    def checkpoint(self) -> tuple[int, dict[str, np.ndarray]] | None:
        """The store's last checkpoint ``(step, arrays)``, or None if it has none (read under the writer lock).

        Raises
        ------
        StoreError
            The checkpoint is damaged, or was written by another store schema.
        """
        if self.attrs.get("checkpoint_step") is None:
            return None
        version = self.attrs.get("dyn_schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by another dyn version (store schema {version}); its "
                             "checkpoint cannot be resumed here")
        return read_checkpoint(self.path)

    def reopen(self, before_step: int, attrs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Continue the store (opened with ``append``) at ``before_step``: cut it to the steps before, commit.

        Only what the last commit shows is used: arrays written after it by a run that was then killed are
        ignored (and replaced if written again). Returns the root attributes.

        Raises
        ------
        StoreError
            The store is from another schema version, or its layout was never committed.
        """
        version = self.attrs.get("dyn_schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by another dyn version (store schema {version}); it can be "
                             "read but not resumed here")
        try:
            committed = json.loads((self.path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
        except (OSError, ValueError, KeyError, TypeError):
            committed = None
        if not isinstance(committed, dict) or "step" not in committed:
            raise StoreError(f"{self.path} has no committed layout to continue (it stopped while being created)")
        self.chunk_steps = int(self.attrs["chunk_steps"])
        self.n_recorded = int(self.attrs.get("n_recorded", 0))
        with io_errors(str(self.path)):
            self._nodes = {"": zarr.open_group(str(self.path), mode="r+", use_consolidated=False)._async_group}
            for path in sorted(committed, key=lambda p: p.count("/")):
                if committed[path].get("node_type") == "group":
                    node = zarr.open_group(str(self.path), path=path, mode="r+", use_consolidated=False)._async_group
                else:
                    node = zarr.open_array(str(self.path), path=path, mode="r+")._async_array.with_config(_ARRAY_CONFIG)
                    if (node.metadata.dimension_names or (None,))[0] == "step":
                        group, _, name = path.rpartition("/")
                        self._step_arrays[(group, name)] = node
                self._add_node(path, node)
            steps = np.asarray(zarr.open_array(str(self.path), path="step", mode="r")[: self.n_recorded])
            keep = int(np.searchsorted(steps, before_step))

            async def cut() -> None:
                # Chunks beyond the cut stay until overwritten: a reader of the previous commit may still read them.
                await asyncio.gather(*(a.resize((keep, *a.shape[1:]), delete_outside_chunks=False)
                                       for a in self._step_arrays.values()))

            zarr_sync(cut())
        for (group, name), arr in self._step_arrays.items():
            self._meta[f"{group}/{name}".lstrip("/")] = _node_json(arr)
        self.n_recorded = keep
        self.last_step = int(steps[keep - 1]) if keep else -1
        self._commit(**{**(attrs or {}), "status": "running", "resumed": _now()})
        return dict(self.attrs)

    def write_checkpoint(self, next_step: int, arrays: Mapping[str, tuple[tuple[str, ...], np.ndarray]]) -> None:
        """Store the state that resumes training at ``next_step``, then commit the pointer to it.

        Two slots (``/_checkpoint/slot_0``, ``slot_1``) take turns: the new state is written into the slot the
        pointer does not name (in place, chunk by chunk; nothing is deleted), and only then does a commit point
        at it (root attributes ``checkpoint_step``, ``checkpoint_slot``). A crash at any moment leaves the last
        committed checkpoint whole.
        """
        slot = _SLOTS[1] if self.attrs.get("checkpoint_slot") == _SLOTS[0] else _SLOTS[0]

        async def write() -> None:
            group = self._slots.get(slot)
            if group is None:
                holder = await self._nodes[""].require_group(CHECKPOINT_GROUP)
                group = self._slots[slot] = await holder.create_group(slot, overwrite=True)
                self._slot_arrays[slot] = {}
            old = self._slot_arrays[slot]
            await asyncio.gather(*(self._static_array(group, None, key, dims, values, None, old)
                                   for key, (dims, values) in arrays.items()))
            for key in set(old) - set(arrays):
                await group.delitem(key)
                del old[key]
            await group.update_attributes({"step": int(next_step)})

        with io_errors(str(self.path)):
            zarr_sync(write())
        self._commit(checkpoint_step=int(next_step), checkpoint_slot=slot)

    # -- closing ------------------------------------------------------------------------------------------------
    def close(self, status: str, **attrs: Any) -> None:
        """Commit the final status (and ``attrs``), release the lock.

        A ``complete`` run drops what described it as unfinished (``error``, ``diverged_at``, the checkpoint
        pointer) and then its checkpoints; any other status keeps the last checkpoint, so the run can be resumed.
        """
        if status not in STATUSES:
            raise StoreError(f"status must be one of {STATUSES}, got {status!r}")
        try:
            if self._nodes:
                unfinished = dict.fromkeys(_UNFINISHED) if status == "complete" else {}
                self._commit(**{**unfinished, **attrs}, status=status, closed=_now())
                if status == "complete":
                    shutil.rmtree(self.path / CHECKPOINT_GROUP, ignore_errors=True)
        finally:
            self.release()

    def abort(self) -> None:
        """Remove a store whose creation failed, if this writer created (or emptied) it; anything else is left."""
        self.release()
        if self._created and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
