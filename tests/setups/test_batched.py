"""The batched huang2024 trainer: each run of a batch is recorded as the sequential trainer records it alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

import dyn
from dyn.analysis.run import Run
from dyn.store import read_attrs
from dyn.setups.base import available_setups, get_setup
from dyn.setups.huang2024 import Config, batch_key
from dyn.setups.huang2024 import batched
from dyn.setups.huang2024.batched import train_batch
from dyn.setups.huang2024.train import train
from tests.stores import max_store_difference

SMALL = dict(d=60, n=12, n_test=16, m=6, steps=24)


def _configs(modality: str) -> list[Config]:
    # Differing seeds, signal norms, learning rates and temperatures inside one batch.
    return [Config(modality=modality, seed=s, mu_norm=2.0 + s, mu_tilde_norm=6.0 - s, eta=0.02 * (1 + s),
                   tau=0.1 + 0.05 * s, **SMALL) for s in range(3)]


def _tree(path) -> xr.DataTree:
    return xr.open_datatree(path, engine="zarr")


def _max_diff(a_path, b_path) -> float:
    return max_store_difference(a_path, b_path, root_attrs_except=None)  # root attributes: checked by each test


@pytest.mark.parametrize("modality", ["single", "multi"])
def test_batched_equals_sequential_per_run(tmp_path, modality):
    cfgs = _configs(modality)
    outs = [tmp_path / f"b{i}.zarr" for i in range(3)]
    summaries = train_batch(cfgs, outs, evaluate_every=SMALL["steps"])
    for i, cfg in enumerate(cfgs):
        seq = train(cfg, tmp_path / f"s{i}.zarr", evaluate_every=SMALL["steps"])
        assert summaries[i].status == "complete" and summaries[i].path == outs[i]
        assert summaries[i].final_loss == pytest.approx(seq.final_loss, rel=1e-5)
        # inner products, weight changes, logged losses and ℓ' bands, final weights, probe accuracy
        assert _max_diff(outs[i], tmp_path / f"s{i}.zarr") < 1e-5
        a, b = _tree(outs[i]).attrs, _tree(tmp_path / f"s{i}.zarr").attrs
        assert set(a) - set(b) == {"batched"} and a["batched"] == 3
        for key in ("setup", "config", "seed", "modality", "status", "sites", "checkpoint_seconds"):
            assert a[key] == b[key], key
        acc = Run(outs[i]).scalar("probe_acc")
        assert acc is not None and np.isfinite(acc).sum() == 2  # step 0 and the last step
        np.testing.assert_allclose(acc, Run(tmp_path / f"s{i}.zarr").scalar("probe_acc"))
    # the comparison can tell runs apart: run 0 of the batch is not run 1 alone
    with pytest.raises(AssertionError):
        assert _max_diff(outs[0], tmp_path / "s1.zarr") < 1e-5


def test_unrecorded_batch_matches_recorded_losses(tmp_path, capsys):
    cfgs = _configs("single")
    bare = train_batch(cfgs, [None] * 3, progress=True)
    assert "single-modal ×3" in capsys.readouterr().err  # the progress bar names the batch
    rec = train_batch(cfgs, [tmp_path / f"{i}.zarr" for i in range(3)])
    assert [s.path for s in bare] == [None] * 3
    np.testing.assert_allclose([s.final_loss for s in bare], [s.final_loss for s in rec], rtol=1e-6)
    assert len({s.final_loss for s in bare}) == 3  # three different runs


def test_one_diverging_run_stops_alone(tmp_path):
    cfgs = _configs("single")
    cfgs[1] = cfgs[1].replace(eta=1e9)
    outs = [tmp_path / f"b{i}.zarr" for i in range(3)]
    summaries = train_batch(cfgs, outs)
    assert [s.status for s in summaries] == ["complete", "diverged", "complete"]
    assert _tree(outs[1]).attrs["status"] == "diverged" and "became" in _tree(outs[1]).attrs["error"]
    with pytest.raises(dyn.DivergenceError):
        train(cfgs[1], tmp_path / "alone.zarr")
    assert _tree(outs[1]).attrs["diverged_at"] == _tree(tmp_path / "alone.zarr").attrs["diverged_at"]
    for i in (0, 2):
        train(cfgs[i], tmp_path / f"s{i}.zarr")
        assert _max_diff(outs[i], tmp_path / f"s{i}.zarr") < 1e-5


def test_interrupted_batch_resumes_run_by_run_from_its_checkpoints(tmp_path, monkeypatch):
    cfgs = _configs("multi")
    outs = [tmp_path / f"b{i}.zarr" for i in range(3)]
    calls = {"n": 0}
    step = batched._Batch.step

    def crash_at_13(self, loss):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        step(self, loss)

    monkeypatch.setattr(batched._Batch, "step", crash_at_13)
    with pytest.raises(KeyboardInterrupt):
        train_batch(cfgs, outs, checkpoint_every=5)
    monkeypatch.undo()
    for i, cfg in enumerate(cfgs):
        assert read_attrs(outs[i])["status"] == "interrupted"
        assert read_attrs(outs[i])["checkpoint_step"] == 10  # the last of every 5 steps before the crash at 12
        assert dyn.train(cfg, outs[i], resume=True).status == "complete"  # the sequential trainer resumes it
        train(cfg, tmp_path / f"s{i}.zarr")
        assert _max_diff(outs[i], tmp_path / f"s{i}.zarr") < 1e-5


def test_batch_key_groups_shapes_and_refuses_what_it_cannot_batch():
    base = Config(**SMALL)
    assert batch_key(base) == batch_key(base.replace(seed=5, mu_norm=1.0, eta=0.1, tau=0.3, negatives=2))
    for change in (dict(d=61), dict(m=7), dict(n=13), dict(steps=25), dict(modality="multi"), dict(dtype="float64")):
        assert batch_key(base.replace(**change)) != batch_key(base), change
    assert batch_key(base.replace(optimizer="sgd", batch_size=4)) is None
    assert batch_key(base.replace(redraw_eps=True)) is None
    assert get_setup("huang2024").batch_key is batch_key


@pytest.mark.parametrize("configs, message", [
    ([Config(**SMALL), Config(**{**SMALL, "d": 61})], "runs differ in d"),
    ([Config(**SMALL), Config(**{**SMALL, "modality": "multi"})], "runs differ in modality"),
    ([Config(**SMALL), Config(**SMALL, optimizer="sgd", batch_size=4)], "full-batch GD only"),
    ([Config(**SMALL, redraw_eps=True)], "redraw_eps"),
    ([], "at least one config"),
])
def test_mismatched_or_unsupported_batches_are_refused(tmp_path, configs, message):
    outs = [tmp_path / f"{i}.zarr" for i in range(len(configs))]
    with pytest.raises(dyn.ConfigError, match=message) as info:
        train_batch(configs, outs)
    assert len(str(info.value).splitlines()) == 1
    assert not any(o.exists() for o in outs)  # refused before any store is made


def test_resume_and_duplicate_stores_are_refused(tmp_path):
    cfgs = _configs("single")
    with pytest.raises(dyn.ConfigError, match="cannot resume"):
        train_batch(cfgs, [tmp_path / f"{i}.zarr" for i in range(3)], resume=True)
    with pytest.raises(dyn.ConfigError, match="same store"):
        train_batch(cfgs, [tmp_path / "x.zarr"] * 3)
    other = dataclasses.replace(available_setups()["huang2024"], name="no-batch", batch_trainer=None)
    with pytest.raises(dyn.ConfigError, match="has no batch trainer"):
        other.train_batch(cfgs, [None] * 3)
