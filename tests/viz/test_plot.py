"""Figure fixes, checked on the figure objects: every site shown and named, the stage-1 prediction clipped to the
data, distinct labelled T₁ markers, one legend outside the panels, heatmaps on one signed log scale."""

from __future__ import annotations

import numpy as np
import pytest

import dyn
from dyn.viz.plot import plot_coefficients, plot_heatmap, plot_signal_vs_noise


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plots")
    out = {}
    for modality in ("single", "multi"):
        out[modality] = folder / f"{modality}.zarr"
        dyn.train(dyn.load_preset("huang2024-tiny", modality=modality), out[modality])
    return out


def test_coefficients_show_every_site_with_clipped_prediction_and_one_legend(runs):
    fig = plot_coefficients(runs["multi"])
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("site h:") for t in titles) and any(t.startswith("site g:") for t in titles)
    assert "multi" in fig.get_suptitle()
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    for ax in fig.axes:
        lines = {l.get_label(): l for l in ax.get_lines()}
        data_max = np.nanmax(lines["max over neurons"].get_ydata())
        for label, line in lines.items():
            if label.startswith("stage-1 prediction"):
                assert np.max(line.get_ydata()) <= 1.5 * data_max  # clipped: the curves keep the axis
        markers = [l for k, l in lines.items() if k.startswith("T1")]
        assert len({(str(m.get_linestyle()), m.get_color()) for m in markers}) == len(markers)  # distinguishable
        assert all("=" in m.get_label() for m in markers)  # labelled with the step


def test_heatmaps_share_one_signed_log_scale(runs):
    g, r = plot_heatmap(runs["multi"], quantity="gamma"), plot_heatmap(runs["multi"], quantity="rho")
    norms = [fig.axes[0].collections[0].norm for fig in (g, r)]
    assert type(norms[0]).__name__ == "SymLogNorm"
    assert norms[0].vmin == norms[1].vmin == -norms[0].vmax and norms[0].vmax == norms[1].vmax
    assert np.nanmin(g.axes[0].collections[0].get_array()) < 0  # the sign of γ is kept
    titles = [ax.get_title() for ax in g.axes[:2]]
    assert titles[0].startswith("site h") and titles[1].startswith("site g") and "over signals" in titles[0]
    ticks = g.axes[0].get_xticks()
    assert np.allclose(ticks, np.round(ticks, -1))  # step ticks at round numbers


def test_signal_vs_noise_has_one_legend_below(runs):
    fig = plot_signal_vs_noise(runs)
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    assert [ax.get_xlabel() for ax in fig.axes] == ["step", "step"]


def test_phase_diagram_draws_the_theory_thresholds_on_continuous_axes():
    import itertools

    import pandas as pd

    from dyn.experiments.huang2024 import MULTI_SIGNAL_WINS_ABOVE, SINGLE_NOISE_WINS_BELOW, phase_diagram

    rows = [dict(status="complete", n_snr2=n, c_mu=c, modality=m, seed=0, probe_acc=0.5,
                 winner="signal learning" if c * n >= 4.51 else "noise memorization")
            for n, c, m in itertools.product([0.25, 1.0, 3.0], [1.0, 2.0, 4.0], ["single", "multi"])]
    fig = phase_diagram(pd.DataFrame(rows))
    multi, _, single = fig.axes[:3]
    assert multi.get_xscale() == "log" and single.get_xscale() == "log"
    curve = next(l for l in multi.get_lines() if "4.51" in l.get_label())
    x, y = curve.get_xdata(), curve.get_ydata()
    assert np.allclose(x * y, MULTI_SIGNAL_WINS_ABOVE)  # the curve C_mu n SNR^2 = 4.51, not a segment in a cell
    assert x.min() < 0.25 and x.max() > 3.0
    line = next(l for l in single.get_lines() if "1.8" in l.get_label())
    assert np.allclose(line.get_xdata(), SINGLE_NOISE_WINS_BELOW)


def test_phase_diagram_counts_decided_runs_only():
    """Regression (issue 21 item 2): a run that did not move (or a tie) counted as a noise-memorization cell."""
    import pandas as pd

    from dyn.experiments.huang2024 import phase_diagram

    rows = [dict(status="complete", n_snr2=n, c_mu=c, modality="multi", seed=s, probe_acc=0.5, winner=w)
            for n, c, s, w in [(1.0, 4.0, 0, "signal learning"), (1.0, 4.0, 1, "did not move"),
                               (3.0, 4.0, 0, "did not move"), (3.0, 4.0, 1, "tie"),
                               (0.25, 1.0, 0, "noise memorization")]]
    fig = phase_diagram(pd.DataFrame(rows))
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"1.00", "no winner", "0.00"} <= texts  # 1 of 1 decided seeds; none decided; 0 of 1
