"""Probe helpers against brute force: class means and residuals in numpy, conv patches against conv2d/conv1d,
recorded conv and hidden-layer inner products against W(t) @ probes from saved weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

import dyn
from dyn.record import probes
from tests.digits import cnn, digits, mlp, train_recorded


def test_class_means_and_residuals_match_numpy():
    x, y = digits(100)
    means = probes.class_means(x, y)
    xn, yn = x.numpy(), y.numpy()
    for c in range(10):
        np.testing.assert_allclose(means[f"class{c}"].numpy(), xn[yn == c].mean(0), rtol=1e-6, atol=1e-7)
    res = probes.residual_noise(x, y).numpy()
    np.testing.assert_allclose(res, xn - np.stack([xn[yn == c].mean(0) for c in yn]), atol=1e-6)


def test_random_baseline_has_the_noise_count_and_norms():
    noise = torch.randn(30, 12) * torch.linspace(0.1, 3, 30)[:, None]
    base = probes.random_baseline(noise, seed=3)
    assert base.shape == noise.shape
    np.testing.assert_allclose(base.norm(dim=1).numpy(), noise.norm(dim=1).numpy(), rtol=1e-5)
    assert torch.equal(base, probes.random_baseline(noise, seed=3))
    assert abs(float((base * noise).sum(1).mean())) < float(noise.norm(dim=1).pow(2).mean()) * 0.3


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2), dict(dilation=2, padding=2), dict()])
def test_conv2d_patches_reproduce_the_convolution(kwargs):
    conv = torch.nn.Conv2d(3, 5, (3, 2), bias=False, **kwargs)
    x = torch.randn(4, 3, 9, 7)
    p = probes.conv_patches(conv, x)
    out = conv(x).detach()  # (images, filters, H, W)
    pre = conv.weight.detach().flatten(1) @ p.vectors.T  # (filters, patches)
    expected = out[p.image, :, p.position[:, 0], p.position[:, 1]].T
    torch.testing.assert_close(pre, expected, rtol=1e-5, atol=1e-5)
    assert p.vectors.shape[0] == out.shape[0] * out.shape[2] * out.shape[3]


def test_conv1d_patches_and_subsampling():
    conv = torch.nn.Conv1d(2, 4, 3, padding=1, stride=2, bias=False)
    x = torch.randn(3, 2, 11)
    p = probes.conv_patches(conv, x, per_image=2, seed=1)
    out = conv(x).detach()
    assert p.vectors.shape == (6, 6) and p.image.tolist() == [0, 0, 1, 1, 2, 2]
    torch.testing.assert_close(conv.weight.detach().flatten(1) @ p.vectors.T, out[p.image, :, p.position[:, 0]].T,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(dyn.ConfigError, match="per_image"):
        probes.conv_patches(conv, x, per_image=100)
    with pytest.raises(dyn.ConfigError, match="Conv1d or Conv2d"):
        probes.conv_patches(torch.nn.Linear(3, 3), x)


def test_conv_weight_is_a_site_recorded_every_step(tmp_path):
    """Regression (issue 11): conv weights were refused ('must be a 2-D tensor'); now each filter is a neuron."""
    x, y = digits(50)
    model = cnn()
    site = probes.site_for(model[1], x.reshape(-1, 1, 8, 8), y, per_image=3)
    assert site.weight.shape == (6, 9) and site.attrs["weight_shape"] == [6, 1, 3, 3]
    weights = train_recorded(tmp_path / "c.zarr", model, {"conv": site}, x, y, steps=6)["conv"]
    ds = xr.open_datatree(tmp_path / "c.zarr", engine="zarr")["conv"]
    w = weights.reshape(len(weights), 6, 9)
    np.testing.assert_allclose(ds["noise_inner"].values, np.einsum("trd,id->tri", w, site.noise.double().numpy()),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds["random_inner"].values,
                               np.einsum("trd,id->tri", w, site.extra["random"][1].double().numpy()), rtol=1e-5, atol=1e-5)
    change = ((w - w[0]) ** 2).sum(-1)
    np.testing.assert_allclose(ds["weight_change_sq"].values[..., 0], change, rtol=1e-4, atol=1e-9)
    assert ds["patch_image"].values.tolist() == site.coords["patch_image"][1].tolist()
    assert set(ds["patch_row"].values) <= set(range(8)) and ds["patch_image"].values.max() == 49
    assert "class means" in ds.attrs["probes"]


def test_several_layers_with_frozen_hidden_probes(tmp_path):
    x, y = digits(80)
    model = mlp(16)
    hidden0 = torch.relu(model[0](x)).detach()
    sites = probes.sites_for(model, ["0", "2"], x, y, noise="raw", baseline=False)
    assert set(sites) == {"l0", "l2"}
    torch.testing.assert_close(sites["l2"].noise, hidden0)  # the hidden layer's inputs at the start
    assert "frozen" in sites["l2"].attrs["probes"] and "frozen" not in sites["l0"].attrs["probes"]
    weights = train_recorded(tmp_path / "two.zarr", model, sites, x, y, steps=5)
    tree = xr.open_datatree(tmp_path / "two.zarr", engine="zarr")
    for name, site in sites.items():
        np.testing.assert_allclose(tree[name]["noise_inner"].values,
                                   np.einsum("trd,id->tri", weights[name], site.noise.double().numpy()),
                                   rtol=1e-5, atol=1e-5)
        assert tree[name].attrs["module"] == name[1:]
    # the rebuilt sites (to resume) read the same frozen probes back, not the moved activations
    rebuilt = probes.sites_from_store(tmp_path / "two.zarr", model)
    torch.testing.assert_close(rebuilt["l2"].noise, sites["l2"].noise)
    assert list(rebuilt["l2"].signals) == list(sites["l2"].signals) and rebuilt["l2"].track_change


def test_sequence_inputs_give_one_probe_per_token():
    lin = torch.nn.Linear(4, 3)
    site = probes.site_for(lin, torch.randn(5, 7, 4), torch.arange(5) % 2)
    assert site.noise.shape == (35, 4) and site.labels.tolist()[:8] == [0] * 7 + [1]


def test_compiled_model_records_its_parameters(tmp_path):
    """torch.compile: the compiled module trains the same Parameter objects, so the optimizer hook sees them."""
    x, y = digits(40)
    model = mlp(8)
    compiled = torch.compile(model, backend="aot_eager")  # the hook path is the same for every backend
    site = probes.site_for(model[0], x, y)
    opt = torch.optim.SGD(compiled.parameters(), lr=0.5)
    snaps = [model[0].weight.detach().clone()]
    with dyn.Recorder(tmp_path / "k.zarr", sites={"w": site}, optimizer=opt) as rec:
        for _ in range(4):
            loss = torch.nn.functional.cross_entropy(compiled(x), y)
            loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)
            snaps.append(model[0].weight.detach().clone())
    ds = xr.open_datatree(tmp_path / "k.zarr", engine="zarr")["w"]
    w = torch.stack(snaps).double().numpy()
    np.testing.assert_allclose(ds["noise_inner"].values, np.einsum("trd,id->tri", w, site.noise.double().numpy()),
                               rtol=1e-5, atol=1e-5)
    assert np.abs(np.diff(ds["noise_inner"].values, axis=0)).max() > 0


def test_site_attrs_are_json(tmp_path):
    site = probes.site_for(torch.nn.Linear(6, 2), torch.randn(8, 6), torch.arange(8) % 2)
    json.dumps(site.attrs)


def test_only_inputs_computed_from_trainable_parameters_are_frozen():
    model = cnn(4)  # Unflatten (a reshape), Conv2d, ReLU, Flatten, Linear
    x, y = digits(10)
    sites = probes.sites_for(model, ["1", "4"], x, y)
    assert "frozen" not in sites["l1"].attrs["probes"]  # the conv sees the data, only reshaped
    assert "frozen" in sites["l4"].attrs["probes"]
