"""The Lightning callback with the real package and a tiny model built here:
one recorded step per optimizer update under gradient accumulation, recorded values against W(t) @ probes from
weights saved at every update, and a run killed after a checkpoint and resumed equal to an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from tests.digits import digits

pl = pytest.importorskip("lightning.pytorch", reason="needs dyn[lightning]")


class _Stop(Exception):
    pass


# -- Lightning -----------------------------------------------------------------------------------------------------
class _Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 12), torch.nn.ReLU(), torch.nn.Linear(12, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class _Snapshots(pl.Callback):
    """Weights after every optimizer update (and a crash at a chosen step)."""

    def __init__(self, stop_at=None):
        self.weights, self.stop_at = [], stop_at

    def on_train_start(self, trainer, module):
        self.weights.append(module.net[0].weight.detach().clone())
        self.seen = trainer.global_step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step > self.seen:  # an optimizer update happened in this batch
            self.seen = trainer.global_step
            self.weights.append(module.net[0].weight.detach().clone())
            if self.stop_at is not None and trainer.global_step == self.stop_at:
                raise _Stop()


def _loader(x, y):
    ds = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(ds, batch_size=len(x) // 2, shuffle=False)  # 2 micro-batches an epoch


def _lightning(path, ckpt_dir, *, steps, stop_at=None, ckpt_path=None):
    from dyn.record.integrations.lightning import DynCallback

    x, y = digits(40)
    module = _Module()
    cb = DynCallback(path, ["net.0", "net.2"], x, y, site_kwargs={"max_samples": 20}, overwrite=ckpt_path is None)
    snaps = _Snapshots(stop_at)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_top_k=-1,
                                        filename="{step}")
    trainer = pl.Trainer(max_steps=steps, accumulate_grad_batches=2, callbacks=[cb, snaps, ckpt], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)
    try:
        trainer.fit(module, _loader(x, y), ckpt_path=ckpt_path)
    except _Stop:
        pass
    return cb, snaps


def test_lightning_records_every_optimizer_step(tmp_path):
    cb, snaps = _lightning(tmp_path / "lit.zarr", tmp_path / "ckpt", steps=6)
    tree = xr.open_datatree(tmp_path / "lit.zarr", engine="zarr")
    assert tree.attrs["status"] == "complete"
    assert tree["step"].values.tolist() == list(range(7))  # 6 updates of 2 micro-batches each, plus step 0
    w = torch.stack(snaps.weights).double().numpy()
    assert len(w) == 7
    probes = tree["net_0"]
    noise = probes["noise_vectors"].values.astype(np.float64)
    np.testing.assert_allclose(probes["noise_inner"].values, np.einsum("trd,id->tri", w, noise), rtol=1e-5, atol=1e-5)
    assert set(tree.children) == {"net_0", "net_2"}
    assert "frozen" in tree["net_2"].attrs["probes"]
    loss = tree["loss"].values
    assert np.isfinite(loss[:-1]).all() and loss[0] > loss[-2]


def test_lightning_resumes_from_its_checkpoint(tmp_path):
    _lightning(tmp_path / "full.zarr", tmp_path / "ck_full", steps=6)
    _lightning(tmp_path / "cut.zarr", tmp_path / "ck_cut", steps=6, stop_at=5)  # killed after the step-3 checkpoint
    cut = xr.open_datatree(tmp_path / "cut.zarr", engine="zarr")
    assert cut.attrs["status"] != "complete"
    _lightning(tmp_path / "cut.zarr", tmp_path / "ck_cut", steps=6, ckpt_path=str(tmp_path / "ck_cut" / "step=3.ckpt"))
    full = xr.open_datatree(tmp_path / "full.zarr", engine="zarr")
    resumed = xr.open_datatree(tmp_path / "cut.zarr", engine="zarr")
    assert resumed.attrs["status"] == "complete"
    assert resumed["step"].values.tolist() == full["step"].values.tolist() == list(range(7))
    for site in ("net_0", "net_2"):
        for var in ("signal_inner", "noise_inner", "random_inner", "weight_change_sq"):
            np.testing.assert_allclose(resumed[site][var].values, full[site][var].values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed["loss"].values[:-1], full["loss"].values[:-1], rtol=1e-5)
