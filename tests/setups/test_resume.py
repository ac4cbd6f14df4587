"""Kill at any step, then resume: the store is readable, never half-written, and ends identical to a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
import zarr

import dyn
from dyn.cli import main

STEPS = 800
ARGS = ["--preset", "huang2024-tiny", "--steps", str(STEPS), "--set", "m=6", "--set", "d=120", "--quiet"]


# Bitwise comparisons between runs (in this process and in `dyn` subprocesses) need one deterministic GEMM
# order: one thread everywhere. With several, MKL/OpenMP may split reductions differently when the machine is busy
# (e.g. MKL_DYNAMIC), and float64 weights then differ in the last bits.
pytestmark = pytest.mark.usefixtures("one_thread")
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _dyn(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "dyn")
    return [exe, *args]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    res = subprocess.run(env=ONE_THREAD, args=_dyn("run", *ARGS, "--out", str(path)), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return dyn.open(path)


def _attrs(path):
    try:
        return json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return {}


def _assert_prefix_equal(tree, ref):
    n = tree.sizes["step"]
    assert tree["step"].values.tolist() == list(range(n)), "steps must be contiguous from 0"
    for site in ref.attrs["sites"]:
        for var in ("signal_inner", "noise_inner", "noise_aug_inner"):
            np.testing.assert_array_equal(tree[site][var].values, ref[site][var].values[:n])
    np.testing.assert_array_equal(tree["loss"].values, ref["loss"].values[:n])


@pytest.mark.parametrize("kill_after", [2, 9, 17])
def test_sigkill_then_resume(tmp_path, reference, kill_after):
    """SIGKILL once `kill_after` checkpoints exist (often inside a chunk write). On a fast machine the run may
    have finished first: then it must simply be complete and equal to the clean run."""
    path = tmp_path / "run.zarr"
    every = 37
    proc = subprocess.Popen(env=ONE_THREAD, args=_dyn("run", *ARGS, "--out", str(path), "--checkpoint-every", str(every)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and (_attrs(path).get("checkpoint_step") or 0) < kill_after * every:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # The killed store: plain xarray opens it; dyn.open shows only fully written steps, equal to the clean run.
    xr.open_datatree(path, engine="zarr")
    tree = dyn.open(path)
    _assert_prefix_equal(tree, reference)
    if tree.attrs["status"] != "complete":
        assert tree.attrs["status"] == "running"  # recognisably not complete
        res = subprocess.run(env=ONE_THREAD, args=_dyn("run", "--resume", str(path), "--quiet"), capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
    done = dyn.open(path)
    assert done.attrs["status"] == "complete" and done.sizes["step"] == STEPS + 1
    _assert_prefix_equal(done, reference)  # bitwise: the same code path on the same machine
    for site in reference.attrs["sites"]:
        np.testing.assert_array_equal(done[site]["weight_final"].values, reference[site]["weight_final"].values)


def test_resume_refuses_complete_runs(tmp_path, tiny):
    path = tmp_path / "r.zarr"
    dyn.train(tiny(steps=4), path)
    res = subprocess.run(env=ONE_THREAD, args=_dyn("run", "--resume", str(path)), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "already complete" in res.stderr
    res = subprocess.run(env=ONE_THREAD, args=_dyn("run", "--resume", str(path), "--steps", "9"), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "drop --steps" in res.stderr


def test_user_loop_flush_every_survives_sigkill(tmp_path):
    path = tmp_path / "mine.zarr"
    script = f"""
import torch, dyn, sys
torch.manual_seed(0)
model = torch.nn.Linear(10, 4, bias=False)
x, y = torch.randn(16, 10), torch.randn(16, 4)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
site = dyn.Site(model.weight, signals={{"mu": torch.ones(10)}}, noise=x)
with dyn.Recorder({str(path)!r}, sites={{"w": site}}, optimizer=opt, flush_every=5) as rec:
    for t in range(100000):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 300
        while (_attrs(path).get("n_recorded") or 0) < 190:  # killed once 190 steps are committed, not after a delay
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
    tree = dyn.open(path)
    n = tree.sizes["step"]
    assert n >= 190 and tree["step"].values.tolist() == list(range(n))
    assert np.isfinite(tree["w"]["noise_inner"].values).all()
    assert np.isfinite(tree["loss"].values[: n - 1]).all()


def _interrupt_at(monkeypatch, call: int, how: str = "raise"):
    """Make the ``call``-th loss evaluation raise KeyboardInterrupt (``"raise"``) or send this process SIGINT
    (``"signal"``, a real Ctrl-C)."""
    from dyn.setups.huang2024.train import Huang2024Setup

    original, calls = Huang2024Setup.loss, {"n": 0}

    def loss(self, anchors=None):
        calls["n"] += 1
        if calls["n"] == call:
            if how == "raise":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, anchors)

    monkeypatch.setattr(Huang2024Setup, "loss", loss)
    return original


def _assert_same_run(path, ref_path):
    done, ref = dyn.open(path), dyn.open(ref_path)
    assert done.attrs["status"] == "complete"
    for site in ref.attrs["sites"]:
        np.testing.assert_array_equal(done[site]["noise_inner"].values, ref[site]["noise_inner"].values)
        np.testing.assert_array_equal(done[site]["weight_final"].values, ref[site]["weight_final"].values)
    np.testing.assert_array_equal(done["loss"].values, ref["loss"].values)


def test_ctrl_c_checkpoints_where_it_stopped_and_completion_cleans_up(tiny, tmp_path, monkeypatch):
    """A real SIGINT mid-step: the step finishes, a checkpoint is written at the next step, the run stops as
    interrupted; the resumed run is identical, and a completed store keeps no checkpoint, pointer or error."""
    cfg = tiny(steps=20)
    dyn.train(cfg, tmp_path / "ref.zarr")
    _interrupt_at(monkeypatch, 14, how="signal")
    with pytest.raises(KeyboardInterrupt):
        dyn.train(cfg, tmp_path / "run.zarr")  # default policy: no checkpoint would be due for 10 s
    monkeypatch.undo()
    attrs = _attrs(tmp_path / "run.zarr")
    assert attrs["status"] == "interrupted" and attrs["checkpoint_step"] == 14 == attrs["n_recorded"]
    assert "KeyboardInterrupt" in attrs["error"]
    dyn.train(cfg, tmp_path / "run.zarr", resume=True)
    _assert_same_run(tmp_path / "run.zarr", tmp_path / "ref.zarr")
    attrs = _attrs(tmp_path / "run.zarr")
    assert not {"error", "checkpoint_step", "diverged_at"} & set(attrs)
    assert not (tmp_path / "run.zarr" / "_checkpoint").exists()


@pytest.mark.parametrize("modality", ["single", "multi"])
def test_resume_without_a_checkpoint_restarts_from_step_0(tiny, tmp_path, monkeypatch, modality):
    cfg = tiny(steps=12, modality=modality)
    dyn.train(cfg, tmp_path / "ref.zarr")
    _interrupt_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        dyn.train(cfg, tmp_path / "run.zarr")
    monkeypatch.undo()
    assert "checkpoint_step" not in _attrs(tmp_path / "run.zarr")
    res = subprocess.run(env=ONE_THREAD, args=_dyn("run", "--resume", str(tmp_path / "run.zarr"), "--quiet"), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    _assert_same_run(tmp_path / "run.zarr", tmp_path / "ref.zarr")


def test_default_policy_checkpoints_every_few_seconds(tiny, tmp_path, monkeypatch):
    """With default settings a run killed at any moment loses at most DEFAULT_CHECKPOINT_SECONDS of training
    (plus the step in progress). A fake clock makes every step take 3 s."""
    from dyn.setups.huang2024 import train as trainer
    from dyn.setups.huang2024.train import Huang2024Setup

    assert trainer.DEFAULT_CHECKPOINT_SECONDS <= 30

    class Clock:
        now = 0.0

        def perf_counter(self):
            return self.now

    clock = Clock()
    from dyn.setups import driver

    monkeypatch.setattr(driver, "time", clock)  # the training loop every trainer shares
    original = Huang2024Setup.loss

    def slow_loss(self, anchors=None):
        clock.now += 3.0
        return original(self, anchors)

    monkeypatch.setattr(Huang2024Setup, "loss", slow_loss)
    _interrupt_at(monkeypatch, 21)
    with pytest.raises(KeyboardInterrupt):
        dyn.train(tiny(steps=40), tmp_path / "run.zarr")
    attrs = _attrs(tmp_path / "run.zarr")
    assert attrs["checkpoint_every"] is None and attrs["checkpoint_seconds"] == trainer.DEFAULT_CHECKPOINT_SECONDS
    lost_seconds = 3.0 * (20 - attrs["checkpoint_step"])  # steps 0..19 were done when step 20 was interrupted
    assert 0 <= lost_seconds <= trainer.DEFAULT_CHECKPOINT_SECONDS + 3.0


def test_the_checkpoint_policy_is_stored_and_kept_by_resume(tiny, tmp_path, monkeypatch):
    from dyn.record import Recorder

    cfg = tiny(steps=30)
    _interrupt_at(monkeypatch, 11)
    with pytest.raises(KeyboardInterrupt):
        dyn.train(cfg, tmp_path / "run.zarr", checkpoint_every=4)
    monkeypatch.undo()
    assert _attrs(tmp_path / "run.zarr")["checkpoint_every"] == 4
    flush, steps = Recorder.flush, []

    def spy(self, checkpoint=None, next_step=None):
        if checkpoint is not None:
            steps.append(next_step)
        return flush(self, checkpoint, next_step)

    monkeypatch.setattr(Recorder, "flush", spy)
    res = main(["run", "--resume", str(tmp_path / "run.zarr"), "--quiet"])
    assert res == 0
    assert steps == list(range(12, 30, 4))


def test_a_diverged_run_stays_resumable(tmp_path, capsys):
    """Resuming a diverged run (default policy: no checkpoint before it diverged) replays it from step 0 and
    diverges again at the same step: exit 1, no traceback, the same recording."""
    out = tmp_path / "d.zarr"
    args = ["--preset", "huang2024-tiny", "--set", "eta=20", "--steps", "400", "--quiet"]
    assert main(["run", *args, "--out", str(out)]) == 1
    first = dyn.open(out).load()
    assert first.attrs["status"] == "diverged"
    assert main(["run", "--resume", str(out), "--quiet"]) == 1
    assert "Traceback" not in capsys.readouterr().err
    again = dyn.open(out)
    assert again.attrs["status"] == "diverged" and again.attrs["diverged_at"] == first.attrs["diverged_at"]
    np.testing.assert_array_equal(again["h"]["noise_inner"].values, first["h"]["noise_inner"].values)


def test_resume_takes_the_lock_before_reading_anything(tiny, tmp_path, monkeypatch):
    """While another process writes the store (here: holds its lock mid-checkpoint, its RNG state half written),
    a resume is refused by the lock before it reads the checkpoint."""
    from dyn.store import StoreWriter

    path = tmp_path / "run.zarr"
    _interrupt_at(monkeypatch, 9)
    with pytest.raises(KeyboardInterrupt):
        dyn.train(tiny(steps=20), path, checkpoint_every=4)
    monkeypatch.undo()
    rng = zarr.open_array(str(path / "_checkpoint" / _attrs(path)["checkpoint_slot"] / "rng_sgd"), mode="r+")
    rng[...] = np.full(rng.shape, 7, dtype=rng.dtype)  # what a reader racing the writer may see
    live = StoreWriter(path, append=True)  # the other writer
    try:
        with pytest.raises(dyn.StoreError, match="is being written by another process"):
            dyn.train(tiny(steps=20), path, resume=True)
    finally:
        live.release()


@pytest.mark.parametrize("changes", [dict(redraw_eps=True), dict(optimizer="sgd", batch_size=5), dict(modality="multi")])
def test_resume_restores_every_random_state(tiny, tmp_path, monkeypatch, changes):
    """Interrupted mid-run (after checkpoints), resumed in-process: identical to an uninterrupted run, including
    the re-drawn augmentation noise and the SGD minibatch stream."""
    from dyn.setups.huang2024.train import Huang2024Setup

    cfg = tiny(steps=20, **changes)
    dyn.train(cfg, tmp_path / "ref.zarr")
    original = Huang2024Setup.loss
    calls = {"n": 0}

    def interrupting(self, anchors=None):
        calls["n"] += 1
        if calls["n"] == 14:
            raise KeyboardInterrupt
        return original(self, anchors)

    monkeypatch.setattr(Huang2024Setup, "loss", interrupting)
    with pytest.raises(KeyboardInterrupt):
        dyn.train(cfg, tmp_path / "run.zarr", checkpoint_every=5)
    monkeypatch.setattr(Huang2024Setup, "loss", original)
    assert dyn.open(tmp_path / "run.zarr").attrs["status"] == "interrupted"
    dyn.train(cfg, tmp_path / "run.zarr", resume=True, checkpoint_every=5)
    done, ref = dyn.open(tmp_path / "run.zarr"), dyn.open(tmp_path / "ref.zarr")
    assert done.attrs["status"] == "complete"
    for site in ref.attrs["sites"]:
        np.testing.assert_array_equal(done[site]["noise_inner"].values, ref[site]["noise_inner"].values)
        np.testing.assert_array_equal(done[site]["weight_final"].values, ref[site]["weight_final"].values)
    np.testing.assert_array_equal(done["loss"].values, ref["loss"].values)
