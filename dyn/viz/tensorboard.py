"""TensorBoard event files of a run, written natively (no TensorFlow, no torch, no protobuf package).

:func:`export_tensorboard` writes one file ``events.out.tfevents.<time>.dyn`` in a log folder, so that a recorded
run appears in ``tensorboard --logdir`` next to the user's other curves (point ``--logdir`` at the folder above,
one sub-folder per run). Tags:

- every logged per-step scalar of the store under its own name (``loss``, ``lp_pos_max``, ...);
- per site, from the exact coefficients (:func:`dyn.coefficients`): ``gamma/max_abs/<site>`` = max over neurons
  and signals of ``|γ_{r,k}|``; ``rho/max/<site>`` = max over neurons and samples of ``ρ_{r,i}``;
  ``rho/q90/<site>`` = the 90th percentile over training samples of each sample's memorization ``max_r ρ_{r,i}``.

Values are float32 (TensorBoard's ``simple_value``); steps with no logged value (NaN) are left out. Every event
carries the export's wall time (a store keeps no per-step clock). One ``Event`` per recorded step holds all tags.

:class:`TensorBoardStream` writes the same tags *while the run trains* (``dyn.Recorder(..., sinks=[...])``,
``dyn run --tensorboard DIR``): one file ``events.out.tfevents.<time>.<host>.dyn-stream`` per run, appended after
each chunk the recorder writes (with the wall time of that write), with γ/ρ from the same solve as the export
(:func:`dyn.analysis.coefficients.coefficient_solver`), so the live curves and an export of the finished store
agree to float32 rounding.

The file format is TFRecord: per record the ``uint64`` length, the masked CRC-32C of those 8 bytes, the
serialized ``Event`` protobuf and the masked CRC-32C of it (all little-endian). The protobuf fields used are
``Event.wall_time = 1`` (double), ``step = 2`` (int64), ``file_version = 3`` (string ``"brain.Event:2"``),
``summary = 5``; ``Summary.value = 1`` (repeated); ``Value.tag = 1`` (string), ``simple_value = 2`` (float).
CRC-32C (Castagnoli) is computed table-driven in pure Python (:func:`crc32c`); :func:`read_records` checks it.
"""

from __future__ import annotations

import google_crc32c

import os
import socket
import struct
import time
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import xarray as xr

from ..analysis.run import Run
from ..errors import DynError, StoreError
from ..store.sinks import RecordSink
from ..store import open_run, read_static, reading
from ..store.outputs import MARKER, claim_output, io_errors, output_kind, staged_file

__all__ = ["crc32c", "masked_crc32c", "encode_event", "write_records", "read_records", "series",
           "export_tensorboard", "TensorBoardStream", "EVENT_PREFIX", "EVENT_SUFFIX", "STREAM_SUFFIX"]

#: every TensorBoard event file name holds ``tfevents``; dyn's end in ``.dyn`` (``events.out.tfevents.<time>.dyn``)
EVENT_PREFIX = "events.out.tfevents."
EVENT_SUFFIX = ".dyn"
#: a streamed file (:class:`TensorBoardStream`) ends in ``.dyn-stream``: never taken for an export
STREAM_SUFFIX = ".dyn-stream"
FILE_VERSION = "brain.Event:2"
_MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``crc`` (google-crc32c, the checksum the store uses too).

    Examples
    --------
    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    """
    return google_crc32c.extend(crc, bytes(data))


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that TFRecord stores: rotate right by 15 bits, add ``0xa282ead8`` (mod 2**32).

    Examples
    --------
    >>> masked_crc32c(b"") == (0 + 0xA282EAD8)
    True
    """
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 as protobuf writes it: ten bytes of two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int, *, values: Iterable[tuple[str, float]] = (),
                 file_version: str | None = None) -> bytes:
    """One serialized ``Event`` protobuf: ``wall_time``, ``step`` and either ``file_version`` or a ``Summary``
    of ``(tag, simple_value)`` pairs (float32).

    Examples
    --------
    >>> encode_event(0.0, 3, values=[("loss", 0.5)]).hex()
    '09000000000000000010032a0d0a0b0a046c6f7373150000003f'
    """
    out = b"\x09" + struct.pack("<d", float(wall_time)) + b"\x10" + _varint(int(step))
    if file_version is not None:
        out += _field_bytes(3, file_version.encode())
    summary = b"".join(_field_bytes(1, _field_bytes(1, str(tag).encode()) + b"\x15" + struct.pack("<f", value))
                       for tag, value in values)
    if summary or file_version is None:
        out += _field_bytes(5, summary)
    return out


def _record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> None:
    """Write ``records`` (serialized protobufs) to ``path`` in TFRecord framing."""
    with open(path, "wb") as f:
        for data in records:
            f.write(_record(data))


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """The records of a TFRecord file, each checked against both its CRCs.

    Raises
    ------
    StoreError
        A length or data CRC does not match, or the file ends inside a record.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.tfrecord")
    >>> write_records(path, [b"abc", b""])
    >>> list(read_records(path))
    [b'abc', b'']
    """
    with open(path, "rb") as f:
        blob = f.read()
    pos, n = 0, 0
    while pos < len(blob):
        if pos + 12 > len(blob):
            raise StoreError(f"{path}: truncated record {n} (file ends inside its header)")
        header = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (crc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        if crc != masked_crc32c(header):
            raise StoreError(f"{path}: record {n} at byte {pos}: length CRC mismatch (corrupted file)")
        end = pos + 12 + length
        if end + 4 > len(blob):
            raise StoreError(f"{path}: truncated record {n} (file ends inside its data)")
        data = blob[pos + 12:end]
        (crc,) = struct.unpack("<I", blob[end:end + 4])
        if crc != masked_crc32c(data):
            raise StoreError(f"{path}: record {n} at byte {pos}: data CRC mismatch (corrupted file)")
        yield data
        pos, n = end + 4, n + 1


def series(run: str | os.PathLike | Run) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The steps and every curve :func:`export_tensorboard` writes, ``{tag: values(step)}`` (float64, NaN where
    nothing was logged).

    A site whose γ/ρ solve fails contributes no coefficient tags (with a warning); its scalars are still written.
    A store that cannot be read (missing or damaged chunks) raises :class:`~dyn.errors.StoreError`.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.Config(d=60, n=8, m=4, steps=5), path)
    >>> steps, curves = series(path)
    >>> steps.tolist(), sorted(t for t in curves if "/" in t)
    ([0, 1, 2, 3, 4, 5], ['gamma/max_abs/h', 'rho/max/h', 'rho/q90/h'])
    """
    from ..analysis.coefficients import coefficients

    run = Run(run, chunks={}) if isinstance(run, (str, os.PathLike)) else Run.coerce(run)
    steps = np.asarray(run.steps)
    root = run.tree.ds
    curves: dict[str, np.ndarray] = {}
    for name in root.data_vars:
        if root[name].dims == ("step",) and root[name].dtype.kind in "biuf":
            with reading(run.path, name):
                curves[str(name)] = np.asarray(root[name].values, dtype=np.float64)
    for site in run.sites:
        with reading(run.path, f"site {site!r}"):  # a damaged store is an error, not a site left out
            ds = run.site(site).load()
        try:
            with reading(run.path, f"site {site!r}"):
                c = coefficients(ds)
                gamma = _values(abs(c["gamma"]).max(["neuron", "signal"])) if c["gamma"].sizes.get("signal", 0) \
                    else None
                rho = _values(c["rho"].max("neuron").transpose("step", "sample")) if c["rho"].sizes.get("sample", 0) \
                    else None
                curves.update(_site_curves(site, gamma, rho))
        except DynError as exc:
            warnings.warn(f"site {site!r}: TensorBoard gets its logged scalars only, gamma/rho failed: {exc}",
                          stacklevel=2)
    return steps, curves


def _site_curves(site: str, gamma_max_abs: np.ndarray | None, rho_per_sample: np.ndarray | None) -> dict[str, np.ndarray]:
    """The coefficient tags of one site from ``max |γ|`` over neurons and signals ``(step,)`` and each sample's
    ``max_r ρ_{r,i}`` ``(step, sample)``: the one definition the export and the stream share."""
    out: dict[str, np.ndarray] = {}
    if gamma_max_abs is not None:
        out[f"gamma/max_abs/{site}"] = np.asarray(gamma_max_abs, dtype=np.float64)
    if rho_per_sample is not None and rho_per_sample.shape[-1]:
        out[f"rho/max/{site}"] = rho_per_sample.max(axis=1)
        out[f"rho/q90/{site}"] = np.quantile(rho_per_sample, 0.9, axis=1)
    return out


def _values(da) -> np.ndarray:
    """The values of a (possibly dask-backed) DataArray as float64."""
    return np.asarray(da.compute().values if hasattr(da.data, "compute") else da.values, dtype=np.float64)


def _events(steps: np.ndarray, curves: dict[str, np.ndarray], wall_time: float,
            header: bool = True) -> Iterator[bytes]:
    if header:
        yield encode_event(wall_time, 0, file_version=FILE_VERSION)
    with np.errstate(over="ignore"):
        as32 = {tag: values.astype(np.float32) for tag, values in curves.items()}
    for i, step in enumerate(steps):
        values = [(tag, float(v[i])) for tag, v in as32.items() if not np.isnan(v[i])]
        if values:
            yield encode_event(wall_time, int(step), values=values)


def _dyn_event_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith(EVENT_PREFIX) and p.name.endswith(EVENT_SUFFIX)
                  and output_kind(p) == "export")


def export_tensorboard(run: str | os.PathLike | Run, out_dir: str | os.PathLike, *,
                       overwrite: bool = False) -> Path:
    """Write the run's scalars and coefficient summaries (see the module notes) as one TensorBoard event file
    ``events.out.tfevents.<time>.dyn`` in the folder ``out_dir``; return the file's path.

    ``out_dir`` is created if missing; it may already hold other files (the user's own event files are never
    touched). An earlier dyn export in it (an unchanged ``events.out.tfevents.*.dyn`` with dyn's sidecar mark) is
    refused unless ``overwrite``, which replaces it once the new file is complete (TensorBoard would otherwise show
    both). The file is written under a temporary name and moved into place when complete, as every export
    (:func:`dyn.store.outputs.staged_file`).

    Raises
    ------
    ConfigError
        ``out_dir`` is, holds or lies inside the run.
    StoreError
        ``out_dir`` is a file or a link, or holds an earlier dyn export and ``overwrite`` is false; the run cannot
        be read.
    WriteError
        The disk refused a write.

    Examples
    --------
    >>> import tempfile, os
    >>> tmp = tempfile.mkdtemp()
    >>> path = os.path.join(tmp, "r.zarr")
    >>> _ = dyn.train(dyn.Config(d=60, n=8, m=4, steps=5), path)
    >>> out = export_tensorboard(path, os.path.join(tmp, "tb"))
    >>> out.name.startswith("events.out.tfevents."), len(list(read_records(out)))
    (True, 7)
    """
    out_dir = Path(out_dir)
    inputs = [run] if isinstance(run, (str, os.PathLike)) else ([run.path] if run.path is not None else [])
    if out_dir.is_symlink():
        raise StoreError(f"{out_dir} is a symbolic link; dyn writes only to real paths (give the link's target)")
    if out_dir.exists() and not out_dir.is_dir():
        raise StoreError(f"{out_dir} is a file; give a folder for the TensorBoard event file")
    probe = out_dir / f"{EVENT_PREFIX}0{EVENT_SUFFIX}"
    try:  # the rule of every export for the file that will be written: not an input, creatable
        claim_output(probe, kind="export", inputs=inputs)
    except DynError as exc:
        raise type(exc)(str(exc).replace(str(probe), str(out_dir))) from None
    earlier = _dyn_event_files(out_dir)
    if earlier and not overwrite:
        raise StoreError(f"{out_dir} already holds the dyn TensorBoard export {earlier[0].name} (use "
                         "--overwrite to replace it, or give another folder)")
    for old in earlier:  # dyn's and unchanged, or refused here before anything is written
        claim_output(old, kind="export", inputs=inputs, overwrite=True)
    steps, curves = series(run)
    now = time.time()
    out = out_dir / f"{EVENT_PREFIX}{int(now)}{EVENT_SUFFIX}"
    while out.exists() or out.is_symlink():  # a second export within the same second
        now += 1
        out = out_dir / f"{EVENT_PREFIX}{int(now)}{EVENT_SUFFIX}"
    with staged_file(out, inputs=inputs) as tmp:
        write_records(tmp, _events(steps, curves, now))
    for old in earlier:
        claim_output(old, kind="export", inputs=inputs, overwrite=True)  # still dyn's and unchanged
        old.unlink()
        old.with_name(f".{old.name}{MARKER}").unlink(missing_ok=True)
    return out


class TensorBoardStream(RecordSink):
    """Stream a run's logged scalars and γ/ρ summaries to TensorBoard while it trains (a recorder sink).

    Parameters
    ----------
    log_dir : str or Path
        The folder TensorBoard reads (created if missing; give one sub-folder per run under ``tensorboard
        --logdir``). A new file ``events.out.tfevents.<time>.<host>.dyn-stream`` is created in it per run
        (never an existing one, never anything else touched); a resumed run starts a new file (TensorBoard merges
        them; steps the killed run recorded after its checkpoint appear twice).
    coefficients : bool
        Also stream ``gamma/max_abs/<site>``, ``rho/max/<site>`` and ``rho/q90/<site>`` (see the module notes),
        solved chunk by chunk with the store's basis. ``False``: the logged scalars only.

    Raises
    ------
    StoreError
        ``log_dir`` is a file or a symbolic link (at construction, before any training).

    Notes
    -----
    Events are appended after each chunk is written (``Recorder(chunk_bytes=...)``, ``flush_every``), so
    TensorBoard shows a step as soon as the store has it. The per-chunk solve costs two products with the site's
    factored basis (``(steps, neurons, probes) x (probes, rank)``) on the writer thread. A site whose solve
    fails (e.g. no basis stored) streams no coefficient tags, with one warning; its scalars still stream.

    Examples
    --------
    >>> import tempfile, os
    >>> tmp = tempfile.mkdtemp()
    >>> stream = TensorBoardStream(os.path.join(tmp, "tb"))
    >>> _ = dyn.train(dyn.Config(d=60, n=8, m=4, steps=5), os.path.join(tmp, "r.zarr"), sinks=[stream])
    >>> stream.path.name.endswith(".dyn-stream"), len(list(read_records(stream.path)))
    (True, 7)
    """

    def __init__(self, log_dir: str | os.PathLike, *, coefficients: bool = True):
        self.log_dir = Path(log_dir)
        if self.log_dir.is_symlink():
            raise StoreError(f"{self.log_dir} is a symbolic link; dyn writes only to real paths (give the link's "
                             "target)")
        if self.log_dir.exists() and not self.log_dir.is_dir():
            raise StoreError(f"{self.log_dir} is a file; give a folder for the TensorBoard event file")
        self.coefficients = bool(coefficients)
        self.path: Path | None = None
        self._file = None
        self._store: Path | None = None
        self._solvers: dict[str, object] = {}  # site -> (solve, n_signals) or None when the solve failed

    def open(self, store: Path, sites: Mapping[str, object], first_step: int) -> None:
        self._store = Path(store)
        with io_errors(str(self.log_dir)):
            self.log_dir.mkdir(parents=True, exist_ok=True)
            now = time.time()
            host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"
            while True:  # a new file; a second run in the same second gets the next second's name
                path = self.log_dir / f"{EVENT_PREFIX}{int(now)}.{host}{STREAM_SUFFIX}"
                try:
                    self._file = open(path, "xb")
                    break
                except FileExistsError:
                    now += 1
            self.path = path
            self._file.write(_record(encode_event(time.time(), first_step, file_version=FILE_VERSION)))
            self._file.flush()

    def _solver(self, site: str, arrays: Mapping[str, np.ndarray], steps: np.ndarray):
        if site in self._solvers:
            return self._solvers[site]
        from ..analysis.coefficients import coefficient_solver, decomposition_operator

        solver = None
        try:
            statics = {}
            for name, dims in (("gram", ("basis", "basis_dual")), ("signal_vectors", ("signal", "feature")),
                               ("noise_vectors", ("sample", "feature"))):
                try:
                    statics[name] = (dims, read_static(self._store, site, name))
                except StoreError as exc:
                    if "has no array" not in str(exc):
                        raise
            k, n = arrays["signal_inner"].shape[-1], arrays["noise_inner"].shape[-1]
            ds = xr.Dataset(statics, coords={"signal": np.arange(k), "sample": np.arange(n)})
            op = decomposition_operator(ds)
            if steps[0] == 0:
                sig0, noise0 = arrays["signal_inner"][0], arrays["noise_inner"][0]
            else:  # a resumed run: step 0 is in the store
                site_ds = open_run(self._store)[site]
                sig0 = site_ds["signal_inner"].isel(step=0).values
                noise0 = site_ds["noise_inner"].isel(step=0).values
            solver = (coefficient_solver(op, sig0, noise0), k)
        except (DynError, KeyError, ValueError, np.linalg.LinAlgError) as exc:
            warnings.warn(f"site {site!r}: TensorBoard stream gets its logged scalars only, gamma/rho failed: "
                          f"{exc}".splitlines()[0], stacklevel=2)
        self._solvers[site] = solver
        return solver

    def write(self, steps: np.ndarray, inner: Mapping[str, Mapping[str, np.ndarray]],
              scalars: Mapping[str, np.ndarray]) -> None:
        if self._file is None or not len(steps):
            return
        curves = {str(name): np.asarray(values, dtype=np.float64) for name, values in scalars.items()}
        if self.coefficients:
            for site, arrays in inner.items():
                solver = self._solver(site, arrays, steps)
                if solver is None:
                    continue
                solve, k = solver
                c = solve(arrays["signal_inner"], arrays["noise_inner"])  # (step, neuron, K + n)
                gamma = np.abs(c[..., :k]).max(axis=(1, 2)) if k else None
                curves.update(_site_curves(site, gamma, c[..., k:].max(axis=1)))
        wall = time.time()
        with io_errors(str(self.path)):
            for data in _events(np.asarray(steps), curves, wall, header=False):
                self._file.write(_record(data))
            self._file.flush()

    def close(self, status: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
