from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr

import dyn
from dyn.store import SCHEMA_VERSION


@pytest.fixture
def run(tiny, tmp_path):
    path = tmp_path / "run.zarr"
    dyn.train(tiny(modality="multi", steps=5), path)
    return path


def test_round_trip_schema(run, tiny):
    tree = dyn.open(run)
    assert tree.attrs["dyn_schema_version"] == SCHEMA_VERSION
    assert tree.attrs["status"] == "complete" and tree.attrs["n_recorded"] == 6
    assert set(tree.attrs["libraries"]) >= {"dyn", "torch", "numpy", "zarr", "xarray", "python"}
    assert tree.attrs["config"] == tiny(modality="multi", steps=5).to_dict()
    assert tree.attrs["sites"] == ["h", "g"]
    for site in ("h", "g"):
        ds = tree[site].to_dataset()
        assert ds["signal_inner"].dims == ("step", "neuron", "signal")
        assert ds["noise_inner"].dims == ("step", "neuron", "sample")
        assert ds["noise_inner"].dtype == np.float32
        for dim in ds.dims:
            assert dim in ds.coords, dim  # every dimension has a coordinate
        # the stored Gram matrix is the Gram matrix of the stored probes
        basis = np.concatenate([ds["signal_vectors"].values, ds["noise_vectors"].values]).astype(np.float64)
        np.testing.assert_allclose(ds["gram"].values, basis @ basis.T, rtol=1e-12)
    # chunks only along step
    arr = zarr.open_array(str(run / "h" / "noise_inner"), mode="r")
    assert arr.chunks[1:] == arr.shape[1:]
    # consolidated at close: plain xarray opens it without warnings about consolidation
    assert json.loads((run / "zarr.json").read_text())["consolidated_metadata"] is not None


def test_plain_xarray_reads_without_dyn(run):
    ds = xr.open_zarr(run, group="h")
    assert ds["noise_inner"].sizes == {"step": 6, "neuron": 6, "sample": 10}
    tree = xr.open_datatree(run, engine="zarr")
    assert float(tree["loss"][0]) > 0


def test_open_rejects_non_dyn_paths(tmp_path):
    with pytest.raises(dyn.StoreError, match="does not exist"):
        dyn.open(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(dyn.StoreError, match="is not a dyn store \\(no zarr.json"):
        dyn.open(tmp_path / "plain")
    other = tmp_path / "other.zarr"
    zarr.open_group(str(other), mode="w").create_array("x", shape=(3,), dtype="f4")
    with pytest.raises(dyn.StoreError, match="no dyn_schema_version attribute"):
        dyn.open(other)
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(dyn.StoreError, match="unreadable zarr.json"):
        dyn.open(tmp_path / "bad.zarr")


def test_open_rejects_newer_schema(run):
    meta = json.loads((run / "zarr.json").read_text())
    meta["attributes"]["dyn_schema_version"] = SCHEMA_VERSION + 1
    meta["consolidated_metadata"] = None
    (run / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(dyn.StoreError, match=f"schema {SCHEMA_VERSION + 1}, newer than this dyn supports"):
        dyn.open(run)


def test_open_reports_missing_group(run):
    shutil.rmtree(run / "g")
    meta = json.loads((run / "zarr.json").read_text())
    meta["consolidated_metadata"] = None
    (run / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(dyn.StoreError, match="missing site group 'g'"):
        dyn.open(run)


def test_crashed_writer_leaves_a_readable_store_of_whole_steps(tmp_path):
    """A process that dies without closing: plain xarray can read the store, dyn.open keeps the written steps."""
    path = tmp_path / "crash.zarr"
    script = f"""
import os, torch, dyn
w = torch.nn.Parameter(torch.randn(4, 6))
site = dyn.Site(w, signals={{"mu": torch.ones(6)}}, noise=torch.randn(5, 6))
rec = dyn.Recorder({str(path)!r}, sites={{"h": site}}, chunk_bytes=4 * 4 * 6 * 3, log_at="current").open()
for t in range(20):
    with torch.no_grad():
        w.mul_(1.01)
    rec.log(loss=float(t))
    rec.step()
rec._queue.put(None); rec._thread.join()   # let queued chunks land, then die without closing
os._exit(0)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    raw = xr.open_datatree(path, engine="zarr", consolidated=False)  # plain xarray, no dyn (still live: not consolidated)
    assert raw.attrs["status"] == "running"
    tree = dyn.open(path)
    steps = tree["step"].values
    assert 0 < len(steps) < 21 and steps.tolist() == list(range(len(steps)))
    assert (raw["step"].values[len(steps):] == -1).all()
    assert np.isfinite(tree["h"]["noise_inner"].values).all()
    np.testing.assert_allclose(tree["loss"].values, np.arange(len(steps)))
