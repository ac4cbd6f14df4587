"""Where dyn may write: the one rule every command applies to ``--out``, and outputs written whole or not at all.

Every output dyn creates carries a mark, so that a later ``--overwrite`` can tell that it is dyn's and unchanged:

- a **run store** is marked by its root ``zarr.json`` (attribute ``dyn_schema_version``) and may hold only
  zarr's own files: metadata, chunks and zarr's temporary files;
- a **report** (``dyn analyze``) or **reproduction** (``dyn reproduce``) folder holds ``.dyn-output.json``,
  listing every file dyn wrote there with its SHA-256, and the run stores inside it;
- an **export** file has a sidecar ``.<name>.dyn-output.json`` beside it with the file's SHA-256. A sidecar
  rather than an embedded mark because CSV has nowhere to put one (one rule for CSV, Parquet and NetCDF), and the
  hash catches a file the user edited or replaced after the export;
- a **sweep** folder holds ``sweep.json`` and only the sweep's tables and figures and run stores under ``runs/``.

:func:`claim_output` is the rule, the same for ``run``, ``analyze``, ``export``, ``reproduce`` and ``sweep``:
``--out`` is never a symbolic link, never an input of the command, a folder holding one or a path inside one;
an existing output is replaced only with ``overwrite`` and only when it is dyn's, of the same kind, with nothing
inside that dyn did not write (the error names what is in the way). Missing parent folders are created when the
output is written (:func:`make_parents`). :func:`staged_folder` and :func:`staged_file` build an output under a
temporary name and move it into place only when complete, so a failure leaves what was there untouched.

What killed writers left is removed by the next command writing the same output (:func:`recover_output`, called by
:func:`claim_output`; :func:`recover_sweep` inside a sweep folder on a plain re-run): only dyn's exact temporary
names, never one a live process holds (flock), and what an earlier dyn version left (it held no lock) only once
unchanged for :data:`EARLIER_DEBRIS_AGE`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import ConfigError, DynError, StoreError, WriteError, option
from .reader import read_attrs

__all__ = ["KINDS", "MARKER", "claim_output", "make_parents", "output_kind", "staged_folder", "staged_file",
           "save_figure", "atomic_write", "io_errors", "foreign_in_store", "zarr_files",
           "SWEEP_LIST", "NODES_ATTR", "own_nodes", "remove_own", "write_recorded",
           "check_recorded", "recover_output", "recover_sweep", "EARLIER_DEBRIS_AGE"]

#: Kinds of output, as named in messages.
KINDS = {"run": "store", "report": "report folder", "reproduction": "reproduction folder",
         "export": "export file", "sweep": "sweep folder"}
#: The mark dyn leaves in its result folders (and, as ``.<name>.dyn-output.json``, beside its export files).
MARKER = ".dyn-output.json"
#: File inside a run store being overwritten: the earlier store's files that the sweep at close may remove
#: (:meth:`dyn.store.writer.StoreWriter.close`), kept there so a resumed run still sweeps them.
SWEEP_LIST = ".dyn-sweep.json"
#: Files of a sweep folder besides ``runs/`` (:mod:`dyn.experiments.sweep`).
SWEEP_FILES = {"sweep.json", "results.parquet", "results.csv", "phase-diagram.png", "phase-diagram.svg"}
# zarr (and dyn, for the root zarr.json) write every file to "<name>.<32 hex digits>.partial" and rename it
_TEMP = re.compile(r".+\.[0-9a-f]{32}\.partial")
# dyn before the commit record (0cd7715..dd8ebd0) replaced a node's metadata through this one fixed name
_META_TEMP_EARLIER = "zarr.json.partial"
# a chunk file with "." chunk keys (zarr v3 default encoding, the separator dyn's arrays use): ``<array>/c.0.1``
_FLAT_CHUNK = re.compile(r"c(?:\.[0-9]+)+")
# what dyn stages beside an output ``out``: ``.<out name>.<32 hex>.partial`` (being built; a folder dyn holds an
# flock on while it writes) and ``.<out name>.<32 hex>.old`` (the replaced output, moved aside before removal)
_STAGE = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{32}\.(?P<kind>partial|old)")
#: How long (seconds) what an earlier dyn left must have been unchanged before a rerun removes it. Writers of dyn
#: before the flock-held staging names (:func:`staging_path`, :func:`hold`) took no lock, so whether one is still
#: writing cannot be asked: their staging files grow and their staging folders gain files while they work, so an
#: entry nothing in which changed for an hour is taken as left by a killed process.
EARLIER_DEBRIS_AGE = 3600.0
# a sweep's own temporary files inside its folder (write_recorded, atomic_write of its marker): current names
_SWEEP_TEMP = re.compile(r"\.(?:sweep\.json|results\.parquet|results\.csv|phase-diagram\.png|phase-diagram\.svg"
                         r"|dyn-output\.json)\.[0-9a-f]{32}\.partial")
# ... and an earlier dyn's (before 2026-12-06: ``out / f".{name}.partial"`` for its two results tables)
_SWEEP_TEMP_EARLIER = re.compile(r"\.results\.(?:parquet|csv)\.partial")


def _earlier_stage(name: str) -> re.Pattern:
    """What earlier dyn versions (before flock-held staging names) left beside an output named ``name``:

    - ``folder``: ``.<name>.<8 of [a-z0-9_]>``, a report or reproduction folder being built
      (``tempfile.mkdtemp(prefix=".<name>.")``); only names with a digit or ``_`` among the 8 characters (94% of
      mkdtemp's names), so that a user's ``.report.previous`` or ``.report.notebook`` is never taken for one;
    - ``file``: ``.<name>.<8 of [a-z0-9_]>.partial``, an export file being written
      (``tempfile.mkstemp(prefix=".<name>.", suffix=".partial")``);
    - ``plain``: ``.<name>.partial``, an export file or gridded zarr export being written (the first versions).

    (A replaced output moved aside was already ``.<name>.<32 hex>.old``, see :data:`_STAGE`.)
    """
    n = re.escape(name)
    return re.compile(rf"\.{n}\.(?:(?P<folder>(?=[a-z]*[0-9_])[a-z0-9_]{{8}})|(?P<file>[a-z0-9_]{{8}})\.partial"
                      rf"|(?P<plain>partial))")


def _unchanged_for(path: Path, seconds: float) -> bool:
    """Whether nothing in ``path`` (a file, or a folder and everything below it) was modified for ``seconds``."""
    import time

    limit = time.time() - seconds
    try:
        if os.lstat(path).st_mtime > limit:
            return False
        if path.is_dir() and not path.is_symlink():
            for dirpath, dirnames, filenames in os.walk(path):
                for name in dirnames + filenames:
                    if os.lstat(os.path.join(dirpath, name)).st_mtime > limit:
                        return False
    except OSError:  # vanished meanwhile: someone is working on it
        return False
    return True


#: Which of :func:`_earlier_stage`'s names each kind of output's writer left in earlier dyn versions.
_EARLIER_KINDS = {"report": ("folder",), "reproduction": ("folder",), "export": ("file", "plain")}


def _earlier_debris(out: Path, entries: Iterable[os.DirEntry], output: str | None) -> list[tuple[Path, str]]:
    """``(path, kind)`` of what a killed earlier dyn writer of an ``output`` (a key of :data:`KINDS`) left beside
    ``out`` (:func:`_earlier_stage`): only exact names of the names that kind's writer used, of the right type (a
    folder where mkdtemp made one, a file where mkstemp did; never a link), not held by a live process
    (:func:`_held`) and unchanged for :data:`EARLIER_DEBRIS_AGE`."""
    allowed = _EARLIER_KINDS.get(output or "", ())
    if not allowed:
        return []
    pattern = _earlier_stage(out.name)
    found = []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or entry.is_symlink():
            continue
        kind = next(k for k in ("folder", "file", "plain") if m[k] is not None)
        if kind not in allowed:
            continue
        is_dir = entry.is_dir(follow_symlinks=False)
        if (kind == "folder" and not is_dir) or (kind == "file" and not entry.is_file(follow_symlinks=False)):
            continue
        path = Path(entry.path)
        if _held(path) or not _unchanged_for(path, EARLIER_DEBRIS_AGE):
            continue
        found.append((path, kind))
    return found


def staging_path(out: Path, kind: str = "partial") -> Path:
    """A fresh name beside ``out`` for building it (``kind="partial"``) or moving the old one aside (``"old"``)."""
    return out.with_name(f".{out.name}.{uuid.uuid4().hex}.{kind}")


def hold(folder: Path) -> int:
    """Take an exclusive flock on ``folder`` (a staging folder being written, or a run store): released when the
    returned descriptor is closed or the process dies. :func:`recover_output` leaves a held folder alone."""
    return _locked(os.open(folder, os.O_RDONLY))


def _locked(fd: int) -> int:
    """Take an exclusive, non-blocking flock on the open descriptor ``fd`` (closed if that fails); returns it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _held(path: Path) -> bool:
    """Whether a live process holds ``path``'s flock (:func:`hold`)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _complete_stage(path: Path) -> bool:
    """Whether a staged output is complete (it would have been renamed into place next): a report or reproduction
    folder holding its marker, or a gridded zarr export whose consolidated metadata (written last) is there."""
    if not path.is_dir() or path.is_symlink():
        return False
    if (path / MARKER).is_file():
        return True
    meta = _read_json(path / "zarr.json") or {}
    attrs = meta.get("attributes")
    return isinstance(attrs, dict) and attrs.get("dyn_output") == "export" and \
        isinstance(meta.get("consolidated_metadata"), dict)


def recover_output(out: str | os.PathLike, kind: str | None = None) -> list[str]:
    """Finish what a killed dyn command left beside ``out``, and remove its debris; returns what was done.

    A replacement interrupted between moving the old output aside (``.<name>.<hex>.old``) and renaming the new one
    in is finished: the complete new one takes ``out``'s name (or, if none is complete, the old one is put back).
    Then the staging folders and files of killed writers of ``out`` (``.<name>.<hex>.partial``, old outputs moved
    aside, a half-written export sidecar) are removed. Nothing is touched while a live dyn process holds a staging
    folder of ``out`` (it is writing it now), and nothing but these names is ever removed.

    With ``kind`` (a key of :data:`KINDS`), what an earlier dyn's writer of that kind left is recognised too
    (:func:`_earlier_stage`: ``.<name>.<8 random>/`` report and reproduction folders, ``.<name>.<8 random>.partial``
    and ``.<name>.partial`` export files), by exact name and type, once unchanged for :data:`EARLIER_DEBRIS_AGE`
    (those versions held no lock). A complete earlier report folder
    finishes an interrupted replacement as above; an earlier export file the sidecar names (killed between writing
    the sidecar and renaming the file in) takes ``out``'s name when ``out`` is missing (an existing ``out`` is
    never replaced here: it may be a user's).

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "report"
    >>> old = staging_path(out, "old"); old.mkdir(); _ = (old / MARKER).write_text("{}")
    >>> recover_output(out)  # killed after the old report was moved aside: it is put back
    ['restored report']
    >>> out.is_dir(), [p.name for p in out.parent.iterdir()]
    (True, ['report'])
    >>> (out.parent / ".report.x7_k2q0a").mkdir(); (out.parent / ".report.previous").mkdir()
    >>> os.utime(out.parent / ".report.x7_k2q0a", (0, 0))  # an earlier dyn's staging folder, long left
    >>> recover_output(out, "report")  # a user's .report.previous is not dyn's name
    ['removed .report.x7_k2q0a']
    """
    out = Path(out)
    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return []
    names = (out.name, f"{out.name}{MARKER}")
    staged = [(Path(e.path), m["kind"]) for e in entries if (m := _STAGE.fullmatch(e.name)) and m["name"] in names]
    earlier = _earlier_debris(out, entries, kind)
    if not staged and not earlier:
        return []
    if any(_held(p) for p, kind in staged if kind == "partial" and p.is_dir() and not p.is_symlink()):
        return []  # a dyn process is writing ``out`` now: its staging is not debris
    done = []
    with io_errors(str(out)):
        olds = [p for p, kind in staged if kind == "old" and p.name[1:].startswith(f"{out.name}.")]
        if olds and not out.exists() and not out.is_symlink():
            new = [p for p, kind in staged if kind == "partial" and p.name[1:].startswith(f"{out.name}.")
                   and _complete_stage(p)] + [p for p, kind in earlier if kind == "folder" and _complete_stage(p)]
            pick = max(new or olds, key=lambda p: p.stat().st_mtime_ns)
            os.rename(pick, out)
            done.append(f"{'finished replacing' if new else 'restored'} {out.name}")
        if not out.exists() and not out.is_symlink():
            done += _finish_earlier_export(out, [p for p, kind in earlier if kind == "file"])
        for path, _ in [*staged, *earlier]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                done.append(f"removed {path.name}")
            elif path.exists() or path.is_symlink():
                path.unlink(missing_ok=True)
                done.append(f"removed {path.name}")
    return done


def _finish_earlier_export(out: Path, files: list[Path]) -> list[str]:
    """An earlier dyn's export killed after writing its sidecar, before renaming its file (``files``, mkstemp's
    names) in: the file whose SHA-256 the sidecar names takes ``out``'s (missing) name."""
    mark = _read_json(_sidecar(out)) or {}
    want = mark.get("sha256")
    if mark.get("dyn_output") != "export" or mark.get("file") != out.name or not isinstance(want, str):
        return []
    for path in files:
        if path.is_file() and _sha256(path) == want:
            os.replace(path, out)
            return [f"finished replacing {out.name}"]
    return []


def recover_sweep(folder: str | os.PathLike) -> list[str]:
    """Remove what killed dyn writers left in and beside the sweep folder ``folder``; returns what was done.

    Beside it, as :func:`recover_output`; inside, the temporary files of its tables, figures, ``sweep.json`` and
    marker (``.<file>.<32 hex>.partial``, removed unless a live dyn process holds them: :func:`write_recorded` and
    :func:`atomic_write` hold their temporary file's flock while it exists) and an earlier dyn's
    ``.results.{parquet,csv}.partial`` (no lock then: once unchanged for :data:`EARLIER_DEBRIS_AGE`). Only these
    exact names of regular files are removed; anything else inside stays.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in (".results.csv.partial", f".results.csv.{'0' * 32}.partial", ".results.mine.partial"):
    ...     _ = (folder / name).write_text("a,b")
    >>> os.utime(folder / ".results.csv.partial", (0, 0))  # left by an earlier dyn, long ago
    >>> sorted(recover_sweep(folder))
    ['removed .results.csv.00000000000000000000000000000000.partial', 'removed .results.csv.partial']
    >>> [p.name for p in folder.iterdir()]  # a user's file stays
    ['.results.mine.partial']
    """
    folder = Path(folder)
    done = recover_output(folder, "sweep")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return done
    with io_errors(str(folder)):
        for entry in entries:
            current = _SWEEP_TEMP.fullmatch(entry.name)
            if not (current or _SWEEP_TEMP_EARLIER.fullmatch(entry.name)) or not entry.is_file(follow_symlinks=False):
                continue
            path = Path(entry.path)
            if _held(path) or (not current and not _unchanged_for(path, EARLIER_DEBRIS_AGE)):
                continue
            path.unlink(missing_ok=True)
            done.append(f"removed {entry.name}")
    return done


@contextlib.contextmanager
def io_errors(what: str) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing (disk full, quota, I/O error) into a one-line :class:`WriteError`."""
    try:
        yield
    except OSError as exc:
        raise WriteError(f"cannot write {what}: {exc.strerror or exc}") from None


def atomic_write(path: Path, data: bytes) -> None:
    """Replace the file ``path`` with ``data`` atomically (temporary file, then ``os.replace``); the temporary file
    is flock-held while it exists, so that no rerun takes it for debris (:func:`recover_sweep`)."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    fd = None
    try:
        with io_errors(str(path)):
            fd = _create_held(tmp)
            with os.fdopen(os.dup(fd), "wb") as f:
                f.write(data)
            os.replace(tmp, path)
    finally:
        if fd is not None:
            os.close(fd)
        tmp.unlink(missing_ok=True)


def _create_held(path: Path) -> int:
    """Create the (new) file ``path`` and take its flock; returns the descriptor that holds it."""
    return _locked(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}{MARKER}")


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _is_run_store(path: Path) -> bool:
    try:
        read_attrs(path)
    except DynError:
        return False
    return True


def output_kind(path: str | os.PathLike) -> str | None:
    """Which kind of dyn output ``path`` is (a key of :data:`KINDS`), or None if it is not one dyn made."""
    p = Path(path)
    if p.is_symlink():
        return None
    if p.is_file():
        mark = _read_json(_sidecar(p))
        return "export" if mark is not None and mark.get("dyn_output") == "export" else None
    if not p.is_dir():
        return None
    if (p / "zarr.json").is_file():
        if _is_run_store(p):
            return "run"
        meta = _read_json(p / "zarr.json") or {}
        attrs = meta.get("attributes") if isinstance(meta, dict) else None
        return "export" if isinstance(attrs, dict) and attrs.get("dyn_output") == "export" else None
    mark = _read_json(p / MARKER)
    if mark is not None and mark.get("dyn_output") in ("report", "reproduction"):
        return mark["dyn_output"]
    if (p / "sweep.json").is_file():
        return "sweep"
    return None


#: Root attribute listing the nodes (groups and arrays, '/'-separated paths) dyn wrote into a store or gridded
#: export. zarr-python and xarray rewrite the consolidated metadata when a user adds a group (``to_zarr(mode="a")``),
#: so the commit record alone cannot tell dyn's nodes from a user's: this list can. A node is listed before its
#: first file is written, so what a killed writer left is dyn's too.
NODES_ATTR = "dyn_nodes"
#: Checkpoint group of a run store (:mod:`dyn.store.checkpoint`): its slots list their arrays in their own
#: ``zarr.json`` (attribute ``arrays``), as they are not in the commit record.
_CHECKPOINT = "_checkpoint"
_SLOTS = ("slot_0", "slot_1")


def own_nodes(root: str | os.PathLike) -> set[str] | None:
    """The nodes dyn wrote in the zarr store ``root`` (:data:`NODES_ATTR`; for a store of an earlier dyn, the nodes
    its commit record shows), or None if its root ``zarr.json`` cannot be read (then nothing is known)."""
    meta = _read_json(Path(root) / "zarr.json")
    if meta is None:
        return None
    attrs = meta.get("attributes")
    listed = attrs.get(NODES_ATTR) if isinstance(attrs, dict) else None
    if isinstance(listed, list):
        return {p for p in listed if isinstance(p, str)}
    consolidated = meta.get("consolidated_metadata")
    metas = consolidated.get("metadata") if isinstance(consolidated, dict) else None
    return set(metas) if isinstance(metas, dict) else set()


def _slot_arrays(root: Path, slot: str, cache: dict[str, set[str] | None]) -> set[str] | None:
    """The arrays a checkpoint slot lists (None: the slot does not list them, as before dyn did; all are dyn's)."""
    if slot not in cache:
        meta = _read_json(root / _CHECKPOINT / slot / "zarr.json") or {}
        listed = (meta.get("attributes") or {}).get("arrays") if isinstance(meta.get("attributes"), dict) else None
        cache[slot] = {a for a in listed if isinstance(a, str)} if isinstance(listed, list) else None
    return cache[slot]


def _node_of(parts: tuple[str, ...], beside_meta: bool) -> str | None:
    """The node (path) a file of zarr's kind belongs to: the folder of a ``zarr.json``, the array of a chunk file
    (``<array>/c.<i>...``, ``<array>/c/<i>/...`` of earlier versions, or a 0-d array's ``<array>/c``); temporary
    files belong where their final name does."""
    name = parts[-1]
    if _TEMP.fullmatch(name):
        name = name.rsplit(".", 2)[0]
        parts = (*parts[:-1], name)
    elif name == _META_TEMP_EARLIER:
        name = "zarr.json"
        parts = (*parts[:-1], name)
    if name == "zarr.json" or (name == "c" and beside_meta and "c" not in parts[:-1]) or (
            len(parts) > 1 and _FLAT_CHUNK.fullmatch(name)):  # a chunk with "." keys: in its array's folder
        return "/".join(parts[:-1])
    parents = parts[:-1]
    if "c" not in parents:
        return None
    return "/".join(parents[: len(parents) - 1 - parents[::-1].index("c")])


class _Owner:
    """Decides which of zarr's files inside a store are dyn's: those of the nodes it lists (:func:`own_nodes`), of
    the checkpoint slots' listed arrays, of an overwritten store still to be swept (:data:`SWEEP_LIST`)."""

    def __init__(self, root: Path):
        self.root = root
        self.nodes = own_nodes(root)
        sweep = (_read_json(root / SWEEP_LIST) or {}).get("dyn_sweep")
        self.swept = {p for p in sweep if isinstance(p, str)} if isinstance(sweep, list) else set()
        self._slots: dict[str, set[str] | None] = {}

    def owns(self, parts: tuple[str, ...], beside_meta: bool) -> bool:
        if not _zarr_file(parts, beside_meta):
            return False
        if self.nodes is None or "/".join(parts) in self.swept:
            return True
        if parts in ((SWEEP_LIST,), (_META_TEMP_EARLIER,)) or (len(parts) == 1 and _TEMP.fullmatch(parts[0])
                                                               and parts[0].rsplit(".", 2)[0] in ("zarr.json", SWEEP_LIST)):
            return True
        node = _node_of(parts, beside_meta)
        if node is None:
            return False
        if node == "" or node in self.nodes:
            return True
        steps = node.split("/")
        if steps[0] != _CHECKPOINT:
            return False
        if len(steps) == 1:
            return True
        if steps[1] not in _SLOTS:
            return False
        if len(steps) == 2:
            return True
        if len(steps) != 3:
            return False
        listed = _slot_arrays(self.root, steps[1], self._slots)
        if listed is not None:
            return steps[2] in listed
        # a slot that does not list its arrays (an earlier dyn's): its arrays are dyn's, a group is not
        meta = _read_json(self.root.joinpath(*steps, "zarr.json")) or {}
        return meta.get("node_type") == "array"


def _walk_store(root: Path):
    """``(relative parts, is a link, is dyn's)`` for every file or link below the store ``root``: dyn's are zarr's
    own files (metadata, chunks, temporary files) of the nodes dyn wrote (:class:`_Owner`)."""
    # os.scandir and tuples of names, not pathlib: a run store holds hundreds of files, and this walk runs on
    # every overwrite (pathlib cost ~25 ms per walk at paper scale)
    owner = _Owner(Path(root))
    stack: list[tuple[str, tuple[str, ...]]] = [(str(root), ())]
    while stack:
        folder, parts = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:  # vanished or unreadable: skipped, as os.walk does
            continue
        meta = any(e.name == "zarr.json" for e in entries)
        for entry in entries:
            rel = (*parts, entry.name)
            if entry.is_symlink():
                yield rel, True, False
            elif entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, rel))
            else:
                yield rel, False, owner.owns(rel, meta)


def foreign_in_store(root: Path) -> list[str]:
    """Paths inside the zarr store ``root`` that dyn did not write: anything but zarr's files (``zarr.json``
    metadata, chunk files ``.../c.<i>.<j>`` or ``.../c/<i>/<j>``, zarr's temporary files) of the nodes dyn lists (:func:`own_nodes`:
    a user's group or array added with zarr or xarray is foreign too, even inside one of dyn's groups or in
    ``_checkpoint/``); links are always foreign."""
    return sorted(os.path.join(*rel) for rel, link, own in _walk_store(root) if link or not own)


def zarr_files(root: Path) -> list[str]:
    """Relative paths ('/'-separated) of the files inside the zarr store ``root`` that dyn wrote (see
    :func:`foreign_in_store`); links and anything else are left out."""
    return ["/".join(rel) for rel, link, own in _walk_store(root) if own and not link]


def remove_own(root: Path, under: str = "") -> None:
    """Remove dyn's files (see :func:`foreign_in_store`) below ``root/under`` and the folders they leave empty;
    anything else (a user's files and groups) stays, with the folders that hold it."""
    base = Path(root, under) if under else Path(root)
    if not base.is_dir():
        return
    prefix = tuple(p for p in under.split("/") if p)
    owner = _Owner(Path(root))
    for dirpath, _, filenames in os.walk(base, topdown=False):
        rel = os.path.relpath(dirpath, base)
        parts = prefix + (() if rel == "." else tuple(rel.split(os.sep)))
        meta = "zarr.json" in filenames
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and owner.owns((*parts, name), meta):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        try:
            os.rmdir(dirpath)
        except OSError:  # not empty: holds something that is not dyn's
            pass


def _zarr_file(rel: Path | tuple[str, ...], beside_meta: bool = False) -> bool:
    """Whether ``rel`` (inside a zarr store) names one of zarr's files; ``beside_meta``: a ``zarr.json`` is in the
    same folder (then ``c`` is the one chunk file of a 0-d array)."""
    parts = rel.parts if isinstance(rel, Path) else rel
    name, parents = parts[-1], parts[:-1]
    if name in ("zarr.json", _META_TEMP_EARLIER) or _TEMP.fullmatch(name) or parts == (SWEEP_LIST,):
        return True
    if name == "c" and beside_meta and "c" not in parents:
        return True
    if parents and _FLAT_CHUNK.fullmatch(name):  # "." chunk keys: the chunk files lie in the array's folder
        return True
    if "c" not in parents:
        return False
    after = parts[len(parents) - parents[::-1].index("c"):]
    return all(part.isdigit() for part in after)


def _foreign(path: Path, kind: str) -> list[str]:
    """What is inside the dyn output ``path`` (of ``kind``) that dyn did not write, or changed since."""
    if kind == "run":
        return foreign_in_store(path)
    if kind == "export" and path.is_dir():  # a gridded zarr export: only zarr's own files inside
        return foreign_in_store(path)
    if kind == "export":
        mark = _read_json(_sidecar(path)) or {}
        ok = {mark.get("sha256"), mark.get("replaces")} - {None}  # "replaces": killed while being replaced
        return [] if _sha256(path) in ok else [f"{path.name} (changed since dyn wrote it)"]
    if kind == "sweep":
        return _foreign_in_sweep(path)
    mark = _read_json(path / MARKER) or {}
    files, stores = mark.get("files") or {}, [Path(s) for s in mark.get("stores") or []]
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        here = Path(dirpath)
        rel_dir = here.relative_to(path)
        if rel_dir in stores:
            dirnames.clear()
            out += [f"{rel_dir / f}" for f in foreign_in_store(here)]
            continue
        for name in dirnames + filenames:
            p = here / name
            rel = str(rel_dir / name)
            if p.is_symlink():
                out.append(rel)
            elif name in filenames and rel != MARKER:
                if rel not in files:
                    out.append(rel)
                elif files[rel] != _sha256(p):
                    out.append(f"{rel} (changed since dyn wrote it)")
    return sorted(out)


def _recorded(files: dict, name: str) -> list[str]:
    """The SHA-256 digests a marker accepts for the file ``name`` (the current one, and while it is being replaced
    the one it replaces: see :func:`write_recorded`)."""
    value = files.get(name)
    return [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _foreign_in_sweep(path: Path) -> list[str]:
    mark = _read_json(path / MARKER)
    files = mark.get("files") if mark is not None and mark.get("dyn_output") == "sweep" else None
    files = files if isinstance(files, dict) else None  # None: a sweep of an earlier dyn, which hashed nothing
    out = []
    for entry in sorted(path.iterdir()):
        if entry.is_symlink():
            out.append(entry.name)
        elif files is not None and entry.name == MARKER and entry.is_file():
            continue
        elif files is not None and entry.name in SWEEP_FILES and entry.is_file():
            if _sha256(entry) not in _recorded(files, entry.name):
                out.append(f"{entry.name} (changed since dyn wrote it)")
        elif entry.name == "runs" and entry.is_dir():
            for run in sorted(entry.iterdir()):
                rel = f"runs/{run.name}"
                if _STAGE.fullmatch(run.name) and run.is_dir() and not run.is_symlink():
                    continue  # a run store a killed sweep was creating (dyn's staging name): removed with the folder
                if run.is_symlink() or not run.is_dir() or (any(run.iterdir()) and not _is_run_store(run)):
                    out.append(rel)
                else:
                    out += [f"{rel}/{f}" for f in foreign_in_store(run)]
        elif not (entry.is_file() and (entry.name in SWEEP_FILES or _is_partial_table(entry.name))):
            out.append(entry.name)
    return out


def _is_partial_table(name: str) -> bool:
    """A temporary file of a sweep's own file: :func:`write_recorded`'s and its marker's (``.<file>.<32 hex>.partial``)
    or an earlier dyn's ``.results.{parquet,csv}.partial``; exact names only (a user's ``.results.mine.partial`` is
    not one)."""
    return bool(_SWEEP_TEMP.fullmatch(name) or _SWEEP_TEMP_EARLIER.fullmatch(name))


def check_recorded(folder: str | os.PathLike, names: Iterable[str] = SWEEP_FILES) -> None:
    """Refuse (one line) when one of the files ``names`` of a sweep folder exists but is not as dyn wrote it (its
    SHA-256 is not in the folder's marker): dyn never replaces a file a user changed. A folder of an earlier dyn,
    without a marker, is not checked."""
    folder = Path(folder)
    mark = _read_json(folder / MARKER)
    files = mark.get("files") if mark is not None else None
    if not isinstance(files, dict):
        return
    for name in sorted(names):
        path = folder / name
        if path.is_file() and _sha256(path) not in _recorded(files, name):
            raise StoreError(f"{folder} holds {name}, changed since dyn wrote it; refusing to replace it (move it "
                             "away, or use another --out)")


def write_recorded(folder: str | os.PathLike, name: str, write: Callable[[Path], None]) -> None:
    """Write the file ``folder/name`` of a sweep folder whole and record its SHA-256 in ``folder``'s marker
    (:data:`MARKER`), so that a later ``--overwrite`` can tell whether a user changed it since.

    ``write(tmp)`` writes the file to a temporary path beside it (``.<name>.<32 hex>.partial``), which then replaces
    it atomically. The marker accepts both digests while the file is being replaced (the old file's, if dyn wrote
    it, and the new one's), so a kill at any moment leaves a file the marker accepts.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_recorded(folder, "results.csv", lambda tmp: tmp.write_text("a,b\\n1,2\\n"))
    >>> _foreign_in_sweep(folder)
    []
    >>> _ = (folder / "results.csv").write_text("edited\\n")
    >>> _foreign_in_sweep(folder)
    ['results.csv (changed since dyn wrote it)']
    """
    folder = Path(folder)
    out = folder / name
    check_recorded(folder, [name])
    tmp = folder / f".{name}.{uuid.uuid4().hex}.partial"  # flock-held while it exists: not debris to a rerun
    mark = _read_json(folder / MARKER)
    if mark is None or not isinstance(mark.get("files"), dict):  # the first file (or a sweep of an earlier dyn,
        mark = {"dyn_output": "sweep", "files": {n: [_sha256(folder / n)] for n in sorted(SWEEP_FILES)  # which
                                                 if (folder / n).is_file()}}  # hashed nothing: its files are dyn's)
    fd = None
    try:
        with io_errors(str(out)):
            fd = _create_held(tmp)  # write(tmp) rewrites this file (same inode): the lock stays on it
            write(tmp)
            new = _sha256(tmp)
            keep = _recorded(mark["files"], name)
            old = _sha256(out) if out.is_file() and keep else None
            mark["files"][name] = [new] + ([old] if old in keep and old != new else [])
            atomic_write(folder / MARKER, json.dumps(mark, indent=1).encode())
            os.replace(tmp, out)
            if len(mark["files"][name]) > 1:
                mark["files"][name] = [new]
                atomic_write(folder / MARKER, json.dumps(mark, indent=1).encode())
    finally:
        if fd is not None:
            os.close(fd)
        tmp.unlink(missing_ok=True)


def _real(path: Path) -> Path:
    """``path`` with its parent folders resolved (the last component is left as it is: it may be a link)."""
    return Path(os.path.abspath(path)).parent.resolve() / path.name


def claim_output(
    out: str | os.PathLike,
    *,
    kind: str,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
) -> Path:
    """Decide whether a command may create ``out`` (or replace it, with ``overwrite``); return it as a Path.

    The one rule for every command's ``--out`` (see the module docstring). Nothing is written here but what
    :func:`recover_output` does first (finish a replacement of ``out`` a kill interrupted, remove what killed dyn
    writers left beside it); the parent folders are created by :func:`make_parents` when the output is written.

    Parameters
    ----------
    out : path of the output.
    kind : what the command writes, a key of :data:`KINDS`.
    inputs : the command's inputs (run stores, grid files); ``out`` may not be one, hold one or lie inside one.
    overwrite : replace an existing output of the same kind that dyn made and nobody changed.

    Raises
    ------
    ConfigError
        ``out`` is (holds, lies inside) an input.
    StoreError
        ``out`` exists and ``overwrite`` is false; ``out`` is a symbolic link, cannot be created, or is not a dyn
        output of this kind with only dyn's files inside.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown output kind {kind!r} (known: {', '.join(KINDS)})")
    out = Path(out)
    recover_output(out, kind)  # an interrupted replacement of ``out`` is finished, killed writers' debris removed
    if out.is_symlink():
        raise StoreError(f"{out} is a symbolic link; dyn writes only to real paths (give the link's target)")
    real = _real(out)
    for item in inputs:
        source = Path(item).resolve()
        if real == source:
            raise ConfigError(f"{out} is an input of this command; choose another output path")
        if source.is_relative_to(real):
            raise ConfigError(f"{out} holds the input {item}; choose another output path")
        if real.is_relative_to(source):
            raise ConfigError(f"{out} lies inside the input {item}; choose another output path")
    if not out.exists():
        _check_creatable(out)
        return out
    if kind != "export" and out.is_dir() and not any(out.iterdir()):
        return out  # an empty folder: nothing to lose
    found = output_kind(out)
    foreign = _foreign(out, kind) if found == kind else []
    if not overwrite:
        state = "already exists and is not empty" if out.is_dir() else "already exists"
        if found == kind and not foreign:  # the overwrite would be allowed: say how
            raise StoreError(f"{out} {state} (use {option('overwrite=True', '--overwrite')} to replace it)")
        what = f"a dyn {KINDS[found]}" if found is not None and found != kind else "not written by dyn"
        if foreign:
            what = f"holds {foreign[0]}, which dyn did not write"
        raise StoreError(f"{out} {state} ({what}; dyn will not replace it): choose a new path")
    if found is None:
        raise StoreError(f"{out} is not a dyn {KINDS[kind]}; refusing to overwrite it")
    if found != kind:
        raise StoreError(f"{out} is a dyn {KINDS[found]}, not a {KINDS[kind]}; refusing to overwrite it")
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise StoreError(f"{out} holds {foreign[0]}{more}, which dyn did not write; refusing to overwrite it")
    return out


def _check_creatable(out: Path) -> None:
    ancestor = Path(os.path.abspath(out)).parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StoreError(f"cannot create {out}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create {out}: folder {ancestor} is not writable")


def make_parents(out: Path) -> None:
    """Create the missing parent folders of ``out`` (as ``mkdir -p``)."""
    with io_errors(str(out.parent)):
        out.parent.mkdir(parents=True, exist_ok=True)


def _manifest(folder: Path, kind: str) -> dict:
    files, stores = {}, []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        rel_dir = here.relative_to(folder)
        if here != folder and (here / "zarr.json").is_file() and _is_run_store(here):
            stores.append(str(rel_dir))
            dirnames.clear()
            continue
        for name in filenames:
            files[str(rel_dir / name)] = _sha256(here / name)
    return {"dyn_output": kind, "files": dict(sorted(files.items())), "stores": sorted(stores)}


@contextlib.contextmanager
def staged_folder(
    out: str | os.PathLike,
    *,
    kind: str = "report",
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it is marked and replaces ``out``, on error removed.

    ``out`` must pass :func:`claim_output` (checked before and, if it exists, again just before it is replaced).
    The old folder is moved aside before the new one takes its name, so a crash never leaves it half deleted.

    Raises
    ------
    ConfigError, StoreError
        As :func:`claim_output`.
    WriteError
        The disk refused a write.
    """
    out = claim_output(out, kind=kind, inputs=inputs, overwrite=overwrite)
    make_parents(out)
    tmp = staging_path(out)
    with io_errors(str(out)):
        tmp.mkdir()
        lock = hold(tmp)  # while held, no rerun takes it for debris
    old = None
    try:
        with io_errors(str(out)):
            yield tmp
            atomic_write(tmp / MARKER, json.dumps(_manifest(tmp, kind), indent=1).encode())  # complete from here
            if out.exists():
                claim_output(out, kind=kind, overwrite=True)
                old = staging_path(out, "old")  # moved aside whole, then the new one renamed in: a kill between
                os.rename(out, old)  # the two is finished by the next claim_output (recover_output)
            os.replace(tmp, out)
    finally:
        os.close(lock)
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_file(
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Iterator[Path]:
    """Yield a temporary file path beside ``out``; on success it is marked (sidecar) and replaces ``out``.

    Raises
    ------
    ConfigError, StoreError
        As :func:`claim_output` (kind ``"export"``).
    WriteError
        The disk refused a write.
    """
    out = claim_output(out, kind="export", inputs=inputs, overwrite=overwrite)
    make_parents(out)
    folder = staging_path(out)  # a held staging folder holding the file: see recover_output
    with io_errors(str(out)):
        folder.mkdir()
        lock = hold(folder)
    tmp = folder / out.name
    try:
        with io_errors(str(out)):
            yield tmp
            replaced = None
            if out.exists():
                claim_output(out, kind="export", overwrite=True)
                replaced = _sha256(out)
            new = _sha256(tmp)
            mark = {"dyn_output": "export", "file": out.name, "sha256": new}
            # until the file is replaced the sidecar accepts the old one too: a kill in between leaves an export
            # that a later --overwrite still recognises as dyn's
            atomic_write(_sidecar(out), json.dumps({**mark, "replaces": replaced} if replaced else mark,
                                                   indent=1).encode())
            os.replace(tmp, out)
            if replaced:
                atomic_write(_sidecar(out), json.dumps(mark, indent=1).encode())
    finally:
        os.close(lock)
        shutil.rmtree(folder, ignore_errors=True)


def save_figure(fig, folder: str | os.PathLike, stem: str, *, dpi: int = 120, recorded: bool = False) -> None:
    """Save ``fig`` as ``stem.png`` and ``stem.svg`` in ``folder``; ``recorded``: each whole (temporary file, then
    rename) with its SHA-256 in the folder's marker (a sweep folder's figures, see :func:`write_recorded`)."""
    for ext in ("png", "svg"):
        if recorded:
            write_recorded(folder, f"{stem}.{ext}", lambda tmp, ext=ext: fig.savefig(tmp, dpi=dpi, format=ext))
        else:
            fig.savefig(Path(folder) / f"{stem}.{ext}", dpi=dpi)
