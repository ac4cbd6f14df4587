from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
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
    """A process that dies without closing: plain xarray (default arguments) sees the committed steps, no padding
    rows, every group aligned; dyn.open sees the same."""
    path = tmp_path / "crash.zarr"
    script = f"""
import os, torch, dyn
w = torch.nn.Parameter(torch.randn(4, 6))
site = dyn.Site(w, signals={{"mu": torch.ones(6)}}, noise=torch.randn(5, 6))
rec = dyn.Recorder({str(path)!r}, sites={{"h": site}}, chunk_bytes=4 * 4 * 6 * 3, log_at="current",
                  commit_interval=0).open()  # every chunk committed: a kill keeps all that landed
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
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated: no "falling back to unconsolidated metadata" warning
        raw = xr.open_datatree(path, engine="zarr")
    assert raw.attrs["status"] == "running"
    n = raw.sizes["step"]
    assert 0 < n < 21 and raw["step"].values.tolist() == list(range(n)) == raw["h"]["step"].values.tolist()
    tree = dyn.open(path)
    assert tree.sizes["step"] == n and np.isfinite(tree["h"]["noise_inner"].values).all()
    np.testing.assert_allclose(tree["loss"].values, np.arange(n))


def _record_file_operations(monkeypatch, root: Path) -> list[tuple[str, bytes]]:
    """Log every file the writer puts under ``root`` (chunk and metadata writes, dyn's commits), in the
    order they land; writes are serialised so that this order is the order on disk."""
    import zarr.storage._local as local

    import dyn.store.writer as writer

    log: list[tuple[str, bytes]] = []
    lock = threading.RLock()  # a logged write_chunk may call a logged write_file

    def logged(write):
        def put(path, value, *args, **kwargs):
            with lock:
                result = write(path, value, *args, **kwargs)
                # the file as it landed (dyn extends an uncompressed partial chunk with a hole of zeros)
                # relative to the store, also while it is created under its staging name beside ``root``
                log.append((str(Path(*Path(path).relative_to(root.parent).parts[1:])), Path(path).read_bytes()))
                return result
        return put

    import dyn.store.v3 as v3

    monkeypatch.setattr(local, "_put", logged(local._put))
    monkeypatch.setattr(writer, "atomic_write", logged(writer.atomic_write))
    # dyn's own zarr writer: chunks (dyn.store.v3) and metadata (dyn.store.writer)
    monkeypatch.setattr(v3, "write_file", logged(v3.write_file))
    monkeypatch.setattr(v3, "write_chunk", logged(v3.write_chunk))  # may call write_file: logged twice, harmless
    monkeypatch.setattr(writer, "write_file", logged(writer.write_file))
    return log


def test_readers_see_a_committed_prefix_between_any_two_file_operations(tmp_path, monkeypatch):
    """Replay a run's file operations one at a time: after every one of them, plain xarray (and dyn.open) sees
    a contiguous, aligned prefix of the final recording, with no padding rows."""
    path = tmp_path / "live.zarr"
    log = _record_file_operations(monkeypatch, path)
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(3, 5))
    site = dyn.Site(w, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    with dyn.Recorder(path, sites={"h": site}, chunk_bytes=3 * 5 * 4 * 4, log_at="current", flush_every=3,
                      commit_interval=0) as rec:  # every chunk committed: many states to replay
        for t in range(10):
            rec.log(loss=float(t), extra=float(-t))
            with torch.no_grad():
                w.mul_(1.1)
            rec.step()
    monkeypatch.undo()
    final = dyn.open(path)
    assert final.sizes["step"] == 11 and len(log) > 30
    replay = tmp_path / "replay.zarr"
    seen = []
    for name, data in log:
        target = replay / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if not (replay / "zarr.json").is_file():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            raw = xr.open_datatree(replay, engine="zarr")
        n = raw.sizes.get("step", 0)
        seen.append(n)
        if n == 0:
            with pytest.raises(dyn.StoreError, match="holds no recorded step yet"):
                dyn.open(replay)
            continue
        assert raw["step"].values.tolist() == list(range(n)) == raw["h"]["step"].values.tolist()
        for var in ("signal_inner", "noise_inner"):
            np.testing.assert_array_equal(raw["h"][var].values, final["h"][var].values[:n])
        np.testing.assert_array_equal(raw["loss"].values, final["loss"].values[:n])
        if "extra" in raw:
            np.testing.assert_array_equal(raw["extra"].values, final["extra"].values[:n])
        assert dyn.open(replay).sizes["step"] == n
    assert seen == sorted(seen) and seen[-1] == 11 and len(set(seen)) >= 4  # several commits, never backwards


def test_a_missing_chunk_is_an_error_not_fill_values(run):
    chunk = next(p for p in sorted((run / "h" / "noise_inner").glob("c.*")) if p.is_file())
    chunk.unlink()
    with pytest.raises(dyn.StoreError, match=r"h/noise_inner is missing its chunk c\.0\.0\.0 \(steps 0..5 by index\)"):
        dyn.open(run)


def test_every_chunk_is_written_even_when_it_holds_only_fill_values(tmp_path):
    w = torch.nn.Parameter(torch.zeros(3, 4))  # weight_init is all zeros, zarr's default fill value
    site = dyn.Site(w, signals={"mu": torch.ones(4)}, noise=torch.eye(4)[:2])
    with dyn.Recorder(tmp_path / "z.zarr", sites={"h": site}) as rec:
        rec.log(acc=float("nan"))  # a scalar that is only ever NaN, its fill value
        rec.step()
    tree = dyn.open(tmp_path / "z.zarr")
    assert (tree["h"]["weight_init"].values == 0).all() and np.isnan(tree["acc"].values).all()


def test_a_codec_edited_in_the_consolidated_metadata_is_refused(run):
    meta = json.loads((run / "zarr.json").read_text())
    meta["consolidated_metadata"]["metadata"]["h/noise_inner"]["codecs"].append({"name": "numcodecs.pickle"})
    (run / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(dyn.StoreError, match="uses codec 'numcodecs.pickle'"):
        dyn.open(run)


def test_schema_1_stores_are_still_read(run):
    """A store an older dyn was killed writing: unconsolidated, arrays allocated ahead with step = -1 rows."""
    root = zarr.open_group(str(run), mode="r+", use_consolidated=False)
    for group in (root, root["h"], root["g"]):
        for name, arr in group.arrays():
            if arr.metadata.dimension_names[0] == "step":
                arr.resize((10, *arr.shape[1:]))
                arr[6:] = -1 if name == "step" else np.nan
    meta = json.loads((run / "zarr.json").read_text())
    meta["consolidated_metadata"] = None
    meta["attributes"].update(dyn_schema_version=1, status="running")
    (run / "zarr.json").write_text(json.dumps(meta))
    tree = dyn.open(run)
    assert tree.sizes["step"] == 6 and tree["step"].values.tolist() == list(range(6))
    # without a checkpoint, resume restarts it from step 0 (as a schema-2 store)
    dyn.train(dyn.Config.from_dict(tree.attrs["config"]), run, resume=True)
    done = dyn.open(run)
    assert done.attrs["dyn_schema_version"] == SCHEMA_VERSION and done.attrs["status"] == "complete"
    assert done.sizes["step"] == 6


def _count_commits(monkeypatch) -> list[int]:
    """Record ``n_recorded`` at every commit of any StoreWriter (from any thread)."""
    from dyn.store import writer as writer_mod

    seen: list[int] = []
    original = writer_mod.StoreWriter._commit

    def commit(self, **changes):
        original(self, **changes)
        seen.append(self.n_recorded)

    monkeypatch.setattr(writer_mod.StoreWriter, "_commit", commit)
    return seen


def _wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _steps_shown(path) -> int:
    return int(json.loads((path / "zarr.json").read_text())["attributes"]["n_recorded"])


@pytest.mark.parametrize("interval", [0, 3600])
def test_commit_interval_bounds_commits_and_flush_shows_steps_at_once(tmp_path, monkeypatch, interval):
    """Chunks are written as they come but committed at most once per commit_interval (3600 s: none until flush
    or close); 0 commits every chunk. flush() commits at once; nothing written is lost at close."""
    commits = _count_commits(monkeypatch)
    path = tmp_path / "c.zarr"
    w = torch.nn.Parameter(torch.randn(3, 5))
    site = dyn.Site(w, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    rec = dyn.Recorder(path, sites={"h": site}, chunk_bytes=3 * 5 * 4 * 2, log_at="current",
                       commit_interval=interval).open()  # 2 steps per chunk
    for t in range(12):
        with torch.no_grad():
            w.mul_(1.01)
        rec.log(loss=float(t))
        rec.step()
    assert _wait_for(lambda: rec.stats["steps"] >= 10)  # five full chunks handed over and written
    before = list(commits)
    if interval:
        assert max(before) == 0  # written, not yet committed: readers still see the creation commit
        assert _steps_shown(path) == 0
    else:
        assert _wait_for(lambda: max(commits) >= 10) and len(set(commits)) >= 6  # one commit per chunk
    rec.flush()
    assert _wait_for(lambda: _steps_shown(path) == 13)  # flush: shown without waiting for the interval
    rec.close()
    assert dyn.open(path).sizes["step"] == 13


def test_written_steps_are_committed_within_the_interval_without_another_call(tmp_path):
    """The stated delay: a chunk written while training is idle is shown within commit_interval, with no
    further call on the recorder (the writer thread commits on its own)."""
    path = tmp_path / "idle.zarr"
    w = torch.nn.Parameter(torch.randn(3, 5))
    site = dyn.Site(w, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    rec = dyn.Recorder(path, sites={"h": site}, chunk_bytes=3 * 5 * 4 * 2, log_at="current",
                       commit_interval=0.2).open()
    for t in range(6):
        rec.log(loss=float(t))
        rec.step()
    # chunks of steps 0-1 and 2-3 are handed to the writer (4-5 wait in the buffer); the training loop now idles
    assert _wait_for(lambda: _steps_shown(path) == 4), _steps_shown(path)
    tree = dyn.open(path)
    assert tree["step"].values.tolist() == [0, 1, 2, 3]
    rec.close()


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1", True])
def test_commit_interval_must_be_a_finite_non_negative_number(tmp_path, bad):
    site = dyn.Site(torch.nn.Parameter(torch.randn(3, 5)), signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    with pytest.raises(dyn.ConfigError, match="commit_interval must be a finite number of seconds >= 0"):
        dyn.Recorder(tmp_path / "x.zarr", sites={"h": site}, commit_interval=bad)
    assert not (tmp_path / "x.zarr").exists()
