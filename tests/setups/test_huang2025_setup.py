"""The huang2025-label-noise setup: config, presets, data of Definition 2.1, the network, flips, the trainer's store."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dyn
from dyn.setups.huang2025_label_noise import (

    SETUP_NAME,
    LabelNoiseConfig,
    LabelNoiseSetup,
    SquaredReLUCNN,
    draw_flips,
    load_preset,
    make_data,
    population_error,
    read_flips,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def small(**changes) -> LabelNoiseConfig:
    base = dict(d=60, n=10, n_test=50, m=4, steps=6, eta=0.5, sigma0=0.05, population_draws=2000, test_every=2)
    base.update(changes)
    return LabelNoiseConfig(**base)


# -- config and presets --------------------------------------------------------------------------------------------
def test_figure2_preset_has_the_papers_numbers():
    cfg = load_preset("huang2025-figure2")
    assert (cfg.n, cfg.d, cfg.m, cfg.eta, cfg.mu_norm, cfg.sigma_p, cfg.p, cfg.steps, cfg.n_test) == \
        (200, 2000, 20, 0.5, 2.0, 0.5, 0.1, 2000, 2000)
    assert cfg.snr == pytest.approx(2 / (0.5 * math.sqrt(2000)))
    assert cfg.n * cfg.snr**2 == pytest.approx(1.6)
    # every number the paper leaves open is explained in the preset and travels with the config
    assert {"sigma0", "seed", "n_test", "dtype", "eta", "population_draws", "test_every"} <= set(cfg.notes)
    assert cfg.to_dict()["notes"]["sigma0"].startswith("Not stated")
    assert load_preset("huang2025-figure2", algorithm="gd").flip_probability == 0.0


def test_tiny_preset_loads_and_presets_build_their_own_setups_config():
    assert load_preset("huang2025-tiny").steps <= 500
    assert not isinstance(load_preset("huang2024-tiny"), LabelNoiseConfig)  # the preset's setup decides
    with pytest.raises(dyn.ConfigError, match="unknown preset"):
        load_preset("huang2025-nope")


@pytest.mark.parametrize("changes, message", [
    ({"d": 0}, "d must be a positive integer, got 0"),
    ({"n": 1}, "n must be at least 2"),
    ({"n": 60}, "n must be at most d - 1 = 59"),
    ({"m": -1}, "m must be a positive integer"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"eta": float("inf")}, "eta must be a positive finite number"),
    ({"sigma0": 0.0}, "sigma0 must be a positive finite number (with w(0) = 0"),
    ({"sigma_p": -1.0}, "sigma_p must be a positive finite number"),
    ({"mu_norm": float("nan")}, "mu_norm must be a positive finite number"),
    ({"p": -0.1}, "p must be a probability in [0, 1]"),
    ({"mu_axis": 60}, "mu_axis must lie in [0, d=60)"),
    ({"algorithm": "sam"}, "algorithm must be one of gd, label_noise"),
    ({"dtype": "float16"}, "dtype must be one of float32, float64"),
    ({"n_test": -1}, "n_test must be >= 0"),
    ({"seed": -3}, "seed must be >= 0"),
    ({"population_draws": -1}, "population_draws must be >= 0"),
    ({"test_every": 0}, "test_every must be a positive integer"),
    ({"d": 60.0}, "d must be of type int, got float 60.0"),
    ({"eta": True}, "eta must be of type float, got bool"),
    ({"notes": "x"}, "notes must be a table of strings"),
])
def test_bad_values_are_one_line_config_errors_naming_the_field(changes, message):
    with pytest.raises(dyn.ConfigError) as err:
        small(**changes)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_keys_are_named_with_a_suggestion():
    with pytest.raises(dyn.ConfigError, match="unknown config key 'sigma_xi' .*did you mean 'sigma_p'"):
        small().replace(sigma_xi=1.0)
    with pytest.raises(dyn.ConfigError, match="unknown config key 'tau'"):
        LabelNoiseConfig.from_dict({"tau": 0.1})


def test_config_round_trips_through_json():
    cfg = small(notes={"sigma0": "why"})
    assert LabelNoiseConfig.from_dict(cfg.to_dict()) == cfg
    assert LabelNoiseConfig.from_dict(cfg.to_dict()).notes == {"sigma0": "why"}


# -- data ---------------------------------------------------------------------------------------------------------
def test_data_follow_definition_2_1():
    cfg = small(d=400, n=300, n_test=1000, mu_axis=7)
    data = make_data(cfg)
    assert float(data.mu.norm()) == cfg.mu_norm and float(data.mu[7]) == cfg.mu_norm
    assert float((data.xi @ data.mu).abs().max()) == 0.0  # noise exactly orthogonal to the signal
    assert float((data.xi_test @ data.mu).abs().max()) == 0.0
    assert set(data.y.tolist()) == {-1.0, 1.0} and abs(float(data.y_test.mean())) < 0.1  # Rademacher
    norms = (data.xi**2).sum(1) / (cfg.sigma_p**2 * (cfg.d - 1))
    assert abs(float(norms.mean()) - 1) < 0.01  # sigma_p^2 chi^2_{d-1}
    x = data.inputs()
    assert torch.equal(x[:, 0], data.y[:, None] * data.mu) and torch.equal(x[:, 1], data.xi)


def test_projection_is_exact_for_any_signal_direction():
    from dyn.setups.huang2025_label_noise import draw_noise

    mu = torch.randn(50, dtype=torch.float64)
    xi = draw_noise(400, mu, 2.0, torch.Generator().manual_seed(1))
    assert float((xi @ mu).abs().max()) < 1e-12 * float(mu.norm() * xi.norm(dim=1).max())
    cov = xi.T @ xi / 400
    unit = mu / mu.norm()
    assert float((cov @ unit).norm()) < 1e-10  # covariance sigma_p^2 (I - mu mu^T/|mu|^2): mu is in its kernel


def test_seeds_separate_streams_and_test_set_does_not_depend_on_n():
    a, b = make_data(small(n=10)), make_data(small(n=20))
    assert torch.equal(a.xi_test, b.xi_test) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(make_data(small(seed=1)).xi, a.xi)
    assert torch.equal(make_data(small()).xi, a.xi)


# -- network ----------------------------------------------------------------------------------------------------------
def test_network_is_the_papers_f_with_squared_relu_and_1_over_m():
    gen = torch.Generator().manual_seed(0)
    net = SquaredReLUCNN(d=7, m=3, sigma0=1.0, generator=gen)
    x = torch.randn(5, 2, 7, dtype=torch.float64)
    wp, wn = net.weight_pos.detach().numpy(), net.weight_neg.detach().numpy()
    xn = x.numpy()
    for k in range(5):
        expected = sum(max(0.0, float(wp[r] @ xn[k, p])) ** 2 - max(0.0, float(wn[r] @ xn[k, p])) ** 2
                       for r in range(3) for p in range(2)) / 3
        assert float(net(x[k:k + 1]).detach()) == pytest.approx(expected, rel=1e-12)
    with torch.no_grad():
        assert torch.allclose(net(x), net(x.flip(1)), rtol=1e-14)  # the patch position never matters (§1)


def test_homogeneity_gradient_dot_weights_is_twice_the_output():
    net = SquaredReLUCNN(d=9, m=4, sigma0=0.7, generator=torch.Generator().manual_seed(3))
    x = torch.randn(1, 2, 9, dtype=torch.float64)
    f = net(x).sum()
    grads = torch.autograd.grad(f, [net.weight_pos, net.weight_neg])
    dot = sum((g * w).sum() for g, w in zip(grads, (net.weight_pos, net.weight_neg)))
    assert float(dot.detach()) == pytest.approx(2 * float(f.detach()), rel=1e-12)  # <grad f, W> = 2 f (§2, DERIVED)


def test_population_error_matches_brute_force_monte_carlo():
    cfg = small(d=30, n=8, m=3, sigma0=0.6)
    setup = LabelNoiseSetup(cfg)
    draws = torch.randn(200_000, 2 * cfg.m, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    err, se = population_error(setup.net, setup.data.mu, cfg.sigma_p, draws)
    from dyn.setups.huang2025_label_noise import draw_noise

    gen = torch.Generator().manual_seed(11)
    xi = draw_noise(200_000, setup.data.mu, cfg.sigma_p, gen)
    y = torch.randint(0, 2, (200_000,), generator=gen).to(torch.float64) * 2 - 1
    x = torch.stack([y[:, None] * setup.data.mu, xi], dim=1)
    with torch.no_grad():
        brute = float((y * setup.net(x) <= 0).to(torch.float64).mean())
    assert 0.05 < brute < 0.95  # a non-trivial error, so the comparison has teeth
    assert abs(err - brute) < 5 * (se + math.sqrt(brute * (1 - brute) / 200_000))


# -- flips ---------------------------------------------------------------------------------------------------------
def test_flips_are_iid_with_probability_p_and_replayable():
    cfg = small(d=400, n=200, steps=300, p=0.2)
    eps = draw_flips(cfg)
    assert eps.dtype == torch.int8 and set(eps.unique().tolist()) == {-1, 1}
    assert abs(float((eps < 0).double().mean()) - 0.2) < 0.01
    assert torch.equal(draw_flips(cfg), eps)  # replay from the seed
    assert not torch.equal(draw_flips(cfg.replace(seed=1)), eps)
    assert bool((draw_flips(cfg.replace(algorithm="gd")) == 1).all())


# -- trainer and store ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ln_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("ln") / "ln.zarr"
    summary = train(small(steps=8, p=0.3), path, attrs={"preset": "test"})
    return path, summary


def test_store_has_two_bank_sites_flips_scalars_and_config(ln_store):
    path, summary = ln_store
    assert summary.status == "complete" and summary.steps == 8 and summary.final_test_error is not None
    tree = dyn.open(path)
    assert tree.attrs["setup"] == SETUP_NAME and tree.attrs["algorithm"] == "label_noise"
    assert tree.attrs["sites"] == ["pos", "neg"] and tree.attrs["preset"] == "test"
    assert LabelNoiseConfig.from_dict(tree.attrs["config"]) == small(steps=8, p=0.3)
    for site in ("pos", "neg"):
        ds = tree[site]
        assert ds["signal_inner"].shape == (9, 4, 1) and ds["noise_inner"].shape == (9, 4, 10)
        assert list(ds["signal"].values) == ["mu"]
    eps = read_flips(path)
    assert eps.shape == (8, 10) and eps.dtype == np.int8
    np.testing.assert_array_equal(eps, draw_flips(small(steps=8, p=0.3)).numpy())
    np.testing.assert_array_equal(tree["flips"]["epsilon"].values, eps)
    np.testing.assert_array_equal(tree["flip_count"].values[:8], (eps < 0).sum(1))
    for name in ("loss", "loss_noisy_expected", "margin_min", "margin_mean", "margin_max", "train_error"):
        assert np.isfinite(tree[name].values).all(), name
    assert np.isnan(tree["loss_noisy"].values[-1]) and np.isfinite(tree["loss_noisy"].values[:-1]).all()
    evaluated = np.isfinite(tree["test_error"].values)
    assert tree["step"].values[evaluated].tolist() == [0, 2, 4, 6, 8]
    assert np.isfinite(tree["population_error"].values[evaluated]).all()


def test_recorded_inner_products_are_the_forward_pass_preactivations(ln_store):
    """The recorder stores W_j [mu | xi] handed over from the forward pass: at the last step they equal the stored
    final weights times the stored probes."""
    path, _ = ln_store
    tree = dyn.open(path)
    for site in ("pos", "neg"):
        ds = tree[site]
        w = ds["weight_final"].values
        np.testing.assert_allclose(ds["signal_inner"].values[-1, :, 0], w @ ds["signal_vectors"].values[0], rtol=1e-6,
                                   atol=1e-7)
        np.testing.assert_allclose(ds["noise_inner"].values[-1], w @ ds["noise_vectors"].values.T, rtol=1e-6, atol=1e-7)


def test_logged_losses_are_what_was_optimised(ln_store):
    path, _ = ln_store
    tree = dyn.open(path)
    cfg = small(steps=8, p=0.3)
    setup = LabelNoiseSetup(cfg)
    eps = read_flips(path)
    for t in range(3):
        state = setup.forward(t)
        assert float(state.loss_noisy().detach()) == pytest.approx(float(tree["loss_noisy"].values[t]), rel=1e-12)
        mg = state.margins.detach()
        clean = float(torch.nn.functional.softplus(-mg).mean())
        noisy = float(torch.nn.functional.softplus(-torch.as_tensor(eps[t], dtype=mg.dtype) * mg).mean())
        assert float(tree["loss"].values[t]) == pytest.approx(clean, rel=1e-12)
        assert float(tree["loss_noisy"].values[t]) == pytest.approx(noisy, rel=1e-12)
        setup.step(state)


def test_gd_and_label_noise_share_data_and_initialisation(tmp_path):
    train(small(algorithm="gd", steps=2), tmp_path / "gd.zarr")
    train(small(steps=2), tmp_path / "ln.zarr")
    gd, ln = dyn.open(tmp_path / "gd.zarr"), dyn.open(tmp_path / "ln.zarr")
    for site in ("pos", "neg"):
        np.testing.assert_array_equal(gd[site]["weight_init"].values, ln[site]["weight_init"].values)
        np.testing.assert_array_equal(gd[site]["noise_vectors"].values, ln[site]["noise_vectors"].values)
    assert bool((read_flips(tmp_path / "gd.zarr") == 1).all())


def test_divergence_is_reported_and_the_store_kept(tmp_path):
    with pytest.raises(dyn.DivergenceError, match="marked diverged"):
        train(small(eta=1e12, sigma0=1.0, steps=20), tmp_path / "boom.zarr")
    assert dyn.open(tmp_path / "boom.zarr").attrs["status"] == "diverged"


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    cfg = small(steps=12, p=0.3, population_draws=0)
    train(cfg, tmp_path / "ref.zarr")
    calls = {"n": 0}
    original = LabelNoiseSetup.step

    def crash_at_step_9(self, state):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        original(self, state)

    monkeypatch.setattr(LabelNoiseSetup, "step", crash_at_step_9)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run.zarr", checkpoint_every=4)
    monkeypatch.setattr(LabelNoiseSetup, "step", original)
    assert dyn.open(tmp_path / "run.zarr").attrs["status"] == "interrupted"
    with pytest.raises(dyn.ConfigError, match="config differs"):
        train(cfg.replace(eta=0.4), tmp_path / "run.zarr", resume=True)
    train(cfg, tmp_path / "run.zarr", resume=True)
    ref, run = dyn.open(tmp_path / "ref.zarr"), dyn.open(tmp_path / "run.zarr")
    assert run.attrs["status"] == "complete" and run["step"].values.tolist() == list(range(13))
    for site in ("pos", "neg"):
        np.testing.assert_array_equal(run[site]["noise_inner"].values, ref[site]["noise_inner"].values)
        np.testing.assert_array_equal(run[site]["weight_final"].values, ref[site]["weight_final"].values)
    np.testing.assert_array_equal(run["loss"].values, ref["loss"].values)
    with pytest.raises(dyn.StoreError, match="already complete"):
        train(cfg, tmp_path / "run.zarr", resume=True)
