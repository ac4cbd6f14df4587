"""Issue 22.6: a store read from an fsspec URL (W&B artifacts, object stores, a zipped store), read-only, by the
same rules as a local folder — the commit record, the codec check, every chunk present, checksums verified — and
writing to a URL refused in one line. No network: fsspec's ``memory://`` and ``zip://`` of a zipped store."""

from __future__ import annotations

import json
import sys
import uuid
import zipfile

import pytest
import torch
from numpy.testing import assert_allclose

import dyn
from dyn.cli import main
from dyn.errors import StoreError

fsspec = pytest.importorskip("fsspec")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    path = tmp_path_factory.mktemp("remote") / "run.zarr"
    dyn.train(dyn.Config(d=30, n=6, m=3, steps=5), path)
    return path


@pytest.fixture
def memory(local):
    """A copy of the store in fsspec's in-memory filesystem: its URL, and the filesystem to doctor it with."""
    fs = fsspec.filesystem("memory")
    root = f"/dyn-{uuid.uuid4().hex}/run.zarr"
    fs.put(str(local), root, recursive=True)
    yield f"memory:/{root}", fs, root
    fs.rm(root.rsplit("/", 1)[0], recursive=True)


def _same_run(url: str, local) -> None:
    """The tree, the coefficients and the summary read from ``url`` equal the local store's."""
    here, there = dyn.open(local), dyn.open(url)
    assert there.attrs == here.attrs and list(there.children) == list(here.children)
    for name in ("noise_inner", "signal_inner"):
        assert_allclose(there["h"][name].values, here["h"][name].values)
    run = dyn.Run(url)
    assert run.path == url and run.name == "run" and run.attrs["status"] == "complete"
    assert dyn.Run(there).path == url  # a tree opened from a URL remembers it (xarray kept the inner path)
    assert_allclose(run.coefficients("h")["rho"].values, dyn.Run(local).coefficients("h")["rho"].values)
    numeric = ["gamma_max", "rho_max", "rank", "steps"]
    assert_allclose(dyn.summary(url)[numeric].to_numpy(float), dyn.summary(local)[numeric].to_numpy(float))


def test_a_store_in_memory_reads_like_the_local_one(memory, local):
    _same_run(memory[0], local)


def test_a_zipped_store_reads_through_zip_urls(local, tmp_path):
    archive = tmp_path / "runs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(local.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(local.parent))
    _same_run(f"zip://run.zarr::{archive}", local)


def test_file_urls_are_local_paths(local):
    run = dyn.Run(local.as_uri())
    assert run.path == local and run.name == "run" and len(run.steps) == 6


def test_a_flipped_bit_in_a_remote_chunk_is_named(memory):
    url, fs, root = memory
    chunk = f"{root}/h/noise_inner/c.0.0.0"
    data = bytearray(fs.cat_file(chunk)); data[9] ^= 0x10
    fs.pipe_file(chunk, bytes(data))
    for run in (dyn.Run(url), dyn.Run(dyn.open(url))):  # lazily opened: the chunk is read (its CRC-32C checked)
        with pytest.raises(StoreError, match=r"h/noise_inner chunk c\.0\.0\.0 has a checksum \(CRC-32C\) that does "
                                             "not match"):
            run.coefficients("h")
    assert dyn.store.reader.damaged_chunk(url).startswith("h/noise_inner chunk c.0.0.0")


def test_a_missing_remote_chunk_is_refused_at_open(memory):
    url, fs, root = memory
    fs.rm(f"{root}/h/noise_inner/c.0.0.0")
    with pytest.raises(StoreError, match=r"h/noise_inner is missing its chunk c\.0\.0\.0 \(steps 0\.\."):
        dyn.open(url)


def test_the_commit_record_decides_what_a_remote_reader_sees(memory, local):
    """Arrays' own zarr.json files lag behind or run ahead of the commit; readers look at the root's only."""
    url, fs, root = memory
    meta = json.loads(fs.cat_file(f"{root}/h/noise_inner/zarr.json"))
    meta["shape"][0] += 7  # an append not yet committed
    fs.pipe_file(f"{root}/h/noise_inner/zarr.json", json.dumps(meta).encode())
    assert dyn.open(url)["h"]["noise_inner"].shape == dyn.open(local)["h"]["noise_inner"].shape
    top = json.loads(fs.cat_file(f"{root}/zarr.json"))
    del top["consolidated_metadata"]
    fs.pipe_file(f"{root}/zarr.json", json.dumps(top).encode())
    with pytest.raises(StoreError, match="holds no commit record"):
        dyn.open(url)


def test_an_unsafe_codec_in_any_remote_metadata_is_refused(memory):
    url, fs, root = memory
    meta = json.loads(fs.cat_file(f"{root}/h/noise_inner/zarr.json"))
    meta["codecs"] = [{"name": "pickle"}]
    fs.pipe_file(f"{root}/h/noise_inner/zarr.json", json.dumps(meta).encode())
    with pytest.raises(StoreError, match="array h/noise_inner uses codec 'pickle', which dyn does not read"):
        dyn.open(url)


def test_urls_that_cannot_be_read_are_one_line(monkeypatch):
    with pytest.raises(StoreError, match=r"^memory://dyn-nothing/here.zarr does not exist"):
        dyn.open("memory://dyn-nothing/here.zarr")
    with pytest.raises(StoreError, match="not a URL fsspec can open"):
        dyn.Run("nosuchprotocol://x/run.zarr")
    with pytest.raises(StoreError, match=r"cannot open it: File is not a zip file"):
        dyn.open(f"zip://run.zarr::{__file__}")
    with pytest.raises(StoreError, match=r"cannot open it: .*No such file"):
        dyn.open("zip://run.zarr::/nonexistent/runs.zip")
    monkeypatch.setitem(sys.modules, "fsspec", None)  # fsspec not installed
    with pytest.raises(StoreError, match=r"needs fsspec >= 2025\.3 \(pip install 'dyn\[remote\]'\)"):
        dyn.open("s3://bucket/run.zarr")


@pytest.mark.skipif("s3fs" in sys.modules or __import__("importlib").util.find_spec("s3fs") is not None,
                    reason="s3fs is installed: the missing-package message cannot be shown")
def test_a_protocol_whose_package_is_missing_is_named():
    with pytest.raises(StoreError, match=r"^s3://bucket/run.zarr: .*s3fs"):
        dyn.open("s3://bucket/run.zarr")


def test_recording_to_a_url_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    """Before: Path("memory://x/run.zarr") silently became a local folder "memory:/x/run.zarr"."""
    monkeypatch.chdir(tmp_path)
    w = torch.nn.Parameter(torch.randn(3, 5))
    site = dyn.Site(w, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    with pytest.raises(StoreError, match=r"^memory://x/run.zarr: dyn records to local stores only; .*artifact\.add_dir"):
        dyn.Recorder("memory://x/run.zarr", sites={"h": site})
    with pytest.raises(StoreError, match="dyn records to local stores only"):
        dyn.train(dyn.Config(d=30, n=6, m=3, steps=2), "s3://bucket/run.zarr")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["analyze", "s3://b/run.zarr", "--out", "rep"], ["export", "memory://a/run.zarr",
                                  "--out", "x.csv"], ["verify", "zip://run.zarr::runs.zip"], ["watch", "gs://b/r.zarr"]])
def test_commands_refuse_urls_in_one_line(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dyn's commands take local paths; in Python, dyn.open(url)" in err, err
    assert list(tmp_path.iterdir()) == []


def test_exports_and_reports_read_a_store_from_a_url(memory, tmp_path):
    """Before: export wrote the source as run.path.resolve(), an AttributeError for a URL."""
    import xarray as xr

    from dyn.viz.export import export
    from dyn.viz.report import write_report

    url = memory[0]
    nc = export(url, tmp_path / "r.nc")
    with xr.open_dataset(nc) as ds:
        assert ds.attrs["source_store"] == url
    out = write_report([url], tmp_path / "rep", echo=lambda line: None, progress=False)
    assert f"Store: `{url}`" in (out / "report.md").read_text()


def test_verify_names_what_to_do_with_a_url(memory, local):
    """verify weighs the files on disk; before, a URL became a local path "memory:/..." that "does not exist"."""
    with pytest.raises(StoreError, match=r"verify checks a store's files on disk; download it first"):
        dyn.verify(memory[0])
    assert all(check.ok for check in dyn.verify(local.as_uri()))


def test_store_writer_refuses_a_url_and_creates_nothing(tmp_path, monkeypatch):
    """StoreWriter itself (not only the recorder's pre-flight): a URL is one line, and no local "memory:" folder."""
    from dyn.store import StoreWriter

    monkeypatch.chdir(tmp_path)
    for url in ("memory://x/run.zarr", "s3://bucket/run.zarr"):
        with pytest.raises(dyn.StoreError, match="dyn writes local stores only"):
            StoreWriter(url)
    assert list(tmp_path.iterdir()) == []
