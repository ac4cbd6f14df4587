"""TensorBoard export: event files written natively by dyn, read back with TensorBoard's own reader."""

from __future__ import annotations

import os

import numpy as np
import pytest

import dyn
from dyn.analysis.run import Run
from dyn.cli import main
from dyn.errors import StoreError
from dyn.viz import tensorboard as tb

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from tensorboard.compat.tensorflow_stub import errors as tb_errors, pywrap_tensorflow  # noqa: E402


def _read(folder) -> "event_accumulator.EventAccumulator":
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tb") / "multi.zarr"
    dyn.train(dyn.load_preset("huang2024-tiny", modality="multi", steps=30), path)
    return path


def test_tensorboard_reads_scalars_and_coefficients(run_path, tmp_path):
    out = tb.export_tensorboard(run_path, tmp_path / "tb")
    assert out.parent == tmp_path / "tb" and out.name.startswith("events.out.tfevents.") and out.name.endswith(".dyn")
    run = Run(run_path)
    steps = run.steps
    expected = {name: run.scalar(name) for name in run.tree.ds.data_vars if run.tree[name].dims == ("step",)}
    assert "loss" in expected
    for site in run.sites:
        c = run.coefficients(site)
        expected[f"gamma/max_abs/{site}"] = np.abs(c["gamma"].values).max(axis=(1, 2))
        per_sample = c["rho"].transpose("step", "neuron", "sample").values.max(axis=1)
        expected[f"rho/max/{site}"] = per_sample.max(axis=1)
        expected[f"rho/q90/{site}"] = np.quantile(per_sample, 0.9, axis=1)
    acc = _read(out.parent)  # the folder, as tensorboard --logdir reads it (dyn's sidecar mark beside the file)
    assert sorted(acc.Tags()["scalars"]) == sorted(expected)
    assert any(t.startswith("rho/q90/") for t in expected) and len(run.sites) >= 1
    for tag, values in expected.items():
        events = acc.Scalars(tag)
        keep = ~np.isnan(values)
        np.testing.assert_array_equal([e.step for e in events], steps[keep])
        np.testing.assert_allclose([e.value for e in events], values[keep].astype(np.float32), rtol=1e-6, atol=0)
    assert np.ptp(expected[f"rho/max/{run.sites[0]}"]) > 0  # the curves move: a wrong step order would show


def test_missing_values_are_left_out_and_floats_are_float32(tmp_path):
    steps = np.array([0, 5, 10])
    curves = {"a": np.array([1.0, np.nan, 1 / 3]), "b/c": np.array([np.nan, 2.5, -1e-3])}
    tb.write_records(tmp_path / "events.out.tfevents.1.dyn", tb._events(steps, curves, 123.0))
    acc = _read(tmp_path)
    assert [(e.step, e.wall_time) for e in acc.Scalars("a")] == [(0, 123.0), (10, 123.0)]
    np.testing.assert_allclose([e.value for e in acc.Scalars("a")], np.float32([1.0, 1 / 3]), rtol=1e-7)
    assert [e.step for e in acc.Scalars("b/c")] == [5, 10]
    np.testing.assert_allclose([e.value for e in acc.Scalars("b/c")], np.float32([2.5, -1e-3]), rtol=1e-7)


def test_crc32c_known_answers():
    assert tb.crc32c(b"") == 0
    assert tb.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert tb.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert tb.crc32c(b"\xff" * 32) == 0x62A8AB43  # ... and of 0xff
    assert tb.crc32c(b"6789", tb.crc32c(b"12345")) == 0xE3069283  # continued
    assert tb.crc32c(b"123456788") != 0xE3069283
    google = pytest.importorskip("google_crc32c")
    data = np.random.default_rng(0).bytes(5000)
    assert tb.crc32c(data) == google.value(data)


@pytest.mark.parametrize("where", ["length", "data", "data crc"])
def test_a_corrupted_byte_is_detected(run_path, tmp_path, where):
    out = tb.export_tensorboard(run_path, tmp_path / "tb")
    blob = bytearray(out.read_bytes())
    assert len(list(tb.read_records(out))) == Run(run_path).steps.size + 1  # file_version, then one per step
    length = int.from_bytes(blob[:8], "little")
    second = 12 + length + 4  # the second record: the first step's scalars
    second_length = int.from_bytes(blob[second:second + 8], "little")
    offset = {"length": second, "data": second + 12 + 7, "data crc": second + 12 + second_length}[where]
    blob[offset] ^= 0x10
    bad = tmp_path / "bad" / out.name
    bad.parent.mkdir()
    bad.write_bytes(bytes(blob))
    with pytest.raises(StoreError, match="CRC mismatch"):
        list(tb.read_records(bad))
    reader = pywrap_tensorflow.PyRecordReader_New(str(bad).encode(), 0, b"")
    reader.GetNext()  # the file_version record is intact
    with pytest.raises(tb_errors.DataLossError):
        reader.GetNext()


def test_truncated_file_is_detected(run_path, tmp_path):
    out = tb.export_tensorboard(run_path, tmp_path / "tb")
    bad = tmp_path / "cut.tfevents"
    bad.write_bytes(out.read_bytes()[:-3])
    with pytest.raises(StoreError, match="truncated"):
        list(tb.read_records(bad))


def test_cli_export_overwrite_and_refusals(run_path, tmp_path, capsys):
    folder = tmp_path / "logs" / "run1"
    assert main(["export", str(run_path), "--format", "tensorboard", "--out", str(folder)]) == 0
    first = sorted(folder.glob("events.out.tfevents.*"))
    assert len(first) == 1 and "wrote" in capsys.readouterr().out
    before = first[0].read_bytes()
    # again without --overwrite: one line, exit 2, nothing written
    assert main(["export", str(run_path), "--format", "tensorboard", "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "already holds the dyn TensorBoard export" in err and "Traceback" not in err
    assert sorted(folder.glob("events.out.tfevents.*")) == first and first[0].read_bytes() == before
    # the user's own event file in the folder is never touched; --overwrite replaces dyn's only
    user = folder / "events.out.tfevents.42.myhost"
    user.write_bytes(b"user data")
    os.utime(first[0], (0, 0))
    assert main(["export", str(run_path), "--format", "tensorboard", "--out", str(folder), "--overwrite"]) == 0
    now = sorted(p for p in folder.glob("events.out.tfevents.*.dyn"))
    assert len(now) == 1 and user.read_bytes() == b"user data"
    assert now[0].name != first[0].name and not first[0].exists()
    assert not (folder / f".{first[0].name}.dyn-output.json").exists()
    assert (folder / f".{now[0].name}.dyn-output.json").exists()
    # a dyn export someone changed since is not replaced
    now[0].write_bytes(now[0].read_bytes() + b"x")
    assert main(["export", str(run_path), "--format", "tensorboard", "--out", str(folder), "--overwrite"]) == 2
    assert "changed since dyn wrote it" in capsys.readouterr().err
    # a file given as the folder, a folder inside the run, a reduction: refused, nothing written
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for args, message in ((["--out", str(afile)], "is a file"),
                          (["--out", str(run_path / "tb")], "inside the input"),
                          (["--out", str(tmp_path / "new"), "--reduce", "max"], "fixed summaries")):
        assert main(["export", str(run_path), "--format", "tensorboard", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert afile.read_text() == "keep" and not (tmp_path / "new").exists() and not (run_path / "tb").exists()


def test_damaged_store_is_refused_not_skipped(run_path, tmp_path, capsys):
    """A truncated chunk is a damaged store (exit 2, one line), not a site whose gamma/rho are left out."""
    import shutil

    damaged = tmp_path / "damaged.zarr"
    shutil.copytree(run_path, damaged)
    chunk = [p for p in sorted((damaged / "h" / "noise_inner").glob("c.*")) if p.is_file()][-1]
    chunk.write_bytes(chunk.read_bytes()[:10])
    out = tmp_path / "tb"
    assert main(["export", str(damaged), "--format", "tensorboard", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot read site 'h'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not list(out.glob("*tfevents*"))



# -- streaming while the run trains (Recorder sinks) ---------------------------------------------------------------

def _scalars(folder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    acc = _read(folder)
    return {tag: (np.array([e.step for e in acc.Scalars(tag)]), np.array([e.value for e in acc.Scalars(tag)]))
            for tag in acc.Tags()["scalars"]}


def _assert_same_curves(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for tag in a:
        np.testing.assert_array_equal(a[tag][0], b[tag][0], err_msg=tag)
        scale = max(float(np.abs(b[tag][1]).max(initial=0.0)), 1e-30)
        np.testing.assert_allclose(a[tag][1], b[tag][1], rtol=2e-6, atol=1e-6 * scale, err_msg=tag)


def test_streamed_events_equal_the_export_of_the_finished_store(tmp_path):
    """dyn.train with a TensorBoardStream over several chunks: TensorBoard reads the same tags, steps and values
    (to float32 rounding) from the live file as from `dyn export --format tensorboard` of the finished store."""
    stream = tb.TensorBoardStream(tmp_path / "live")
    path = tmp_path / "r.zarr"
    cfg = dyn.load_preset("huang2024-tiny", modality="multi", steps=30)
    dyn.train(cfg, path, sinks=[stream], chunk_bytes=4096)  # small chunks: the stream gets many writes
    assert stream.path.parent == tmp_path / "live" and stream.path.name.endswith(".dyn-stream")
    assert len(list(tb.read_records(stream.path))) == 1 + 31  # file_version, then one event per recorded step
    tb.export_tensorboard(path, tmp_path / "export")
    live, exported = _scalars(tmp_path / "live"), _scalars(tmp_path / "export")
    assert {"loss", "gamma/max_abs/h", "rho/max/h", "rho/q90/h"} <= set(live)
    _assert_same_curves(live, exported)
    assert np.ptp(live["rho/max/h"][1]) > 0


def test_stream_of_a_projected_site_and_of_a_resumed_run(tmp_path):
    """A user's site with more probes than features (projection): the stream equals the export; a stream opened
    at a later step (a resumed run) takes step 0 from the store and still agrees. A wrong step-0 reference is
    caught by the same comparison (the check can fail)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4, bias=False)
    x, y = torch.randn(20, 6), torch.randn(20, 4)  # 20 samples + 2 signals > 6 features
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    site = dyn.Site(model.weight, signals={"a": torch.ones(6), "b": torch.arange(6.0)}, noise=x)
    path, stream = tmp_path / "p.zarr", tb.TensorBoardStream(tmp_path / "live")
    with dyn.Recorder(path, {"w": site}, optimizer=opt, sinks=[stream], chunk_bytes=4 * 4 * 22 * 3) as rec:
        for _ in range(12):
            loss = ((model(x) - y) ** 2).mean()
            opt.zero_grad(); loss.backward(); opt.step(); rec.log(loss=loss)
    assert Run(path).coefficients("w").attrs["method"] == "projection"
    tb.export_tensorboard(path, tmp_path / "export")
    exported = _scalars(tmp_path / "export")
    _assert_same_curves(_scalars(tmp_path / "live"), exported)

    # the resume path: a new stream opened at step 5, fed the store's steps 5.. as the recorder would
    tree = dyn.open(path)["w"]
    later = {"signal_inner": tree["signal_inner"].values[5:], "noise_inner": tree["noise_inner"].values[5:]}
    steps = tree["step"].values[5:]
    resumed = tb.TensorBoardStream(tmp_path / "resumed")
    resumed.open(path, {"w": site}, 5)
    resumed.write(steps, {"w": later}, {})
    resumed.close("complete")
    got = _scalars(tmp_path / "resumed")
    want = {tag: (s[5:], v[5:]) for tag, (s, v) in exported.items() if tag != "loss"}
    _assert_same_curves(got, want)

    # planted: a stream whose step-0 reference is step 1's rows disagrees with the export
    wrong = tb.TensorBoardStream(tmp_path / "wrong")
    wrong.open(path, {"w": site}, 0)
    shifted = {"signal_inner": tree["signal_inner"].values[1:], "noise_inner": tree["noise_inner"].values[1:]}
    wrong.write(tree["step"].values[:-1], {"w": shifted}, {})
    wrong.close("complete")
    bad = _scalars(tmp_path / "wrong")
    with pytest.raises(AssertionError):
        _assert_same_curves(bad, {tag: (s[:-1], v[:-1]) for tag, (s, v) in exported.items() if tag != "loss"})


def test_a_failing_sink_is_dropped_with_a_warning_and_the_store_is_whole(tmp_path):
    torch = pytest.importorskip("torch")
    from dyn.store.sinks import RecordSink

    class Broken(RecordSink):
        closed = None

        def write(self, steps, inner, scalars):
            raise OSError("disk of the dashboard is full")

        def close(self, status):
            self.closed = status

    w = torch.nn.Parameter(torch.randn(3, 5))
    site = dyn.Site(w, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    broken, live = Broken(), tb.TensorBoardStream(tmp_path / "live")
    with pytest.warns(UserWarning, match=r"Broken stopped at step 0: OSError: disk of the dashboard is full; the store"):
        with dyn.Recorder(tmp_path / "r.zarr", {"h": site}, sinks=[broken, live], log_at="current") as rec:
            for t in range(6):
                rec.log(loss=float(t))
                with torch.no_grad():
                    w.mul_(1.1)
                rec.step()
    assert broken.closed == "interrupted" and rec.sinks == [live]
    assert dyn.open(tmp_path / "r.zarr").sizes["step"] == 7
    steps, values = _scalars(tmp_path / "live")["loss"]
    assert steps.tolist() == list(range(6)) and values.tolist() == list(range(6))  # the other sink went on


def test_stream_shows_flushed_steps_before_the_run_ends(tmp_path):
    """Live: after rec.flush(), TensorBoard reads the flushed steps from the stream while the run goes on."""
    torch = pytest.importorskip("torch")
    import time

    w = torch.nn.Parameter(torch.randn(3, 5))
    site = dyn.Site(w, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    live = tb.TensorBoardStream(tmp_path / "live")
    rec = dyn.Recorder(tmp_path / "r.zarr", {"h": site}, sinks=[live], log_at="current").open()
    try:
        for t in range(4):
            rec.log(loss=float(t))
            with torch.no_grad():
                w.mul_(1.1)
            rec.step()
        rec.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(tb.read_records(live.path))) < 1 + 5:
            time.sleep(0.05)
        assert _scalars(tmp_path / "live")["loss"][0].tolist() == [0, 1, 2, 3]
    finally:
        rec.close()


def test_stream_refuses_a_file_or_link_before_training(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    with pytest.raises(StoreError, match="is a file; give a folder"):
        tb.TensorBoardStream(afile)
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(StoreError, match="symbolic link"):
        tb.TensorBoardStream(tmp_path / "link")
    out = tmp_path / "r.zarr"
    assert main(["run", "--preset", "huang2024-tiny", "--out", str(out), "--tensorboard", str(afile), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is a file; give a folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and afile.read_text() == "keep"


def test_cli_run_streams_to_tensorboard(tmp_path, capsys):
    out, folder = tmp_path / "r.zarr", tmp_path / "tb" / "run1"
    assert main(["run", "--preset", "huang2024-tiny", "--steps", "20", "--out", str(out), "--tensorboard",
                 str(folder), "--quiet"]) == 0
    assert "TensorBoard events streamed to" in capsys.readouterr().out
    live = _scalars(folder)
    assert live["loss"][0].tolist() == list(range(21)) and "rho/max/h" in live
