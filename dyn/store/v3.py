"""A small native zarr v3 writer for the subset of the format dyn stores use (reading stays with zarr/xarray).

zarr-python builds every array through its asynchronous metadata machinery: creating the ~35 arrays of a run
store costs ~100 ms of event-loop round trips, more than a paper-scale training run. dyn's arrays are simple —
a regular chunk grid, the default ``/`` chunk keys, the ``bytes`` codec (little endian) with an optional
compressor, or ``vlen-utf8`` + ``zstd`` for strings — so this module writes their ``zarr.json`` as plain JSON
(equal to what ``zarr.create_array`` writes; the tests compare them) and encodes chunks with numcodecs directly.

Every file that exists is replaced through a temporary name (:func:`write_file`), so a reader never sees one half
written: the commit protocol of :mod:`dyn.store.writer` relies on that for rewritten partial chunks. A chunk
file that does not exist yet is written in place (:func:`write_chunk`): no commit shows it yet.

Supported data types: ``bool``, signed and unsigned integers, ``float16/32/64``, ``complex64/128`` and strings
(numpy ``U``/``O`` of ``str``). Anything else is refused with a one-line :class:`~dyn.errors.StoreError`.

Examples
--------
>>> import json, numpy as np, tempfile, zarr
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> arr = ArraySpec.new((5, 3), (4, 3), np.float32, ["step", "x"], np.nan, codec="zstd")
>>> arr.write(root / "a", np.arange(15, dtype=np.float32).reshape(5, 3))  # the chunks, then the metadata
>>> write_file(root / "a" / "zarr.json", json.dumps(arr.meta()).encode())
>>> float(zarr.open_array(str(root / "a"), mode="r")[4, 2])
14.0
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import google_crc32c
import numcodecs
import numpy as np

from ..errors import StoreError

__all__ = ["CHUNK_SEPARATOR", "CODECS", "CRC32C", "ArraySpec", "codec_chain", "crc32c_zeros", "encode_parts", "stored_dtype", "decode_chunk", "encode_chunk", "group_meta", "json_default",
           "write_file"]

#: The compression choices of new numeric arrays (``StoreWriter(codec=...)``), as zarr v3 codec entries after
#: ``bytes``. Strings always use zarr's default ``vlen-utf8`` + ``zstd`` (level 0).
CODECS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "zstd": [{"name": "zstd", "configuration": {"level": 1, "checksum": False}}],
    "blosc-lz4": [{"name": "blosc", "configuration": {"cname": "lz4", "clevel": 1, "shuffle": "shuffle",
                                                       "blocksize": 0}}],
    "blosc-lz4-noshuffle": [{"name": "blosc", "configuration": {"cname": "lz4", "clevel": 1, "shuffle": "noshuffle",
                                                                 "blocksize": 0}}],
    "zstd-fast": [{"name": "zstd", "configuration": {"level": -3, "checksum": False}}],
    "blosc-zstd": [{"name": "blosc", "configuration": {"cname": "zstd", "clevel": 1, "shuffle": "shuffle",
                                                        "blocksize": 0}}],
}
_STRING_CODECS = [{"name": "vlen-utf8", "configuration": {}}, {"name": "zstd", "configuration": {"level": 0, "checksum": False}}]
_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}
_KINDS = "biufc"  # numpy kinds with a zarr v3 core data type of the same name


def json_default(value: Any) -> Any:
    """JSON for the numpy values attributes may hold (``json.dumps(..., default=json_default)``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


#: Chunk key separator of the arrays dyn creates (zarr v3's ``default`` chunk key encoding): ``"."`` makes every
#: chunk ``<array>/c.<i>.<j>...``, a file in the array's folder. zarr's own default ``"/"`` (``c/<i>/<j>``, what dyn
#: wrote before) needs one or two new folders per chunk along the steps: in ``benchmarks/at_size.py`` their
#: ``mkdir`` calls took ~20 % of the writer's time, more than the checksums. Arrays of earlier stores keep theirs.
CHUNK_SEPARATOR = "."

#: zarr v3's standard checksum codec (the last codec of every numeric array dyn creates): CRC-32C of the encoded
#: chunk, appended as 4 little-endian bytes. Every reader verifies it (zarr-python's ``Crc32cCodec`` too).
CRC32C: dict[str, Any] = {"name": "crc32c"}
_CRC_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _gf2_times(mat: Sequence[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


_ZERO_OPS: list[list[int]] = []  # [k]: the map a CRC-32C register undergoes over 2**k zero bytes (32 columns)
_ZERO_TABLES: dict[int, list[list[int]]] = {}  # [k]: that map as 4 byte-indexed tables (one lookup per byte)


def _zero_table(k: int) -> list[list[int]]:
    """The map over ``2**k`` zero bytes as 4 tables of 256 entries, built once per ``k`` (1024 XORs)."""
    table = _ZERO_TABLES.get(k)
    if table is not None:
        return table
    if not _ZERO_OPS:
        op = [_CRC_POLY] + [1 << i for i in range(31)]  # one zero bit
        for _ in range(3):  # 2, 4, 8 bits (as zlib's crc32_combine)
            op = [_gf2_times(op, op[i]) for i in range(32)]
        _ZERO_OPS.append(op)
    while len(_ZERO_OPS) <= k:
        op = _ZERO_OPS[-1]
        _ZERO_OPS.append([_gf2_times(op, op[i]) for i in range(32)])
    cols = _ZERO_OPS[k]
    table = []
    for j in range(4):
        t = [0] * 256
        for b in range(1, 256):
            low = b & -b
            t[b] = t[b ^ low] ^ cols[8 * j + low.bit_length() - 1]
        table.append(t)
    _ZERO_TABLES[k] = table
    return table


def crc32c_zeros(crc: int, n: int) -> int:
    """The CRC-32C of a message whose CRC-32C is ``crc``, extended by ``n`` zero bytes, in O(log n) table
    lookups without reading them: a chunk padded with a hole (zeros that take no disk space) is checksummed as
    written.

    Examples
    --------
    >>> import google_crc32c
    >>> crc32c_zeros(google_crc32c.value(b"dyn"), 1000) == google_crc32c.value(b"dyn" + bytes(1000))
    True
    """
    reg, k = crc ^ 0xFFFFFFFF, 0
    while n:
        if n & 1:
            t = _zero_table(k)
            reg = t[0][reg & 255] ^ t[1][(reg >> 8) & 255] ^ t[2][(reg >> 16) & 255] ^ t[3][reg >> 24]
        n >>= 1
        k += 1
    return reg ^ 0xFFFFFFFF


def _put(fd: int, data: Any, size: int | None, tail: Any = None) -> None:
    """Write ``data``, then (``size``) zeros up to ``size`` bytes as a hole, then ``tail`` (a chunk's checksum)."""
    with os.fdopen(fd, "wb", closefd=True) as f:
        if isinstance(data, list):  # rows of a chunk not contiguous in memory (_rows): written in order, no copy
            for part in data:
                f.write(part)
        else:
            f.write(data)
        if size is not None and size > f.tell():
            if tail:
                f.seek(size)  # a hole: the file system stores no bytes for it and reads it back as zeros
            else:
                f.truncate(size)  # a hole, as above
        if tail:
            f.write(tail)


def write_file(path: Path, data: Any, size: int | None = None, tail: Any = None) -> None:
    """Write ``data`` (bytes-like) to ``path`` atomically: a temporary name zarr's own files may have
    (``<name>.<32 hex>.partial``, which :func:`dyn.store.outputs.foreign_in_store` accepts), then ``os.replace``.
    ``size``: extend the file to this many bytes with zeros (see :meth:`ArraySpec.append`); ``tail``: bytes written
    after them (a chunk's checksum)."""
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    except FileNotFoundError:
        os.makedirs(path.parent, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        _put(fd, data, size, tail)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_chunk(path: Path, data: Any, visible: bool = True, size: int | None = None, tail: Any = None) -> None:
    """Write a chunk file. One that may be visible (a commit shows it: it holds committed rows) is replaced
    atomically (:func:`write_file`). One that is not is written straight to its name: no reader looks at it
    before the commit that shows it, and a file left half written by a killed writer lies beyond that commit.
    An old file there (of an overwritten store) is unlinked first: replacing a file by rename makes ext4 flush
    the new data at once (``auto_da_alloc``), which costs more than the write."""
    if visible and os.path.lexists(path):
        return write_file(path, data, size, tail)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileNotFoundError:
        _make_folder(path.parent)
        return write_chunk(path, data, visible, size, tail)
    except NotADirectoryError:  # an overwritten store had a chunk file where this one needs a folder ("c")
        _make_folder(path.parent)
        return write_chunk(path, data, visible, size, tail)
    except FileExistsError:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)  # an overwritten store had chunk folders where this one has a file (0-d "c")
        else:
            os.unlink(path)
        return write_chunk(path, data, visible, size, tail)
    _put(fd, data, size, tail)


def _make_folder(folder: Path) -> None:
    """Create ``folder`` (with its parents) for a chunk no commit shows yet; a file of an overwritten store in the
    way (the chunk file ``c`` of a 0-d array where this one needs the folder ``c``) is removed first."""
    try:
        os.makedirs(folder, exist_ok=True)
        return
    except (FileExistsError, NotADirectoryError):
        pass
    for parent in (folder, *folder.parents):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            os.unlink(parent)
            break
    os.makedirs(folder, exist_ok=True)


def group_meta(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """A group's ``zarr.json`` as zarr writes it."""
    return {"attributes": dict(attrs or {}), "zarr_format": 3, "node_type": "group"}


def stored_dtype(values_dtype: Any) -> np.dtype | str:
    """The stored data type: a little-endian numpy dtype, or ``"string"``."""
    if values_dtype is str or values_dtype == "string":
        return "string"
    dt = np.dtype(values_dtype)
    if dt.kind in "UO":
        return "string"
    if dt.kind not in _KINDS or dt.itemsize > 16 or (dt.kind == "f" and dt.itemsize > 8):
        raise StoreError(f"data type {dt} cannot be stored (dyn stores bool, integers, floats, complex and strings)")
    return dt.newbyteorder("<") if dt.byteorder == ">" else dt


def _fill_json(fill: Any, dtype: np.dtype | str) -> Any:
    if dtype == "string":
        return str(fill)
    kind = dtype.kind
    if kind == "b":
        return bool(fill)
    if kind in "iu":
        return int(fill)

    def one(x: float) -> Any:
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        return float(x)

    if kind == "c":
        c = complex(fill)
        return [one(c.real), one(c.imag)]
    return one(float(fill))


def _fill_value(raw: Any, dtype: np.dtype | str) -> Any:
    """A fill value as read from ``zarr.json`` (``"NaN"``, ``"Infinity"``, ``[re, im]``, hex) to Python."""
    if dtype == "string":
        return "" if raw is None else str(raw)
    if dtype.kind == "c" and isinstance(raw, list):
        return complex(_fill_value(raw[0], np.dtype("f8")), _fill_value(raw[1], np.dtype("f8")))
    if isinstance(raw, str):
        if raw.startswith("0x"):  # a float's bytes, big-endian hex
            return np.frombuffer(bytes.fromhex(raw[2:]), dtype=dtype.newbyteorder(">"))[0].item()
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[raw]
    return raw


def codec_chain(codec: str | Sequence[Mapping[str, Any]], dtype: np.dtype | str,
                checksum: bool = False) -> list[dict[str, Any]]:
    """The full zarr v3 ``codecs`` list of an array of ``dtype`` compressed with ``codec`` (a :data:`CODECS` key),
    ending with :data:`CRC32C` for a numeric array when ``checksum``."""
    if dtype == "string":
        return [dict(c) for c in _STRING_CODECS]
    if isinstance(codec, str):
        if codec not in CODECS:
            raise StoreError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        codec = CODECS[codec]
    # zarr leaves out the byte order of one-byte types
    chain: list[dict[str, Any]] = [{"name": "bytes"} if dtype.itemsize == 1 else
                                   {"name": "bytes", "configuration": {"endian": "little"}}]
    for c in codec:
        c = {"name": c["name"], "configuration": dict(c["configuration"])}
        if c["name"] == "blosc":  # zarr fills in the type size from the data type, before cname
            conf = c["configuration"]
            c["configuration"] = {"typesize": dtype.itemsize, **{k: v for k, v in conf.items() if k != "typesize"}}
        chain.append(c)
    if checksum:
        chain.append(dict(CRC32C))
    return chain


def _numcodec(entry: Mapping[str, Any]) -> Any:
    name, conf = entry.get("name"), entry.get("configuration") or {}
    if name == "zstd":
        return numcodecs.Zstd(level=conf.get("level", 0), checksum=conf.get("checksum", False))
    if name == "blosc":
        return numcodecs.Blosc(cname=conf.get("cname", "zstd"), clevel=conf.get("clevel", 5),
                               shuffle=_SHUFFLE[conf.get("shuffle", "bitshuffle")], blocksize=conf.get("blocksize", 0),
                               typesize=conf.get("typesize", 1))
    if name == "gzip":
        return numcodecs.GZip(level=conf.get("level", 5))
    raise StoreError(f"dyn cannot write arrays with codec {name!r}")


def _crc32c(data: Any) -> int:
    """CRC-32C of any contiguous buffer, without a copy (google_crc32c takes bytes or a numpy array)."""
    return google_crc32c.value(np.frombuffer(data, np.uint8) if not isinstance(data, bytes) else data)


def _checksummed(codecs: Sequence[Mapping[str, Any]]) -> bool:
    return len(codecs) > 1 and codecs[-1].get("name") == "crc32c"


def encode_parts(chunk: np.ndarray, codecs: Sequence[Mapping[str, Any]],
                 size: int | None = None) -> tuple[Any, int | None, bytes | None]:
    """Encode one chunk for its file as ``(data, size, tail)``: the file holds ``data``, then zeros up to ``size``
    bytes (a hole; only for an uncompressed chunk short along its first axis, ``size`` its full byte size), then
    ``tail``, the CRC-32C of everything before it when the codecs end with :data:`CRC32C` (no copy of ``data``)."""
    if not _checksummed(codecs):
        return encode_chunk(chunk, codecs), size, None
    rows = _rows(chunk, codecs[:-1])
    if rows is not None:  # a slice of a wider buffer (the recorder's probe columns): no contiguous copy
        crc, n = 0, 0
        for row in rows:
            crc = google_crc32c.extend(crc, row)
            n += row.nbytes
        data: Any = rows
    else:
        data = encode_chunk(chunk, codecs[:-1])
        crc, n = _crc32c(data), len(data)
    if size is not None and size > n:
        crc = crc32c_zeros(crc, size - n)
    return data, size, crc.to_bytes(4, "little")


def _rows(chunk: np.ndarray, codecs: Sequence[Mapping[str, Any]]) -> list[np.ndarray] | None:
    """The bytes of an uncompressed numeric ``chunk`` that is not C-contiguous but whose rows (last axis) are, as
    one uint8 view per row in C order (written one after another they are exactly the ``bytes`` codec's output);
    None for anything else (it is encoded the usual way)."""
    if len(codecs) != 1 or codecs[0].get("name") != "bytes" or not isinstance(chunk, np.ndarray) or \
            chunk.flags.c_contiguous or chunk.ndim < 2 or chunk.dtype.kind not in "biufc" or \
            chunk.dtype.byteorder == ">" or chunk.strides[-1] != chunk.itemsize or chunk.shape[-1] == 0:
        return None
    try:  # a view when the leading axes are evenly strided, else no rows
        flat = chunk.reshape(-1, chunk.shape[-1], copy=False)
    except ValueError:
        return None
    except TypeError:  # numpy < 2.1 has no copy=; assigning the shape of a view refuses to copy
        flat = chunk.view()
        try:
            flat.shape = (-1, chunk.shape[-1])
        except AttributeError:
            return None
    return [row.view(np.uint8) for row in flat]


def encode_chunk(chunk: np.ndarray, codecs: Sequence[Mapping[str, Any]]) -> Any:
    """Encode one whole chunk (its full chunk shape) with a zarr v3 ``codecs`` list; returns a bytes-like object."""
    if _checksummed(codecs):
        data, _, tail = encode_parts(chunk, codecs)
        return bytes(data) + tail
    first = codecs[0]["name"]
    if first == "vlen-utf8":
        data: Any = numcodecs.VLenUTF8().encode(np.asarray(chunk, dtype=object).ravel())
    elif first == "bytes":
        # little-endian C order; a contiguous chunk is handed on without a copy
        data = np.ascontiguousarray(chunk, dtype=chunk.dtype.newbyteorder("<")).reshape(-1).view(np.uint8)
    else:
        raise StoreError(f"dyn cannot write arrays with codec {first!r}")
    for entry in codecs[1:]:
        data = _numcodec(entry).encode(data)
    return data


def decode_chunk(data: bytes, codecs: Sequence[Mapping[str, Any]], dtype: np.dtype | str,
                 shape: tuple[int, ...]) -> np.ndarray:
    """Decode one chunk file written with ``codecs`` back to an array of ``shape``.

    Raises
    ------
    StoreError
        The chunk's CRC-32C (codecs ending with :data:`CRC32C`) does not match its bytes.
    """
    if _checksummed(codecs):
        if len(data) < 4 or _crc32c(memoryview(data)[:-4]) != int.from_bytes(data[-4:], "little"):
            raise StoreError("checksum mismatch (CRC-32C): the chunk's bytes changed since they were written")
        data, codecs = memoryview(data)[:-4], codecs[:-1]
    for entry in reversed(codecs[1:]):
        data = _numcodec(entry).decode(data)
    if codecs[0]["name"] == "vlen-utf8":
        return np.asarray(numcodecs.VLenUTF8().decode(data), dtype=str).reshape(shape)
    endian = (codecs[0].get("configuration") or {}).get("endian", "little")
    raw = np.frombuffer(data, dtype=dtype.newbyteorder("<" if endian == "little" else ">"))
    return raw.astype(dtype).reshape(shape)


@dataclass
class ArraySpec:
    """One zarr v3 array as dyn writes it: shape, chunk shape, data type, fill value, codecs and attributes.

    ``tail`` holds the last, partly filled chunk of an array that grows along its first axis (per-step arrays),
    so an append never reads it back from disk; ``tail_index`` is the chunk it belongs to (None: not loaded).
    ``visible_rows``: rows a commit before the last one showed (a store cut back on resume), whose chunks a
    reader of that commit may still read.
    """

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype | str
    dims: list[str]
    fill: Any
    codecs: list[dict[str, Any]]
    attrs: dict[str, Any] = field(default_factory=dict)
    tail: np.ndarray | None = None
    tail_index: int | None = None
    visible_rows: int = 0  # rows an earlier commit showed (a resumed store): their chunks are replaced atomically
    separator: str = CHUNK_SEPARATOR  # chunk keys: "c.0.0" (new arrays) or "c/0/0" (arrays of earlier dyn versions)

    @classmethod
    def new(cls, shape: Sequence[int], chunks: Sequence[int] | None, dtype: Any, dims: Sequence[str],
            fill: Any = None, *, codec: str | Sequence[Mapping[str, Any]] = "none",
            attrs: Mapping[str, Any] | None = None, checksum: bool = False) -> "ArraySpec":
        """A new array; ``chunks=None`` picks one chunk, split along the first axis above 16 MiB. ``checksum``: a
        numeric array's chunks end with their CRC-32C (:data:`CRC32C`)."""
        dt = stored_dtype(dtype)
        shape = tuple(int(n) for n in shape)
        if fill is None:
            fill = "" if dt == "string" else (False if dt.kind == "b" else 0)
        if chunks is None:
            chunks = tuple(max(n, 1) for n in shape)
            if shape and dt != "string":
                row = dt.itemsize * int(np.prod(chunks[1:], dtype=np.int64))
                chunks = (max(1, min(chunks[0], (16 << 20) // max(row, 1))), *chunks[1:])
        return cls(shape, tuple(int(c) for c in chunks), dt, list(dims), fill, codec_chain(codec, dt, checksum), dict(attrs or {}))

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "ArraySpec":
        """The array a ``zarr.json`` (or its consolidated copy) describes; refuses what this writer cannot continue."""
        try:
            grid, keys = meta["chunk_grid"], meta["chunk_key_encoding"]
            separator = (keys.get("configuration") or {}).get("separator", "/")
            if grid["name"] != "regular" or keys["name"] != "default" or separator not in ("/", "."):
                raise StoreError("dyn writes only regular chunk grids with default chunk keys ('/' or '.')")
            dt = stored_dtype("string" if meta["data_type"] == "string" else meta["data_type"])
            codecs = [dict(c) for c in meta["codecs"]]
            return cls(tuple(meta["shape"]), tuple(grid["configuration"]["chunk_shape"]), dt,
                       list(meta.get("dimension_names") or []), _fill_value(meta.get("fill_value"), dt), codecs,
                       dict(meta.get("attributes") or {}), separator=separator)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"unreadable array metadata ({exc})") from None

    @property
    def raw(self) -> bool:
        """Chunks are the values' bytes as they are (no compressor): rows beyond the array's end need not be
        written, the file is extended with a hole instead (see :meth:`append`)."""
        codecs = self.codecs[:-1] if _checksummed(self.codecs) else self.codecs
        return len(codecs) == 1 and codecs[0]["name"] == "bytes"

    @property
    def chunk_nbytes(self) -> int:
        return int(np.prod(self.chunks, dtype=np.int64)) * self.numpy_dtype.itemsize

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(object) if self.dtype == "string" else self.dtype

    def meta(self) -> dict[str, Any]:
        """The array's ``zarr.json`` contents, as ``zarr.create_array`` writes them."""
        return {
            "shape": list(self.shape),
            "data_type": "string" if self.dtype == "string" else self.dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(self.chunks)}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": self.separator}},
            "fill_value": _fill_json(self.fill, self.dtype),
            "codecs": [dict(c) for c in self.codecs],
            "attributes": dict(self.attrs),
            "dimension_names": list(self.dims),
            "zarr_format": 3,
            "node_type": "array",
            "storage_transformers": [],
        }

    def filled(self, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A chunk-shaped array of fill values."""
        return np.full(shape or self.chunks, self.fill, dtype=self.numpy_dtype)

    def chunk_path(self, root: Path, coords: Sequence[int]) -> Path:
        """The file of the chunk at ``coords`` in the array folder ``root`` (zarr v3's default chunk key)."""
        if not coords:
            return root / "c"
        if self.separator == ".":
            return root / ("c." + ".".join(map(str, coords)))
        return root.joinpath("c", *map(str, coords))

    def _grid(self) -> Iterator[tuple[int, ...]]:
        counts = [-(-n // c) for n, c in zip(self.shape, self.chunks)]
        yield from np.ndindex(*counts) if counts else iter([()])

    def write(self, root: Path, values: np.ndarray, visible: bool = True) -> None:
        """Write the whole array: every chunk (edge chunks padded with the fill value), then nothing else (the
        caller writes the metadata). ``visible``: a commit may show the chunks there (see :func:`write_chunk`)."""
        values = np.asarray(values)
        if values.shape != self.shape:
            raise StoreError(f"values of shape {values.shape} do not fit an array of shape {self.shape}")
        if values.size == 0:
            return
        if self.dtype != "string":
            values = values.astype(self.dtype, copy=False)
        for coords in self._grid():
            sel = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(coords, self.chunks, self.shape))
            block = values[sel]
            size = None
            if block.shape != self.chunks:
                if self.raw and block.shape[1:] == self.chunks[1:]:
                    size = self.chunk_nbytes  # short only along the first axis: the rows after the end are a hole
                else:
                    full = self.filled()
                    full[tuple(slice(0, s) for s in block.shape)] = block
                    block = full
            data, size, tail = encode_parts(block, self.codecs, size)
            write_chunk(self.chunk_path(root, coords), data, visible, size, tail)

    def read_chunk(self, root: Path, coords: Sequence[int]) -> np.ndarray:
        """One chunk decoded from disk (for continuing a partly filled chunk of a resumed store)."""
        path = self.chunk_path(root, coords)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            return decode_chunk(data, self.codecs, self.dtype, self.chunks)
        except StoreError as exc:
            raise StoreError(f"cannot decode {path}: {exc}") from None
        except Exception as exc:  # numcodecs raises several types for damaged data
            raise StoreError(f"cannot decode {path} (corrupt or truncated data?): {exc}") from None

    def append(self, root: Path, start: int, values: np.ndarray) -> None:
        """Write rows ``start .. start + len(values)`` of an array that grows along its first axis.

        Every chunk touched is written whole; the last, partly filled one stays in memory (``tail``) for the next
        append. Its rows after the array's end are never read (readers cut chunks to the array's shape): a
        compressed chunk holds the fill value there (compressed to almost nothing), an uncompressed one a hole
        (the file is extended with zeros that take no disk space and cost no write). The shape is not changed
        here: the caller grows it.
        Rows before ``start`` are taken as committed: the chunk holding some of them is replaced atomically, the
        chunks after it are beyond every commit.
        """
        n = len(values)
        if n == 0:
            return
        if self.dtype != "string":
            values = values.astype(self.dtype, copy=False)
        cs, rest = self.chunks[0], tuple(0 for _ in self.chunks[1:])
        pos, stop = start, start + n
        while pos < stop:
            index, off = divmod(pos, cs)
            take = min(cs - off, stop - pos)
            rows = values[pos - start: pos - start + take]
            if off == 0 and take == cs:
                block = rows  # a whole chunk: encoded straight from the caller's rows
            else:
                if self.tail_index != index:
                    # a chunk started before this writer (resume) is read back once; a new one starts empty
                    if off:
                        self.tail = self.read_chunk(root, (index, *rest))
                    else:
                        self.tail = np.empty(self.chunks, self.numpy_dtype) if self.raw else self.filled()
                    self.tail_index = index
                self.tail[off: off + take] = rows
                block = self.tail[: off + take] if self.raw else self.tail
            data, size, tail = encode_parts(block, self.codecs, self.chunk_nbytes if self.raw and off + take < cs else None)
            write_chunk(self.chunk_path(root, (index, *rest)), data,
                        visible=(off > 0 and pos == start) or index * cs < self.visible_rows, size=size, tail=tail)
            if off + take == cs and self.tail_index == index:
                self.tail, self.tail_index = None, None
            pos += take

    def forget_tail(self) -> None:
        """Drop the in-memory partial chunk (after the array was cut: it no longer matches the rows kept)."""
        self.tail, self.tail_index = None, None
