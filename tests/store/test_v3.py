"""dyn's native zarr v3 writer (dyn.store.v3, used by StoreWriter) against zarr-python as the reference: the same
metadata, values that read back exactly through zarr and plain xarray, appends, resumes of zarr-written stores."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

import dyn
import dyn.store
from dyn.errors import StoreError
from dyn.store import StoreWriter
from dyn.store.reader import missing_chunks
from dyn.store.v3 import CODECS, ArraySpec

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
          "float64", "complex64", "complex128"]

#: dyn's chunk keys (zarr v3 default encoding, "." separator: ``c.0.1``), for zarr.create_array to compare with
DOT_KEYS = {"name": "default", "separator": "."}


def _zarr_compressors(codec: str):
    """The zarr-python codec objects equal to one of dyn's codec choices."""
    out = []
    for c in CODECS[codec]:
        conf = c["configuration"]
        out.append(ZstdCodec(**conf) if c["name"] == "zstd" else BloscCodec(**conf))
    return out or None


def _values(dtype: str, shape, rng) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.startswith("complex"):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    out = rng.standard_normal(shape).astype(dtype)
    out.flat[::7] = np.nan  # NaNs (the fill value of per-step arrays) are data too
    return out


def _read_json(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_metadata_equals_zarr_python(tmp_path, dtype, codec):
    """Every supported data type and codec: the zarr.json dyn writes equals the one zarr.create_array writes."""
    shape, chunks = (7, 3, 2), (4, 3, 2)
    fill = {"bool": True, "float16": np.nan, "float32": np.nan, "float64": -np.inf}.get(dtype, -1 if "int" in dtype and not dtype.startswith("u") else 3)
    if dtype.startswith("complex"):
        fill = complex(np.nan, 1.5)
    attrs = {"step": 3, "note": "x"}
    ref = zarr.create_array(str(tmp_path / "ref"), shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                            compressors=_zarr_compressors(codec), dimension_names=["step", "a", "b"],
                            attributes=attrs, config={"write_empty_chunks": True}, chunk_key_encoding=DOT_KEYS)
    del ref
    spec = ArraySpec.new(shape, chunks, dtype, ["step", "a", "b"], fill, codec=codec, attrs=attrs)
    assert spec.meta() == _read_json(tmp_path / "ref")
    # and the metadata parses back to the same array
    assert ArraySpec.from_meta(spec.meta()).meta() == spec.meta()


def test_string_and_default_metadata_equal_zarr_python(tmp_path):
    """Strings (vlen-utf8 + zstd, zarr's default) and default fill values, as zarr writes them."""
    for dtype, name in ((str, "s"), ("float64", "f"), ("int64", "i"), ("bool", "b"), ("complex64", "c")):
        zarr.create_array(str(tmp_path / name), shape=(5,), chunks=(5,), dtype=dtype, dimension_names=["x"],
                          compressors=None if dtype is not str else "auto", config={"write_empty_chunks": True},
                          chunk_key_encoding=DOT_KEYS)
        spec = ArraySpec.new((5,), None, dtype, ["x"], codec="none")
        assert spec.meta() == _read_json(tmp_path / name), name


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_static_arrays_read_back_exactly(tmp_path, codec):
    """Whole arrays of every data type, partial edge chunks and empty arrays: zarr reads back exactly what was
    written (a brute-force element-by-element comparison)."""
    rng = np.random.default_rng(0)
    for i, dtype in enumerate(DTYPES + ["str"]):
        shape = (11, 5) if i % 2 else (9,)
        values = np.array([f"name-{k}-ü" for k in range(9)]) if dtype == "str" else _values(dtype, shape, rng)
        spec = ArraySpec.new(values.shape, (4, *values.shape[1:]), values.dtype, ["a", "b"][: values.ndim],
                             codec=codec)
        folder = tmp_path / f"a{i}"
        spec.write(folder, values)
        (folder / "zarr.json").write_text(json.dumps(spec.meta()))
        back = zarr.open_array(str(folder), mode="r")[...]
        assert back.shape == values.shape and (dtype == "str" or back.dtype == values.dtype), dtype
        for index in np.ndindex(values.shape):
            a, b = values[index], back[index]
            assert a == b or (a != a and b != b), (dtype, index, a, b)
    empty = ArraySpec.new((0, 4), None, np.float32, ["a", "b"], codec=codec)
    empty.write(tmp_path / "empty", np.zeros((0, 4), np.float32))  # no chunk at all
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "zarr.json").write_text(json.dumps(empty.meta()))
    assert zarr.open_array(str(tmp_path / "empty"), mode="r")[...].shape == (0, 4)


def test_unsupported_data_type_is_refused(tmp_path):
    """Types dyn does not store (dates, raw bytes, records): a one-line StoreError, nothing written."""
    for values in (np.array(["2020-01-01"], dtype="datetime64[D]"), np.zeros(3, dtype="V4"),
                   np.zeros(2, dtype=[("a", "i4")])):
        with pytest.raises(StoreError, match="cannot be stored") as info:
            ArraySpec.new(values.shape, None, values.dtype, ["x"])
        assert "\n" not in str(info.value)
    with pytest.raises(StoreError, match="codec must be one of"):
        StoreWriter(tmp_path / "x.zarr", codec="lzma")
    writer = StoreWriter(tmp_path / "run.zarr")
    writer.create({"sites": ["h"]}, 4)
    with pytest.raises(StoreError, match="cannot be stored"):
        writer.write_group("extra", {"when": (("x",), np.array(["2020-01-01"], dtype="datetime64[D]"))})
    writer.close("interrupted")


def _make(path, codec="none", chunk_steps=4, m=3, probes=5):
    writer = StoreWriter(path, codec=codec)
    writer.create({"sites": ["h"]}, chunk_steps)
    writer.add_site("h", coords={"neuron": np.arange(m), "sample": np.arange(probes), "signal": np.array(["mu", "nu"])},
                    step_vars={"noise_inner": ("neuron", "sample"), "signal_inner": ("neuron", "signal")},
                    static={"weight_init": (("neuron", "sample"), np.ones((m, probes)))})
    return writer


def _batches(rng, sizes, m=3, probes=5, step0=0):
    out = []
    for k in sizes:
        steps = np.arange(step0, step0 + k)
        step0 += k
        out.append((steps, {"h": {"noise_inner": rng.standard_normal((k, m, probes)).astype(np.float32),
                                  "signal_inner": rng.standard_normal((k, m, 2)).astype(np.float32)}},
                    {"loss": rng.standard_normal(k)}))
    return out


def _expected(batches):
    steps = np.concatenate([b[0] for b in batches])
    noise = np.concatenate([b[1]["h"]["noise_inner"] for b in batches])
    signal = np.concatenate([b[1]["h"]["signal_inner"] for b in batches])
    loss = np.concatenate([b[2]["loss"] for b in batches])
    return steps, noise, signal, loss


def _check(path, batches):
    steps, noise, signal, loss = _expected(batches)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated metadata: no fallback warning
        plain = xr.open_datatree(path, engine="zarr")
    np.testing.assert_array_equal(plain["step"].values, steps)
    np.testing.assert_array_equal(plain["h"]["step"].values, steps)
    np.testing.assert_array_equal(plain["h"]["noise_inner"].values, noise)
    np.testing.assert_array_equal(plain["h"]["signal_inner"].values, signal)
    np.testing.assert_array_equal(plain["loss"].values, loss)
    assert plain["h"]["noise_inner"].dims == ("step", "neuron", "sample")
    assert plain["h"]["noise_inner"].dtype == np.float32 and plain["step"].dtype == np.int64
    tree = dyn.open(path)
    assert tree.sizes["step"] == len(steps)


@pytest.mark.parametrize("codec", ["none", "zstd", "blosc-lz4"])
def test_appends_across_chunk_boundaries(tmp_path, codec):
    """Appends of every size (within a chunk, exactly to its end, across several): after each one, plain xarray
    reads exactly the rows written so far, and every chunk file of that range is on disk."""
    rng = np.random.default_rng(1)
    path = tmp_path / "run.zarr"
    writer = _make(path, codec)
    batches = _batches(rng, [1, 2, 1, 4, 7, 3, 9, 1])
    for i, (steps, inner, scalars) in enumerate(batches):
        writer.append(steps, inner, scalars)
        _check(path, batches[: i + 1])
    writer.close("complete")
    _check(path, batches)
    root = json.loads((path / "zarr.json").read_text())
    # the nodes' own zarr.json agree with the commit once closed (a consolidated group also names its children)
    for name, meta in root["consolidated_metadata"]["metadata"].items():
        meta = {k: v for k, v in meta.items() if not (k == "consolidated_metadata" and meta["node_type"] == "group")}
        assert _read_json(path / name) == meta, name


def test_scalar_first_logged_late_gets_written_fill_chunks(tmp_path):
    """A scalar that appears at step 9 is NaN before, and its fill-only chunks are files on disk (a missing chunk
    would mean damage)."""
    rng = np.random.default_rng(2)
    path = tmp_path / "run.zarr"
    writer = _make(path)
    batches = _batches(rng, [5, 4, 3])
    late = rng.standard_normal(3)
    for i, (steps, inner, scalars) in enumerate(batches):
        writer.append(steps, inner, {**scalars, **({"acc": late} if i == 2 else {})})
    writer.close("complete")
    acc = xr.open_datatree(path, engine="zarr")["acc"].values
    np.testing.assert_array_equal(acc, np.concatenate([np.full(9, np.nan), late]))
    meta = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]["acc"]
    assert missing_chunks(path, "acc", meta) is None
    assert sorted(p.name for p in (path / "acc").glob("c.*")) == ["c.0", "c.1", "c.2"]


def _rewrite_with_zarr_python(path: Path) -> None:
    """Re-encode every chunk of every array with zarr-python itself (its blosc settings), as the writer before
    dyn's own wrote them."""
    root = json.loads((path / "zarr.json").read_text())
    for name, meta in root["consolidated_metadata"]["metadata"].items():
        if meta["node_type"] != "array" or not np.prod(meta["shape"]):
            continue
        arr = zarr.open_array(str(path / name), mode="r+")
        values = arr[...]
        for f in [*(path / name).glob("c.*"), *(path / name / "c").rglob("*")]:
            if f.is_file():
                f.unlink()
        arr[...] = values


@pytest.mark.parametrize("cut", [6, 8, 11])
def test_resume_continues_a_store_written_by_zarr_python(tmp_path, cut):
    """A blosc store whose chunks zarr-python wrote, resumed mid-chunk (6, 11) or at a chunk boundary (8): the
    kept rows are read back from disk once, the new ones appended in the array's own codec, and the result equals
    the brute-force concatenation."""
    rng = np.random.default_rng(3)
    path = tmp_path / "run.zarr"
    writer = _make(path, "blosc-lz4")
    first = _batches(rng, [5, 4, 5])
    for batch in first:
        writer.append(*batch)
    writer.close("interrupted")
    _rewrite_with_zarr_python(path)
    _check(path, first)
    resumed = StoreWriter(path, append=True)
    resumed.reopen(cut)
    steps, noise, signal, loss = _expected(first)
    more = _batches(rng, [3, 6], step0=cut)
    for batch in more:
        resumed.append(*batch)
    resumed.close("complete")
    kept = [(steps[:cut], {"h": {"noise_inner": noise[:cut], "signal_inner": signal[:cut]}}, {"loss": loss[:cut]})]
    _check(path, kept + more)
    meta = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]["h/noise_inner"]
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "blosc", "crc32c"]  # continued in the store's own codecs


def test_damaged_chunks_are_still_refused(tmp_path):
    """A chunk file deleted or truncated in the committed range: the reader refuses the store (one line)."""
    rng = np.random.default_rng(4)
    for damage in ("missing", "truncated"):
        path = tmp_path / f"{damage}.zarr"
        writer = _make(path)
        for batch in _batches(rng, [6, 3]):
            writer.append(*batch)
        writer.close("complete")
        chunk = path / "h" / "noise_inner" / "c.1.0.0"
        if damage == "missing":
            chunk.unlink()
            match = "h/noise_inner is missing its chunk c.1.0.0"
        else:
            chunk.write_bytes(chunk.read_bytes()[:10])
            match = "cannot read h/noise_inner"
        with pytest.raises(StoreError, match=match) as info:
            tree = dyn.open(path)
            with dyn.store.reading(path, "h/noise_inner"):  # data are read lazily, where dyn's readers read them
                tree["h"]["noise_inner"].values  # noqa: B018
        assert "\n" not in str(info.value)


def test_overwrite_reuses_files_and_leaves_only_the_new_store(tmp_path):
    """Overwriting a bigger store with a smaller one: after close, the folder holds exactly the files a fresh
    store of the same content has (no old arrays, groups or chunks), and it reads back exactly."""
    rng = np.random.default_rng(5)
    path = tmp_path / "run.zarr"
    writer = _make(path, chunk_steps=3, probes=7)
    for batch in _batches(rng, [10, 10], probes=7):
        writer.append(*batch)
    writer.write_group("extra", {"x": (("x",), np.arange(50))})
    writer.write_checkpoint(20, {"w": (("a", "b"), np.ones((3, 4)))})
    writer.close("interrupted")

    batches = _batches(rng, [4], probes=5)
    writer = StoreWriter(path, overwrite=True)
    writer.prepare()
    writer.create({"sites": ["h"]}, 3)
    writer.add_site("h", coords={"neuron": np.arange(3), "sample": np.arange(5), "signal": np.array(["mu", "nu"])},
                    step_vars={"noise_inner": ("neuron", "sample"), "signal_inner": ("neuron", "signal")},
                    static={"weight_init": (("neuron", "sample"), np.ones((3, 5)))})
    writer.append(*batches[0])
    writer.close("complete")
    _check(path, batches)

    fresh = tmp_path / "fresh.zarr"
    other = _make(fresh, chunk_steps=3, probes=5)
    other.append(*batches[0])
    other.close("complete")

    def files(p):
        return sorted(str(f.relative_to(p)) for f in p.rglob("*") if f.is_file() and f.name != "zarr.json" or
                      f.name == "zarr.json")

    assert files(path) == files(fresh)


def test_overwrite_still_refuses_foreign_files(tmp_path):
    """A file dyn did not write inside the old store: overwriting it is refused, nothing is removed."""
    path = tmp_path / "run.zarr"
    writer = _make(path)
    writer.close("complete")
    (path / "h" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="notes.txt"):
        StoreWriter(path, overwrite=True)
    assert (path / "h" / "notes.txt").read_text() == "mine"


def _to_slash_keys(path: Path) -> None:
    """Turn a store into one an earlier dyn wrote: '/' chunk keys (``c/0/1``) in every array's metadata and on
    disk, nothing else changed."""
    root = json.loads((path / "zarr.json").read_text())
    for meta_file in path.rglob("zarr.json"):
        meta = json.loads(meta_file.read_text())
        if meta.get("node_type") != "array":
            continue
        meta["chunk_key_encoding"]["configuration"]["separator"] = "/"
        meta_file.write_text(json.dumps(meta))
        for chunk in list(meta_file.parent.glob("c.*")):
            target = meta_file.parent.joinpath("c", *chunk.name.split(".")[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            chunk.rename(target)
    for meta in root["consolidated_metadata"]["metadata"].values():
        if meta.get("node_type") == "array":
            meta["chunk_key_encoding"]["configuration"]["separator"] = "/"
    (path / "zarr.json").write_text(json.dumps(root))


def test_new_arrays_use_dot_chunk_keys_and_stores_with_slash_keys_still_work(tmp_path):
    """New arrays: every chunk a file ``c.<i>.<j>...`` in its array's folder (no folder per chunk). A store an
    earlier dyn wrote ('/' keys) reads the same, resumes in its own keys (mid-chunk, new chunks beside), and an
    overwrite sweeps its nested chunk files but not a user's file among them."""
    rng = np.random.default_rng(7)
    path = tmp_path / "run.zarr"
    writer = _make(path)
    first = _batches(rng, [5, 4])
    for batch in first:
        writer.append(*batch)
    writer.close("interrupted")
    assert sorted(p.name for p in (path / "h" / "noise_inner").iterdir()) == ["c.0.0.0", "c.1.0.0", "c.2.0.0",
                                                                              "zarr.json"]
    _check(path, first)
    _to_slash_keys(path)
    assert (path / "h" / "noise_inner" / "c" / "2" / "0" / "0").is_file() and not list(path.rglob("c.*"))
    _check(path, first)  # an earlier dyn's store reads the same
    resumed = StoreWriter(path, append=True)
    resumed.reopen(7)  # mid-chunk: chunk 1 is read back from c/1/0/0 and continued
    more = _batches(rng, [6], step0=7)
    resumed.append(*more[0])
    resumed.close("complete")
    steps, noise, signal, loss = _expected(first)
    kept = [(steps[:7], {"h": {"noise_inner": noise[:7], "signal_inner": signal[:7]}}, {"loss": loss[:7]})]
    _check(path, kept + more)
    assert (path / "h" / "noise_inner" / "c" / "3" / "0" / "0").is_file()  # continued in the store's own keys
    assert not list((path / "h" / "noise_inner").glob("c.*"))
    # overwriting: a user's file among the nested chunks is named and the overwrite refused; without it the old
    # store's nested chunks are all swept and the new store has "." keys
    user = path / "h" / "noise_inner" / "c" / "notes.txt"
    user.write_text("mine")
    with pytest.raises(StoreError, match="holds h/noise_inner/c/notes.txt, which dyn did not write"):
        StoreWriter(path, overwrite=True)
    assert user.read_text() == "mine"
    user.unlink()
    new = _batches(rng, [4])
    again = StoreWriter(path, overwrite=True)
    again.create({"sites": ["h"]}, 4)
    again.add_site("h", coords={"neuron": np.arange(3), "sample": np.arange(5), "signal": np.array(["mu", "nu"])},
                   step_vars={"noise_inner": ("neuron", "sample"), "signal_inner": ("neuron", "signal")},
                   static={"weight_init": (("neuron", "sample"), np.ones((3, 5)))})
    again.append(*new[0])
    again.close("complete")
    _check(path, new)
    assert sorted(p.name for p in (path / "h" / "noise_inner").iterdir()) == ["c.0.0.0", "zarr.json"]
    assert not [p for p in path.rglob("*") if p.is_dir() and p.name == "c"]  # no nested chunk folder is left


def test_a_chunk_sliced_from_a_wider_buffer_is_written_without_a_copy_and_reads_back(tmp_path):
    """The recorder hands over column slices of one buffer per site (non-contiguous rows): their chunk files are
    written row by row (no contiguous copy) and equal, byte for byte, the files of the same values made
    contiguous; zarr-python reads them back exactly and their CRC-32C verifies."""
    from dyn.store.v3 import _rows, encode_parts

    rng = np.random.default_rng(11)
    wide = rng.standard_normal((6, 3, 9)).astype(np.float32)
    sliced = wide[:, :, 2:7]
    spec = ArraySpec.new((6, 3, 5), (4, 3, 5), np.float32, ["step", "a", "b"], np.nan, checksum=True)
    assert _rows(sliced, spec.codecs[:-1]) is not None and _rows(np.ascontiguousarray(sliced), spec.codecs[:-1]) is None
    assert _rows(wide.transpose(1, 0, 2)[:, :, 2:7], spec.codecs[:-1]) is None  # rows not evenly strided: copied
    for block, size in ((sliced[:4], None), (sliced[4:], spec.chunk_nbytes)):
        rows, n, tail = encode_parts(block, spec.codecs, size)
        flat, n2, tail2 = encode_parts(np.ascontiguousarray(block), spec.codecs, size)
        assert isinstance(rows, list) and b"".join(r.tobytes() for r in rows) == bytes(flat) and tail == tail2
    a, b = tmp_path / "a", tmp_path / "b"
    for root, values in ((a, sliced), (b, np.ascontiguousarray(sliced))):
        s = ArraySpec.new((0, 3, 5), (4, 3, 5), np.float32, ["step", "a", "b"], np.nan, checksum=True)
        (root).mkdir()
        (root / "zarr.json").write_text(json.dumps({**s.meta(), "shape": [6, 3, 5]}))
        s.append(root, 0, values[:3])
        s.append(root, 3, values[3:])
    for name in ("c.0.0.0", "c.1.0.0"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    np.testing.assert_array_equal(zarr.open_array(str(a), mode="r")[...], sliced)
