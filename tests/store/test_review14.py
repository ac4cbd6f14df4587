"""Regression tests for defects of the native zarr v3 writer found by review (each failed before its fix)."""
from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import xarray as xr

import dyn.store.v3 as v3
from dyn.errors import StoreError
from dyn.store.writer import StoreWriter

COORDS = {"neuron": np.arange(2), "sample": np.arange(3), "signal": np.array(["mu"])}
VARS = {"noise_inner": ("neuron", "sample"), "signal_inner": ("neuron", "signal")}


def _inner(a, b, sample=3):
    return {"h": {"noise_inner": np.ones((b - a, 2, sample), np.float32),
                  "signal_inner": np.ones((b - a, 2, 1), np.float32)}}


def _writer(path, **kw):
    w = StoreWriter(path, **kw)
    w.create({"sites": ["h"]}, chunk_steps=4)
    w.add_site("h", coords=COORDS, step_vars=VARS, static={})
    return w


def _committed_lengths(path):
    cm = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    return {k: v["shape"][0] for k, v in cm.items()
            if v.get("node_type") == "array" and (v.get("dimension_names") or [""])[0] == "step"}


def test_a_failed_append_then_close_commits_the_last_good_state(tmp_path, monkeypatch):
    path = tmp_path / "run.zarr"
    w = _writer(path)
    w.append(np.arange(4), _inner(0, 4), {"loss": np.zeros(4)})
    real = v3.write_chunk

    def failing(p, *a, **k):
        if "signal_inner" in str(p):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(p, *a, **k)

    monkeypatch.setattr(v3, "write_chunk", failing)
    with pytest.raises(StoreError):
        w.append(np.arange(4, 8), _inner(4, 8), {"loss": np.zeros(4), "new": np.ones(4)})
    monkeypatch.setattr(v3, "write_chunk", real)
    w.append(np.arange(4, 6), _inner(4, 6), {"loss": np.arange(2.0)})  # continues from the good state
    w.close("interrupted", error="write failed")
    assert set(_committed_lengths(path).values()) == {6}
    tree = xr.open_datatree(path, engine="zarr")
    assert tree["h"]["noise_inner"].shape == (6, 2, 3)
    np.testing.assert_array_equal(tree["loss"].values, [0, 0, 0, 0, 0, 1])
    assert "new" not in tree


@pytest.mark.parametrize("bad", [
    dict(scalars={"loss": np.zeros(2)}),  # fewer values than steps
    dict(inner=_inner(0, 5, sample=2)),  # wrong row shape
])
def test_append_refuses_values_of_the_wrong_shape_and_writes_nothing(tmp_path, bad):
    path = tmp_path / "run.zarr"
    w = _writer(path)
    w.append(np.arange(3), _inner(0, 3), {"loss": np.arange(3.0)})
    before = (path / "zarr.json").read_bytes()
    with pytest.raises(StoreError, match="shape"):
        w.append(np.arange(3, 8), bad.get("inner", _inner(3, 8)), bad.get("scalars", {"loss": np.zeros(5)}))
    assert (path / "zarr.json").read_bytes() == before
    w.close("complete")
    assert xr.open_datatree(path, engine="zarr")["h"]["noise_inner"].shape == (3, 2, 3)


@pytest.mark.parametrize("name", ["h", "step", "_checkpoint"])
def test_a_scalar_named_like_the_layout_is_refused(tmp_path, name):
    path = tmp_path / "run.zarr"
    w = _writer(path)
    before = (path / "zarr.json").read_bytes()
    with pytest.raises(StoreError, match="cannot log a scalar"):
        w.append(np.arange(2), _inner(0, 2), {name: np.zeros(2)})
    assert (path / "zarr.json").read_bytes() == before
    assert name != "_checkpoint" or not (path / name).exists()
    w.append(np.arange(2), _inner(0, 2), {})
    w.close("complete")
    assert xr.open_datatree(path, engine="zarr")["h"]["noise_inner"].shape == (2, 2, 3)


@pytest.mark.parametrize("first, second", [(np.array(3.0), np.array([1.0, 2.0])),
                                           (np.array([1.0, 2.0]), np.array(3.0)),
                                           (np.array([1.0, 2.0]), np.ones((2, 2)))])
def test_overwrite_with_another_rank_at_the_same_path(tmp_path, first, second):
    path = tmp_path / "run.zarr"
    for i, val in enumerate((first, second)):
        w = StoreWriter(path, overwrite=bool(i))
        w.create({"sites": []}, chunk_steps=4)
        w.write_group("g", {"x": (("a", "b")[:val.ndim], val)})
        w.append(np.arange(2), {}, {"loss": np.zeros(2)})
        w.close("complete")
        np.testing.assert_array_equal(xr.open_datatree(path, engine="zarr")["g"]["x"].values, val)


def _old_store(path):
    w = StoreWriter(path)
    w.create({"sites": ["h", "g"]}, chunk_steps=4)
    w.add_site("h", coords=COORDS, step_vars=VARS, static={})
    w.add_site("g", coords=COORDS, step_vars=VARS, static={})
    w.append(np.arange(20), {**_inner(0, 20), "g": _inner(0, 20)["h"]}, {"loss": np.zeros(20), "old": np.zeros(20)})
    w.close("complete")


def test_overwrite_close_leaves_files_added_during_the_run(tmp_path):
    path = tmp_path / "run.zarr"
    _old_store(path)
    w = StoreWriter(path, overwrite=True)
    w.create({"sites": ["h"]}, chunk_steps=4)
    w.add_site("h", coords=COORDS, step_vars=VARS, static={})
    (path / "notes.txt").write_text("user data\n")
    (path / "g" / "my_analysis.csv").write_text("user data\n")  # in a group the new store does not use
    (path / "h" / "noise_inner" / "c" / "9").mkdir(parents=True)
    (path / "h" / "noise_inner" / "c" / "9" / "0").write_text("zarr-like but not the old store's\n")
    w.append(np.arange(2), _inner(0, 2), {"loss": np.zeros(2)})
    w.close("complete")
    assert (path / "notes.txt").is_file() and (path / "g" / "my_analysis.csv").is_file()
    assert (path / "h" / "noise_inner" / "c" / "9" / "0").is_file()
    assert not (path / "g" / "zarr.json").exists() and not (path / "old").exists()  # the old store's files go
    assert (path / "h" / "noise_inner" / "c.0.0.0").is_file()  # the new store's one chunk ("." chunk keys)
    assert not (path / "h" / "noise_inner" / "c.1.0.0").exists()  # the old store's chunk beyond it goes


def test_an_overwrite_killed_after_a_checkpoint_sweeps_the_old_files_when_resumed(tmp_path):
    path = tmp_path / "run.zarr"
    _old_store(path)
    new = StoreWriter(path, overwrite=True)
    new.create({"sites": ["h"]}, chunk_steps=4)
    new.add_site("h", coords=COORDS, step_vars=VARS, static={})
    new.append(np.arange(6), _inner(0, 6), {"loss": np.zeros(6)})
    new.write_checkpoint(6, {"w": (("a",), np.arange(3.0))})
    new.release()  # killed here: no close
    res = StoreWriter(path, append=True)
    res.reopen(6)
    res.append(np.arange(6, 10), _inner(6, 10), {"loss": np.zeros(4)})
    res.close("complete")
    assert sorted(p.name for p in path.iterdir()) == ["h", "loss", "step", "zarr.json"]
    assert sorted(xr.open_datatree(path, engine="zarr", consolidated=False).children) == ["h"]


def test_abort_of_an_overwritten_store_keeps_files_added_since(tmp_path):
    path = tmp_path / "run.zarr"
    _old_store(path)
    w = StoreWriter(path, overwrite=True)
    w.prepare()
    (path / "g" / "notes.txt").write_text("user data\n")
    w.abort()
    assert [str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()] == ["g/notes.txt"]
