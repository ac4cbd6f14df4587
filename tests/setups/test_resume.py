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

import dyn

STEPS = 2500
ARGS = ["--preset", "huang2024-tiny", "--steps", str(STEPS), "--set", "m=6", "--set", "d=120", "--quiet"]


def _dyn(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "dyn")
    return [exe, *args]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    res = subprocess.run(_dyn("run", *ARGS, "--out", str(path)), capture_output=True, text=True, timeout=600)
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


@pytest.mark.parametrize("kill_after", [3, 9, 17, 40])
def test_sigkill_then_resume(tmp_path, reference, kill_after):
    """SIGKILL once `kill_after` checkpoints exist (plus a random delay, often inside a chunk write)."""
    path = tmp_path / "run.zarr"
    every = 37
    proc = subprocess.Popen(_dyn("run", *ARGS, "--out", str(path), "--checkpoint-every", str(every)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (_attrs(path).get("checkpoint_step") or 0) >= kill_after * every:
            break
        time.sleep(0.005)
    time.sleep(np.random.default_rng(kill_after).uniform(0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; raise STEPS"
    # The killed store: plain xarray opens it; dyn.open keeps only fully written steps, equal to the clean run.
    xr.open_datatree(path, engine="zarr", consolidated=False)
    tree = dyn.open(path)
    assert tree.attrs["status"] == "running"  # recognisably not complete
    assert tree.sizes["step"] >= kill_after * every
    _assert_prefix_equal(tree, reference)
    # Resume and compare everything with the uninterrupted run.
    res = subprocess.run(_dyn("run", "--resume", str(path), "--quiet"), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    done = dyn.open(path)
    assert done.attrs["status"] == "complete" and done.sizes["step"] == STEPS + 1
    _assert_prefix_equal(done, reference)  # bitwise equal on this platform (CPU, same ops in the same order)
    for site in reference.attrs["sites"]:
        np.testing.assert_array_equal(done[site]["weight_final"].values, reference[site]["weight_final"].values)


def test_resume_refuses_complete_and_uncheckpointed_runs(tmp_path, tiny):
    path = tmp_path / "r.zarr"
    dyn.train(tiny(steps=4), path)
    res = subprocess.run(_dyn("run", "--resume", str(path)), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "already complete" in res.stderr
    res = subprocess.run(_dyn("run", "--resume", str(path), "--steps", "9"), capture_output=True, text=True, timeout=120)
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
        if t == 200:
            print("ready", flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    tree = dyn.open(path)
    n = tree.sizes["step"]
    assert n >= 190 and tree["step"].values.tolist() == list(range(n))
    assert np.isfinite(tree["w"]["noise_inner"].values).all()
    assert np.isfinite(tree["loss"].values[: n - 1]).all()


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
