"""The signal–noise CNN family's batch trainer: each run of a batch is recorded as the lone trainer records it."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import xarray as xr

import dyn
from dyn.experiments.sweep import batches, expand, load_grid, sweep
from dyn.setups.base import get_setup
from dyn.setups.huang2025_label_noise import LabelNoiseConfig
from dyn.setups.signal_noise_cnn import CNNConfig, batch_key, train
from dyn.setups.signal_noise_cnn import batched
from dyn.setups.signal_noise_cnn.batched import train_batch
from dyn.store import read_attrs
from tests.stores import RUN_TIMES, max_store_difference

SMALL = dict(d=40, n=8, n_test=30, m=3, steps=15, test_every=5)


def _configs(network: str, q: float, algorithm: str, eta: float = 0.2, **extra) -> list[CNNConfig]:
    # Differing seeds, signal norms, noise strengths, init scales, learning rates, flip probabilities and label
    # flip rates inside one batch (one run without label flips, so its store has no "labels" group).
    return [CNNConfig(network=network, q=q, algorithm=algorithm, seed=s, mu_norm=2.0 + s, sigma_p=1.0 - 0.2 * s,
                      sigma0=0.05 * (1 + s), eta=eta * (1 + s), p=0.1 + 0.1 * s, flip_rate=0.15 * s,
                      orthogonal_noise=network == "theory", **{**SMALL, **extra}) for s in range(3)]


def _tree(path) -> xr.DataTree:
    return xr.open_datatree(path, engine="zarr")


def _max_diff(a_path, b_path, *, skip_attrs: tuple[str, ...] = ()) -> float:
    return max_store_difference(a_path, b_path, root_attrs_except=(*RUN_TIMES, *skip_attrs))


@pytest.mark.parametrize("network, q, algorithm, extra", [
    ("theory", 1.0, "gd", {}),
    ("code", 1.0, "gd", {}),
    ("theory", 2.0, "label_noise", {"population_draws": 300}),
    ("code", 3.0, "gd", {"record_every": 4, "eta": 0.05}),  # the last step (15) is not on the schedule
])
def test_batched_equals_lone_per_run(tmp_path, network, q, algorithm, extra):
    cfgs = _configs(network, q, algorithm, **extra)
    outs = [tmp_path / f"b{i}.zarr" for i in range(3)]
    summaries = train_batch(cfgs, outs)
    for i, cfg in enumerate(cfgs):
        lone = train(cfg, tmp_path / f"s{i}.zarr")
        assert summaries[i].status == "complete" and summaries[i].path == outs[i]
        assert summaries[i].final_loss == pytest.approx(lone.final_loss, rel=1e-9)
        assert summaries[i].final_test_error == pytest.approx(lone.final_test_error, abs=1e-12)
        # inner products, Gram matrices, probes, weights, flips, labels, logged losses, errors and their attributes
        assert _max_diff(outs[i], tmp_path / f"s{i}.zarr") < 1e-5
        assert read_attrs(outs[i])["batched"] == 3
    # the comparison tells runs apart: run 0 of the batch is not run 1 alone
    with pytest.raises(AssertionError):
        assert _max_diff(outs[0], tmp_path / "s1.zarr") < 1e-5
    # the batch's members really differ in what they were given
    assert len({read_attrs(o)["config"]["eta"] for o in outs}) == 3
    assert sorted(_tree(outs[0]).children) != sorted(_tree(outs[1]).children)  # no label flips: no "labels"


def test_a_member_of_another_setup_class_records_as_its_lone_trainer(tmp_path):
    from dyn.setups.huang2025_label_noise import train as train_ln
    from dyn.setups.huang2025_label_noise.trainer import LabelNoiseSetup

    cfgs = [LabelNoiseConfig(d=40, n=8, n_test=20, m=3, steps=10, seed=s, population_draws=0) for s in range(2)]
    outs = [tmp_path / f"b{i}.zarr" for i in range(2)]
    train_batch(cfgs, outs, setup_class=LabelNoiseSetup)
    for i, cfg in enumerate(cfgs):
        train_ln(cfg, tmp_path / f"s{i}.zarr")
        assert read_attrs(outs[i])["setup"] == "huang2025-label-noise"
        assert _max_diff(outs[i], tmp_path / f"s{i}.zarr") < 1e-5


def _diverging_batch() -> list[CNNConfig]:
    cfgs = _configs("theory", 3.0, "gd", eta=0.05)
    cfgs[1] = cfgs[1].replace(eta=1e12)  # q = 3: the weights overflow within a few steps
    return cfgs


def test_one_diverging_run_stops_alone(tmp_path):
    cfgs = _diverging_batch()
    outs = [tmp_path / f"b{i}.zarr" for i in range(3)]
    summaries = train_batch(cfgs, outs)
    assert [s.status for s in summaries] == ["complete", "diverged", "complete"]
    assert math.isnan(summaries[1].final_test_error) and 0 <= summaries[0].final_test_error <= 1
    with pytest.raises(dyn.DivergenceError):
        train(cfgs[1], tmp_path / "alone.zarr")
    batched_attrs, alone_attrs = read_attrs(outs[1]), read_attrs(tmp_path / "alone.zarr")
    assert batched_attrs["status"] == alone_attrs["status"] == "diverged"
    assert batched_attrs["diverged_at"] == alone_attrs["diverged_at"] < SMALL["steps"]
    assert batched_attrs["error"] == alone_attrs["error"] and "became" in batched_attrs["error"]
    assert _max_diff(outs[1], tmp_path / "alone.zarr") < 1e-5  # the steps before it, as alone
    for i in (0, 2):
        train(cfgs[i], tmp_path / f"s{i}.zarr")
        assert _max_diff(outs[i], tmp_path / f"s{i}.zarr") < 1e-5


def test_unrecorded_runs_still_report_loss_and_test_error(tmp_path, capsys):
    cfgs = _configs("code", 1.0, "gd")
    bare = train_batch(cfgs, [None] * 3, progress=True)
    assert "gd ×3" in capsys.readouterr().err  # the progress bar names the batch
    assert [s.path for s in bare] == [None] * 3 and [s.nbytes for s in bare] == [0] * 3
    mixed = train_batch(cfgs, [None, tmp_path / "r1.zarr", None])
    assert [s.path for s in mixed] == [None, tmp_path / "r1.zarr", None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1.zarr"]
    for i, cfg in enumerate(cfgs):
        lone = train(cfg, None)
        for got in (bare[i], mixed[i]):
            assert got.status == "complete"
            assert got.final_loss == pytest.approx(lone.final_loss, rel=1e-9)
            assert got.final_test_error == pytest.approx(lone.final_test_error, abs=1e-12)
    assert len({s.final_loss for s in bare}) == 3  # three different runs
    train(cfgs[1], tmp_path / "s1.zarr")
    assert _max_diff(tmp_path / "r1.zarr", tmp_path / "s1.zarr") < 1e-5


def test_an_unrecorded_diverging_run_is_reported_diverged_not_correct():
    summaries = train_batch(_diverging_batch(), [None] * 3)
    assert [s.status for s in summaries] == ["complete", "diverged", "complete"]
    assert not math.isfinite(summaries[1].final_loss) and math.isnan(summaries[1].final_test_error)
    assert 0 <= summaries[0].final_test_error <= 1


def test_interrupted_batch_resumes_run_by_run_from_its_checkpoints(tmp_path, monkeypatch):
    cfgs = _configs("theory", 2.0, "label_noise")
    outs = [tmp_path / f"b{i}.zarr" for i in range(3)]
    calls = {"n": 0}
    step = batched._Batch.step

    def crash_at_12(self, t, margins):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        step(self, t, margins)

    monkeypatch.setattr(batched._Batch, "step", crash_at_12)
    with pytest.raises(KeyboardInterrupt):
        train_batch(cfgs, outs, checkpoint_every=5)
    monkeypatch.undo()
    for i, cfg in enumerate(cfgs):
        assert read_attrs(outs[i])["status"] == "interrupted"
        assert read_attrs(outs[i])["checkpoint_step"] == 10  # the last of every 5 steps before the crash
        assert train(cfg, outs[i], resume=True).status == "complete"  # the lone trainer resumes it
        train(cfg, tmp_path / f"s{i}.zarr")
        assert _max_diff(outs[i], tmp_path / f"s{i}.zarr", skip_attrs=("checkpoint_every", "resumed")) < 1e-5


def test_batch_key_groups_what_may_differ():
    base = CNNConfig(**SMALL)
    same = base.replace(seed=5, mu_norm=1.0, sigma_p=0.5, sigma0=0.1, eta=0.3, p=0.3, flip_rate=0.2)
    assert batch_key(same) == batch_key(base)
    for change in (dict(d=41), dict(m=4), dict(n=9), dict(steps=16), dict(q=2.0), dict(network="code"),
                   dict(algorithm="label_noise"), dict(dtype="float32"), dict(record_every=2)):
        assert batch_key(base.replace(**change)) != batch_key(base), change
    assert batch_key(base.replace(optimizer="sam")) is None
    assert get_setup("signal-noise-cnn").batch_key is batch_key


@pytest.mark.parametrize("configs, message", [
    ([CNNConfig(**SMALL), CNNConfig(**{**SMALL, "d": 41})], r"runs differ in d \(40 vs 41\)"),
    ([CNNConfig(**SMALL), CNNConfig(**SMALL, q=2.0)], r"runs differ in q \(1.0 vs 2.0\)"),
    ([CNNConfig(**SMALL), CNNConfig(**SMALL, network="code")], "runs differ in network"),
    ([CNNConfig(**SMALL), CNNConfig(**SMALL, optimizer="sam")], "optimizer 'gd' only"),
    ([CNNConfig(**SMALL), LabelNoiseConfig(**SMALL)], "different setups"),
    ([CNNConfig(**SMALL, mu_norm=0.0)], "mu_norm = 0"),
    ([], "at least one config"),
])
def test_mixed_or_unsupported_batches_are_refused(tmp_path, configs, message):
    outs = [tmp_path / f"{i}.zarr" for i in range(len(configs))]
    with pytest.raises(dyn.ConfigError, match=message) as info:
        train_batch(configs, outs)
    assert len(str(info.value).splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # refused before any store is made


def test_resume_duplicates_and_existing_stores_are_refused_before_writing(tmp_path):
    cfgs = [CNNConfig(**SMALL, seed=s) for s in range(2)]
    with pytest.raises(dyn.ConfigError, match="cannot resume"):
        train_batch(cfgs, [tmp_path / "a.zarr", tmp_path / "b.zarr"], resume=True)
    with pytest.raises(dyn.ConfigError, match="same store"):
        train_batch(cfgs, [tmp_path / "x.zarr", tmp_path / "." / "x.zarr"])
    with pytest.raises(dyn.ConfigError, match="2 configs but 1 outputs"):
        train_batch(cfgs, [tmp_path / "x.zarr"])
    assert list(tmp_path.iterdir()) == []
    train(cfgs[1], tmp_path / "b.zarr")
    before = read_attrs(tmp_path / "b.zarr")
    with pytest.raises(dyn.StoreError, match="exists"):
        train_batch(cfgs, [tmp_path / "a.zarr", tmp_path / "b.zarr"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zarr"] and read_attrs(tmp_path / "b.zarr") == before
    done = train_batch(cfgs, [tmp_path / "a.zarr", tmp_path / "b.zarr"], overwrite=True)
    assert [s.status for s in done] == ["complete", "complete"]


# -- a sweep of the family gives the same rows and stores in batches as one run at a time ----------------------------

def test_family_sweep_gives_the_same_rows_and_stores_in_batches(tmp_path):
    (tmp_path / "tiny.toml").write_text(
        'setup = "signal-noise-cnn"\ndescription = "test"\n[config]\nq = 1.0\nnetwork = "code"\nd = 40\nn = 8\n'
        'n_test = 40\nm = 3\nsteps = 12\neta = 0.1\nflip_rate = 0.1\northogonal_noise = false\nrecord_every = 3\n'
        'test_every = 6\n')
    (tmp_path / "grid.toml").write_text(
        f'preset = "{tmp_path / "tiny.toml"}"\n[axes]\nmu_norm = [0.5, 6.0]\nd = [40, 50]\nseed = [0, 1]\n')
    grid = load_grid(tmp_path / "grid.toml")
    assert sorted(len(g) for g in batches(expand(grid), size=8)) == [4, 4]  # one batch per d
    one = sweep(grid, tmp_path / "one", sequential=True, batch=1, progress=False)
    eight = sweep(grid, tmp_path / "eight", sequential=True, batch=8, progress=False)
    assert len(eight) == 8 and list(eight.columns) == list(one.columns) and list(eight["id"]) == list(one["id"])
    # every column but where the run is and how long it took: the theory's results (when the family has a theory)
    # or the same error (when it has none), the grid point, the config
    pd.testing.assert_frame_equal(eight.drop(columns=["store", "seconds"]), one.drop(columns=["store", "seconds"]),
                                  check_exact=False, rtol=1e-4)
    for a, b in zip(eight["store"], one["store"]):
        assert read_attrs(a)["status"] == "complete" and read_attrs(a)["batched"] == 4
        assert "batched" not in read_attrs(b)
        assert _max_diff(a, b) < 1e-5
    # the comparison tells runs apart: two runs of one batch (same d, other ||mu|| or seed) differ
    same_d = eight[eight["d"] == 40]
    with pytest.raises(AssertionError):
        assert _max_diff(same_d["store"].iloc[0], same_d["store"].iloc[1], skip_attrs=("config", "seed")) < 1e-5
