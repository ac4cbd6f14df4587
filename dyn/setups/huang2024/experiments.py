"""Reproduce the paper's experiments end to end (``dyn reproduce figure1|table1``) and draw its sweeps.

``table1``: the ColoredMNIST experiment on scikit-learn's bundled digits (:mod:`dyn.colored_digits`).

``figure1``: the synthetic experiment (Figure 1 of Huang et al. 2024) — single- vs multi-modal training over
seeds, every step recorded, the OOD probe evaluated along training, and the paper's four panels (training loss,
OOD test accuracy, signal learning, noise memorization) with mean ± 1σ bands.

Metrics for the signal and noise panels (the paper does not define them): the main figure plots the raw inner
products ``max_r |⟨w_r, μ⟩|`` and ``max_{r,i} ⟨w_r, ξ_i⟩`` of encoder h (the quantities its proofs bound, §5); a
second figure plots the exact coefficients ``max_r |γ_r|`` and ``max_{r,i} ρ_{r,i}``. All four are in the curves
file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...analysis.run import Run
from ...errors import ConfigError
from ...store.outputs import save_figure, staged_folder
from ..base import load_preset
from .config import Config
from .train import train

__all__ = ["figure1", "figure1_config", "table1", "phase_diagram", "PAPER_FIGURE1", "EXPERIMENTS"]

#: What the paper reports for Figure 1 (read off its description; no numbers are tabulated).
PAPER_FIGURE1 = {
    "multi": "OOD accuracy -> ~1.0; signal learning clearly higher than single-modal",
    "single": "OOD accuracy stays ~0.5; noise memorization higher than multi-modal",
}

METRICS = {
    "loss": "training loss",
    "probe_acc": "OOD test accuracy",
    "signal_inner_max": "signal learning max_r |<w_r, mu>|",
    "noise_inner_max": "noise memorization max_{r,i} <w_r, xi_i>",
    "gamma_max": "signal learning max_r |gamma_r|",
    "rho_max": "noise memorization max_{r,i} rho_{r,i}",
}


def figure1_config(modality: str, seed: int, *, small: bool = False) -> Config:
    """The paper's Figure-1 config, or a small version (d=600, n=40, m=20, 150 steps) with the same n·SNR² = 1.25,
    C_μ = 3 and ‖ν‖/‖μ‖ = 0.4, for tests and quick looks."""
    cfg = load_preset("huang2024-figure1", modality=modality, seed=seed)
    if small:
        d, n = 600, 40
        mu = math.sqrt(1.25 * d / n)
        cfg = cfg.replace(d=d, n=n, n_test=100, m=20, steps=150, mu_norm=mu, mu_tilde_norm=3 * mu, nu_norm=0.4 * mu)
    return cfg


def run_curves(run: Run, *, label: dict[str, Any]) -> pd.DataFrame:
    """Tidy per-step curves of one run: the METRICS above (probe accuracy only where evaluated)."""
    ds = run.site("h")
    coeffs = run.coefficients("h")
    values = {
        "loss": run.scalar("loss"),
        "probe_acc": run.scalar("probe_acc"),
        "signal_inner_max": np.abs(ds["signal_inner"].values).max(axis=(1, 2)),
        "noise_inner_max": ds["noise_inner"].values.max(axis=(1, 2)),
        "gamma_max": np.abs(coeffs["gamma"].values).max(axis=(1, 2)),
        "rho_max": coeffs["rho"].values.max(axis=(1, 2)),
    }
    frames = []
    for metric, v in values.items():
        if v is None:
            continue
        frame = pd.DataFrame({"step": run.steps, "metric": metric, "value": np.asarray(v, dtype=np.float64)})
        frames.append(frame.dropna())
    out = pd.concat(frames, ignore_index=True)
    for k, v in label.items():
        out[k] = v
    return out


def _panels(curves: pd.DataFrame, metrics: list[str], title: str):
    import seaborn as sns
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(metrics), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics))
    for ax, metric in zip(axes, metrics):
        data = curves[curves["metric"] == metric]
        sns.lineplot(data=data, x="step", y="value", hue="modality", hue_order=["single", "multi"],
                     errorbar="sd", ax=ax, palette="colorblind")
        ax.set_title(METRICS[metric])
        ax.set_xlabel("epoch")
        ax.set_ylabel("")
        sns.despine(ax=ax)
    fig.suptitle(title)
    return fig


def figure1(
    out: str | os.PathLike,
    *,
    seeds: int = 5,
    small: bool = False,
    evaluate_every: int = 10,
    overwrite: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """Train single- and multi-modal runs for ``seeds`` seeds, draw Figure 1, save curves and a summary.

    Writes ``out/runs/<modality>-seed<k>.zarr``, ``out/figure1.{png,svg}`` (inner-product metrics),
    ``out/figure1-coefficients.{png,svg}`` (exact γ/ρ), ``out/curves.parquet`` and ``out/summary.csv``.
    The folder is assembled under a temporary name and moved into place when complete.

    Returns
    -------
    pandas.DataFrame
        The summary: per modality and metric, mean and standard deviation over seeds at the last step.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be a positive integer, got {seeds!r}")
    with staged_folder(out, kind="reproduction", overwrite=overwrite) as tmp:
        frames = []
        for seed in range(seeds):
            for modality in ("single", "multi"):
                cfg = figure1_config(modality, seed, small=small)
                path = tmp / "runs" / f"{modality}-seed{seed}.zarr"
                path.parent.mkdir(exist_ok=True)
                train(cfg, path, evaluate_every=evaluate_every, progress=progress,
                      attrs={"preset": "huang2024-figure1" + ("(small)" if small else ""), "experiment": "figure1"})
                frames.append(run_curves(Run(path), label={"modality": modality, "seed": seed}))
        curves = pd.concat(frames, ignore_index=True)
        curves.to_parquet(tmp / "curves.parquet", index=False)
        title = f"Figure 1 reproduction ({'small' if small else 'paper'} size, {seeds} seed{'s' if seeds > 1 else ''}, mean ± 1σ)"
        for stem, metrics in (("figure1", ["loss", "probe_acc", "signal_inner_max", "noise_inner_max"]),
                              ("figure1-coefficients", ["loss", "probe_acc", "gamma_max", "rho_max"])):
            save_figure(_panels(curves, metrics, title), tmp, stem)
        last = curves.loc[curves.groupby(["modality", "seed", "metric"])["step"].idxmax()]
        summary = last.groupby(["modality", "metric"])["value"].agg(["mean", "std"]).reset_index()
        summary.to_csv(tmp / "summary.csv", index=False)
    return summary


def _direction_curves(run: Run, label: dict[str, Any]) -> pd.DataFrame:
    """Mean over neurons of the largest |cosine| between a neuron's weight and the shape (resp. colour) directions,
    and of its largest |cosine| with the per-sample residuals (noise), at every recorded step."""
    ds = run.site("first")
    vectors = ds["signal_vectors"].values.astype(np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    names = [str(s) for s in ds["signal"].values]
    inner = ds["signal_inner"].values / norms[None, None, :]
    noise_norms = np.linalg.norm(ds["noise_vectors"].values.astype(np.float64), axis=1)
    noise = ds["noise_inner"].values / noise_norms[None, None, :]
    shape = np.array([n.startswith("shape") for n in names])
    rows = {
        "shape": np.abs(inner[:, :, shape]).max(axis=2).mean(axis=1),
        "colour": np.abs(inner[:, :, ~shape]).max(axis=2).mean(axis=1),
        "noise": np.abs(noise).max(axis=2).mean(axis=1),
    }
    frames = [pd.DataFrame({"step": run.steps, "direction": k, "value": v}) for k, v in rows.items()]
    out = pd.concat(frames, ignore_index=True)
    for k, v in label.items():
        out[k] = v
    return out


def table1(
    out: str | os.PathLike,
    *,
    seeds: int = 3,
    small: bool = False,
    overwrite: bool = False,
) -> pd.DataFrame:
    """ColoredMNIST (Table 1) on scikit-learn's bundled digits, single- vs multi-modal, over seeds.

    Writes ``out/table1.csv`` and ``out/table1.md`` (train/test accuracy, mean ± std, beside the paper's),
    ``out/directions.{png,svg}`` (what the image encoder's first layer aligns with: digit shapes, colours or
    per-sample noise), ``out/curves.parquet`` and the recorded runs under ``out/runs/``.
    """
    from .colored_digits import PAPER_TABLE1, DigitsConfig, make_colored_digits, train_digits

    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be a positive integer, got {seeds!r}")
    with staged_folder(out, kind="reproduction", overwrite=overwrite) as tmp:
        rows, curves = [], []
        for seed in range(seeds):
            data = make_colored_digits(seed)
            for modality in ("single", "multi"):
                cfg = DigitsConfig(modality=modality, seed=seed, epochs=10 if small else 40)
                path = tmp / "runs" / f"{modality}-seed{seed}.zarr"
                path.parent.mkdir(exist_ok=True)
                res = train_digits(cfg, data, out=path)
                rows.append({"modality": modality, "seed": seed, **res})
                curves.append(_direction_curves(Run(path), {"modality": modality, "seed": seed}))
        runs = pd.DataFrame(rows)
        table = runs.groupby("modality")[["train_acc", "test_acc"]].agg(["mean", "std"]).reindex(["single", "multi"])
        table.columns = [f"{a}_{b}" for a, b in table.columns]
        table = table.reset_index()
        table[["train_acc_mean", "train_acc_std", "test_acc_mean", "test_acc_std"]] *= 100
        table["paper_train"] = [PAPER_TABLE1[m][0] for m in table["modality"]]
        table["paper_test"] = [PAPER_TABLE1[m][1] for m in table["modality"]]
        table.to_csv(tmp / "table1.csv", index=False)
        runs.to_csv(tmp / "runs.csv", index=False)
        lines = ["| modality | train acc (%) | test acc (%) | paper train | paper test |", "|---|---|---|---|---|"]
        for r in table.itertuples():
            lines.append(f"| {r.modality} | {r.train_acc_mean:.2f} ± {r.train_acc_std:.2f} | "
                         f"{r.test_acc_mean:.2f} ± {r.test_acc_std:.2f} | {r.paper_train} | {r.paper_test} |")
        (tmp / "table1.md").write_text("\n".join(lines) + f"\n\n{seeds} seed(s); std over seeds.\n")
        frame = pd.concat(curves, ignore_index=True)
        frame.to_parquet(tmp / "curves.parquet", index=False)
        import seaborn as sns
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 3.6), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, modality in zip(axes, ("single", "multi")):
            sns.lineplot(data=frame[frame.modality == modality], x="step", y="value", hue="direction",
                         hue_order=["shape", "colour", "noise"], errorbar="sd", ax=ax, palette="colorblind")
            ax.set_title(f"{modality}-modal: first-layer alignment")
            ax.set_ylabel("mean over neurons of max |cos(w_r, direction)|")
            sns.despine(ax=ax)
        save_figure(fig, tmp, "directions")
    return table


def phase_diagram(results: pd.DataFrame):
    """Two panels: the winner at T₁ (fraction of seeds where signal learning wins) over n·SNR² × C_μ for
    multi-modal runs and over n·SNR² for single-modal runs, with the theory's lines n·SNR² = 1.8 and
    C_μ·n·SNR² = 4.51; and the final OOD probe accuracy."""
    import seaborn as sns
    from matplotlib.figure import Figure

    ok = results[results["status"] == "complete"].copy()
    ok["signal_wins"] = (ok["winner"] == "signal learning").astype(float)
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    multi = ok[ok["modality"] == "multi"]
    for ax, value, label in ((axes[0], "signal_wins", "multi-modal: P(signal wins at T1)"),
                             (axes[1], "probe_acc", "multi-modal: final OOD accuracy")):
        if multi.empty:
            ax.set_visible(False)
            continue
        table = multi.pivot_table(index="c_mu", columns="n_snr2", values=value, aggfunc="mean")
        sns.heatmap(table.sort_index(ascending=False), ax=ax, vmin=0 if value == "signal_wins" else 0.5, vmax=1,
                    cmap="viridis", annot=True, fmt=".2f", cbar=False)
        xs = np.array(table.columns, dtype=float)
        ys = np.array(table.sort_index(ascending=False).index, dtype=float)

        def to_x(v):  # heatmap cells are unit-spaced: interpolate the value onto cell positions
            return np.interp(v, xs, np.arange(len(xs)) + 0.5)

        def to_y(v):
            return np.interp(-v, -ys, np.arange(len(ys)) + 0.5)

        c_line = np.linspace(ys.min(), ys.max(), 50)
        n_line = 4.51 / c_line
        keep = (n_line >= xs.min()) & (n_line <= xs.max())
        ax.plot(to_x(n_line[keep]), to_y(c_line[keep]), color="white", lw=2, ls="--", label="C_mu n SNR^2 = 4.51")
        ax.set_title(label)
        ax.set_xlabel("n SNR^2")
        ax.set_ylabel("C_mu")
        ax.legend(loc="lower left", fontsize=7)
    single = ok[ok["modality"] == "single"]
    ax = axes[2]
    if not single.empty:
        agg = single.groupby("n_snr2")[["signal_wins", "probe_acc"]].mean().reset_index()
        ax.plot(agg["n_snr2"], agg["signal_wins"], "o-", label="P(signal wins at T1)")
        ax.plot(agg["n_snr2"], agg["probe_acc"], "s-", label="final OOD accuracy")
        ax.axvline(1.8, color="gray", ls="--", label="n SNR^2 = 1.8")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("n SNR^2")
        ax.set_title("single-modal")
        ax.legend(fontsize=7)
        sns.despine(ax=ax)
    return fig


def _figure1_command(out: str | os.PathLike, *, seeds: int | None, small: bool, overwrite: bool,
                     progress: bool) -> str:
    seeds = seeds or 5
    summary = figure1(out, seeds=seeds, small=small, overwrite=overwrite, progress=progress)
    lines = [f"Figure 1 ({seeds} seeds): value at the last step, mean ± std over seeds"]
    wide = summary.pivot(index="metric", columns="modality", values=["mean", "std"])
    for metric in wide.index:
        cells = []
        for m in ("single", "multi"):
            spread = "" if seeds == 1 else f" ± {wide.loc[metric, ('std', m)]:.2g}"
            cells.append(f"{m}: {wide.loc[metric, ('mean', m)]:.4g}{spread}")
        lines.append(f"  {metric:<18} " + "   ".join(cells))
    for modality, text in PAPER_FIGURE1.items():
        lines.append(f"  paper, {modality}-modal: {text}")
    lines.append(f"dyn reproduce: figures, curves.parquet, summary.csv and the runs in {out}/")
    return "\n".join(lines)


def _table1_command(out: str | os.PathLike, *, seeds: int | None, small: bool, overwrite: bool,
                    progress: bool) -> str:
    seeds = seeds or 3
    table = table1(out, seeds=seeds, small=small, overwrite=overwrite)
    lines = [f"Table 1 (coloured digits, {seeds} seeds): linear-probe accuracy in %"
             + (", mean ± std" if seeds > 1 else "")]
    for r in table.itertuples():
        train_s = f"{r.train_acc_mean:6.2f}" + ("" if seeds == 1 else f" ± {r.train_acc_std:5.2f}")
        test_s = f"{r.test_acc_mean:6.2f}" + ("" if seeds == 1 else f" ± {r.test_acc_std:5.2f}")
        lines.append(f"  {r.modality:<7} train {train_s}   test {test_s}   (paper: {r.paper_train} / {r.paper_test})")
    lines.append(f"dyn reproduce: table1.md, table1.csv, directions.png and the runs in {out}/")
    return "\n".join(lines)


#: ``dyn reproduce NAME``: name -> (description, command returning the text to print)
EXPERIMENTS = {
    "figure1": ("Figure 1: single- vs multi-modal training over seeds, OOD probe along training, four panels",
                _figure1_command),
    "table1": ("Table 1: the ColoredMNIST protocol on scikit-learn's bundled digits", _table1_command),
}
