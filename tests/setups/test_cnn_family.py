"""The signal-noise CNN family: the code network against a real nn.Conv1d, recordings against W @ probes from saved
weights, the exact update identities on every variant, and each per-run claim on inputs where it must fail."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dyn
from dyn.errors import ConfigError
from dyn.setups.signal_noise_cnn import CNNConfig, train
from dyn.setups.signal_noise_cnn.trainer import CNNSetup
from dyn.theory import theory_for
from dyn.theory.cao2022 import CaoTheory, stage1_winner
from dyn.theory.kou2023 import KouTheory, ratio_tracks_n_snr2
from dyn.theory.signal_noise_cnn import claims as C
from dyn.theory.signal_noise_cnn.quantities import CNNRecording


def small(**kw):
    base = dict(q=1.0, d=60, n=10, n_test=200, m=4, steps=25, eta=0.5, flip_rate=0.2, mu_norm=3.0, sigma0=0.01,
                test_every=5)
    base.update(kw)
    return CNNConfig(**base)


def verdicts(path):
    run = dyn.Run(path)
    return {v.claim: v for v in theory_for(run).check(run)}


def test_code_network_is_the_authors_conv1d():
    """The augmented-bias parameterisation computes what Conv1d(1, 2m, d, stride=d) + ReLU + mean over patches + sum
    over each class's filters computes, and one SGD step moves both the same way."""
    cfg = small(network="code", orthogonal_noise=False, dtype="float64", flip_rate=0.0)
    setup = CNNSetup(cfg)
    d, m = cfg.d, cfg.m
    conv = torch.nn.Conv1d(1, 2 * m, d, d).double()
    with torch.no_grad():  # channels 0..m-1 score class 0 (label -1), m..2m-1 class 1 (+1)
        conv.weight.copy_(torch.cat([setup.net.weight_neg[:, :d], setup.net.weight_pos[:, :d]])[:, None, :])
        conv.bias.copy_(torch.cat([setup.net.weight_neg[:, d], setup.net.weight_pos[:, d]]))
    x = setup.data.inputs()  # (n, 2, d)

    def conv_f(x):
        h = torch.relu(conv(x.reshape(x.shape[0], 1, -1))).mean(2)
        return h[:, m:].sum(1) - h[:, :m].sum(1)

    f_conv, f_ours = conv_f(x), setup.forward(0).f
    torch.testing.assert_close(f_ours, f_conv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(setup.net(x), f_conv, rtol=1e-12, atol=1e-12)
    # one step of both: cross-entropy on [F_-1, F_+1] is the logistic loss on y f
    labels = (setup.data.y > 0).long()
    before = conv.weight.detach().clone()
    h = torch.relu(conv(x.reshape(x.shape[0], 1, -1))).mean(2)
    logits = torch.stack([h[:, :m].sum(1), h[:, m:].sum(1)], 1)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    with torch.no_grad():
        conv.weight -= cfg.eta * conv.weight.grad
        conv.bias -= cfg.eta * conv.bias.grad
    setup.step(setup.forward(0))
    torch.testing.assert_close(setup.net.weight_pos[:, :d], conv.weight[m:, 0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(setup.net.weight_neg[:, d], conv.bias[:m], rtol=1e-10, atol=1e-12)
    assert float((conv.weight - before).abs().max()) > 1e-4  # the step moved the weights


@pytest.mark.parametrize("network,orthogonal", [("theory", True), ("code", False)])
def test_recorded_inner_products_match_saved_weights(tmp_path, network, orthogonal):
    path = tmp_path / "r.zarr"
    train(small(network=network, orthogonal_noise=orthogonal), path)
    tree = dyn.open(path)
    for site in ("pos", "neg"):
        ds = tree[site]
        w = ds["weight_final"].values.astype(np.float64)
        probes = np.concatenate([ds["signal_vectors"].values, ds["noise_vectors"].values]).astype(np.float64)
        brute = w @ probes.T
        recorded = np.concatenate([ds["signal_inner"].isel(step=-1).values, ds["noise_inner"].isel(step=-1).values], 1)
        np.testing.assert_allclose(recorded, brute, rtol=1e-6, atol=1e-6 * np.abs(brute).max())
    if network == "code":  # the bias is the inner product with e_{d+1}
        np.testing.assert_allclose(tree["pos"]["signal_inner"].sel(signal="bias").isel(step=-1).values,
                                   tree["pos"]["weight_final"].values[:, -1], rtol=1e-6)


@pytest.mark.parametrize("q,network,orthogonal,algorithm", [
    (1.0, "theory", True, "gd"), (1.0, "code", False, "gd"), (2.0, "theory", False, "gd"),
    (3.0, "theory", True, "gd"), (3.0, "code", True, "gd"), (1.0, "theory", True, "label_noise"),
])
def test_exact_identities_hold_on_every_variant(tmp_path, q, network, orthogonal, algorithm):
    path = tmp_path / "r.zarr"
    kw = dict(q=q, network=network, orthogonal_noise=orthogonal, algorithm=algorithm, p=0.3)
    if q > 2:
        kw.update(sigma0=0.05, eta=0.2, mu_norm=4.0)
    train(small(**kw), path)
    rec = CNNRecording.from_run(dyn.Run(path))
    for which in ("gamma", "rho") + (("bias",) if network == "code" else ()):
        out = C.identity_outcome(rec, which)
        assert out.holds, (which, out.observed)
        assert out.numbers["largest_change"] > 100 * out.numbers["max_residual"]
    # the same check fails on a planted error of 1e-3 of the largest step change at one step
    rho = rec.rho.copy()
    rho[5:, 0, 0, 0] += 1e-3 * max(C.identity_outcome(rec, "rho").numbers["largest_change"], 1e-3)
    bad = rec.replace(rho=rho)
    assert C.identity_outcome(bad, "rho").holds is False


def test_identities_of_other_optimizers_are_not_checkable(tmp_path):
    for opt in ("sam", "adam", "RMSprop"):
        path = tmp_path / f"{opt}.zarr"
        train(small(optimizer=opt, eta=0.05), path)
        v = verdicts(path)
        assert v["identity.noise_update"].verdict == "not checkable"
        assert "different step" in v["identity.noise_update"].reason
    with pytest.raises(ConfigError, match="not a torch.optim optimizer"):
        train(small(optimizer="Nonsense"), tmp_path / "x.zarr")


def test_kou_run_verdicts_and_planted_failures(tmp_path):
    path = tmp_path / "kou.zarr"
    train(small(steps=60, flip_rate=0.3, n=12, seed=1), path)
    run = dyn.Run(path)
    assert theory_for(run).name == "kou2023"
    v = verdicts(path)
    for name in ("identity.signal_update", "identity.noise_update", "invariant.signs", "overfit.train",
                 "overfit.flipped_by_noise", "test.bayes_floor"):
        assert v[name].verdict == "holds", (name, v[name].observed, v[name].reason)
    assert v["identity.bias_update"].verdict == "not checkable"
    rec = CNNRecording.from_run(run)
    # signs: a planted negative rho on an own bank
    rho = rec.rho.copy()
    own = np.flatnonzero(rec.y > 0)[0]
    rho[-1, 0, 0, own] = -1.0
    assert C.signs(rec.replace(rho=rho)).holds is False
    # overfitting: a run stopped after 2 steps has not fitted its data
    assert C.overfitting(rec.replace(scalars={**rec.scalars, "train_error": np.full(len(rec.steps), 0.25)})).holds is False
    # Bayes floor: a test error planted below p - 3 SE
    assert C.bayes_floor(rec.replace(scalars={**rec.scalars, "test_error": np.full(len(rec.steps), 0.01)})).holds is False
    # flipped samples fitted by signal, not noise: zero their noise inner products at the end
    b = rec.b.copy()
    b[-1][..., rec.flipped] = -10.0
    assert C.flipped_fitted_by_noise(rec.replace(b=b)).holds is False
    # q = 1 ratio: a gamma that keeps growing against rho leaves the band
    gamma = rec.gamma * np.exp(np.linspace(0, 8, len(rec.steps)))[:, None, None]
    assert ratio_tracks_n_snr2(rec.replace(gamma=gamma)).holds is False


def test_a_run_that_did_not_move_is_not_checkable_and_not_a_winner(tmp_path):
    path = tmp_path / "still.zarr"
    train(small(eta=1e-9, steps=3, flip_rate=0.0), path)
    run = dyn.Run(path)
    v = verdicts(path)
    assert v["invariant.signs"].verdict == "not checkable"
    assert KouTheory().regime(run)["observed_winner"] == "did not move"
    rec = CNNRecording.from_run(run)
    assert C.winner(1.0, 1.05, rec) == "tie" and C.winner(2.0, 1.0, rec) == "signal learning"
    assert C.winner(float("nan"), 1.0, rec) == "did not move"


def test_cao_race_and_selection(tmp_path):
    sig, noi = tmp_path / "sig.zarr", tmp_path / "noi.zarr"
    train(small(q=3.0, d=100, n=20, m=5, steps=40, sigma0=0.01, mu_norm=8.0, flip_rate=0.0), sig)
    train(small(q=3.0, d=400, n=20, m=5, steps=40, sigma0=0.01, mu_norm=3.0, flip_rate=0.0), noi)
    for path, expected in ((sig, "signal learning"), (noi, "noise memorization")):
        run = dyn.Run(path)
        assert theory_for(run).name == "cao2022"
        v = verdicts(path)["race.stage1_winner"]
        assert v.verdict == "holds" and expected in v.observed, v.observed
    # planted: the race's loser leads -> violated
    rec = CNNRecording.from_run(dyn.Run(sig))
    swapped = rec.replace(gamma=np.zeros_like(rec.gamma))
    assert stage1_winner(swapped).holds is False
    # near the boundary the race is not judged
    mid = tmp_path / "mid.zarr"
    train(small(q=3.0, d=100, n=20, m=5, steps=10, sigma0=0.01, mu_norm=4.0, flip_rate=0.0), mid)
    assert verdicts(mid)["race.stage1_winner"].verdict == "not checkable"


def test_theory_selection_by_config(tmp_path):
    q2 = tmp_path / "q2.zarr"
    train(small(q=2.0, steps=3), q2)
    with pytest.raises(ConfigError, match="no registered theory judges"):
        theory_for(dyn.Run(q2))
    assert KouTheory().applies_to(dyn.Run(q2)) is None  # by name it still applies, outside its hypotheses
    assert CaoTheory().hypotheses(dyn.Run(q2))["q > 2"] is False


@pytest.mark.parametrize("changes,message", [
    ({"q": 0.5}, "q must be a number >= 1"), ({"flip_rate": 0.5}, "flip_rate must lie in [0, 0.5)"),
    ({"network": "resnet"}, "network must be one of"), ({"optimizer": "sgd!"}, "optimizer must be one of"),
    ({"mu_norm": -1.0}, "mu_norm must be a positive finite number or 0"), ({"sam_radius": 0.0}, "sam_radius"),
])
def test_bad_values_are_one_line_errors(changes, message):
    with pytest.raises(ConfigError) as err:
        small(**changes)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_zero_signal_trains_unrecorded_only(tmp_path):
    summary = train(small(mu_norm=0.0, steps=5), None)
    assert summary.status == "complete" and 0.0 <= summary.final_test_error <= 1.0
    with pytest.raises(ConfigError, match="mu_norm = 0"):
        train(small(mu_norm=0.0, steps=5), tmp_path / "z.zarr")
    assert not (tmp_path / "z.zarr").exists()


def test_label_flips_are_stored_and_leave_clean_runs_unchanged(tmp_path):
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    train(small(flip_rate=0.0, steps=3), a)
    train(small(flip_rate=0.3, steps=3), b)
    ta, tb = dyn.open(a), dyn.open(b)
    assert "labels" not in ta.children and "labels" in tb.children
    np.testing.assert_array_equal(ta["pos"]["noise_vectors"].values, tb["pos"]["noise_vectors"].values)
    flipped = tb["labels"]["flipped"].values.astype(bool)
    assert flipped.any()
    np.testing.assert_array_equal(tb["pos"]["label"].values[flipped], -tb["labels"]["label_true"].values[flipped])
    np.testing.assert_array_equal(ta["pos"]["label"].values, tb["labels"]["label_true"].values)
    assert math.isfinite(float(tb["test_error_clean"].dropna("step").values[-1]))


def test_a_family_sweep_is_judged_by_the_config_s_theory_with_every_column_filled(tmp_path):
    """Regression: sweep_theory chose by setup alone, so a family sweep had no theory (dyn analyze exit 2)."""
    from dyn.experiments.sweep import load_grid, sweep
    from dyn.theory.sweeps import sweep_table, sweep_theory
    from dyn.theory.transitions import check_transitions

    grid = load_grid("kou2023-grid")
    grid["fixed"].update(steps=20, n_test=100, d=60)
    grid["axes"] = {"mu_norm": [0.5, 4.0], "seed": [0, 1]}
    sweep(grid, tmp_path / "s", sequential=True)
    ds = dyn.open_sweep(tmp_path / "s")
    assert sweep_theory(ds).name == "kou2023"
    table = sweep_table(ds)
    for col in ("test_error", "test_error_se", "excess_test_error", "bayes_test_error", "winner", "max_gamma"):
        assert table[col].notna().all(), col
    verdicts = check_transitions(ds)
    assert {v.claim for v in verdicts} >= {"transition.benign.location", "transition.benign.collapse"}
    # one field varies: the exponent ratio cannot be identified
    assert next(v for v in verdicts if v.claim == "transition.benign.location").verdict == "not checkable"


def test_an_unrecorded_diverging_run_is_diverged_not_correct():
    """Regression: NaN outputs counted as correct predictions (y f <= 0 is False for NaN): test error 0."""
    summary = train(small(q=3.0, eta=1e12, steps=20, sigma0=0.1), None)
    assert summary.status == "diverged" and math.isnan(summary.final_test_error)
    setup = CNNSetup(small(steps=2))
    with torch.no_grad():
        setup.net.weight_pos.fill_(float("nan"))
    assert setup.evaluate()["test_error"] == 1.0


def test_label_noise_sweeps_batch_with_the_family_trainer(tmp_path):
    from dyn.setups.base import get_setup
    from dyn.setups.huang2025_label_noise import LabelNoiseConfig

    setup = get_setup("huang2025-label-noise")
    cfgs = [LabelNoiseConfig(d=40, n=8, n_test=20, m=4, steps=5, population_draws=0, seed=s) for s in (0, 1)]
    assert setup.batch_key(cfgs[0]) == setup.batch_key(cfgs[1])
    outs = [tmp_path / "a.zarr", tmp_path / "b.zarr"]
    summaries = setup.train_batch(cfgs, outs)
    assert [s.status for s in summaries] == ["complete", "complete"]
    assert dyn.Run(outs[1]).attrs["setup"] == "huang2025-label-noise"


def test_heatmap_cells_with_no_signal_train_in_batches(monkeypatch):
    """The |mu| = 0 column of Kou's heatmap: unrecorded, batched (never one by one), a test error near chance."""
    from dyn.experiments.kou2023 import heatmap_configs, train_cells
    from dyn.setups.base import Setup

    cells = [(labels, cfg.replace(steps=10)) for labels, cfg in heatmap_configs("code", small=True, repeats=2)
             if labels["d"] == 100 and labels["mu_norm"] <= 1]

    def no_lone_runs(*args, **kwargs):
        raise AssertionError("a batch fell back to lone runs")

    monkeypatch.setattr(Setup, "train", no_lone_runs)
    table = train_cells(cells, progress=False)
    assert table["test_error"].notna().all()
    assert table[table["mu_norm"] == 0]["test_error"].between(0.4, 0.6).all()
