"""Reproduce the paper's experiments end to end.

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

from .config import Config, load_preset
from .errors import ConfigError
from .outputs import save_figure, staged_folder
from .run import Run
from .train import train

__all__ = ["figure1", "figure1_config", "table1", "PAPER_FIGURE1"]

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
    with staged_folder(out, overwrite=overwrite) as tmp:
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
    with staged_folder(out, overwrite=overwrite) as tmp:
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
