"""Recorded inner products against W(t) @ probes recomputed from weight snapshots, step by step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

import dyn
from dyn.setups.huang2024.train import Huang2024Setup


@pytest.mark.parametrize("modality", ["single", "multi"])
def test_trainer_records_exact_inner_products_every_step(tiny, tmp_path, modality, replay):
    cfg = tiny(modality=modality, steps=12, dtype="float32")
    dyn.train(cfg, tmp_path / "run.zarr", chunk_bytes=2000)  # tiny chunks: many chunk boundaries
    tree = xr.open_datatree(tmp_path / "run.zarr", engine="zarr")
    setup, weights, losses = replay(cfg)
    assert tree["step"].values.tolist() == list(range(13))
    for site_name, site in setup.sites.items():
        w = np.stack(weights[site_name])  # (T+1, m, d)
        ds = tree[site_name]
        mu = np.stack([v.numpy() for v in site.signals.values()]).astype(np.float64)
        np.testing.assert_allclose(ds["signal_inner"].values, np.einsum("trd,kd->trk", w, mu), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ds["noise_inner"].values, np.einsum("trd,id->tri", w, site.noise.numpy()),
                                   rtol=1e-5, atol=1e-5)
        for name, (_, vecs) in site.extra.items():
            np.testing.assert_allclose(ds[f"{name}_inner"].values, np.einsum("trd,id->tri", w, vecs.numpy()),
                                       rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(ds["weight_init"].values, w[0])
        np.testing.assert_array_equal(ds["weight_final"].values, w[-1])
    # the logged loss at step t is the loss at W(t), the last one included
    np.testing.assert_allclose(tree["loss"].values, losses, rtol=1e-6)
    assert tree.attrs["status"] == "complete" and tree.attrs["last_step"] == 12
    assert json.loads(json.dumps(tree.attrs["config"])) == cfg.to_dict()


def test_user_loop_with_nn_linear_and_sgd(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(12, 5, bias=False)
    x, target = torch.randn(30, 12), torch.randn(30, 5)
    classes = torch.randn(2, 12)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    site = dyn.Site(model.weight, signals={"c0": classes[0], "c1": classes[1]}, noise=x, labels=torch.arange(30) % 2)
    snapshots, losses = [model.weight.detach().clone()], []
    with dyn.Recorder(tmp_path / "mine.zarr", sites={"w": site}, optimizer=opt, chunk_bytes=3000,
                      config={"lr": 0.05}, seed=0) as rec:
        for _ in range(25):
            loss = ((model(x) - target) ** 2).mean()
            losses.append(loss.item())
            loss.backward()
            opt.step()
            opt.zero_grad()
            rec.log(loss=loss)
            snapshots.append(model.weight.detach().clone())
    assert rec.chunk_steps < 10  # the run crossed several chunk boundaries
    ds = xr.open_zarr(tmp_path / "mine.zarr", group="w")
    w = torch.stack(snapshots).double()
    np.testing.assert_allclose(ds["noise_inner"].values, (w @ x.double().T).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds["signal_inner"].values, (w @ classes.double().T).numpy(), rtol=1e-5, atol=1e-6)
    assert ds["signal"].values.tolist() == ["c0", "c1"]
    root = xr.open_zarr(tmp_path / "mine.zarr")
    # loss logged after opt.step() belongs to the weights it was computed at; the final weights have no loss
    np.testing.assert_allclose(root["loss"].values[:-1], losses, rtol=1e-6)
    assert np.isnan(root["loss"].values[-1])
    assert root.attrs["config"] == {"lr": 0.05}


def test_manual_steps_with_schedule_always_keep_first_and_last(tmp_path):
    w = torch.nn.Parameter(torch.randn(3, 4))
    site = dyn.Site(w, signals={"mu": torch.ones(4)}, noise=torch.randn(2, 4))
    with dyn.Recorder(tmp_path / "r.zarr", sites={"h": site}, every=3, log_at="current") as rec:
        for t in range(10):
            with torch.no_grad():
                w.add_(0.1)
            rec.step()
            rec.log(loss=float(t))
    tree = dyn.open(tmp_path / "r.zarr")
    assert tree["step"].values.tolist() == [0, 3, 6, 9, 10]
    assert tree["loss"].values.tolist()[1:] == [2.0, 5.0, 8.0, 9.0]
    np.testing.assert_allclose(tree["h"]["signal_inner"].values[-1, :, 0], (w.detach() @ torch.ones(4)).numpy(), rtol=1e-6)


def test_divergence_keeps_steps_before_and_marks_store(tmp_path):
    w = torch.nn.Parameter(torch.ones(2, 3))
    site = dyn.Site(w, signals={"mu": torch.ones(3)}, noise=torch.eye(3))
    with pytest.raises(dyn.DivergenceError, match="loss became nan at step 4"):
        with dyn.Recorder(tmp_path / "d.zarr", sites={"h": site}, log_at="current") as rec:
            for t in range(10):
                rec.log(loss=float("nan") if t == 4 else 1.0)
                rec.step()
    tree = dyn.open(tmp_path / "d.zarr")
    assert tree.attrs["status"] == "diverged" and tree.attrs["diverged_at"] == 4
    assert tree["step"].values.tolist() == [0, 1, 2, 3]


def test_trainer_divergence(tiny, tmp_path):
    with pytest.raises(dyn.DivergenceError, match="marked diverged"):
        dyn.train(tiny(eta=1e9, steps=20), tmp_path / "d.zarr")
    tree = dyn.open(tmp_path / "d.zarr")
    assert tree.attrs["status"] == "diverged"
    assert np.isfinite(tree["loss"].values).all() and tree.sizes["step"] >= 1


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_exception_in_loop_marks_interrupted_and_keeps_steps(tmp_path, exc):
    w = torch.nn.Parameter(torch.ones(2, 3))
    site = dyn.Site(w, signals={"mu": torch.ones(3)}, noise=torch.eye(3))
    with pytest.raises(exc):
        with dyn.Recorder(tmp_path / "i.zarr", sites={"h": site}) as rec:
            for t in range(5):
                rec.step()
            raise exc("stop")
    tree = dyn.open(tmp_path / "i.zarr")
    assert tree.attrs["status"] == "interrupted"
    assert tree["step"].values.tolist() == list(range(6))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(signals={"mu": torch.ones(5)}), "signal 'mu' has shape (5,), expected (4,) to match the weight"),
        (dict(noise=torch.ones(3, 5)), "noise has shape (3, 5), expected (samples, 4)"),
        (dict(signals={"mu": torch.tensor([1.0, float("nan"), 0, 0])}), "signal 'mu' contains NaN or inf"),
        (dict(noise=torch.tensor([[1.0, float("inf"), 0, 0]])), "noise contains NaN or inf"),
        (dict(labels=[1, 2, 3]), "got 3 entries (shape (3,)) for 2 samples"),
        (dict(signals={}), "at least one signal vector"),
        (dict(extra={"aug": torch.ones(3, 4)}), "extra probe 'aug' has 3 rows, expected 2"),
    ],
)
def test_bad_sites(tmp_path, kwargs, message):
    base = dict(weight=torch.ones(3, 4), signals={"mu": torch.ones(4)}, noise=torch.ones(2, 4))
    base.update(kwargs)
    with pytest.raises(dyn.ConfigError) as err:
        dyn.Site(**base)
    assert message in str(err.value)


def test_bad_recorder_input_leaves_nothing(tmp_path):
    site = dyn.Site(torch.ones(3, 4), signals={"mu": torch.ones(4)}, noise=torch.ones(2, 4))
    with pytest.raises(dyn.ConfigError, match="site name 'my site'"):
        dyn.Recorder(tmp_path / "x.zarr", sites={"my site": site})
    with pytest.raises(dyn.ConfigError, match="log_at"):
        dyn.Recorder(tmp_path / "x.zarr", sites={"h": site}, log_at="later")
    assert not (tmp_path / "x.zarr").exists()


def test_existing_output_needs_overwrite_and_is_untouched(tmp_path, tiny):
    dyn.train(tiny(steps=2), tmp_path / "r.zarr")
    before = {p: p.read_bytes() for p in (tmp_path / "r.zarr").rglob("*") if p.is_file()}
    with pytest.raises(dyn.StoreError, match="already exists"):
        dyn.train(tiny(steps=3), tmp_path / "r.zarr")
    assert before == {p: p.read_bytes() for p in (tmp_path / "r.zarr").rglob("*") if p.is_file()}
    dyn.train(tiny(steps=3), tmp_path / "r.zarr", overwrite=True)
    assert dyn.open(tmp_path / "r.zarr").sizes["step"] == 4
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(dyn.StoreError, match="is not a dyn store; refusing to overwrite"):
        dyn.train(tiny(steps=2), tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"


def test_second_writer_is_refused(tmp_path):
    site = dyn.Site(torch.ones(3, 4), signals={"mu": torch.ones(4)}, noise=torch.ones(2, 4))
    with dyn.Recorder(tmp_path / "r.zarr", sites={"h": site}) as rec:
        rec.step()
        with pytest.raises(dyn.StoreError, match="being written by another process"):
            dyn.Recorder(tmp_path / "r.zarr", sites={"h": site}, overwrite=True).open()
        rec.step()
    assert dyn.open(tmp_path / "r.zarr")["step"].values.tolist() == [0, 1, 2]
