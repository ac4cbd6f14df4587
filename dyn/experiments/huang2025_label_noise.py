"""Reproduce Huang, Han et al. 2025 end to end (``dyn reproduce figure2|figure3|optimizers``) and draw its sweeps.

``figure2``: standard GD vs label-noise GD on the paper's Figure-2 config over seeds, every step recorded; three
panels (ratio of noise memorization to signal learning, training loss, test accuracy) with mean ± 1σ bands.
The paper does not define its "ratio": the figure plots ``max ρ̄ / max γ`` (exact coefficients, notes §10.6);
the curves file also holds the raw inner-product ratio ``max⟨w, ξ⟩ / max|⟨w, μ⟩|``.

``figure3``: test accuracy over SNR × n for both algorithms, run with :func:`dyn.experiments.sweep.sweep` on the
shipped grid ``huang2025-figure3`` (``huang2025-figure3-small`` with ``--small``), drawn as heatmaps on continuous
axes with the theory's stage-1 race boundary.

``optimizers`` (not in the paper): standard GD, label-noise GD, heavy-ball SGD and Adam on the same data and
initialisation; who learns the signal and who memorizes the noise.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.run import Run
from ..analysis.summary import winner
from ..errors import ConfigError
from ..progress import progress_bar, progress_enabled
from ..store.outputs import save_figure, staged_folder
from ..theory.huang2025_label_noise.quantities import Params, Recording
from ..setups.base import comparison_lines, find_grid, load_preset, unseen_curves
from ..setups.huang2025_label_noise.config import LabelNoiseConfig, with_snr

__all__ = ["figure2", "figure2_config", "figure3", "optimizers", "optimizer_configs", "run_curves",
           "phase_diagram", "race_boundary", "with_snr", "figure2_findings", "figure3_findings", "PAPER_FIGURE2",
           "PAPER_FIGURE3", "EXPERIMENTS"]

#: What the paper reports for Figure 2 (§5; no numbers are given).
PAPER_FIGURE2 = {
    "gd": "training loss -> near zero; noise memorization significantly exceeds signal learning; poor test accuracy",
    "label_noise": "training loss oscillates around 0.5; noise memorization constant in stage 2, signal keeps "
                   "growing; test accuracy steadily improves",
}
#: What the paper reports for Figure 3 (§5).
PAPER_FIGURE3 = ("standard GD fails to generalize when SNR = O(n^-1/2); label-noise GD achieves perfect test "
                 "accuracy across a broader range of SNR")

ALGORITHM_LABELS = {"gd": "standard GD", "label_noise": "label-noise GD"}

#: per metric: panel title and y label
METRICS = {
    "ratio": ("noise memorization / signal learning", r"$\max\bar\rho\,/\,\max\gamma$ (log scale)"),
    "loss": ("training loss (clean $L_S$)", "loss (log scale)"),
    "test_acc": ("test accuracy (fresh test set)", "accuracy"),
}


def figure2_config(algorithm: str, seed: int, *, small: bool = False) -> Any:
    """The Figure-2 config (preset ``huang2025-figure2``) for ``algorithm`` and ``seed``, or with ``small`` the
    seconds-long preset ``huang2025-tiny`` (n = 20, d = 800, m = 10, 300 steps, no population error)."""
    if small:
        return load_preset("huang2025-tiny", algorithm=algorithm, seed=seed, steps=300, population_draws=0,
                           test_every=10)
    return load_preset("huang2025-figure2", algorithm=algorithm, seed=seed)


def run_curves(run: Run, *, label: dict[str, Any]) -> pd.DataFrame:
    """Tidy per-step curves of one run: ``ratio`` (max ρ̄ / max γ), ``raw_ratio`` (max⟨w,ξ⟩/max|⟨w,μ⟩|),
    ``gamma_max``, ``rho_max``, ``loss``, ``loss_noisy``, ``test_acc`` (where evaluated), with ``label`` columns."""
    rec = Recording.from_run(run)
    gamma, rho = rec.signal_max(), rec.noise_max()
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {
            "ratio": np.where(gamma > 0, rho / gamma, np.nan),
            "raw_ratio": _raw_ratio(run),
            "gamma_max": gamma,
            "rho_max": rho,
        }
    for name in ("loss", "loss_noisy"):
        if rec.scalars.get(name) is not None:
            values[name] = rec.scalars[name]
    if rec.scalars.get("test_error") is not None:
        values["test_acc"] = 1.0 - rec.scalars["test_error"]
    frames = [pd.DataFrame({"step": rec.steps, "metric": k, "value": np.asarray(v, dtype=np.float64)}).dropna()
              for k, v in values.items()]
    out = pd.concat(frames, ignore_index=True)
    for k, v in label.items():
        out[k] = v
    return out


def _raw_ratio(run: Run) -> np.ndarray:
    """Per recorded step, ``max_{j,r,i} ⟨w_{j,r}, ξ_i⟩ / max_{j,r} |⟨w_{j,r}, μ⟩|`` from the stored inner products."""
    noise = np.max([run.site(s)["noise_inner"].values.max(axis=(1, 2)) for s in ("pos", "neg")], axis=0)
    signal = np.max([np.abs(run.site(s)["signal_inner"].values).max(axis=(1, 2)) for s in ("pos", "neg")], axis=0)
    return noise.astype(np.float64) / signal.astype(np.float64)


def _panels(curves: pd.DataFrame, hue: str, order: list[str], labels: dict[str, str], title: str, *,
            spread: bool = True):
    """Figure 2's three panels (ratio, training loss, test accuracy), one line per ``hue`` value, mean ± 1σ."""
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    palette = dict(zip(order, sns.color_palette("colorblind", len(order))))
    fig = Figure(figsize=(14, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, metric in zip(axes, METRICS):
        data = curves[curves["metric"] == metric]
        sns.lineplot(data=data, x="step", y="value", hue=hue, hue_order=order, errorbar="sd", ax=ax,
                     palette=palette, legend=False)
        panel_title, ylabel = METRICS[metric]
        ax.set_title(panel_title)
        ax.set_xlabel("step (full-batch)")
        ax.set_ylabel(ylabel)
        if metric in ("ratio", "loss") and (data["value"] > 0).all() and not data.empty:
            ax.set_yscale("log")
        if metric == "ratio":
            ax.axhline(1.0, color="gray", ls=":", lw=1.2)
        if metric == "test_acc":
            ax.axhline(0.5, color="gray", ls=":", lw=1.2)
            ax.set_ylim(0.0, 1.02)
        sns.despine(ax=ax)
    suffix = " (mean ± 1σ over seeds)" if spread else ""
    handles = [Line2D([], [], color=palette[k], lw=2, label=f"{labels.get(k, k)}{suffix}") for k in order]
    handles.append(Line2D([], [], color="gray", ls=":", lw=1.2, label="ratio 1 / chance accuracy 0.5"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    fig.suptitle(title)
    return fig


def _summarise(curves: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per ``by`` value: mean and std over seeds of the last-step value of every metric, plus ``test_acc_max``
    (the best test accuracy over the run)."""
    last = curves.loc[curves.groupby([by, "seed", "metric"])["step"].idxmax()]
    rows = last[[by, "seed", "metric", "value"]]
    peak = curves[curves["metric"] == "test_acc"].groupby([by, "seed", "metric"])["value"].max().reset_index()
    peak["metric"] = "test_acc_max"
    both = pd.concat([rows, peak], ignore_index=True)
    return both.groupby([by, "metric"], sort=False)["value"].agg(["mean", "std"]).reset_index()


def figure2(out: str | os.PathLike, *, seeds: int = 3, small: bool = False, overwrite: bool = False,
            progress: bool | None = None) -> pd.DataFrame:
    """Train standard GD and label-noise GD for ``seeds`` paired seeds, draw Figure 2, save curves and a summary.

    Writes ``out/runs/<algorithm>-seed<k>.zarr``, ``out/figure2.{png,svg}``, ``out/curves.parquet`` and
    ``out/summary.csv``; the folder is assembled under a temporary name and moved into place when complete.

    Parameters
    ----------
    out : folder to write.
    seeds : number of seeds (runs with one seed share data and initialisation across the two algorithms).
    small : the seconds-long version (``huang2025-tiny``, 300 steps).
    overwrite : replace an existing ``out``.
    progress : one bar over the runs and the figure (its postfix names the run), plus each run's per-step bar;
        None (default): on in notebooks and terminals, off otherwise (:func:`dyn.progress.progress_enabled`).

    Returns
    -------
    pandas.DataFrame
        ``algorithm, metric, mean, std``: last-step values over seeds, plus ``test_acc_max``.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"seeds must be a positive integer, got {seeds!r}")
    from ..setups.huang2025_label_noise.trainer import train

    show = progress_enabled(progress)  # resolved once: the outer bar and the trainers' bars follow one decision
    with staged_folder(out, kind="reproduction", overwrite=overwrite) as tmp, \
            progress_bar(2 * seeds + 1, desc="figure2", unit="task", progress=show, leave=True) as bar:
        frames = []
        (tmp / "runs").mkdir(exist_ok=True)
        for seed in range(seeds):
            for algorithm in ("gd", "label_noise"):
                bar.set_postfix_str(f"training {algorithm}-seed{seed}")
                path = tmp / "runs" / f"{algorithm}-seed{seed}.zarr"
                train(figure2_config(algorithm, seed, small=small), path, progress=show,
                      attrs={"preset": "huang2025-tiny" if small else "huang2025-figure2", "experiment": "figure2"})
                frames.append(run_curves(Run(path), label={"algorithm": algorithm, "seed": seed}))
                bar.update(1)
        curves = pd.concat(frames, ignore_index=True)
        curves.to_parquet(tmp / "curves.parquet", index=False)
        title = (f"Figure 2 reproduction ({'small' if small else 'paper'} size, {seeds} seed"
                 f"{'s, mean ± 1σ' if seeds > 1 else ''})")
        bar.set_postfix_str("drawing figure2")
        save_figure(_panels(curves, "algorithm", ["gd", "label_noise"], ALGORITHM_LABELS, title, spread=seeds > 1),
                    tmp, "figure2")
        bar.update(1)
        summary = _summarise(curves, "algorithm")
        summary.to_csv(tmp / "summary.csv", index=False)
    return summary


def _summary_lines(summary: pd.DataFrame, by: str, order: list[str], metrics: list[str], seeds: int) -> list[str]:
    wide = summary.set_index([by, "metric"])
    lines = []
    for metric in metrics:
        cells = []
        for key in order:
            if (key, metric) not in wide.index:
                continue
            mean, std = wide.loc[(key, metric), "mean"], wide.loc[(key, metric), "std"]
            spread = "" if seeds == 1 or not np.isfinite(std) else f" ± {std:.2g}"
            cells.append(f"{key}: {mean:.4g}{spread}")
        lines.append(f"  {metric:<13} " + "   ".join(cells))
    return lines


_FIG2_METRICS = ["ratio", "raw_ratio", "gamma_max", "rho_max", "loss", "loss_noisy", "test_acc", "test_acc_max"]


def _figure2_command(out: str | os.PathLike, *, seeds: int | None, small: bool, overwrite: bool,
                     progress: bool | None = None) -> str:
    seeds = seeds or 3
    summary = figure2(out, seeds=seeds, small=small, overwrite=overwrite, progress=progress)
    lines = [f"Figure 2 ({'small' if small else 'paper'} size, {seeds} seed{'s' if seeds > 1 else ''}): value at "
             "the last step (test_acc_max: best over the run), mean ± std over seeds; ratio = max rho_bar / "
             "max gamma"]
    lines += _summary_lines(summary, "algorithm", ["gd", "label_noise"], _FIG2_METRICS, seeds)
    lines += comparison_lines(figure2_findings(summary))
    lines.append(f"dyn reproduce: figure2.png/.svg, curves.parquet, summary.csv and the runs in {out}/")
    return "\n".join(lines)


#: Figure 2's loss of label-noise GD "oscillates around 0.5" (read off the plot): the band counted as reproduced
NOISY_LOSS_BAND = (0.3, 0.7)
#: "near zero" for standard GD's training loss
LOSS_NEAR_ZERO = 0.05


def figure2_findings(summary: pd.DataFrame) -> list[tuple[str, str, str, bool | None, str]]:
    """Figure 2's findings (§5, no numbers given), paper vs dyn, from the last-step summary.

    Examples
    --------
    >>> rows = [("gd", "loss", 0.01), ("gd", "ratio", 5.0), ("gd", "test_acc", 0.6), ("label_noise", "ratio", 0.5),
    ...         ("label_noise", "test_acc", 0.95), ("label_noise", "loss_noisy", 0.55)]
    >>> summary = pd.DataFrame([dict(algorithm=a, metric=m, mean=v, std=0.0) for a, m, v in rows])
    >>> all(row[3] for row in figure2_findings(summary))
    True
    """
    value = summary.set_index(["algorithm", "metric"])["mean"]

    def get(algorithm: str, metric: str) -> float:
        return float(value.get((algorithm, metric), math.nan))

    def decided(ok: bool, *values: float) -> bool | None:
        return None if any(math.isnan(v) for v in values) else bool(ok)

    loss, ratio_gd, ratio_ln = get("gd", "loss"), get("gd", "ratio"), get("label_noise", "ratio")
    acc_gd, acc_ln, noisy = get("gd", "test_acc"), get("label_noise", "test_acc"), get("label_noise", "loss_noisy")
    lo, hi = NOISY_LOSS_BAND
    return [
        ("standard GD: training loss", "→ near zero", f"{loss:.3g}", decided(loss <= LOSS_NEAR_ZERO, loss), ""),
        ("standard GD: noise memorization / signal learning", "≫ 1", f"ratio {ratio_gd:.3g}",
         decided(ratio_gd > 1, ratio_gd), ""),
        ("label-noise GD: ratio below standard GD's", "yes (signal keeps growing)",
         f"{ratio_ln:.3g} vs {ratio_gd:.3g}", decided(ratio_ln < ratio_gd, ratio_ln, ratio_gd), ""),
        ("label-noise GD: training loss on noisy labels", "oscillates around 0.5", f"{noisy:.3g}",
         decided(lo <= noisy <= hi, noisy), ""),
        ("test accuracy: label-noise GD above standard GD", "yes (standard GD poor)",
         f"{acc_ln:.3g} vs {acc_gd:.3g}", decided(acc_ln > acc_gd, acc_ln, acc_gd), ""),
    ]


#: Figure 3: a grid cell counts as "perfect test accuracy" at or above this mean accuracy
PERFECT = 0.95


def figure3_findings(table: pd.DataFrame) -> list[tuple[str, str, str, bool | None, str]]:
    """Figure 3's findings, paper vs dyn, from the (algorithm, n, snr, mean) table of :func:`figure3`.

    Examples
    --------
    >>> table = pd.DataFrame([dict(algorithm=a, n=n, snr=s, mean=m) for a, n, s, m in
    ...     [("gd", 10, 0.1, 0.6), ("gd", 10, 1.0, 1.0), ("label_noise", 10, 0.1, 1.0), ("label_noise", 10, 1.0, 1.0)]])
    >>> [row[3] for row in figure3_findings(table)]
    [True, True]
    """
    cells = {a: table[table["algorithm"] == a] for a in ("gd", "label_noise")}
    perfect = {a: int((t["mean"] >= PERFECT).sum()) for a, t in cells.items()}
    total = max(len(t) for t in cells.values())
    low = cells["gd"][cells["gd"]["n"] * cells["gd"]["snr"] ** 2 <= 1]
    low_acc = float(low["mean"].mean()) if len(low) else math.nan
    return [
        (f"cells with test accuracy >= {PERFECT}", "more for label-noise GD",
         f"label-noise GD {perfect['label_noise']} of {total}, standard GD {perfect['gd']} of {total}",
         bool(perfect["label_noise"] > perfect["gd"]), ""),
        ("standard GD where n·SNR² <= 1", "fails to generalize",
         "no such cell" if math.isnan(low_acc) else f"mean test accuracy {low_acc:.3g}",
         None if math.isnan(low_acc) else bool(low_acc < PERFECT), "the grid has no cell there" if math.isnan(low_acc)
         else ""),
    ]


# -- Figure 3 --------------------------------------------------------------------------------------------------------
def race_boundary(config: Any, snr: np.ndarray) -> np.ndarray:
    """The sample size ``n*(SNR)`` where the stage-1 race of standard GD flips (notes §7.6, DERIVED heuristic used
    by the theory's regime): noise memorization first iff ``n SNR²/2 < log(1/(k s_μ)) / log(1/(k s_ξ))``, so
    ``n* = 2 · rhs / SNR²`` (NaN where the heuristic does not apply). ``config`` fixes d, m, σ₀, σ_p."""
    out = []
    for s in np.asarray(snr, dtype=np.float64):
        cfg = with_snr(config, float(s)).to_dict()
        pred = Params.from_config({**cfg, "algorithm": "gd"}).race_prediction()
        out.append(2.0 * pred["rhs"] / s**2 if pred["applicable"] else np.nan)
    return np.asarray(out)


def _test_accuracy(store: str) -> float:
    """Final test accuracy of a run store (1 − the last logged ``test_error``)."""
    err = Run(store).scalar("test_error")
    if err is None:
        return math.nan
    finite = np.asarray(err, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(1.0 - finite[-1]) if finite.size else math.nan


def phase_diagram(results: pd.DataFrame):
    """Figure 3: final test accuracy over SNR × n for standard GD (left) and label-noise GD (right).

    Each grid point is a cell coloured by the test accuracy (mean over seeds), on continuous axes (SNR, n); the
    theory's stage-1 race boundary ``n*(SNR)`` (:func:`race_boundary`; noise memorization wins below it) and the
    paper's scale ``n·SNR² = 1`` are drawn as curves.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    ok = results[results["status"] == "complete"].copy()
    if "test_acc" not in ok:
        ok["test_acc"] = [_test_accuracy(s) for s in ok["store"]]
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    cmap = sns.color_palette("viridis", as_cmap=True)
    mesh = None
    for ax, algorithm in zip(axes, ("gd", "label_noise")):
        part = ok[ok["algorithm"] == algorithm]
        ax.set_title(f"{ALGORITHM_LABELS[algorithm]}: test accuracy", fontsize=10)
        ax.set_xlabel("SNR = ‖μ‖ / (σ_p √d)")
        if part.empty:
            continue
        table = part.groupby(["n", "snr"])["test_acc"].mean().unstack("snr")
        snrs, ns = table.columns.to_numpy(float), table.index.to_numpy(float)
        mesh = ax.pcolormesh(_edges(snrs), _edges(ns), table.to_numpy(), cmap=cmap, vmin=0.5, vmax=1.0,
                             shading="flat")
        for i, n in enumerate(ns):
            for j, s in enumerate(snrs):
                v = table.to_numpy()[i, j]
                if np.isfinite(v):
                    ax.text(s, n, f"{v:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if v < 0.8 else "black")
        row = part.iloc[0]
        cfg = LabelNoiseConfig(d=int(row["d"]), n=1 + 1, m=int(row["m"]), sigma0=float(row["sigma0"]),
                               sigma_p=float(row["sigma_p"]))
        xs = np.linspace(_edges(snrs)[0], _edges(snrs)[-1], 200)
        ax.plot(xs, race_boundary(cfg, xs), color="black", ls="--", lw=1.5,
                label="stage-1 race boundary n*(SNR) (noise first below)")
        ax.plot(xs, 1.0 / xs**2, color="tab:red", ls=":", lw=1.5, label="n·SNR² = 1 (SNR = n^-1/2)")
        ax.set_xlim(_edges(snrs)[0], _edges(snrs)[-1])
        ax.set_ylim(_edges(ns)[0], _edges(ns)[-1])
        outside = unseen_curves(ax)  # listed only where drawn; named below where they miss the grid
        if outside:
            ax.text(0.02, 0.02, "outside this grid: " + "; ".join(label.split(" (")[0] for label in outside),
                    transform=ax.transAxes, fontsize=7, color="white")
        if len(outside) < 2:
            ax.legend(loc="upper right", fontsize=7)
    axes[0].set_ylabel("n (training samples)")
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, shrink=0.85, label="test accuracy (mean over seeds)")
    return fig


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted positive grid values (midpoints; the outer cells as wide as their neighbours, the
    first edge at least half the first value so that the axis stays positive)."""
    c = np.asarray(centers, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] * 0.9, c[0] * 1.1])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[max(c[0] - (mid[0] - c[0]), c[0] / 2)], mid, [c[-1] + (c[-1] - mid[-1])]])


def figure3(out: str | os.PathLike, *, small: bool = False, seeds: int | None = None, overwrite: bool = False,
            workers: int = 2, sequential: bool = False, grid: str | os.PathLike | dict | None = None,
            progress: bool | None = None) -> pd.DataFrame:
    """Run the Figure-3 grid with :func:`dyn.experiments.sweep.sweep` into ``out`` and draw the heatmaps.

    Re-running into the same ``out`` resumes (finished runs are read back). Writes the sweep (``out/runs``,
    ``out/results.{parquet,csv}``, ``out/sweep.json``), ``out/figure3.{png,svg}`` and ``out/figure3.csv``
    (test accuracy per algorithm, SNR, n: mean, std and number of seeds).

    Parameters
    ----------
    out : sweep folder.
    small : the seconds-long grid ``huang2025-figure3-small`` instead of ``huang2025-figure3``.
    seeds : replace the grid's seed axis by ``range(seeds)``.
    overwrite : start afresh.
    workers, sequential : as :func:`dyn.experiments.sweep.sweep`.
    grid : another grid (a file, a shipped name or a dict from :func:`~dyn.experiments.sweep.load_grid`) with the
        axes ``snr``, ``n`` and ``algorithm``; default the shipped one ``small`` selects.
    progress : the sweep's bar over runs (and its Dask dashboard link); None (default): on in notebooks and
        terminals, off otherwise (:func:`dyn.progress.progress_enabled`).
    """
    from .sweep import load_grid, sweep

    if grid is None:
        grid = "huang2025-figure3-small" if small else "huang2025-figure3"
    grid = dict(grid) if isinstance(grid, dict) else load_grid(find_grid(str(grid)))
    grid["axes"] = dict(grid["axes"])
    missing = {"snr", "n", "algorithm"} - set(grid["axes"])
    if missing:
        raise ConfigError(f"figure3: the grid needs the axes snr, n and algorithm (missing: {', '.join(sorted(missing))})")
    if seeds is not None:
        grid["axes"]["seed"] = list(range(seeds))
    results = sweep(grid, out, workers=workers, overwrite=overwrite, sequential=sequential,
                    progress=progress)
    failed = results[results["status"] != "complete"]
    if len(failed):
        raise ConfigError(f"figure3: {len(failed)} run(s) failed, first: {failed['error'].iloc[0]}")
    results = results.copy()
    results["test_acc"] = [_test_accuracy(s) for s in results["store"]]
    table = (results.groupby(["algorithm", "snr", "n"])["test_acc"].agg(["mean", "std", "count"])
             .reset_index().rename(columns={"count": "seeds"}))
    table.to_csv(Path(out) / "figure3.csv", index=False)
    save_figure(phase_diagram(results), Path(out), "figure3")
    return table


def _figure3_command(out: str | os.PathLike, *, seeds: int | None, small: bool, overwrite: bool,
                     progress: bool | None = None) -> str:
    table = figure3(out, small=small, seeds=seeds, overwrite=overwrite, progress=progress)
    lines = [f"Figure 3 ({'small' if small else 'paper'} grid): final test accuracy (mean over seeds), rows n, "
             "columns SNR"]
    for algorithm in ("gd", "label_noise"):
        wide = table[table["algorithm"] == algorithm].pivot(index="n", columns="snr", values="mean")
        lines.append(f"  {ALGORITHM_LABELS[algorithm]}:")
        lines.append("    n \\ SNR " + " ".join(f"{s:>6.3f}" for s in wide.columns))
        for n, row in wide.iterrows():
            lines.append(f"    {n:>8d} " + " ".join(f"{v:>6.2f}" for v in row.to_numpy()))
    lines += comparison_lines(figure3_findings(table))
    lines.append(f"dyn reproduce: figure3.png/.svg, figure3.csv, results.parquet and the runs in {out}/")
    return "\n".join(lines)


# -- optimizers (beyond the paper) -------------------------------------------------------------------------------------
#: The compared optimizers: name -> config changes. Heavy-ball SGD uses η(1 − β) so that its steady-state step
#: matches GD's η; Adam's step is per coordinate, so it gets its own learning rate (``ADAM_LR``).
ADAM_LR = 0.01
OPTIMIZER_ORDER = ["gd", "label_noise", "momentum", "adam", "adam_label_noise"]
OPTIMIZER_LABELS = {"gd": "standard GD", "label_noise": "label-noise GD", "momentum": "SGD + momentum 0.9",
                    "adam": f"Adam (lr {ADAM_LR:g})", "adam_label_noise": f"Adam + label noise (lr {ADAM_LR:g})"}


def optimizer_configs(base: Any) -> dict[str, Any]:
    """The compared configs built from ``base`` (same data, initialisation and flips for every entry)."""
    beta = 0.9
    return {
        "gd": base.replace(algorithm="gd", optimizer="gd"),
        "label_noise": base.replace(algorithm="label_noise", optimizer="gd"),
        "momentum": base.replace(algorithm="gd", optimizer="momentum", momentum=beta, eta=base.eta * (1 - beta)),
        "adam": base.replace(algorithm="gd", optimizer="adam", eta=ADAM_LR),
        "adam_label_noise": base.replace(algorithm="label_noise", optimizer="adam", eta=ADAM_LR),
    }


def optimizers(out: str | os.PathLike, *, seeds: int = 1, small: bool = False, overwrite: bool = False,
               progress: bool | None = None) -> pd.DataFrame:
    """Train every optimizer of :func:`optimizer_configs` on the same data and compare them.

    Base config: ``huang2025-figure2`` at η = 1.0 and 1000 steps (Figure 3's training length), or with ``small``
    the ``huang2025-tiny`` size at 300 steps. Writes ``out/runs/<optimizer>-seed<k>.zarr``,
    ``out/optimizers.{png,svg}`` (the Figure-2 panels per optimizer), ``out/curves.parquet`` and
    ``out/optimizers.csv``: per optimizer, mean/std over seeds of
    the final ``max ρ̄ / max γ``, max γ and max ρ̄, the final clean training loss and the final test accuracy
    (``winner``: :func:`dyn.analysis.summary.winner` of the mean max γ and max ρ̄ at the end). ``progress``: one bar over the runs and the
    figure, plus each run's per-step bar; None (default): on in notebooks and terminals, off otherwise.

    Returns
    -------
    pandas.DataFrame
        The table written to ``optimizers.csv``.
    """
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"seeds must be a positive integer, got {seeds!r}")
    from ..setups.huang2025_label_noise.trainer import train

    show = progress_enabled(progress)
    with staged_folder(out, kind="reproduction", overwrite=overwrite) as tmp, \
            progress_bar(len(OPTIMIZER_ORDER) * seeds + 1, desc="optimizers", unit="task", progress=show,
                         leave=True) as bar:
        frames = []
        (tmp / "runs").mkdir(exist_ok=True)
        for seed in range(seeds):
            base = (figure2_config("gd", seed, small=True) if small else
                    load_preset("huang2025-figure2", seed=seed, eta=1.0, steps=1000))
            for name, cfg in optimizer_configs(base).items():
                bar.set_postfix_str(f"training {name}-seed{seed}")
                path = tmp / "runs" / f"{name}-seed{seed}.zarr"
                train(cfg, path, progress=show, attrs={"experiment": "optimizers", "optimizer_label": name})
                frames.append(run_curves(Run(path), label={"optimizer": name, "seed": seed}))
                bar.update(1)
        bar.set_postfix_str("drawing optimizers")
        curves = pd.concat(frames, ignore_index=True)
        curves.to_parquet(tmp / "curves.parquet", index=False)
        title = (f"Optimizers on the same data ({'small' if small else 'Figure-2'} size, {seeds} seed"
                 f"{'s' if seeds > 1 else ''})")
        save_figure(_panels(curves, "optimizer", OPTIMIZER_ORDER, OPTIMIZER_LABELS, title, spread=seeds > 1), tmp,
                    "optimizers")
        bar.update(1)
        summary = _summarise(curves, "optimizer")
        wide = summary.pivot(index="optimizer", columns="metric", values=["mean", "std"])
        table = pd.DataFrame({"optimizer": OPTIMIZER_ORDER})
        for metric in ("ratio", "gamma_max", "rho_max", "loss", "test_acc"):
            table[metric] = [wide.loc[k, ("mean", metric)] for k in OPTIMIZER_ORDER]
            table[f"{metric}_std"] = [wide.loc[k, ("std", metric)] for k in OPTIMIZER_ORDER]
        scales = Params.from_config(base.to_dict())
        table["winner"] = [winner(max(g, 0.0), max(r, 0.0), signal_scale=scales.s_mu, noise_scale=scales.s_xi)
                           for g, r in zip(table["gamma_max"], table["rho_max"])]
        table.to_csv(tmp / "optimizers.csv", index=False)
    return table


def _optimizers_command(out: str | os.PathLike, *, seeds: int | None, small: bool, overwrite: bool,
                        progress: bool | None = None) -> str:
    seeds = seeds or 1
    table = optimizers(out, seeds=seeds, small=small, overwrite=overwrite, progress=progress)
    lines = [f"Optimizers on the same data ({'small' if small else 'Figure-2 data, eta 1.0, 1000 steps'}, "
             f"{seeds} seed{'s' if seeds > 1 else ''}; at the last step, ratio = max rho_bar / max gamma)",
             f"  {'optimizer':<34} {'ratio':>8} {'max γ':>8} {'max ρ̄':>8} {'loss':>9} "
             f"{'test acc':>8}  winner"]
    for r in table.itertuples():
        lines.append(f"  {OPTIMIZER_LABELS[r.optimizer]:<34} {r.ratio:>8.3g} {r.gamma_max:>8.3g} "
                     f"{r.rho_max:>8.3g} {r.loss:>9.3g} {r.test_acc:>8.3f}  {r.winner}")
    lines.append("  paper vs dyn: none (the paper trains GD and label-noise GD only; this goes beyond it)")
    lines.append(f"dyn reproduce: optimizers.png/.svg, optimizers.csv, curves.parquet and the runs in {out}/")
    return "\n".join(lines)


#: ``dyn reproduce NAME``: name -> (description, command returning the text to print)
EXPERIMENTS = {
    "figure2": ("Huang, Han et al. 2025 Figure 2: standard vs label-noise GD over seeds (ratio, loss, test accuracy)",
                _figure2_command),
    "figure3": ("Huang, Han et al. 2025 Figure 3: test accuracy over SNR x n for both algorithms (a Dask sweep)",
                _figure3_command),
    "optimizers": ("Beyond Huang, Han et al. 2025: GD, label-noise GD, SGD+momentum and Adam on the same data",
                   _optimizers_command),
}
