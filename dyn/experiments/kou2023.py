"""Reproductions of the benign/harmful overfitting transition on the signal–noise CNN family.

``kou-heatmap``: the synthetic test-error heatmap of Kou et al. 2023 exactly as the authors' code runs it (code
network, ``‖μ‖ = 0.1 s`` for s = 0..99 × ``d = 100 + 10 t`` for t = 0..99, n = 20, m = 10, lr 0.1, 100 full-batch
steps, 1000 test points, p = 0.1 on training and test labels, noise not orthogonal to μ, float32, 10 repeats per
cell), and the same grid under the theory's network (sum over patches, 1/m, no bias, N(0, σ₀²) init, noise
orthogonal to μ; η = 0.5 so that its step matches the code network's, whose ½ · m = 5 times larger factor the
theory network lacks). Cells are trained unrecorded (a heatmap needs only the final test error; 100,000 recorded
runs would take tens of GB), in batches by the setup's batch trainer when it has one. ``--small``: 10 ‖μ‖ × 6 d ×
2 repeats of the same grid.

The authors published the heatmap's numbers (``uclaml/Benign_ReLU_CNN``, ``Source file/data_test100.csv``); a copy
ships with dyn (``data/reference/kou2023/``, with attribution) and is compared cell by cell: mean |difference| over
the shared cells and, per d, the ‖μ‖ at which the test error crosses 0.2 (the threshold of the authors' second
figure). Nothing is fetched at run time.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..theory.kou2023 import HARMFUL_EXCESS
from ..progress import progress_bar
from ..setups.base import comparison_lines, get_setup, load_preset
from ..store.outputs import save_figure, staged_folder

__all__ = ["heatmap_configs", "train_cells", "crossing", "compare", "reference_heatmap", "kou_heatmap",
           "run_curves", "pair_figure", "benign_vs_harmful", "EXPERIMENTS", "CROSSING_LEVEL", "CHANCE_SCALE"]

#: The test error the authors thresholded their heatmap at (``Data_test > 0.2``).
CROSSING_LEVEL = 0.2
#: Top of the colour scale: chance is 0.5, so a scale to 1 (the authors') leaves half the colours unused.
CHANCE_SCALE = 0.6
#: A reproduction "reproduced" the authors' numbers when the mean |difference| of the cells' test errors is at most
#: this (10 repeats of 1000 test points give a standard error ~0.01 per cell) ...
REPRODUCED_CELL = 0.05
#: ... and the 0.2-crossing ‖μ‖ differs by at most this on average (5 steps of the authors' 0.1 grid).
REPRODUCED_CROSSING = 0.5
_SETUP = "signal-noise-cnn"


def heatmap_configs(network: str, *, small: bool = False, repeats: int | None = None) -> list[tuple[dict[str, Any], Any]]:
    """Every cell × repeat of the heatmap grid for ``network`` ("code" or "theory"): ``(labels, config)`` pairs.

    Examples
    --------
    >>> cells = heatmap_configs("code", small=True)
    >>> len(cells), cells[0][0], cells[0][1].network
    (120, {'mu_norm': 0.0, 'd': 100, 'repeat': 0}, 'code')
    """
    if network not in ("code", "theory"):
        raise ConfigError(f"network must be 'code' or 'theory', got {network!r}")
    preset = "kou2023-code" if network == "code" else "kou2023-theory"
    if small:
        mus, ds, reps = [float(s) for s in range(10)], [100, 280, 460, 640, 820, 1000], 2
    else:
        mus, ds, reps = [round(0.1 * s, 1) for s in range(100)], [100 + 10 * t for t in range(100)], 10
    reps = repeats or reps
    extra = {"steps": 100, "eta": 0.1} if network == "code" else {"steps": 100, "eta": 0.5}
    out = []
    for d in ds:
        for mu in mus:
            for r in range(reps):
                cfg = load_preset(preset, d=d, mu_norm=mu, seed=1000 * r, n=20, n_test=1000, m=10,
                                  population_draws=0, test_every=100, record_every=100, **extra)
                out.append(({"mu_norm": mu, "d": d, "repeat": r}, cfg))
    return out


def train_cells(cells: list[tuple[dict[str, Any], Any]], *, progress: bool | None = None, batch: int = 64,
                on_cell: Callable[[], None] | None = None) -> pd.DataFrame:
    """Train every cell unrecorded (batched by the setup's batch trainer when it can) and return one row per cell:
    its labels, ``test_error`` (against the flipped test labels), ``final_loss``."""
    setup = get_setup(_SETUP)
    groups: dict[Any, list[int]] = {}
    for i, (_, cfg) in enumerate(cells):
        key = setup.batch_key(cfg) if setup.batch_key and setup.batch_trainer else None
        groups.setdefault(key if key is not None else ("alone", i), []).append(i)
    rows: list[dict[str, Any] | None] = [None] * len(cells)
    bar = progress_bar(len(cells), desc="cells", unit="run", progress=progress)
    try:
        for key, idx in groups.items():
            for start in range(0, len(idx), batch):
                chunk = idx[start:start + batch]
                configs = [cells[i][1] for i in chunk]
                summaries = None
                if len(chunk) > 1 and not (isinstance(key, tuple) and key[:1] == ("alone",)):
                    try:
                        summaries = setup.train_batch(configs, [None] * len(chunk), progress=False)
                    except ConfigError:
                        summaries = None
                if summaries is None:
                    summaries = [setup.train(cfg, None, progress=False) for cfg in configs]
                for i, s in zip(chunk, summaries):
                    rows[i] = {**cells[i][0], "test_error": s.final_test_error, "final_loss": s.final_loss}
                bar.update(len(chunk))
    finally:
        bar.close()
    return pd.DataFrame(rows)


def crossing(table: pd.DataFrame, level: float = CROSSING_LEVEL) -> pd.Series:
    """Per d, the smallest ‖μ‖ from which the (mean) test error stays at or below ``level`` (linear interpolation
    between grid points; NaN when it never does, ‖μ‖ = the first grid value when it always does).

    Examples
    --------
    >>> t = pd.DataFrame({"d": [100] * 4, "mu_norm": [0.0, 1.0, 2.0, 3.0], "test_error": [0.5, 0.4, 0.1, 0.1]})
    >>> float(crossing(t).loc[100])
    1.6667
    """
    out = {}
    for d, g in table.groupby("d"):
        g = g.groupby("mu_norm")["test_error"].mean().sort_index()
        mu, err = g.index.to_numpy(dtype=float), g.to_numpy(dtype=float)
        above = np.flatnonzero(err > level)
        if above.size == 0:
            out[d] = mu[0]
        elif above[-1] == len(err) - 1:
            out[d] = math.nan
        else:
            k = above[-1]
            out[d] = round(float(mu[k] + (err[k] - level) * (mu[k + 1] - mu[k]) / (err[k] - err[k + 1])), 4)
    return pd.Series(out, name="mu_crossing")


def reference_heatmap() -> pd.DataFrame | None:
    """The authors' published heatmap (mean test error over 10 repeats per cell) as a long table ``d``,
    ``mu_norm``, ``test_error``, or None when the copy is not installed."""
    try:
        path = Path(str(resources.files("dyn.setups.signal_noise_cnn") / "reference" / "kou2023_test_error.csv"))
    except (ModuleNotFoundError, TypeError):
        return None
    if not path.is_file():
        return None
    return pd.read_csv(path, comment="#")


def compare(ours: pd.DataFrame, reference: pd.DataFrame) -> dict[str, Any]:
    """Cell by cell against the reference on the cells both have: mean |difference| of the mean test error, and
    the 0.2-crossing per d (ours, theirs, mean |difference| over the d where both exist)."""
    mine = ours.groupby(["d", "mu_norm"])["test_error"].mean().rename("ours")
    ref = reference.assign(mu_norm=reference["mu_norm"].round(1)).groupby(["d", "mu_norm"])["test_error"].mean()
    both = pd.concat([mine, ref.rename("authors")], axis=1, join="inner").dropna()
    if both.empty:
        raise ConfigError("no cell of this heatmap is in the reference grid")
    ours_x, theirs_x = crossing(ours), crossing(reference.assign(mu_norm=reference["mu_norm"].round(1)))
    cross = pd.concat([ours_x.rename("ours"), theirs_x.rename("authors")], axis=1, join="inner")
    valid = cross.dropna()
    return {"cells": int(len(both)), "mean_abs_diff": float((both["ours"] - both["authors"]).abs().mean()),
            "max_abs_diff": float((both["ours"] - both["authors"]).abs().max()),
            "crossing": cross, "crossing_mean_abs_diff": float((valid["ours"] - valid["authors"]).abs().mean())
            if len(valid) else math.nan, "crossing_d": int(len(valid))}


def _figure(tables: dict[str, pd.DataFrame]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(tables), 4.8), layout="constrained")
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    mesh = None
    for ax, (title, table) in zip(axes, tables.items()):
        grid = table.groupby(["d", "mu_norm"])["test_error"].mean().unstack("mu_norm").sort_index()
        mus, ds = grid.columns.to_numpy(dtype=float), grid.index.to_numpy(dtype=float)
        mesh = ax.pcolormesh(_edges(mus), _edges(ds), grid.to_numpy(), cmap="YlGnBu", vmin=0, vmax=CHANCE_SCALE,
                             shading="flat")
        x = crossing(table)
        ax.plot(x.to_numpy(dtype=float), x.index.to_numpy(dtype=float), "o", ms=2.5, color="crimson")
        fit = x.dropna()
        fit = fit[fit > 0]
        if len(fit) >= 2:  # n|mu|^4/d = const through the crossings: |mu| = (c d)^(1/4)
            c = float(np.median(fit.to_numpy() ** 4 / fit.index.to_numpy(dtype=float)))
            dd = np.linspace(ds.min(), ds.max(), 100)
            ax.plot((c * dd) ** 0.25, dd, "--", color="black", lw=1.2)
        ax.set_xlabel(r"signal strength $\|\mu\|$")
        ax.set_ylabel("dimension d")
        ax.set_title(title)
        ax.set_xlim(_edges(mus)[0], _edges(mus)[-1])
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", ms=4, color="crimson",
                      label=f"|mu| where the test error falls to {CROSSING_LEVEL} (per d)"),
               Line2D([], [], ls="--", color="black", label=r"$n\|\mu\|^4/(\sigma_p^4 d)$ = const through those points")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False)
    fig.colorbar(mesh, ax=list(axes), label="test error (flipped test labels; Bayes error p = 0.1)", extend="max")
    return fig


def _edges(centers: np.ndarray) -> np.ndarray:
    if centers.size == 1:
        return np.array([centers[0] - 0.5, centers[0] + 0.5])
    mid = (centers[1:] + centers[:-1]) / 2
    return np.concatenate([[2 * centers[0] - mid[0]], mid, [2 * centers[-1] - mid[-1]]])


def kou_heatmap(out: str | os.PathLike, *, small: bool = False, seeds: int | None = None, overwrite: bool = False,
                progress: bool | None = None, networks: tuple[str, ...] = ("code", "theory")) -> str:
    """Reproduce Kou et al.'s heatmap under the code network and the theory network into the folder ``out``
    (``heatmap.csv``, ``heatmap.png``/``.svg``, ``comparison.csv``, ``summary.txt``); returns the summary text.

    ``seeds`` overrides the repeats per cell (10; 2 with ``small``); ``networks`` picks the networks to run."""
    tables = {}
    cells = {net: heatmap_configs(net, small=small, repeats=seeds) for net in networks}
    with staged_folder(out, kind="reproduction", overwrite=overwrite) as tmp:
        for net, cs in cells.items():
            tables[net] = train_cells(cs, progress=progress).assign(network=net)
        frame = pd.concat(tables.values(), ignore_index=True)
        frame.to_csv(Path(tmp) / "heatmap.csv", index=False)
        reference = reference_heatmap()
        names = {"code": "dyn, authors' code network", "theory": "dyn, theory network"}
        panels = {names[net]: tables[net] for net in networks}
        lines = [f"Kou et al. 2023 heatmap ({'small: ' if small else ''}{frame['d'].nunique()} d x "
                 f"{frame['mu_norm'].nunique()} |mu| x {frame['repeat'].nunique()} repeats per network)"]
        findings = []
        if reference is not None:
            panels["authors' published numbers"] = reference
            crossings = []
            for net in networks:
                c = compare(tables[net], reference)
                label = "authors' code network" if net == "code" else "theory network (not in the paper's figure)"
                findings.append((f"test error per cell, {label}", "the authors' heatmap",
                                 f"mean |diff| {c['mean_abs_diff']:.3f} over {c['cells']} cells (max "
                                 f"{c['max_abs_diff']:.3f})", c["mean_abs_diff"] <= REPRODUCED_CELL,
                                 "" if net == "code" else "another network"))
                findings.append((f"|mu| where the test error falls to 0.2, {label}", "the authors' crossing per d",
                                 f"mean |diff| {c['crossing_mean_abs_diff']:.2f} over {c['crossing_d']} d",
                                 c["crossing_mean_abs_diff"] <= REPRODUCED_CROSSING,
                                 "" if net == "code" else "another network"))
                crossings.append(c["crossing"].assign(network=net))
            pd.concat(crossings).to_csv(Path(tmp) / "comparison.csv", index_label="d")
        else:
            lines.append("  authors' numbers not installed: no cell-by-cell comparison")
        for net, table in tables.items():
            strong = table[table["mu_norm"] >= table["mu_norm"].max() * 0.8]["test_error"].mean()
            findings.append((f"test error at the largest |mu|, {net} network", "-> p = 0.1 (benign: Bayes error)",
                             f"{strong:.3f}", abs(strong - 0.1) <= 0.02, "a 0.02 band around p"))
        lines += comparison_lines(findings)
        save_figure(_figure(panels), tmp, "heatmap")
        text = "\n".join(lines)
        (Path(tmp) / "summary.txt").write_text(text + "\n")
    return text


def run_curves(run: Any) -> pd.DataFrame:
    """Per recorded step of a family run: max γ, max ρ̄ (own bank), the mean over neurons of the own-bank ρ̄ of
    flipped and of clean samples, the training loss and the test error (where evaluated)."""
    from ..analysis.run import Run
    from ..theory.signal_noise_cnn.quantities import CNNRecording

    rec = CNNRecording.from_run(Run.coerce(run))
    own = rec.own()  # (2, n)
    per_sample = np.where(own[None, :, None, :], rec.rho, -np.inf).max(axis=(1, 2))  # own-bank max, (T, n)
    frame = pd.DataFrame({"step": rec.steps, "max_gamma": rec.signal_max(), "max_rho": rec.noise_max()})
    frame["rho_clean"] = per_sample[:, ~rec.flipped].mean(axis=1) if (~rec.flipped).any() else np.nan
    frame["rho_flipped"] = per_sample[:, rec.flipped].mean(axis=1) if rec.flipped.any() else np.nan
    for name in ("loss", "test_error"):
        frame[name] = rec.scalars.get(name, np.full(len(rec.steps), np.nan))
    return frame


def pair_figure(curves: dict[str, pd.DataFrame], *, flip_rate: float | None = None):
    """One row per run: (left) max γ vs max ρ̄ over training; (middle) ρ̄ of flipped vs clean samples (the mean over
    samples of their largest own-bank coefficient); (right) training loss and test error, with the Bayes error."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.4 * len(curves)), layout="constrained")
    axes = fig.subplots(len(curves), 3, squeeze=False)
    for row, (name, c) in zip(axes, curves.items()):
        row[0].plot(c["step"], c["max_gamma"], color="tab:blue", lw=2, label=r"signal: max $\gamma$")
        row[0].plot(c["step"], c["max_rho"], color="tab:red", lw=2, label=r"noise: max $\bar\rho$")
        row[0].set_title(name, loc="left", fontweight="bold")
        row[1].plot(c["step"], c["rho_clean"], color="tab:green", lw=2, label="clean samples")
        row[1].plot(c["step"], c["rho_flipped"], color="tab:purple", lw=2, label="flipped samples")
        row[1].set_title(r"mean over samples of max$_r\,\bar\rho_{y_i,r,i}$")
        row[2].plot(c["step"], c["loss"], color="black", lw=1.5, label="training loss")
        te = c.dropna(subset=["test_error"])
        row[2].plot(te["step"], te["test_error"], "o-", color="tab:orange", ms=3, label="test error (flipped labels)")
        if flip_rate:
            row[2].axhline(flip_rate, color="gray", ls=":", label=f"Bayes error p = {flip_rate:g}")
        row[2].set_yscale("log")
        row[2].set_title("loss and test error")
        for ax in row:
            ax.set_xlabel("step (full-batch GD)")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        row[0].set_ylabel(r"signal max $\gamma$ / noise max $\bar\rho$")
        row[1].set_ylabel(r"$\bar\rho$")
    return fig


def benign_vs_harmful(out: str | os.PathLike, *, small: bool = False, overwrite: bool = False,
                      progress: bool | None = None, seeds: int | None = None) -> str:
    """Train the presets ``kou2023-theory`` (benign side) and ``kou2023-harmful`` (harmful side), record every
    step, check both against Kou et al.'s claims and draw them side by side (``benign-vs-harmful.png``)."""
    from ..analysis.run import Run
    from ..theory import theory_for

    if seeds not in (None, 1):
        raise ConfigError("benign-vs-harmful runs the presets' one seed; leave seeds unset")
    presets = {"benign (kou2023-theory)": "kou2023-theory", "harmful (kou2023-harmful)": "kou2023-harmful"}
    lines, curves, regimes = [], {}, {}
    with staged_folder(out, kind="reproduction", overwrite=overwrite) as tmp:
        for label, preset in presets.items():
            cfg = load_preset(preset, **({"steps": 80, "population_draws": 0} if small else {}))
            path = Path(tmp) / "runs" / f"{preset}.zarr"
            path.parent.mkdir(exist_ok=True)
            get_setup(_SETUP).train(cfg, path, progress=progress, attrs={"preset": preset})
            run = Run(path)
            theory = theory_for(run)
            verdicts = theory.check(run)
            reg = regimes[preset] = theory.regime(run)
            counts = pd.Series([v.verdict for v in verdicts if not v.is_condition]).value_counts().to_dict()
            lines.append(f"{label}: n|mu|^4/(sigma_p^4 d) = {reg['n_mu4_over_sigma4_d']:.3g}, final test error "
                         f"{reg.get('final_test_error', math.nan):.3f} (p = {reg['flip_rate']:g}), winner "
                         f"{reg['observed_winner']}; claims: {counts}")
            for v in verdicts:
                lines.append(f"    {v.claim:26s} {v.verdict:14s} {v.observed[:90]}")
            curves[label] = run_curves(run)
            curves[label].assign(run=label).to_csv(Path(tmp) / f"curves-{preset}.csv", index=False)
        save_figure(pair_figure(curves, flip_rate=cfg.flip_rate), tmp, "benign-vs-harmful")
        benign, harmful = regimes["kou2023-theory"], regimes["kou2023-harmful"]
        se = math.sqrt(cfg.flip_rate * (1 - cfg.flip_rate) / cfg.n_test)
        lines += comparison_lines([
            ("benign side: test error", "-> p (Theorem 4.1)", f"{benign['final_test_error']:.3f} (this test set's "
             f"Bayes error {benign['bayes_test_error']:.3f})", abs(benign["excess_test_error"]) <= 3 * se,
             "outside 3 SE of the Bayes error"),
            ("harmful side: test error", "p + a constant (Theorem 4.2)", f"{harmful['final_test_error']:.3f}",
             harmful["excess_test_error"] >= HARMFUL_EXCESS, f"excess below {HARMFUL_EXCESS}"),
            ("training error, flipped labels included", "0 in both regimes",
             f"{benign['final_train_error']:g} / {harmful['final_train_error']:g}",
             benign["final_train_error"] == 0 and harmful["final_train_error"] == 0, "a training label not fitted"),
        ])
        text = "\n".join(lines)
        (Path(tmp) / "summary.txt").write_text(text + "\n")
    return text


EXPERIMENTS = {
    "benign-vs-harmful": ("one benign and one harmful run of Kou et al.'s setting side by side: signal vs noise, "
                          "flipped vs clean samples' noise memorization, loss and test error, claim by claim",
                          benign_vs_harmful),
    "kou-heatmap": ("Kou et al. 2023's test-error heatmap (|mu| x d) as the authors' code runs it and under the "
                    "theory's network, compared cell by cell with the authors' published numbers", kou_heatmap),
}
