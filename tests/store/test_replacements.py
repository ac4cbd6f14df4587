"""Replacements that are atomic and debris that a rerun removes (issue 24, items 1, 5, 7).

The states a kill leaves are built from real outputs (a kill is instantaneous: what matters is which files exist);
benchmarks/crash_campaign.py kills the real commands at random moments."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr

from dyn.errors import StoreError
from dyn.store import outputs
from dyn.store.writer import StoreWriter
from dyn.viz.export import export

COORDS = {"neuron": np.arange(2), "sample": np.arange(3), "signal": np.array(["mu"])}
VARS = {"noise_inner": ("neuron", "sample"), "signal_inner": ("neuron", "signal")}


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "run.zarr"
    w = StoreWriter(path)
    w.create({"sites": ["h"]}, chunk_steps=4)
    gram = np.eye(4)
    w.add_site("h", coords={**COORDS, "basis": np.arange(4), "basis_dual": np.arange(4)}, step_vars=VARS,
               static={"gram": (("basis", "basis_dual"), gram)})
    rng = np.random.default_rng(0)
    w.append(np.arange(6), {"h": {"noise_inner": rng.normal(size=(6, 2, 3)).astype(np.float32),
                                  "signal_inner": rng.normal(size=(6, 2, 1)).astype(np.float32)}}, {"loss": np.zeros(6)})
    w.close("complete")
    return path


def _beside(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_grid_zarr_export_overwrite_refuses_a_users_group_inside(store, tmp_path):
    out = tmp_path / "x.zarr"
    export(store, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"n": ("k", np.arange(3.0))}).to_zarr(out, mode="a", group="h/mine")
    with pytest.raises(StoreError, match="which dyn did not write"):
        export(store, out, overwrite=True)
    assert (out / "h" / "mine" / "n" / "zarr.json").is_file()


def test_an_export_replacement_killed_between_its_renames_is_finished_by_the_rerun(store, tmp_path):
    out = tmp_path / "x.zarr"
    export(store, out)
    first = xr.open_datatree(out, engine="zarr")["h"]["gamma"].values
    # the kill: the old export moved aside, the complete new one not yet renamed in
    new = outputs.staging_path(out)
    shutil.copytree(out, new)
    old = outputs.staging_path(out, "old")
    out.rename(old)
    assert outputs.recover_output(out) == [f"finished replacing {out.name}", f"removed {old.name}"]
    np.testing.assert_array_equal(xr.open_datatree(out, engine="zarr")["h"]["gamma"].values, first)
    assert _beside(out) == []
    # killed after the old one was moved aside but before the new one was complete: the old one comes back
    out.rename(old)
    (tmp := outputs.staging_path(out)).mkdir()
    (tmp / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    export(store, out, overwrite=True)  # the rerun: restores, removes the debris, then replaces
    assert _beside(out) == [] and xr.open_datatree(out, engine="zarr")["h"]["gamma"].shape == first.shape


@pytest.mark.parametrize("name", ["x.csv", "x.parquet", "x.nc"])
def test_killed_exports_leave_no_debris_after_a_rerun(store, tmp_path, name):
    out = tmp_path / name
    export(store, out)
    partial = outputs.staging_path(out)  # a killed export's staging folder, and a sidecar's temporary file
    partial.mkdir()
    (partial / name).write_bytes(b"x" * 1000)
    temp = tmp_path / f".{name}{outputs.MARKER}.{'0' * 32}.partial"
    temp.write_text("{")
    export(store, out, overwrite=True)
    assert _beside(out) == [f".{name}{outputs.MARKER}"]


def test_a_staging_folder_a_live_process_holds_is_not_debris(tmp_path):
    out = tmp_path / "x.csv"
    partial = outputs.staging_path(out)
    partial.mkdir()
    fd = outputs.hold(partial)
    try:
        assert outputs.recover_output(out) == [] and partial.is_dir()
    finally:
        import os

        os.close(fd)
    assert outputs.recover_output(out) == [f"removed {partial.name}"] and not partial.exists()


def test_an_export_killed_between_its_sidecar_and_its_rename_can_still_be_overwritten(store, tmp_path, monkeypatch):
    out = tmp_path / "x.csv"
    export(store, out)
    real = outputs.os.replace

    def killed(src, dst):
        if str(dst) == str(out):
            raise KeyboardInterrupt  # the sidecar names the new file, the old one is still in place
        return real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        export(store, out, overwrite=True, step_block=2)
    monkeypatch.setattr(outputs.os, "replace", real)
    export(store, out, overwrite=True)  # was: "x.csv (changed since dyn wrote it)"
    assert _beside(out) == [f".x.csv{outputs.MARKER}"]


def test_a_report_replacement_killed_between_its_renames_is_finished(tmp_path):
    out = tmp_path / "report"
    with outputs.staged_folder(out) as tmp:
        (tmp / "a.txt").write_text("old")
    with outputs.staged_folder(out, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("new")
    new = outputs.staging_path(out)
    shutil.copytree(out, new)
    (new / "a.txt").write_text("newer")  # as the killed replacement had it
    mark = json.loads((new / outputs.MARKER).read_text())
    mark["files"]["a.txt"] = outputs._sha256(new / "a.txt")
    (new / outputs.MARKER).write_text(json.dumps(mark))
    out.rename(outputs.staging_path(out, "old"))
    with pytest.raises(StoreError, match="already exists"):  # finished first, then refused as existing
        outputs.claim_output(out, kind="report")
    assert (out / "a.txt").read_text() == "newer" and _beside(out) == []


def test_a_new_store_exists_only_with_its_first_commit(tmp_path):
    """Item 8: a kill between creating the folder and the first commit left an empty folder that plain xarray
    could not open and --resume refused; the store is now built under a staging name and renamed in."""
    path = tmp_path / "A.zarr"
    w = StoreWriter(path)
    w.prepare()
    assert not path.exists() and len(_beside(path)) == 1  # killed here: nothing at the path
    w.release()
    again = StoreWriter(path)  # the rerun: no "already exists", and the killed one's staging folder is gone
    again.create({"sites": []}, chunk_steps=4)
    assert path.is_dir() and _beside(path) == []
    assert xr.open_datatree(path, engine="zarr").attrs["status"] == "running"
    again.close("complete")


def test_a_store_created_meanwhile_by_someone_else_is_not_replaced(tmp_path):
    path = tmp_path / "A.zarr"
    w = StoreWriter(path)
    w.prepare()
    path.mkdir()
    (path / "theirs.txt").write_text("x")
    with pytest.raises(StoreError, match="created by someone else"):
        w.create({"sites": []}, chunk_steps=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.zarr"] and (path / "theirs.txt").read_text() == "x"


def test_netcdf_export_on_a_full_disk_exits_3_and_leaves_nothing(store, tmp_path, monkeypatch, capsys):
    """Item 9: netCDF4 reports ENOSPC as RuntimeError('NetCDF: HDF error'): a traceback, exit 1."""
    from dyn.cli import main

    def full(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF" + bytes(100))  # what got written before the disk filled up
        raise RuntimeError("NetCDF: HDF error")

    from pathlib import Path

    monkeypatch.setattr(xr.DataTree, "to_netcdf", full)
    out = tmp_path / "x.nc"
    assert main(["export", str(store), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "cannot write" in err and "NetCDF: HDF error" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and _beside(out) == []


def test_a_killed_sweeps_staged_run_store_does_not_block_its_overwrite(tmp_path):
    sweep = tmp_path / "s"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    staged = outputs.staging_path(sweep / "runs" / "a.zarr")
    w = StoreWriter(staged)
    w.create({"sites": []}, chunk_steps=4)
    w.release()  # killed while creating one of its run stores
    assert outputs._foreign_in_sweep(sweep) == []
    assert outputs.claim_output(sweep, kind="sweep", overwrite=True) == sweep
