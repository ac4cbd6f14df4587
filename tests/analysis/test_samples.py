"""Issue 22.2: which samples are memorized — per-sample table, memorized-first curves, flipped mask, values logged
per sample, conv patches joined to their images — on runs whose answer is built in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dyn
from dyn.analysis.samples import memorized_curves, sample_table, threshold
from dyn.record import probes
from dyn.viz.samples import plot_memorized_curves, plot_top_samples
from tests.digits import cnn, digits


def _known(tmp_path, *, baseline: bool):
    """W(t) = W(0) + Σ_i ρ_i(t) ξ_i/‖ξ_i‖² with orthogonal ξ: samples 3 and 7 (the 'flipped' ones) grow from step 2,
    sample 5 from step 6, the rest stay at 1% of that; the per-sample loss logged at every step."""
    d, n, m, steps = 32, 10, 3, 10
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    xi = q[:n] * 2.0
    w0 = torch.randn(m, d, generator=g, dtype=torch.float64) * 0.01
    w = torch.nn.Parameter(w0.clone())
    labels = torch.arange(n) % 2
    extra = {"random": probes.random_baseline(xi, seed=3)} if baseline else {}
    site = dyn.Site(w, signals={"mu": q[n + 1]}, noise=xi, labels=labels, extra=extra)
    path = tmp_path / "k.zarr"
    rho = np.zeros((steps + 1, n))
    with dyn.Recorder(path, {"h": site}) as rec:
        for t in range(1, steps + 1):
            rho[t] = 0.01 * t
            rho[t, [3, 7]] = 1.0 * max(t - 1, 0)
            rho[t, 5] = 0.5 * max(t - 5, 0)
            with torch.no_grad():
                w.copy_(w0 + (torch.tensor(rho[t])[None, :] * torch.ones(m, 1, dtype=torch.float64))
                        @ (xi / (xi * xi).sum(1, keepdim=True)))
            rec.step()
            rec.log_per_sample(step=t, loss=torch.tensor(-rho[t]))
    return path, rho


def test_table_ranks_onsets_and_logged_values(tmp_path):
    path, rho = _known(tmp_path, baseline=False)
    flipped = np.zeros(10, dtype=bool)
    flipped[[3, 7]] = True
    table = sample_table(path, "h", flipped=flipped, level=0.9)
    assert table["sample"].tolist()[:3] in ([3, 7, 5], [7, 3, 5])
    np.testing.assert_allclose(table.set_index("sample").loc[[3, 7, 5], "rho_max"], [9.0, 9.0, 2.5], rtol=1e-5)
    assert table.set_index("sample").loc[3, "onset"] == 2 and table.set_index("sample").loc[5, "onset"] == 7
    never = table[~table["sample"].isin([3, 5, 7])]
    assert never["onset"].isna().all() and not never["memorized"].any()  # 0.1 < 0.9: never memorized
    assert table["flipped"].tolist()[:2] == [True, True] and not table["flipped"].iloc[2:].any()
    np.testing.assert_allclose(table.set_index("sample")["loss"].sort_index(), -rho[-1])
    assert set(table["label"]) == {0, 1}


def test_memorized_first_curves_flipped_before_clean(tmp_path):
    path, _ = _known(tmp_path, baseline=False)
    mask = np.isin(np.arange(10), [3, 7])
    curves = memorized_curves(path, "h", flipped=mask, level=0.9)
    assert curves.loc[1, "flipped"] == 0 and curves.loc[2, "flipped"] == 1.0 and curves.loc[2, "clean"] == 0
    assert curves.loc[10, "clean"] == pytest.approx(1 / 8) and curves.loc[10, "all"] == pytest.approx(3 / 10)


def test_above_random_and_untrained_run(tmp_path):
    """With a random baseline only the samples that moved more than any random direction are above it; a run that
    never moves (its recording differs by float32 ulps) memorizes nothing."""
    path, _ = _known(tmp_path, baseline=True)
    level, source = threshold(path, "h")
    assert source == "half the largest final max-over-neurons rho" and level == pytest.approx(4.5, rel=1e-5)
    table = sample_table(path, "h")
    assert {3, 7} <= set(table.loc[table["above_random"], "sample"]) <= {3, 5, 7}
    assert 0 < table.attrs["random_change"] < 9.0
    w = torch.nn.Parameter(torch.randn(2, 8))
    site = dyn.Site(w, signals={"mu": torch.ones(8)}, noise=torch.randn(4, 8))
    with dyn.Recorder(tmp_path / "still.zarr", {"h": site}) as rec:
        rec.step()
    still = sample_table(tmp_path / "still.zarr", "h")
    assert "rounding" in still.attrs["threshold_source"]
    assert not still["memorized"].any() and memorized_curves(tmp_path / "still.zarr", "h")["all"].max() == 0


def test_conv_patches_join_their_images_and_figures_render(tmp_path):
    """Per-image flipped mask and per-image loss reach each patch through patch_image; both figures draw."""
    x, y = digits(40)
    model = cnn()
    site = probes.site_for(model[1], x.reshape(-1, 1, 8, 8), y, per_image=3)
    flipped = torch.zeros(40, dtype=torch.bool)
    flipped[:4] = True
    y_train = torch.where(flipped, (y + 1) % 10, y)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with dyn.Recorder(tmp_path / "c.zarr", {"conv": site}, optimizer=opt) as rec:
        for _ in range(6):
            losses = torch.nn.functional.cross_entropy(model(x), y_train, reduction="none")
            losses.mean().backward(); opt.step(); opt.zero_grad()
            rec.log(loss=losses.mean()); rec.log_per_sample(loss=losses)
    table = sample_table(tmp_path / "c.zarr", "conv", flipped=flipped.numpy())
    assert len(table) == 120 and {"patch_image", "patch_row", "patch_col", "loss", "flipped"} <= set(table)
    np.testing.assert_array_equal(table["flipped"], table["patch_image"] < 4)
    assert np.isfinite(table["loss"]).all()
    with pytest.raises(dyn.ConfigError, match="flipped has 7 entries"):
        sample_table(tmp_path / "c.zarr", "conv", flipped=np.zeros(7, dtype=bool))
    top = plot_top_samples(tmp_path / "c.zarr", "conv", k=6, flipped=flipped.numpy())
    curves = plot_memorized_curves(tmp_path / "c.zarr", "conv", flipped=flipped.numpy())
    assert "projection" in top._suptitle.get_text() and "projection" in curves.axes[0].get_title()
    for fig, name in ((top, "top"), (curves, "curves")):
        fig.savefig(tmp_path / f"{name}.png", dpi=80)
    checks = {c.name: c for c in dyn.verify(tmp_path / "c.zarr")}
    assert all(c.ok for n, c in checks.items() if not n.startswith("decomposition")), checks
