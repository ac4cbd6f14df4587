"""Reproduce the paper's experiments end to end (``dyn reproduce figure1|table1``) and draw its sweeps.

``table1``: the ColoredMNIST experiment on scikit-learn's bundled digits (:mod:`dyn.colored_digits`).

``figure1``: the synthetic experiment (Figure 1 of Huang et al. 2024) — single- vs multi-modal training over
seeds, every step recorded, the OOD probe evaluated along training, and the paper's four panels (training loss,
OOD test accuracy, signal learning, noise memorization) with mean ± 1σ bands.

The OOD accuracy panel uses the paper's probe protocol (a logistic-regression head fitted on held-out folds of
h(x_test), :mod:`.probe`); ``figure1-probes`` sets it beside the head fitted on h(x_train) and scored on h(x_test).

Metrics for the signal and noise panels (the paper does not define them): the main figure plots the raw inner
products ``max_r |⟨w_r, μ⟩|`` and ``max_{r,i} ⟨w_r, ξ_i⟩`` of encoder h (the quantities its proofs bound, §5); a
second figure plots the exact coefficients ``max_r |γ_r|`` and ``max_{r,i} ρ_{r,i}``. All four are in the curves
file.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.run import Run
from ..errors import ConfigError, StoreError
from ..progress import progress_bar, progress_enabled
from ..store.outputs import save_figure, staged_folder
from ..setups.base import comparison_lines, load_preset, unseen_curves
from ..setups.huang2024.colored_digits import PAPER_TABLE1, DigitsConfig, alignment, make_colored_digits, train_digits
from ..setups.huang2024.config import Config
from ..setups.huang2024.train import train

__all__ = ["figure1", "figure1_config", "figure1_findings", "table1", "table1_findings", "phase_diagram",
           "PAPER_FIGURE1", "EXPERIMENTS"]

#: What the paper reports for Figure 1 (read off its description; no numbers are tabulated).
PAPER_FIGURE1 = {
    "multi": "OOD accuracy -> ~1.0; signal learning clearly higher than single-modal",
    "single": "OOD accuracy stays ~0.5; noise memorization higher than multi-modal",
}

METRICS = {
    "loss": "training loss",
    "probe_acc": "OOD test accuracy (head on h(x_test), held-out folds)",
    "probe_acc_transfer": "OOD test accuracy (head fitted on h(x_train))",
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
        "probe_acc_transfer": run.scalar("probe_acc_transfer"),
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


#: per metric: panel title and y label (Greek and "step" as in the rest of dyn's figures)
_PANEL_AXES = {
    "loss": ("training loss", "loss (log scale)"),
    "probe_acc": ("OOD test accuracy (linear probe)", "accuracy"),
    "probe_acc_transfer": ("OOD test accuracy (head fitted on training data)", "accuracy"),
    "signal_inner_max": ("signal learning", r"$\max_r\,|\langle w_r, \mu\rangle|$"),
    "noise_inner_max": ("noise memorization", r"$\max_{r,i}\,\langle w_r, \xi_i\rangle$"),
    "gamma_max": ("signal learning (exact)", r"$\max_r\,|\gamma_r|$"),
    "rho_max": ("noise memorization (exact)", r"$\max_{r,i}\,\rho_{r,i}$"),
}


#: metrics drawn as accuracies: one y range (0 to 1) and the chance line on every such panel
_ACCURACY = ("probe_acc", "probe_acc_transfer")


def _panels(curves: pd.DataFrame, metrics: list[str], title: str):
    """Figure 1's panels, two per row (four: a 2×2 grid; two: one row): log loss, accuracies on one 0-1 range with
    the chance line, signal, noise; a title and y label in words on every panel, one legend below the grid."""
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    palette = dict(zip(["single", "multi"], sns.color_palette("colorblind", 2)))
    rows = -(-len(metrics) // 2)
    fig = Figure(figsize=(10, 0.6 + 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False).ravel()
    for ax in axes[len(metrics):]:
        ax.remove()  # an odd count: no empty axes
    for ax, metric in zip(axes, metrics):
        data = curves[curves["metric"] == metric]
        sns.lineplot(data=data, x="step", y="value", hue="modality", hue_order=["single", "multi"],
                     errorbar="sd", ax=ax, palette=palette, legend=False)
        panel_title, ylabel = _PANEL_AXES.get(metric, (METRICS.get(metric, metric), metric))
        ax.set_title(panel_title)
        ax.set_xlabel("step (one full-batch GD step per epoch)")
        ax.set_ylabel(ylabel)
        if metric == "loss" and (data["value"] > 0).all():
            ax.set_yscale("log")
        if metric in _ACCURACY:
            ax.axhline(0.5, color="gray", ls=":", lw=1.2)
            ax.set_ylim(0.0, 1.02)
        sns.despine(ax=ax)
    handles = [Line2D([], [], color=palette[m], lw=2, label=f"{m}-modal (mean ± 1σ over seeds)")
               for m in ("single", "multi")]
    if any(m in _ACCURACY for m in metrics):
        handles.append(Line2D([], [], color="gray", ls=":", lw=1.2, label="chance accuracy 0.5"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(title)
    return fig


def figure1(
    out: str | os.PathLike,
    *,
    seeds: int = 5,
    small: bool = False,
    evaluate_every: int = 10,
    overwrite: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Train single- and multi-modal runs for ``seeds`` seeds, draw Figure 1, save curves and a summary.

    Writes ``out/runs/<modality>-seed<k>.zarr``, ``out/figure1.{png,svg}`` (inner-product metrics),
    ``out/figure1-coefficients.{png,svg}`` (exact γ/ρ), ``out/figure1-probes.{png,svg}`` (the two probe protocols
    side by side), ``out/curves.parquet`` and ``out/summary.csv``.
    The folder is assembled under a temporary name and moved into place when complete.

    Parameters
    ----------
    out : the folder to write.
    seeds : number of seeds (each trains a single- and a multi-modal run).
    small : the seconds-long version of :func:`figure1_config`.
    evaluate_every : steps between evaluations of the OOD probe.
    overwrite : replace a reproduction folder dyn wrote at ``out``.
    progress : one bar over the runs and figures (its postfix names the run or figure being made), plus each
        run's per-step bar; None (default): on in notebooks and terminals, off otherwise
        (:func:`dyn.progress.progress_enabled`).

    Returns
    -------
    pandas.DataFrame
        The summary: per modality and metric, mean and standard deviation over seeds at the last step.

    Examples
    --------
    >>> import tempfile, os
    >>> summary = figure1(os.path.join(tempfile.mkdtemp(), "f1"), seeds=1, small=True, progress=False)  # doctest: +SKIP
    >>> sorted(summary["modality"].unique())  # doctest: +SKIP
    ['multi', 'single']
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be a positive integer, got {seeds!r}")
    show = progress_enabled(progress)  # resolved once: the outer bar and the trainers' bars follow one decision
    figures = (("figure1", ["loss", "probe_acc", "signal_inner_max", "noise_inner_max"]),
               ("figure1-coefficients", ["loss", "probe_acc", "gamma_max", "rho_max"]),
               ("figure1-probes", ["probe_acc", "probe_acc_transfer"]))
    with staged_folder(out, kind="reproduction", overwrite=overwrite) as tmp, \
            progress_bar(2 * seeds + len(figures), desc="figure1", unit="task", progress=show, leave=True) as bar:
        frames = []
        for seed in range(seeds):
            for modality in ("single", "multi"):
                bar.set_postfix_str(f"training {modality}-seed{seed}")
                cfg = figure1_config(modality, seed, small=small)
                path = tmp / "runs" / f"{modality}-seed{seed}.zarr"
                path.parent.mkdir(exist_ok=True)
                train(cfg, path, evaluate_every=evaluate_every, progress=show,
                      attrs={"preset": "huang2024-figure1" + ("(small)" if small else ""), "experiment": "figure1"})
                frames.append(run_curves(Run(path), label={"modality": modality, "seed": seed}))
                bar.update(1)
        curves = pd.concat(frames, ignore_index=True)
        curves.to_parquet(tmp / "curves.parquet", index=False)
        title = f"Figure 1 reproduction ({'small' if small else 'paper'} size, {seeds} seed{'s' if seeds > 1 else ''}, mean ± 1σ)"
        for stem, metrics in figures:
            bar.set_postfix_str(f"drawing {stem}")
            save_figure(_panels(curves, metrics, title), tmp, stem)
            bar.update(1)
        last = curves.loc[curves.groupby(["modality", "seed", "metric"])["step"].idxmax()]
        summary = last.groupby(["modality", "metric"])["value"].agg(["mean", "std"]).reset_index()
        summary.to_csv(tmp / "summary.csv", index=False)
    return summary


#: Ablation grid of ``table1``: caption colour-word rate q (multi-modal; single-modal has no captions) and the
#: train colour-class correlation p_colour (both modalities); each includes the default protocol's value.
CAPTION_RATES = (0.0, 0.5, 1.0)
TRAIN_CORRELATIONS = (0.0, 0.5, DigitsConfig.p_colour, 0.9)
#: The same for ``table1(small=True)``: the end points only.
SMALL_GRID = ((0.0, 1.0), (0.0, DigitsConfig.p_colour))

#: Direction groups of ``directions.png``: recorded probe set -> curve name.
DIRECTION_GROUPS = {"shape": "shape", "colour": "colour", "noise": "noise", "random_signal": "random x10",
                    "random": "random x150"}


def _first_layer(ds: Any) -> np.ndarray:
    """First-layer weights ``(step, neuron, feature)`` rebuilt exactly from the recorded inner products.

    The probe sets (shape, colour, noise residuals, random directions) together span the pixel space, so
    ``P(t) = W(t) Vᵀ`` determines ``W(t) = P(t) V (VᵀV)⁻¹``.
    """
    names = ["signal", "noise", "random", "random_signal"]
    vectors = np.concatenate([ds[f"{n}_vectors"].values for n in names]).astype(np.float64)
    inner = np.concatenate([ds[f"{n}_inner"].values for n in names], axis=2).astype(np.float64)
    if np.linalg.matrix_rank(vectors) < vectors.shape[1]:
        raise StoreError("the recorded directions do not span the first layer's input space")
    return inner @ vectors @ np.linalg.inv(vectors.T @ vectors)


def _direction_curves(run: Run, label: dict[str, Any]) -> pd.DataFrame:
    """Per recorded step, :func:`dyn.colored_digits.alignment` of the first layer with each direction group
    (``DIRECTION_GROUPS``): mean over neurons of the largest |cos(w_r, v)| over the group."""
    ds = run.site("first")
    weights = _first_layer(ds)
    names = np.array([str(s) for s in ds["signal"].values])
    vectors = ds["signal_vectors"].values
    groups = {"shape": vectors[np.char.startswith(names, "shape")],
              "colour": vectors[np.char.startswith(names, "colour")],
              "noise": ds["noise_vectors"].values, "random": ds["random_vectors"].values,
              "random_signal": ds["random_signal_vectors"].values}
    frames = [pd.DataFrame({"step": run.steps, "direction": DIRECTION_GROUPS[k], "value": alignment(weights, v)})
              for k, v in groups.items()]
    out = pd.concat(frames, ignore_index=True)
    for k, v in label.items():
        out[k] = v
    return out


def _pm(mean: float, std: float, scale: float = 100.0) -> str:
    """``mean ± std`` times ``scale`` (fractions to %), or the mean alone when there is no spread (one seed)."""
    return f"{scale * mean:.2f}" if np.isnan(std) else f"{scale * mean:.2f} ± {scale * std:.2f}"


def _summary(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and std over seeds of each run metric, per group of ``by``, with the number of seeds."""
    metrics = ["train_acc", "test_acc", "colour_follow", "align_shape", "align_colour"]
    out = runs.groupby(by, sort=False)[metrics].agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["seeds"] = runs.groupby(by, sort=False).size()
    return out.reset_index()


def _table1_markdown(table: pd.DataFrame, ablation: pd.DataFrame, seeds: int, default: DigitsConfig) -> str:
    """``table1.md``: the table beside the paper's numbers, the gap, and the ablation (no spread for one seed)."""
    spread = "mean ± sd over seeds" if seeds > 1 else "one seed, no spread"
    lines = [f"Table 1 (coloured digits, {seeds} seed{'s' if seeds > 1 else ''}; {spread}): linear-probe "
             "accuracy in %", "",
             "| modality | train acc (%) | test acc (%) | paper train | paper test |", "|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.modality} | {_pm(r.train_acc_mean, r.train_acc_std, 1)} | "
                     f"{_pm(r.test_acc_mean, r.test_acc_std, 1)} | {r.paper_train} | {r.paper_test} |")
    multi, single = (table.set_index("modality").loc[m, "test_acc_mean"] for m in ("multi", "single"))
    paper_gap = PAPER_TABLE1["multi"][1] - PAPER_TABLE1["single"][1]
    lines += ["", f"OOD test gap multi - single: {multi - single:.2f} points (paper: {paper_gap:.2f}).", "",
              f"Ablation (default: caption colour-word rate q = {default.caption_colour_rate:g}, train colour-class "
              f"correlation p = {default.p_colour:g}). colour-follow: share of test predictions naming the class "
              f"whose colour the image has (the wrong class for {default.p_colour_test:.1%} of test images); "
              "align: the first layer's mean over neurons of max |cos| with the 10 shape / 10 colour directions.",
              "",
              "| factor | value | modality | train acc (%) | test acc (%) | colour-follow (%) | align shape | "
              "align colour |", "|---|---|---|---|---|---|---|---|"]
    for r in ablation.itertuples():
        lines.append(f"| {r.factor} | {r.value:g} | {r.modality} | {_pm(r.train_acc_mean, r.train_acc_std)} | "
                     f"{_pm(r.test_acc_mean, r.test_acc_std)} | {_pm(r.colour_follow_mean, r.colour_follow_std)} | "
                     f"{r.align_shape_mean:.3f} | {r.align_colour_mean:.3f} |")
    return "\n".join(lines) + "\n"


def _ablation_figure(ablation: pd.DataFrame, default: DigitsConfig):
    """``ablation.png``: test accuracy and colour-follow against q (multi-modal) and against p (both)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    palette = dict(zip(["single", "multi"], sns.color_palette("colorblind", 2)))
    q = ablation[ablation.factor == "caption colour-word rate q"]
    for metric, style, name in (("test_acc", "-o", "test accuracy"), ("colour_follow", "--s", "colour-follow")):
        axes[0].errorbar(q["value"], 100 * q[f"{metric}_mean"], yerr=100 * q[f"{metric}_std"].fillna(0),
                         fmt=style, color=palette["multi"], capsize=3, label=f"multi: {name}")
    single = ablation[(ablation.factor == "train colour-class correlation p") & (ablation.modality == "single")
                      & (ablation.value == default.p_colour)]
    axes[0].axhline(100 * single["test_acc_mean"].iloc[0], color=palette["single"], ls="-.",
                    label="single: test accuracy (no captions)")
    axes[0].set(title="multi-modal: colour words in captions", xlabel="caption colour-word rate q", ylabel="%")
    p = ablation[ablation.factor == "train colour-class correlation p"]
    for ax, metric, title in ((axes[1], "test_acc", "OOD test accuracy"),
                              (axes[2], "colour_follow", "test predictions that follow colour")):
        for modality, part in p.groupby("modality", sort=False):
            ax.errorbar(part["value"], 100 * part[f"{metric}_mean"], yerr=100 * part[f"{metric}_std"].fillna(0),
                        fmt="-o", color=palette[modality], capsize=3, label=modality)
        ax.axvline(default.p_colour, color="grey", lw=0.8, ls=":")
        ax.set(title=title, xlabel="train colour-class correlation p", ylabel="%")
    for ax in axes:
        ax.axhline(10, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 100)
        ax.legend(frameon=False, fontsize=8)
        sns.despine(ax=ax)
    fig.suptitle("Table 1 ablation (mean ± sd over seeds; dashed grey: 10%, chance; dotted: the default p)")
    return fig


def _directions_figure(frame: pd.DataFrame):
    """``directions.png``: first-layer alignment per direction group along training, one panel per modality."""
    import seaborn as sns
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    order = list(DIRECTION_GROUPS.values())
    colours = dict(zip(order, [*sns.color_palette("colorblind", 3), (0.55, 0.55, 0.55), (0.3, 0.3, 0.3)]))
    dashes = {name: (4, 2) if name.startswith("random") else "" for name in order}
    for ax, modality in zip(axes, ("single", "multi")):
        sns.lineplot(data=frame[frame.modality == modality], x="step", y="value", hue="direction", hue_order=order,
                     style="direction", style_order=order, dashes=dashes, errorbar="sd", ax=ax, palette=colours)
        ax.set_title(f"{modality}-modal: first-layer alignment")
        ax.set_ylabel("mean over neurons of max |cos(w_r, v)|")
        ax.legend(frameon=False, fontsize=8)
        sns.despine(ax=ax)
    fig.suptitle("shape / colour: 10 directions each, vs 10 random; noise: 150 per-image residuals, vs 150 random "
                 "(same norms)")
    return fig


def table1(
    out: str | os.PathLike,
    *,
    seeds: int = 3,
    small: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """ColoredMNIST (Table 1) on scikit-learn's bundled digits, single- vs multi-modal, over seeds, with ablation.

    The default protocol is :class:`dyn.colored_digits.DigitsConfig` (each choice explained in its notes). The
    ablation retrains, per seed, the multi-modal model with captions naming the colour at rates
    ``CAPTION_RATES`` and both models at the train colour-class correlations ``TRAIN_CORRELATIONS``.
    ``small`` trains 20 epochs instead of 40 and runs the end points of the ablation only (``SMALL_GRID``):
    seconds, for tests and notebooks.

    Writes ``out/table1.md`` (the table beside the paper's numbers, the gap and the ablation: also what
    ``dyn reproduce table1`` prints), ``out/table1.csv``, ``out/ablation.csv``, ``out/runs.csv`` (every run),
    ``out/protocol.json`` (the settings and why), ``out/directions.{png,svg}`` (what the image encoder's first
    layer aligns with: digit shapes, colours, per-sample noise, against random directions of the same count and
    norms), ``out/ablation.{png,svg}``, ``out/curves.parquet`` and the recorded default runs under ``out/runs/``.

    ``progress``: one bar over the runs of the table and the ablation, then the figures (its postfix names the
    run); None (default): on in notebooks and terminals, off otherwise (:func:`dyn.progress.progress_enabled`).

    Returns
    -------
    pandas.DataFrame
        One row per modality: train/test accuracy in %, mean and std over seeds (NaN std for one seed), and the
        paper's numbers; ``attrs["ablation"]`` holds the ablation table (fractions, not %).
    """
    import torch

    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be a positive integer, got {seeds!r}")
    default = DigitsConfig(epochs=20) if small else DigitsConfig()
    rates, correlations = SMALL_GRID if small else (CAPTION_RATES, TRAIN_CORRELATIONS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 512 x 192: a second intra-op thread costs more than it saves
    try:
        return _table1(out, seeds, small, overwrite, default, rates, correlations, progress_enabled(progress))
    finally:
        torch.set_num_threads(threads)


def _table1_runs(seeds: int, default: DigitsConfig, caption_rates: tuple[float, ...],
                 correlations: tuple[float, ...]) -> int:
    """How many models :func:`_table1` trains (the length of its progress bar)."""
    per_seed = sum(len(caption_rates) if modality == "multi" and p == default.p_colour else 1
                   for p in correlations for modality in ("single", "multi"))
    return seeds * per_seed


def _table1(out: str | os.PathLike, seeds: int, small: bool, overwrite: bool, default: DigitsConfig,
            caption_rates: tuple[float, ...], correlations: tuple[float, ...], show: bool = False) -> pd.DataFrame:
    """:func:`table1`'s work: every run of the table and the ablation grid, then the files."""
    import json

    total = _table1_runs(seeds, default, caption_rates, correlations) + 2  # + the two figures
    with staged_folder(out, kind="reproduction", overwrite=overwrite) as tmp, \
            progress_bar(total, desc="table1", unit="task", progress=show, leave=True) as bar:
        rows, curves = [], []
        for seed in range(seeds):
            for p in correlations:
                data = make_colored_digits(seed, p_colour=p, p_colour_test=default.p_colour_test,
                                           label_noise=default.label_noise, test_fraction=default.test_fraction)
                for modality in ("single", "multi"):
                    rates = caption_rates if modality == "multi" and p == default.p_colour else (0.0,)
                    for q in rates:
                        cfg = replace(default, modality=modality, seed=seed, p_colour=p, caption_colour_rate=q)
                        is_default = p == default.p_colour and q == default.caption_colour_rate
                        path = tmp / "runs" / f"{modality}-seed{seed}.zarr" if is_default else None
                        if path is not None:
                            path.parent.mkdir(exist_ok=True)
                        bar.set_postfix_str(f"training {modality}-seed{seed} p={p:g} q={q:g}")
                        res = train_digits(cfg, data, out=path)
                        bar.update(1)
                        rows.append({"modality": modality, "seed": seed, "p_colour": p, "caption_colour_rate": q,
                                     "default": is_default, **res})
                        if path is not None:
                            curves.append(_direction_curves(Run(path), {"modality": modality, "seed": seed}))
        runs = pd.DataFrame(rows)
        runs.to_csv(tmp / "runs.csv", index=False)
        table = _summary(runs[runs["default"]], ["modality"]).set_index("modality").reindex(["single", "multi"])
        table = table[["train_acc_mean", "train_acc_std", "test_acc_mean", "test_acc_std"]].reset_index()
        table[["train_acc_mean", "train_acc_std", "test_acc_mean", "test_acc_std"]] *= 100
        table["paper_train"] = [PAPER_TABLE1[m][0] for m in table["modality"]]
        table["paper_test"] = [PAPER_TABLE1[m][1] for m in table["modality"]]
        table.to_csv(tmp / "table1.csv", index=False)
        by_q = _summary(runs[(runs.p_colour == default.p_colour) & (runs.modality == "multi")],
                        ["caption_colour_rate", "modality"]).rename(columns={"caption_colour_rate": "value"})
        by_p = _summary(runs[runs.caption_colour_rate == default.caption_colour_rate], ["p_colour", "modality"])
        by_p = by_p.rename(columns={"p_colour": "value"})
        ablation = pd.concat([by_q.assign(factor="caption colour-word rate q"),
                              by_p.assign(factor="train colour-class correlation p")], ignore_index=True)
        ablation = ablation[["factor", "value", "modality", *[c for c in ablation if c.endswith(("_mean", "_std"))],
                             "seeds"]]
        ablation.to_csv(tmp / "ablation.csv", index=False)
        protocol = {"default": default.to_dict(), "caption_rates": list(caption_rates),
                    "train_correlations": list(correlations), "seeds": seeds, "small": small}
        (tmp / "protocol.json").write_text(json.dumps(protocol, indent=2, ensure_ascii=False) + "\n")
        (tmp / "table1.md").write_text(_table1_markdown(table, ablation, seeds, default))
        frame = pd.concat(curves, ignore_index=True)
        frame.to_parquet(tmp / "curves.parquet", index=False)
        for stem, draw in (("directions", lambda: _directions_figure(frame)),
                           ("ablation", lambda: _ablation_figure(ablation, default))):
            bar.set_postfix_str(f"drawing {stem}")
            save_figure(draw(), tmp, stem)
            bar.update(1)
    table.attrs["ablation"] = ablation
    return table


#: the theory's regime thresholds (Huang et al. 2024): single-modal noise memorization wins for n·SNR² ≤ 1.8
#: (Lemma 5.2); multi-modal signal learning wins for C_μ·n·SNR² ≥ 4.51 (Lemma 5.4)
SINGLE_NOISE_WINS_BELOW = 1.8
MULTI_SIGNAL_WINS_ABOVE = 4.51


def _grid_ticks(ax, values) -> None:
    """A log x axis ticked at the grid's own values (plain numbers, no crowded minor labels)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log")
    ticks = sorted(set(float(v) for v in values))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])


def phase_diagram(results: pd.DataFrame):
    """The phase diagram of a sweep on continuous axes, with the theory's threshold curves.

    Left: multi-modal runs, each grid point a disc coloured by the fraction of seeds where signal learning wins at
    T₁, over n·SNR² (log) × C_μ, with the curve C_μ·n·SNR² = 4.51 and its side where the theorem predicts signal
    learning shaded. Middle: the same points coloured by the final OOD probe accuracy. Right: single-modal runs
    over n·SNR² with the line n·SNR² = 1.8 and the side where the theorem predicts noise memorization shaded.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    ok = results[results["status"] == "complete"].copy() if "status" in results else results.iloc[:0]
    if ok.empty or "n_snr2" not in ok:  # no run finished, or the grid has no n·SNR² axis to draw along
        return None
    # a tie or a run that did not move is its own outcome, not a cell of either side: the fractions count decided runs
    decided = ok["winner"].isin(["signal learning", "noise memorization"])
    ok["signal_wins"] = np.where(decided, (ok["winner"] == "signal learning").astype(float), np.nan)
    fig = Figure(figsize=(14, 4.4), layout="constrained")
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    multi = ok[ok["modality"] == "multi"] if "c_mu" in ok else ok.iloc[:0]  # drawn over n·SNR² × C_μ
    for ax, value, label, vmin in ((axes[0], "signal_wins", "multi-modal: fraction of decided seeds where signal wins at T₁", 0.0),
                                   (axes[1], "probe_acc", "multi-modal: final OOD accuracy", 0.5)):
        if multi.empty:
            ax.set_visible(False)
            continue
        agg = multi.groupby(["n_snr2", "c_mu"])[value].mean().reset_index()
        x_lo, x_hi = agg["n_snr2"].min() / 1.3, agg["n_snr2"].max() * 1.3
        y_lo, y_hi = agg["c_mu"].min() - 0.5, agg["c_mu"].max() + 0.5
        x = np.geomspace(x_lo, x_hi, 200)
        y = MULTI_SIGNAL_WINS_ABOVE / x
        ax.fill_between(x, np.clip(y, y_lo, y_hi), y_hi, color="tab:green", alpha=0.08, lw=0)
        ax.plot(x, y, color="black", ls="--", lw=1.5, label=f"C_μ·n·SNR² = {MULTI_SIGNAL_WINS_ABOVE} (Lemma 5.4)")
        points = ax.scatter(agg["n_snr2"], agg["c_mu"], c=agg[value], cmap="viridis", vmin=vmin, vmax=1, s=160,
                            edgecolors="black", linewidths=0.5, zorder=3)
        undecided = agg[~np.isfinite(agg[value])]
        if len(undecided):  # a hollow disc: runs there, none decided (ties, or nothing moved)
            ax.scatter(undecided["n_snr2"], undecided["c_mu"], s=160, facecolors="none", edgecolors="black",
                       linewidths=0.8, zorder=3)
        for row in agg.itertuples(index=False):
            v = getattr(row, value)
            ax.annotate(f"{v:.2f}" if np.isfinite(v) else "no winner", (row.n_snr2, row.c_mu), xytext=(0, 11),
                        textcoords="offset points", ha="center", fontsize=7)
        _grid_ticks(ax, agg["n_snr2"])
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("n·SNR² (log scale)")
        ax.set_ylabel("C_μ = ‖μ̃‖ / ‖μ‖")
        if unseen_curves(ax):  # the curve misses the grid: every point lies on one side of it
            side = "signal learning" if (agg["n_snr2"] * agg["c_mu"] >= MULTI_SIGNAL_WINS_ABOVE).all() else "neither"
            ax.text(0.02, 0.02, f"C_μ·n·SNR² = {MULTI_SIGNAL_WINS_ABOVE} lies outside this grid\n(predicted "
                    f"everywhere here: {side if side != 'neither' else 'no signal-learning guarantee'})",
                    transform=ax.transAxes, fontsize=7, va="bottom")
        else:
            ax.legend(loc="lower left", fontsize=7, title="shaded: signal learning predicted", title_fontsize=7)
        fig.colorbar(points, ax=ax, shrink=0.85)
    single = ok[ok["modality"] == "single"]
    ax = axes[2]
    if single.empty:
        ax.set_visible(False)
    else:
        agg = single.groupby("n_snr2")[["signal_wins", "probe_acc"]].mean().reset_index()
        x_lo, x_hi = agg["n_snr2"].min() / 1.3, agg["n_snr2"].max() * 1.3
        if SINGLE_NOISE_WINS_BELOW > x_lo:  # a shaded side only where it is on the axis
            ax.axvspan(x_lo, min(SINGLE_NOISE_WINS_BELOW, x_hi), color="tab:red", alpha=0.08, lw=0,
                       label="noise memorization predicted")
        ax.plot(agg["n_snr2"], agg["signal_wins"], "o-", label="fraction of decided seeds where signal wins at T₁")
        ax.plot(agg["n_snr2"], agg["probe_acc"], "s-", label="final OOD accuracy")
        ax.axvline(SINGLE_NOISE_WINS_BELOW, color="black", ls="--", label=f"n·SNR² = {SINGLE_NOISE_WINS_BELOW} (Lemma 5.2)")
        _grid_ticks(ax, agg["n_snr2"])
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("n·SNR² (log scale)")
        ax.set_title("single-modal", fontsize=10)
        if unseen_curves(ax):
            ax.text(0.02, 0.98, f"n·SNR² = {SINGLE_NOISE_WINS_BELOW} lies outside this grid", transform=ax.transAxes,
                    fontsize=7, va="top")
        ax.legend(fontsize=7, loc="center right")
        sns.despine(ax=ax)
    return fig


def _figure1_command(out: str | os.PathLike, *, seeds: int | None, small: bool, overwrite: bool,
                     progress: bool | None = None) -> str:
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
    lines += comparison_lines(figure1_findings(summary))
    lines.append(f"dyn reproduce: figures, curves.parquet, summary.csv and the runs in {out}/")
    return "\n".join(lines)


#: Figure 1's findings are read off the paper's plots (no numbers are printed): how far a value may sit from the
#: paper's reading and still count as reproduced.
ACCURACY_TOLERANCE = 0.1


def figure1_findings(summary: pd.DataFrame) -> list[tuple[str, str, str, bool | None, str]]:
    """Figure 1's findings, paper vs dyn, from the last-step summary (rows for :func:`comparison_lines`).

    Examples
    --------
    >>> summary = pd.DataFrame({"modality": ["single", "multi"] * 3, "metric": ["probe_acc"] * 2 + ["gamma_max"] * 2
    ...                         + ["rho_max"] * 2, "mean": [0.72, 0.99, 0.1, 0.9, 3.0, 1.0], "std": [0.03] * 6})
    >>> [(row[0], row[3]) for row in figure1_findings(summary)]  # doctest: +NORMALIZE_WHITESPACE
    [('OOD accuracy, multi-modal', True), ('OOD accuracy, single-modal', False),
     ('signal learning max|γ|: multi > single', True), ('noise memorization max ρ: single > multi', True)]
    """
    value = summary.set_index(["modality", "metric"])

    def get(modality: str, metric: str) -> tuple[float, str]:
        if (modality, metric) not in value.index:
            return math.nan, "not recorded"
        mean, std = float(value.loc[(modality, metric), "mean"]), float(value.loc[(modality, metric), "std"])
        return mean, f"{mean:.3g}" + (f" ± {std:.2g}" if math.isfinite(std) else "")

    rows: list[tuple[str, str, str, bool | None, str]] = []
    multi, multi_text = get("multi", "probe_acc")
    rows.append(("OOD accuracy, multi-modal", "→ ≈ 1.0", multi_text,
                 None if math.isnan(multi) else bool(multi >= 1.0 - ACCURACY_TOLERANCE), ""))
    single, single_text = get("single", "probe_acc")
    transfer, transfer_text = get("single", "probe_acc_transfer")
    near_chance = not math.isnan(transfer) and abs(transfer - 0.5) <= ACCURACY_TOLERANCE
    why = ("dyn's probe fits its head on h(x_test) folds; the head fitted on h(x_train) gives "
           f"{transfer_text}, the paper's reading (next row)" if near_chance
           else "why not known; the paper gives no number, figure1-probes.png shows both probe protocols")
    rows.append(("OOD accuracy, single-modal", "stays ≈ 0.5 (chance)", single_text,
                 None if math.isnan(single) else bool(abs(single - 0.5) <= ACCURACY_TOLERANCE),
                 why if not math.isnan(single) and abs(single - 0.5) > ACCURACY_TOLERANCE else ""))
    if not math.isnan(transfer):
        rows.append(("OOD accuracy, single-modal, head fitted on h(x_train)", "stays ≈ 0.5 (chance)", transfer_text,
                     near_chance, ""))
    for metric, what, first, second in (("gamma_max", "signal learning max|γ|: multi > single", "multi", "single"),
                                        ("rho_max", "noise memorization max ρ: single > multi", "single", "multi")):
        a, a_text = get(first, metric)
        b, b_text = get(second, metric)
        known = not (math.isnan(a) or math.isnan(b))
        rows.append((what, f"{first} clearly higher", f"{first} {a_text}, {second} {b_text}",
                     bool(a > b) if known else None, ""))
    return rows


def _table1_command(out: str | os.PathLike, *, seeds: int | None, small: bool, overwrite: bool,
                    progress: bool | None = None) -> str:
    table = table1(out, seeds=seeds or 3, small=small, overwrite=overwrite, progress=progress)
    report = (Path(out) / "table1.md").read_text(encoding="utf-8")
    return "\n".join([report.rstrip("\n"), *comparison_lines(table1_findings(table)),
                      f"dyn reproduce: table1.md, ablation.csv, directions.png, ablation.png and the runs in {out}/"])


#: Table 1: how many accuracy points dyn's number may differ from the paper's and still count as reproduced
TABLE1_TOLERANCE = 15.0


def table1_findings(table: pd.DataFrame) -> list[tuple[str, str, str, bool | None, str]]:
    """Table 1's numbers, paper vs dyn (percent), from :func:`table1`'s table (rows for :func:`comparison_lines`).

    Examples
    --------
    >>> table = pd.DataFrame({"modality": ["single", "multi"], "train_acc_mean": [90.0, 89.0],
    ...                       "train_acc_std": [1.0, 1.0], "test_acc_mean": [40.0, 85.0], "test_acc_std": [2.0, 2.0],
    ...                       "paper_train": [88.43, 87.77], "paper_test": [12.68, 82.13]})
    >>> [(row[0], row[3]) for row in table1_findings(table)]  # doctest: +NORMALIZE_WHITESPACE
    [('train accuracy, single-modal (%)', True), ('test accuracy, single-modal (%)', False),
     ('train accuracy, multi-modal (%)', True), ('test accuracy, multi-modal (%)', True),
     ('test accuracy gap, multi - single (points)', False)]
    """
    why = "scikit-learn's 8x8 digits stand in for MNIST (nothing is downloaded), so the numbers need not match"
    rows: list[tuple[str, str, str, bool | None, str]] = []
    by = table.set_index("modality")
    for modality in ("single", "multi"):
        for kind in ("train", "test"):
            mean, std = float(by.loc[modality, f"{kind}_acc_mean"]), float(by.loc[modality, f"{kind}_acc_std"])
            paper = float(by.loc[modality, f"paper_{kind}"])
            ok = abs(mean - paper) <= TABLE1_TOLERANCE
            rows.append((f"{kind} accuracy, {modality}-modal (%)", f"{paper:.2f}",
                         f"{mean:.2f}" + (f" ± {std:.2f}" if math.isfinite(std) else ""), ok, "" if ok else why))
    gap = float(by.loc["multi", "test_acc_mean"] - by.loc["single", "test_acc_mean"])
    paper_gap = float(by.loc["multi", "paper_test"] - by.loc["single", "paper_test"])
    ok = abs(gap - paper_gap) <= TABLE1_TOLERANCE
    rows.append(("test accuracy gap, multi - single (points)", f"{paper_gap:.2f}", f"{gap:.2f}", ok,
                 "" if ok else why))
    return rows


#: ``dyn reproduce NAME``: name -> (description, command returning the text to print)
EXPERIMENTS = {
    "figure1": ("Figure 1: single- vs multi-modal training over seeds, OOD probe along training, four panels",
                _figure1_command),
    "table1": ("Table 1: the ColoredMNIST protocol on scikit-learn's bundled digits", _table1_command),
}
