"""Every numeric chunk ends with zarr v3's standard crc32c codec (issue 24, item 13): flipped bits are reported in
one line naming the array and the chunk, and other zarr implementations read (and check) the chunks dyn writes."""
from __future__ import annotations

import json
import warnings

import google_crc32c
import numpy as np
import pytest
import xarray as xr
import zarr

import dyn
from dyn.analysis.verify import verify
from dyn.cli import main
from dyn.store import v3
from dyn.store.reader import damaged_chunk


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "run.zarr"
    dyn.train(dyn.Config(d=30, n=6, m=3, steps=10), path, chunk_bytes=3 * 7 * 4 * 4)  # several chunks, a partial one
    return path


def _flip(path, bit=3):
    data = bytearray(path.read_bytes())
    data[bit // 8 + 4] ^= 1 << (bit % 8)  # a mantissa bit of the second float32
    path.write_bytes(bytes(data))


def test_numeric_arrays_end_with_crc32c_and_zarr_python_reads_them(run):
    meta = json.loads((run / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    numeric = {k: v for k, v in meta.items() if v["node_type"] == "array" and v["data_type"] != "string"}
    assert numeric and all(v["codecs"][-1] == {"name": "crc32c"} for v in numeric.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = xr.open_datatree(run, engine="zarr")  # zarr-python decodes (and checks) every chunk
    np.testing.assert_array_equal(plain["h"]["noise_inner"].values, dyn.open(run)["h"]["noise_inner"].values)
    assert plain["h"]["noise_inner"].shape[0] == 11
    arr = zarr.open_array(str(run / "h" / "noise_inner"), mode="r")
    assert type(arr.metadata.codecs[-1]).__name__ == "Crc32cCodec"


def test_a_flipped_bit_fails_zarr_pythons_check_too(run):
    """zarr-python computes the same CRC-32C: a bit flipped after writing is refused by it, not only by dyn."""
    _flip(run / "h" / "noise_inner" / "c.0.0.0")
    with pytest.raises(ValueError, match="checksum"):
        zarr.open_array(str(run / "h" / "noise_inner"), mode="r")[...]


@pytest.mark.parametrize("chunk", ["h/noise_inner/c.0.0.0", "h/noise_inner/c.2.0.0", "loss/c.0", "h/weight_final/c.0.0"])
def test_verify_and_reads_name_the_damaged_chunk(run, capsys, chunk, tmp_path):
    assert all(c.ok for c in verify(run)) and damaged_chunk(run) is None
    _flip(run / chunk)
    array, key = chunk.rsplit("/", 1)
    failed = [c for c in verify(run) if not c.ok]
    assert len(failed) == 1 and f"{array} chunk {key} has a checksum (CRC-32C) that does not match" in failed[0].detail
    assert main(["verify", str(run)]) == 1
    assert f"{array} chunk {key}" in capsys.readouterr().out
    if not array.startswith("h/noise_inner"):
        return  # the long table below reads the inner products only
    assert main(["export", str(run), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert f"{array} chunk {key}" in err and len(err.strip().splitlines()) == 1


def test_a_damaged_checkpoint_chunk_is_named(tmp_path):
    from dyn.store.writer import StoreWriter

    path = tmp_path / "A.zarr"
    w = StoreWriter(path)
    w.create({"sites": []}, chunk_steps=4)
    w.write_checkpoint(4, {"w": (("a",), np.arange(3.0))})
    w.release()
    _flip(path / "_checkpoint" / "slot_0" / "w" / "c.0")
    assert damaged_chunk(path).startswith("_checkpoint/slot_0/w chunk c.0 has a checksum")
    with pytest.raises(dyn.StoreError, match="_checkpoint/slot_0/w chunk c.0"):
        StoreWriter(path, append=True).checkpoint()


@pytest.mark.parametrize("n", [0, 1, 3, 64, 1000, 4093, 1 << 20])
def test_crc_of_a_hole_equals_the_crc_of_the_zeros(n):
    head = np.random.default_rng(n).integers(0, 256, 37, dtype=np.uint8).tobytes()
    assert v3.crc32c_zeros(google_crc32c.value(head), n) == google_crc32c.value(head + bytes(n))


def test_checksum_can_be_left_out(tmp_path):
    from dyn.store.writer import StoreWriter

    w = StoreWriter(tmp_path / "A.zarr", checksum=False)
    w.create({"sites": []}, chunk_steps=4)
    w.close("complete")
    meta = json.loads((tmp_path / "A.zarr" / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    assert meta["step"]["codecs"] == [{"name": "bytes", "configuration": {"endian": "little"}}]
