"""Writing run stores: the only code that creates, appends to or resumes them (layout in :mod:`dyn.store.schema`).

The commit protocol
-------------------
zarr and xarray read a store through its root ``zarr.json`` when that file holds *consolidated metadata* (the
metadata of every group and array, with their shapes): plain ``xr.open_datatree(path, engine="zarr")`` and
:func:`dyn.open` then look at no other metadata file. dyn makes that file the store's **commit record**: it is
only ever replaced whole (written under a temporary name, then ``os.replace``, atomic on POSIX and Windows), and
appending ``k`` recorded steps to the ``n`` committed ones is

1. write the chunks holding steps ``n .. n + k`` of every per-step array. A chunk that already holds committed
   rows (the partly filled last one) is written under a temporary name and renamed, so it is never seen half
   written and its earlier rows never change; chunks beyond the committed length are written in place (no
   reader looks at them). The last, partly filled chunk of each array is kept in memory, so an append never
   reads back from disk;
2. replace the root ``zarr.json``: every per-step array ``n + k`` long, ``n_recorded`` and ``last_step`` with it.

Step 2 may wait: ``append(..., commit=False)`` writes the chunks and a later commit (:meth:`StoreWriter.commit`,
a checkpoint, :meth:`StoreWriter.close`) shows every step written before it. The recorder commits at most once
per ``commit_interval`` (1 s by default) and always within that interval after a write: one root replace per
append took 19 % of the writer's time in 8 MiB appends of one array and 7 % in ``benchmarks/at_size.py``
(cProfile of the writer). Everything below holds with "committed" read as "shown by the last
commit"; a root replace that is not a commit (listing a new node in ``dyn_nodes`` before its first file) shows
the last commit's shapes, never those of steps written since.

The arrays' own ``zarr.json`` files, which readers do not look at, are brought to the committed length at each
checkpoint and at close. Files are written by dyn's own small zarr v3 writer (:mod:`dyn.store.v3`): the metadata
is the JSON zarr-python would write, without zarr's per-array asynchronous machinery (which cost more than a
paper-scale run); reading stays with zarr and xarray.

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

A new store is built under a staging name beside its path (``.<name>.<hex>.partial``) and renamed into place with
its first commit, so the path never exists without a commit record. The root attributes list every node dyn
wrote or is about to write (``dyn_nodes``, grown before a node's first file): anything else in the folder — a
user's group added with xarray, which zarr also adds to the consolidated metadata — is not dyn's, and no resume,
checkpoint rotation, close or overwrite sweep reads, rewrites or removes it (:mod:`dyn.store.outputs`).

One writer per store: an OS lock (``flock``) on the store folder, taken before anything in it is read or
changed and released by the OS when the process dies, so a crash never leaves a stale lock.

An overwritten store is not emptied first: the new store is written over the old files (a root ``zarr.json``
with nothing committed comes first, so none of them is visible), and :meth:`StoreWriter.close` removes what the
new store did not use. Emptying first cost a walk and hundreds of unlink/rmdir calls before the first step. Only
the old store's own files are ever removed: their list is taken when the store is reused and saved inside it
(``.dyn-sweep.json``, until the sweep is done), so files added during the run stay, and a run killed before its
close and resumed still sweeps them.

Codec
-----
New numeric arrays are stored uncompressed by default (``StoreWriter(codec=...)`` picks another, see
:data:`dyn.store.v3.CODECS`), every chunk ending with its CRC-32C (zarr v3's ``crc32c`` codec, :data:`CHECKSUM`;
an uncompressed chunk padded with a hole is checksummed without reading the hole, :func:`dyn.store.v3.crc32c_zeros`);
strings use zarr's default ``vlen-utf8`` + ``zstd``. Chosen by measurement
(``benchmarks/store_costs.py``) on the inner products of a real recording (figure-1 run, d=2000, n=100, m=50,
multi-modal, 600 steps: 23.2 MiB float32), all codecs lossless (checked bit for bit), ranges over 3 invocations
on a shared 2-core machine::

    codec                      size/raw   encode MiB/s
    none                       1.000      -
    zstd level 1 / 3           0.932      330-470 / 310-610
    zstd level -3              1.000      920-3700
    blosc lz4, no shuffle      1.000      1600-3500
    blosc lz4, shuffle         0.888      600-1740     (the previous default)
    blosc lz4, bitshuffle      0.882      440-1120
    blosc zstd-1, shuffle      0.899      160-640
    blosc zstd-3, shuffle      0.763      210-420

The page cache takes raw bytes at 1-4 GiB/s here, so every codec that saves bytes (at best 12% at a usable
speed, 24% at 210-420 MiB/s) costs more time than it saves: ``StoreWriter.append`` reaches 0.46-0.90 of
``numpy.tofile`` uncompressed, 0.26-0.42 with lz4 without shuffle, 0.10-0.22 with lz4 + shuffle. What
compressors did for free, shrinking the NaN padding of the last, partly filled chunk of a per-step array (written
whole, as zarr requires), costs nothing uncompressed either: the rows after the array's end are never read, so
dyn writes the chunk up to its data and extends the file with a hole (zeros that take no disk space). A
file system without holes stores zeros there: up to one chunk (:data:`STEP_CHUNK_BYTES`) per wide array.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr
import zarr

from ..errors import StoreError
from .checkpoint import CHECKPOINT_GROUP, read_checkpoint
from .outputs import (NODES_ATTR, SWEEP_LIST, atomic_write, claim_output, foreign_in_store, io_errors, make_parents,
                      own_nodes, remove_own, staging_path, zarr_files)
from .reader import read_attrs, refuse_url
from .schema import SCHEMA_VERSION, STATUSES
from .v3 import CODECS, ArraySpec, group_meta, json_default, stored_dtype, write_file

__all__ = ["CODECS", "DEFAULT_CODEC", "StoreWriter", "library_versions", "leftovers"]

#: Default compression of new numeric arrays, chosen by measurement (see the module docstring's table):
#: float32 inner products of trained weights compress by only ~5-15%, slower than the disk takes the bytes.
DEFAULT_CODEC = "none"
#: New numeric arrays end their chunks with zarr v3's standard ``crc32c`` codec (see the module docstring): flipped
#: bits are caught by every read and by ``dyn verify``. ``StoreWriter(checksum=False)`` leaves it out.
CHECKSUM = True
#: Largest chunk of a per-step array (bytes), whatever the recorder's ``chunk_bytes``: bounds the rewrite of a
#: partly filled last chunk (see the module docstring's codec section).
STEP_CHUNK_BYTES = 8 << 20
# Attributes that describe an unfinished run; a run that completes drops them.
_UNFINISHED = ("error", "diverged_at", "checkpoint_step", "checkpoint_slot")
#: The two checkpoint slots, written in turn (:meth:`StoreWriter.write_checkpoint`).
_SLOTS = ("slot_0", "slot_1")
#: tries to take the writer lock while a reader's probe may hold it for an instant (0.14 s in all)
_LOCK_TRIES = 8
_GROUP_CONSOLIDATED = {"kind": "inline", "must_understand": False, "metadata": {}}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_LIBRARIES: dict[str, str] = {}


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries a run depends on, stored with every run (no imports needed)."""
    if not _LIBRARIES:  # reading package metadata costs milliseconds; versions do not change in a process
        _LIBRARIES.update({
            "dyn": _version("dyn") or "unknown",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "xarray": xr.__version__,
            "zarr": zarr.__version__,
        })
        torch_version = _version("torch")
        if torch_version:
            _LIBRARIES["torch"] = torch_version
    return dict(_LIBRARIES)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _dumps(meta: Mapping[str, Any]) -> bytes:
    # no indent: only then does json use its C encoder (zarr indents; readers parse, so the bytes may differ)
    return json.dumps(meta, default=json_default).encode()


def writer_alive(path: str | os.PathLike) -> bool:
    """Whether a process holds the writer lock of the store at ``path`` now.

    A non-blocking shared ``flock`` probe, released at once: it writes nothing and never waits. The lock dies with
    its process, so a store whose status says ``running`` while nobody holds its lock was left by a writer that is
    gone (killed, out of memory, stopped by a full disk). A path that cannot be opened has no writer; a file system
    without locks answers True (nothing can be concluded).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> w = StoreWriter(path)
    >>> w.prepare(); w.create({}, 1)  # a new store takes its path with its first commit
    >>> writer_alive(path)
    True
    >>> w.release()
    >>> writer_alive(path)
    False
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no locks on this file system (ENOLCK, EOPNOTSUPP)
        return True
    finally:
        os.close(fd)  # releases the probe's shared lock
    return False


def run_status(path: str | os.PathLike, attrs: Mapping[str, Any] | None = None) -> str:
    """The status of the run at ``path`` as a reader should show it: the stored ``status`` attribute, except
    ``"stale"`` for a store marked ``running`` whose writer is gone (:func:`writer_alive` is False). Such a store
    does not change any more; a setup's run resumes with ``dyn run --resume``.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> w = StoreWriter(path)
    >>> w.create({}, chunk_steps=4)
    >>> run_status(path)
    'running'
    >>> w.release()  # the writer is gone without closing the store
    >>> run_status(path)
    'stale'
    """
    status = str((attrs if attrs is not None else read_attrs(path)).get("status"))
    if status == "running" and not writer_alive(path):
        return "stale"
    return status


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
    codec : {"none", "zstd", "blosc-lz4", "blosc-zstd"}
        Compression of the numeric arrays this writer creates (default ``"none"``, chosen by measurement: see
        the module docstring). Arrays continued in a resumed store keep the codecs they were created with.
    checksum : bool, optional
        End every chunk of the numeric arrays this writer creates with its CRC-32C (zarr v3's ``crc32c`` codec;
        default :data:`CHECKSUM`, True).

    Attributes
    ----------
    attrs : dict
        The root attributes as last committed (for ``append``: as found).

    Notes
    -----
    Nothing is created until :meth:`prepare`/:meth:`create`, so a caller can validate all its inputs first and
    leave no half-written store behind on bad input. See the module docstring for the commit protocol.

    Examples
    --------
    >>> import numpy as np, tempfile, os, xarray as xr
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> w = StoreWriter(path)
    >>> w.create({"sites": ["h"]}, chunk_steps=4)
    >>> w.add_site("h", coords={"neuron": np.arange(2), "sample": np.arange(3), "signal": np.array(["mu"])},
    ...            step_vars={"noise_inner": ("neuron", "sample")}, static={})
    >>> w.append(np.arange(5), {"h": {"noise_inner": np.ones((5, 2, 3), np.float32)}}, {"loss": np.zeros(5)})
    >>> w.close("complete")
    >>> xr.open_datatree(path, engine="zarr")["h"]["noise_inner"].shape
    (5, 2, 3)
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False, append: bool = False,
                 codec: str = DEFAULT_CODEC, checksum: bool | None = None):
        if codec not in CODECS:
            raise StoreError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        refuse_url(path, "dyn writes")  # Path("memory://x") would be a local folder "memory:"
        self.path = Path(path)
        self.overwrite = overwrite
        self.codec = codec
        self.checksum = CHECKSUM if checksum is None else bool(checksum)
        self.attrs: dict[str, Any] = {}
        self._lock_fd: int | None = None
        self._final: Path | None = None  # the store's path while it is created under a staging name (prepare)
        self._created = False  # this writer made (or emptied) the folder: abort() may remove it
        self._prepared = False
        self._live = False  # created or reopened: close() commits
        self._reused = False  # files of an earlier store may remain: close() removes what this one does not use
        self._old: set[str] = set()  # those files (relative paths, zarr's own only): the only ones close() may remove
        self.chunk_steps = 0
        self.n_recorded = 0
        self.last_step = -1
        self._meta: dict[str, dict[str, Any]] = {}  # zarr.json contents of committed nodes by path ("" excluded)
        self._nodes: set[str] = set()  # every node this store's dyn wrote or is about to write (NODES_ATTR)
        self._user_meta: dict[str, dict[str, Any]] = {}  # committed nodes a user added (kept, never touched)
        # what the last commit showed (root zarr.json's consolidated metadata): a root replace that is not a
        # commit (_claim) shows it again, never the shapes of steps appended since (append(commit=False))
        self._shown: dict[str, dict[str, Any]] | None = None
        self._arrays: dict[str, ArraySpec] = {}  # committed arrays by path
        self._step_arrays: dict[tuple[str, str], str] = {}  # (group, name) -> path of a per-step array
        self._stale_meta: set[str] = set()  # per-step arrays whose own zarr.json lags behind the commit
        self._slot_arrays: dict[str, dict[str, ArraySpec]] = {}  # checkpoint slot -> arrays, once written here
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
        # A reader's probe (:func:`writer_alive`) holds a shared lock for a few microseconds: retry briefly
        # before concluding that another writer has the store.
        for attempt in range(_LOCK_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if attempt + 1 < _LOCK_TRIES:
                    time.sleep(0.005 * (attempt + 1))
        os.close(fd)
        raise StoreError(f"{path} is being written by another process (one writer per store)") from None

    def release(self) -> None:
        """Release the writer lock (idempotent)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- creation -----------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Claim the folder and take the writer lock; fast and synchronous, so a caller learns at once when the
        path cannot be used (:meth:`create` may then run elsewhere).

        A new path is created with its parents. An existing folder being overwritten is locked and checked again
        (nothing but a dyn run store). A store opened with ``append`` is started afresh. In both cases the old
        files are not deleted first: the new store writes over them (every file it writes replaces one atomically,
        and its commits show only what it wrote), and :meth:`close` removes whatever it did not use. Deleting
        first would cost a walk and thousands of unlink/rmdir calls before the first step.
        """
        if self._lock_fd is not None:
            self._check_clean()
            self._note_old_files()
            self._reused = self._prepared = True
            return
        if self.path.exists():
            self._lock_fd = self._lock(self.path)  # never delete a store another process is writing
            try:
                claim_output(self.path, kind="run", overwrite=True)  # checked again, under the lock
                self._note_old_files()
            except BaseException:
                self.release()
                raise
            self._reused = True
        else:
            # built under a staging name and renamed into place with its first commit (create): the path never
            # exists without a commit record, so a kill at any moment leaves either nothing there or a store
            # plain xarray opens and --resume restarts (a killed staging folder is removed by the next claim)
            make_parents(self.path)
            staging = staging_path(self.path)
            try:
                staging.mkdir()
            except OSError as exc:
                raise StoreError(f"cannot create {self.path}: {exc.strerror or exc}") from None
            self._lock_fd = self._lock(staging)
            self._final, self.path = self.path, staging
        self._created = self._prepared = True

    def _note_old_files(self) -> None:
        """Record the files of the earlier store (zarr's own only) in :data:`SWEEP_LIST` inside it: the sweep at
        :meth:`close` removes only these (never a file added since), and a run killed before its close and resumed
        still finds them (a pending list of a store restarted before is kept too)."""
        self._old = set(self._pending_sweep()) | set(zarr_files(self.path))
        self._old.discard(SWEEP_LIST)
        with io_errors(str(self.path)):
            write_file(self.path / SWEEP_LIST, _dumps({"dyn_sweep": sorted(self._old)}))

    def _pending_sweep(self) -> list[str]:
        """The files of an overwritten store that a run of this store has not swept yet (from :data:`SWEEP_LIST`)."""
        try:
            paths = json.loads((self.path / SWEEP_LIST).read_text())["dyn_sweep"]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []

    def _check_clean(self) -> None:
        foreign = foreign_in_store(self.path)
        if foreign:
            raise StoreError(f"refusing to clear {self.path}: it holds {foreign[0]}, which dyn did not write")

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
        self._meta, self._arrays, self._step_arrays, self._slot_arrays = {}, {}, {}, {}
        self._nodes, self._user_meta = {"step"}, {}
        with io_errors(str(self.path)):
            self._write_root()  # from here on the folder is a dyn store (with nothing committed yet)
            self._step_array("", "step", (), np.int64)
        self._live = True
        self._commit()
        if self._final is not None:
            self._publish()

    def _publish(self) -> None:
        """Rename the store, created under a staging name (:meth:`prepare`), into place: its first commit is done."""
        final, staging = self._final, self.path
        try:
            os.rename(staging, final)  # atomic; replaces at most an empty folder
        except OSError as exc:
            self.abort()
            if final.exists():
                raise StoreError(f"{final} was created by someone else while this store was being created; "
                                 "refusing to replace it") from None
            raise StoreError(f"cannot create {final}: {exc.strerror or exc}") from None
        self.path, self._final = final, None

    def _claim(self, paths: Any) -> None:
        """List ``paths`` as dyn's nodes (:data:`~dyn.store.outputs.NODES_ATTR`) in the root zarr.json before
        their first file is written, so that whatever a killed writer leaves of them is known to be dyn's (and a
        user's group beside them is not). One root replace per call, none if all are listed already."""
        new = set(paths) - self._nodes
        if new:
            self._nodes |= new
            self._write_root()

    def _put_array(self, path: str, spec: ArraySpec) -> None:
        """Write an array's own zarr.json and remember it for the next commit."""
        self._claim([path])
        meta = spec.meta()
        _write_meta(self.path / path / "zarr.json", _dumps(meta), visible=path in self._meta)
        self._arrays[path], self._meta[path] = spec, meta

    def _put_group(self, path: str, attrs: Mapping[str, Any] | None) -> None:
        self._claim([path])
        meta = group_meta(attrs)
        _write_meta(self.path / path / "zarr.json", _dumps(meta), visible=path in self._meta)
        # zarr consolidates a child group with an (empty) consolidated metadata entry of its own
        self._meta[path] = {**meta, "consolidated_metadata": dict(_GROUP_CONSOLIDATED)}

    def _step_array(self, group: str, name: str, trailing: tuple[tuple[str, int], ...], dtype: Any) -> ArraySpec:
        sizes = tuple(n for _, n in trailing)
        fill = -1 if np.dtype(dtype).kind == "i" else np.nan
        # Wide arrays get chunks of at most STEP_CHUNK_BYTES: the last chunk is written whole, padded with fill
        # values, so this bounds the padding (disk, and the cost of rewriting a partly filled chunk).
        row = np.dtype(dtype).itemsize * int(np.prod(sizes, dtype=np.int64))
        rows = _chunk_rows(self.chunk_steps, STEP_CHUNK_BYTES // max(row, 1))
        spec = ArraySpec.new((self.n_recorded, *sizes), (rows, *sizes), dtype,
                             ["step", *(d for d, _ in trailing)], fill, codec=self.codec if trailing else "none",
                             checksum=self.checksum)
        path = f"{group}/{name}".lstrip("/")
        self._put_array(path, spec)
        self._step_arrays[(group, name)] = path
        return spec

    def _static_array(self, folder: Path, dims: tuple[str, ...], values: np.ndarray, attrs: Mapping | None,
                      old: ArraySpec | None, visible: bool) -> ArraySpec:
        """Write a static array into ``folder``: its chunks, then its zarr.json. An array of the same shape and data
        type (``old``) is rewritten in place, chunk by chunk, keeping its codecs. ``visible``: a commit shows the
        array there, so its chunks are replaced atomically: committed readers never see one missing."""
        values = np.asarray(values)
        if values.dtype.kind in "UO":
            values = values.astype(str)
        if old is not None and old.shape == values.shape and old.dtype == stored_dtype(values.dtype):
            spec = old
            if attrs is not None:
                spec.attrs = dict(attrs)
        else:
            spec = ArraySpec.new(values.shape, None, values.dtype, dims, codec=self.codec, attrs=attrs,
                                 checksum=self.checksum)
        spec.write(folder, values, visible=visible)
        _write_meta(folder / "zarr.json", _dumps(spec.meta()), visible)
        return spec

    def _static(self, group: str, name: str, dims: tuple[str, ...], values: np.ndarray, attrs: Mapping | None) -> None:
        path = f"{group}/{name}".lstrip("/")
        self._claim([path])
        old = self._arrays.get(path)  # committed: readers may be reading it
        spec = self._static_array(self.path / path, dims, values, attrs, old, visible=old is not None)
        self._arrays[path], self._meta[path] = spec, spec.meta()

    def add_site(
        self,
        site: str,
        *,
        coords: Mapping[str, np.ndarray],
        step_vars: Mapping[str, tuple[str, str]],
        static: Mapping[str, tuple[tuple[str, ...], np.ndarray]],
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a site group: its coordinates, per-step variables ``name -> (dim2, dim3)`` and static arrays; then
        commit."""
        with io_errors(str(self.path)):
            self._claim([site, *(f"{site}/{n}" for n in (*coords, *static, "step", *step_vars))])
            self._put_group(site, attrs)
            for dim, values in coords.items():
                self._static(site, dim, (dim,), values, None)
            for name, (dims, values) in static.items():
                self._static(site, name, dims, values, None)
            self._step_array(site, "step", (), np.int64)
            for name, (d2, d3) in step_vars.items():
                self._step_array(site, name, ((d2, len(coords[d2])), (d3, len(coords[d3]))), np.float32)
        self._commit()

    def write_static(self, site: str, name: str, dims: tuple[str, ...], values: np.ndarray, attrs: Mapping | None = None) -> None:
        """Write (or replace) a static array of a site, e.g. ``weight_final``; committed with the next commit."""
        with io_errors(str(self.path)):
            self._static(site, name, dims, values, attrs)

    def write_group(self, name: str, arrays: Mapping[str, tuple[tuple[str, ...], np.ndarray]],
                    attrs: Mapping[str, Any] | None = None) -> None:
        """Write a static group of the run beside the sites (e.g. a trainer's random draws, with their own
        dimensions and coordinates), committed at once: plain xarray sees it as a child of the run's tree."""
        with io_errors(str(self.path)):
            self._claim([name, *(f"{name}/{key}" for key in arrays)])
            self._put_group(name, attrs)
            for key, (dims, values) in arrays.items():
                self._static(name, key, dims, values, None)
        self._commit()

    # -- committing ---------------------------------------------------------------------------------------------
    def _write_root(self) -> None:
        """Replace the root zarr.json (attributes and the consolidated metadata of every committed node)."""
        shown = self._shown if self._shown is not None else {**self._user_meta, **self._meta}
        meta = {
            "attributes": {**self.attrs, NODES_ATTR: sorted(self._nodes)},
            "zarr_format": 3,
            # sorted: zarr groups the flat keys by parent assuming siblings are adjacent
            "consolidated_metadata": {"kind": "inline", "must_understand": False,
                                      "metadata": {path: shown[path] for path in sorted(shown) if path}},
            "node_type": "group",
        }
        atomic_write(self.path / "zarr.json", json.dumps(meta, default=json_default).encode())

    def _commit(self, **changes: Any) -> None:
        """Commit: attribute ``changes`` (None removes one) and the current shapes, in one atomic replace."""
        for key, value in changes.items():
            if value is None:
                self.attrs.pop(key, None)
            else:
                self.attrs[key] = value
        self.attrs["n_recorded"], self.attrs["last_step"] = self.n_recorded, self.last_step
        self._shown = {**self._user_meta, **self._meta}  # a user's nodes stay visible as they were
        self._write_root()

    def _sync_step_meta(self) -> None:
        """Bring the per-step arrays' own zarr.json files to the committed length. Readers take shapes from the
        commit record only, so this is done at checkpoints and at close, not at every append (a dozen file
        replacements per append would cost more than the data at small chunk sizes)."""
        for path in sorted(self._stale_meta):
            write_file(self.path / path / "zarr.json", _dumps(self._meta[path]))
        self._stale_meta.clear()

    # -- appending ----------------------------------------------------------------------------------------------
    def append(
        self,
        steps: np.ndarray,
        inner: Mapping[str, Mapping[str, np.ndarray]],
        scalars: Mapping[str, np.ndarray],
        *,
        commit: bool = True,
    ) -> None:
        """Append and commit ``len(steps)`` recorded steps: per-site inner products and root scalars.

        Data first (beyond the committed length, invisible), then the commit; see the module docstring.
        A scalar logged for the first time gets fill values (NaN) for the steps before it, written out.
        ``commit=False`` writes the data but leaves the commit to a later :meth:`commit` (or any later commit:
        a checkpoint, a group, :meth:`close`), which then shows every step appended before it: the recorder
        commits at most once per :attr:`~dyn.Recorder.commit_interval` seconds, readers see the steps then.
        """
        k = len(steps)
        if k == 0:
            return
        start, stop = self.n_recorded, self.n_recorded + k
        # Check everything before writing anything: a refused append leaves the store as it was.
        for name in scalars:
            if name != "step" and ("", name) in self._step_arrays:
                continue
            if name in ("step", CHECKPOINT_GROUP) or name in self._meta or not name or "/" in name or \
                    name.startswith("."):
                raise StoreError(f"cannot log a scalar named {name!r}: the name is taken by the run's layout "
                                 "(a site or group, 'step' or '_checkpoint')")
        rows: dict[str, np.ndarray] = {}
        for (group, var), path in self._step_arrays.items():
            if var == "step":
                values = np.asarray(steps)
            elif group == "":
                values = scalars.get(var)
                values = np.full(k, np.nan) if values is None else np.asarray(values, np.float64)
            else:
                try:
                    values = np.asarray(inner[group][var])
                except KeyError:
                    raise StoreError(f"append: no values for {path}") from None
            rows[path] = values
        for name in scalars:
            if ("", name) not in self._step_arrays:
                rows[name] = np.asarray(scalars[name], np.float64)
        for path, values in rows.items():
            spec = self._arrays.get(path)
            want = (k, *spec.shape[1:]) if spec is not None else (k,)
            if values.shape != want:
                raise StoreError(f"append: {path} got values of shape {values.shape}, expected {want} "
                                 f"({k} steps)")
        new_scalars = [name for name in scalars if ("", name) not in self._step_arrays]
        try:
            with io_errors(str(self.path)):
                self._claim(new_scalars)
                for name in new_scalars:
                    spec = self._step_array("", name, (), np.float64)
                    spec.append(self.path / name, 0, np.full(start, np.nan))
                for path, values in rows.items():
                    self._arrays[path].append(self.path / path, start, values)
        except BaseException:
            # Nothing of this append is committed: forget what it changed in memory, so that a later commit
            # (close after a failed append) shows the last good state and the next append starts from it.
            for name in new_scalars:
                self._step_arrays.pop(("", name), None)
                self._arrays.pop(name, None)
                self._meta.pop(name, None)
                self._stale_meta.discard(name)
            for path in self._step_arrays.values():
                self._arrays[path].forget_tail()
            raise
        # every write succeeded: only now grow the shapes the next commit shows
        for path in rows:
            spec = self._arrays[path]
            spec.shape = (stop, *spec.shape[1:])
            self._meta[path] = spec.meta()
            self._stale_meta.add(path)
        self.n_recorded = stop
        self.last_step = int(steps[-1])
        if commit:
            self._commit()

    @property
    def uncommitted(self) -> int:
        """Steps appended (their data written) that no commit shows yet (``append(commit=False)``)."""
        return self.n_recorded - int(self.attrs.get("n_recorded", 0))

    def commit(self) -> None:
        """Commit the steps appended with ``commit=False`` (nothing to do when every step is committed)."""
        if self.uncommitted:
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
        ignored (and replaced if written again). Arrays continue with the codecs they were created with (a store
        written by an earlier dyn, blosc-compressed, stays so). Returns the root attributes.

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
        self._meta, self._arrays, self._step_arrays, self._user_meta = {}, {}, {}, {}
        listed = own_nodes(self.path)
        self._nodes = set(committed) if listed is None or not isinstance(self.attrs.get(NODES_ATTR), list) else listed
        for path, meta in committed.items():
            if path not in self._nodes:  # a user's group or array (added with xarray): kept as it is, never written
                self._user_meta[path] = meta
                continue
            self._meta[path] = meta
            if not isinstance(meta, dict) or meta.get("node_type") != "array":
                continue
            try:
                spec = ArraySpec.from_meta(meta)
            except StoreError as exc:
                raise StoreError(f"{self.path}: cannot continue {path}: {exc}") from None
            self._arrays[path] = spec
            if spec.dims[:1] == ["step"]:
                group, _, name = path.rpartition("/")
                self._step_arrays[(group, name)] = path
        with io_errors(str(self.path)):
            steps = self._read_rows("step", self.n_recorded)
            keep = int(np.searchsorted(steps, before_step))
            # Chunks beyond the cut stay until overwritten: a reader of the previous commit may still read them.
            for path in self._step_arrays.values():
                spec = self._arrays[path]
                spec.visible_rows = max(spec.visible_rows, spec.shape[0])  # readers of the last commit see these
                spec.shape = (keep, *spec.shape[1:])
                spec.forget_tail()
                self._meta[path] = spec.meta()
                self._stale_meta.add(path)
            self._sync_step_meta()
        self.n_recorded = keep
        self.last_step = int(steps[keep - 1]) if keep else -1
        self._old = set(self._pending_sweep())  # an overwrite killed before its close: its sweep is still due
        self._reused = self._reused or bool(self._old)
        self._live = True
        self._commit(**{**(attrs or {}), "status": "running", "resumed": _now()})
        return dict(self.attrs)

    def _read_rows(self, path: str, n: int) -> np.ndarray:
        """The first ``n`` rows of a committed array, decoded from its chunk files."""
        spec = self._arrays[path]
        size = spec.chunks[0]
        parts = [spec.read_chunk(self.path / path, (i, *(0 for _ in spec.chunks[1:]))) for i in range(-(-n // size))]
        return np.concatenate(parts)[:n] if parts else np.empty((0, *spec.shape[1:]), spec.numpy_dtype)

    def write_checkpoint(self, next_step: int, arrays: Mapping[str, tuple[tuple[str, ...], np.ndarray]]) -> None:
        """Store the state that resumes training at ``next_step``, then commit the pointer to it.

        Two slots (``/_checkpoint/slot_0``, ``slot_1``) take turns: the new state is written into the slot the
        pointer does not name (in place, chunk by chunk), and only then does a commit point at it (root
        attributes ``checkpoint_step``, ``checkpoint_slot``). A crash at any moment leaves the last committed
        checkpoint whole.
        """
        slot = _SLOTS[1] if self.attrs.get("checkpoint_slot") == _SLOTS[0] else _SLOTS[0]
        holder = self.path / CHECKPOINT_GROUP
        folder = holder / slot
        with io_errors(str(self.path)):
            if not (holder / "zarr.json").is_file():
                write_file(holder / "zarr.json", _dumps(group_meta(None)))
            old = self._slot_arrays.get(slot)
            if old is None:
                # the slot the pointer does not name: an older checkpoint (of this store or one it overwrote);
                # only its own files go (a user's file or group in the slot stays)
                remove_own(self.path, f"{CHECKPOINT_GROUP}/{slot}")
                old = self._slot_arrays[slot] = {}
            # the slot lists its arrays before they are written: they are dyn's, anything else in it is not
            _write_meta(folder / "zarr.json", _dumps(group_meta({"arrays": sorted({*old, *arrays})})), visible=False)
            for key, (dims, values) in arrays.items():
                # never the slot the pointer names: nobody reads it until the commit below
                old[key] = self._static_array(folder / key, dims, values, None, old.get(key), visible=False)
            for key in set(old) - set(arrays):
                remove_own(self.path, f"{CHECKPOINT_GROUP}/{slot}/{key}")
                del old[key]
            _write_meta(folder / "zarr.json", _dumps(group_meta({"step": int(next_step), "arrays": sorted(arrays)})),
                        visible=False)
            self._sync_step_meta()
        self._commit(checkpoint_step=int(next_step), checkpoint_slot=slot)

    # -- closing ------------------------------------------------------------------------------------------------
    def close(self, status: str, **attrs: Any) -> None:
        """Commit the final status (and ``attrs``), release the lock.

        A ``complete`` run drops what described it as unfinished (``error``, ``diverged_at``, the checkpoint
        pointer) and then its checkpoints; any other status keeps the last checkpoint, so the run can be resumed.
        Files of an overwritten store that this one did not use are removed first, before the final commit (no
        commit shows them): a kill after that commit can leave only the checkpoint of a complete run, which
        :meth:`remove_leftovers` (``dyn run --resume``) removes and ``dyn verify`` reports.
        """
        if status not in STATUSES:
            raise StoreError(f"status must be one of {STATUSES}, got {status!r}")
        try:
            if self._live:
                unfinished = dict.fromkeys(_UNFINISHED) if status == "complete" else {}
                with io_errors(str(self.path)):
                    self._sync_step_meta()
                if self._reused:
                    self._remove_unused()
                self._commit(**{**unfinished, **attrs}, status=status, closed=_now())
                if status == "complete":
                    remove_own(self.path, CHECKPOINT_GROUP)  # a user's file or group in it stays
        finally:
            self.release()

    def remove_leftovers(self) -> int:
        """Remove what a kill during the close of a complete store left (its checkpoint, dyn's files only) from a
        store opened with ``append``; returns how many files went (0 for a store that is not complete)."""
        if self.attrs.get("status") != "complete" or self._lock_fd is None:
            return 0
        n = len(leftovers(self.path))
        if n:
            with io_errors(str(self.path)):
                remove_own(self.path, CHECKPOINT_GROUP)
        return n

    def _remove_unused(self) -> None:
        """Remove the files of an earlier store (overwritten or restarted) that this one does not use: nodes it
        did not write, and chunks outside its arrays' grids. Only files listed when the store was reused (zarr's
        own, see :meth:`_note_old_files`) are removed, none of them shown by the commit; anything else stays."""
        keep_slot = self.attrs.get("checkpoint_slot")
        for dirpath, dirnames, filenames in os.walk(self.path):
            rel = os.path.relpath(dirpath, self.path)
            rel = "" if rel == "." else rel.replace(os.sep, "/")
            if rel == CHECKPOINT_GROUP:
                for name in dirnames:
                    if name not in self._slot_arrays and name != keep_slot:
                        self._discard(os.path.join(dirpath, name))
                dirnames[:] = []  # slots are rewritten whole by write_checkpoint
                continue
            spec = self._arrays.get(rel)
            if spec is not None:  # an array: only its zarr.json and the chunks of its grid
                self._remove_outside_grid(Path(dirpath), spec)
                dirnames[:] = []
                continue
            if rel and rel not in self._meta:
                continue  # removed with its parent below
            for name in list(dirnames):
                child = f"{rel}/{name}".lstrip("/")
                if child not in self._meta and not (rel == "" and name == CHECKPOINT_GROUP):
                    self._discard(os.path.join(dirpath, name))
                    dirnames.remove(name)
            for name in filenames:
                if name != "zarr.json":
                    self._discard(os.path.join(dirpath, name))
        _unlink(str(self.path / SWEEP_LIST))  # swept: nothing of the earlier store is left to remove

    def _discard(self, path: str) -> None:
        """Remove the file or folder ``path`` of the earlier store: only the files listed when it was reused
        (zarr's own), then the folders left empty. Anything else (added since, or not zarr's) stays."""
        rel = os.path.relpath(path, self.path).replace(os.sep, "/")
        if rel == SWEEP_LIST:
            return
        if not os.path.isdir(path) or os.path.islink(path):
            if rel in self._old:
                _unlink(path)
            return
        for dirpath, _, filenames in os.walk(path, topdown=False):
            base = os.path.relpath(dirpath, self.path).replace(os.sep, "/")
            for name in filenames:
                if f"{base}/{name}" in self._old:
                    _unlink(os.path.join(dirpath, name))
            try:
                os.rmdir(dirpath)
            except OSError:  # not empty: holds something that was not the earlier store's
                pass

    def _remove_outside_grid(self, folder: Path, spec: ArraySpec) -> None:
        """Remove from an array's folder everything but its zarr.json and the chunk files of its grid."""
        counts = [-(-n // c) for n, c in zip(spec.shape, spec.chunks)]

        def prune(where: str, level: int) -> None:  # ``where`` holds the names of chunk axis ``level``
            for entry in os.scandir(where):
                inside = entry.name.isdigit() and level < len(counts) and int(entry.name) < counts[level]
                last = level + 1 == len(counts)
                if entry.is_dir(follow_symlinks=False) and inside and not last:
                    prune(entry.path, level + 1)
                elif entry.is_dir(follow_symlinks=False) or not (inside and last):
                    self._discard(entry.path)

        def on_grid(name: str) -> bool:  # a chunk file with "." keys: "c.<i>.<j>..." inside the grid
            keys = name.split(".")
            return keys[0] == "c" and len(keys) == len(counts) + 1 and all(
                k.isdigit() and int(k) < n for k, n in zip(keys[1:], counts))

        for entry in os.scandir(folder):
            if entry.name == "zarr.json" or (entry.name == "c" and not spec.shape and entry.is_file()):
                continue  # a 0-d array's one chunk is the file "c"
            if spec.separator == "/" and entry.name == "c" and entry.is_dir(follow_symlinks=False) and spec.shape:
                prune(entry.path, 0)
            elif spec.separator == "." and spec.shape and on_grid(entry.name) and \
                    entry.is_file(follow_symlinks=False):
                continue
            else:
                self._discard(entry.path)

    def abort(self) -> None:
        """Remove a store whose creation failed, if this writer created (or emptied) it; anything else is left."""
        self.release()
        if self._final is not None:  # never renamed into place: the staging folder is all dyn's
            shutil.rmtree(self.path, ignore_errors=True)
            self.path, self._final = self._final, None
            return
        if self._created and self.path.exists():
            if not self._reused:
                remove_own(self.path)  # the folder goes unless someone put something of theirs in it meanwhile
                return
            # a store that was overwritten: remove zarr's files (the earlier store's and this one's), keep anything
            # added since it was checked, with the folders that hold it
            keep = set(foreign_in_store(self.path))
            for dirpath, _, filenames in os.walk(self.path, topdown=False):
                for name in filenames:
                    rel = os.path.relpath(os.path.join(dirpath, name), self.path)
                    if rel not in keep:
                        _unlink(os.path.join(dirpath, name))
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass


def leftovers(path: str | os.PathLike) -> list[str]:
    """dyn's files that a complete store no longer uses and a kill during its close left behind: its checkpoint,
    and files of a store it overwrote still listed for removal (relative paths)."""
    p = Path(path)
    try:
        if read_attrs(p).get("status") != "complete":
            return []
    except StoreError:
        return []
    own = zarr_files(p)
    return [f for f in own if f.startswith(f"{CHECKPOINT_GROUP}/") or f == SWEEP_LIST]


def _write_meta(path: Path, data: bytes, visible: bool) -> None:
    """Write a node's zarr.json. One that no commit shows yet but that an overwritten store left there is
    unlinked first: renaming over an existing file makes ext4 flush the new one at once (``auto_da_alloc``,
    ~1-2 ms per file), which made recreating a store cost several times more than creating it."""
    if not visible:
        _unlink(str(path))
    write_file(path, data)


def _chunk_rows(steps: int, most: int) -> int:
    """Rows per chunk of a per-step array: at most ``most``, and preferably a divisor of ``steps`` (the rows the
    recorder hands over at once), so that its appends fill whole chunks and never rewrite a partly filled one."""
    if steps <= most:
        return max(steps, 1)
    most = max(most, 1)
    for rows in range(most, max(most // 2, 1) - 1, -1):
        if steps % rows == 0:
            return rows
    return most


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
