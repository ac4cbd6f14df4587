"""Train many runs of the signal–noise CNN family in one process, as a batch dimension, each recorded as its own run.

A heatmap of this family (Kou et al. 2023: 100 ‖μ‖ × 100 d × 10 repeats) is thousands of small runs whose steps
are a few tiny GEMMs: alone, each step costs mostly Python and dispatch overhead. Runs that agree on
:func:`~dyn.setups.signal_noise_cnn.batch_key` (shapes, network, q, algorithm, steps, schedules, dtype, device)
are stacked along a leading batch dimension: the filter banks of B runs are one ``(B, 2m, features)`` tensor
(rows ``0..m−1`` are W₊₁, ``m..2m−1`` are W₋₁), the forward pass is one ``torch.bmm`` against the stacked probe
matrices ``[μ | (e_bias) | ξ_1..ξ_n]``, the network's output is :func:`~.model.output_from_inner` mapped over the
batch (``torch.func.vmap``: the lone trainer's own function), and one backward pass of the sum of the runs' losses
gives every run its own gradient (runs share no parameter).

Each run is drawn exactly as the lone trainer draws it: its own :class:`~.trainer.CNNSetup` (``make_data``, the
:class:`~.model.SignalNoiseCNN` initialisation, ``draw_flips``, the population-error draws, the recorder sites),
whose weights then become views of the batch tensor. Per run may differ: ``seed``, ``mu_norm``, ``sigma_p``,
``sigma0``, ``eta``, ``p``, ``flip_rate`` (everything :func:`batch_key` leaves out). Run ``b`` is recorded by its
own :class:`dyn.Recorder` into ``outs[b]``: the same groups, variables, dims and attributes as
:func:`~.trainer.train` writes for that config alone (plus the root attribute ``batched``, the batch size), values
within float tolerance (batched reductions may sum in another order). ``outs[b] = None`` trains run ``b`` without
recording; its summary still carries ``final_loss`` and ``final_test_error``.

Not supported (a one-line :class:`~dyn.ConfigError`; ``dyn sweep`` then trains such runs one by one with
:func:`~.trainer.train`): optimizers other than ``"gd"`` (their :func:`batch_key` is None), ``resume``.
Checkpoints are written per run in the lone trainer's format, so an interrupted batch member is resumed with
``train(config, out, resume=True)`` like any run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Any, Mapping, Sequence

import torch
from torch.func import vmap

from ...errors import ConfigError, DivergenceError
from ...progress import progress_bar
from ...record import DEFAULT_CHUNK_BYTES, Recorder, Site
from ...store.outputs import claim_output
from ..base import DeferredInterrupt, checkpoint_policy, store_size
from . import batch_key
from .config import CNNConfig
from .model import logistic_loss, output_from_inner, population_error
from .trainer import CNNSetup, RunSummary, write_flips, write_labels

__all__ = ["train_batch"]

#: Per-step scalars computed for every run at once, in the order the lone trainer logs them.
_SCALARS = ("loss", "loss_noisy_expected", "margin_min", "margin_mean", "margin_max", "train_error",
            "train_error_flipped", "loss_noisy", "flip_count")


def _differing_field(first: CNNConfig, cfg: CNNConfig) -> str:
    """The name of a config field that puts ``cfg`` in another batch than ``first`` (for the error message)."""
    for f in dataclasses.fields(first):
        a, b = getattr(first, f.name), getattr(cfg, f.name)
        if f.name == "notes" or a == b:
            continue
        try:
            if batch_key(first.replace(**{f.name: b})) != batch_key(first):
                return f"{f.name} ({a!r} vs {b!r})"
        except ConfigError:  # the value is not valid beside the first run's other fields: it is a shape
            return f"{f.name} ({a!r} vs {b!r})"
    return "their batch keys"


def _check(configs: Sequence[Any], outs: Sequence[Any], resume: bool, overwrite: bool) -> None:
    """Refuse (one-line :class:`ConfigError`) what cannot form one batch, before anything is drawn or written."""
    if not configs:
        raise ConfigError("train_batch needs at least one config")
    if len(outs) != len(configs):
        raise ConfigError(f"train_batch: {len(configs)} configs but {len(outs)} outputs")
    if resume:
        raise ConfigError("train_batch cannot resume; resume each run with train(config, out, resume=True)")
    first = configs[0]
    for cfg in configs:
        if not isinstance(cfg, CNNConfig):
            raise ConfigError(f"train_batch takes signal-noise CNN configs, got {type(cfg).__name__}")
        if type(cfg) is not type(first):
            raise ConfigError(f"train_batch: runs of different setups ({type(first).setup_name} vs "
                              f"{type(cfg).setup_name}) cannot form one batch")
        if batch_key(cfg) is None:
            raise ConfigError(f"train_batch supports optimizer 'gd' only (plain GD or label-noise GD), not "
                              f"optimizer={cfg.optimizer!r}; train such runs one by one")
        if batch_key(cfg) != batch_key(first):
            raise ConfigError(f"train_batch: runs differ in {_differing_field(first, cfg)}; only runs with equal "
                              f"batch keys (shapes, network, q, algorithm, steps, schedules, dtype) form a batch")
    for cfg, out in zip(configs, outs):
        if out is not None and cfg.mu_norm == 0:
            raise ConfigError("mu_norm = 0 leaves no signal direction to record; train unrecorded (out=None) or "
                              "use mu_norm > 0")
    paths = [os.path.abspath(os.fspath(o)) for o in outs if o is not None]
    if len(set(paths)) != len(paths):
        raise ConfigError("train_batch: two runs of the batch write to the same store")
    for out in outs:
        if out is not None:
            claim_output(out, kind="run", overwrite=overwrite)  # an existing store without overwrite: refused now


class _Batch:
    """B runs stacked: one weight leaf ``(B, 2m, features)``, probes ``(B, features, k + n)``, labels, flips, η, p.

    Each run's :class:`CNNSetup` keeps working on its own run: its network's parameters are made views of its rows
    of the batch weight, so its checkpoint state, its population error and its recorder sites read the live
    batched weights.
    """

    def __init__(self, setups: Sequence[CNNSetup]):
        self.setups = list(setups)
        cfg = setups[0].config
        self.cfg, self.arch, self.m, self.steps = cfg, setups[0].arch, cfg.m, cfg.steps
        self.k = self.arch.n_signals
        first = setups[0].net.weight_pos
        dtype, device = first.dtype, first.device
        self.weight = torch.stack([torch.cat([s.net.weight_pos.detach(), s.net.weight_neg.detach()])
                                   for s in setups]).requires_grad_(True)
        live = self.weight.detach()
        m = self.m
        for b, s in enumerate(setups):
            s.net.weight_pos.data = live[b, :m]
            s.net.weight_neg.data = live[b, m:]
            if s.config.mu_norm > 0:  # an unrecorded run without a signal direction has no sites
                s.sites = {name: _site_view(site, w) for (name, site), w in
                           zip(s.sites.items(), (s.net.weight_pos, s.net.weight_neg))}
        self.probes = torch.stack([s.probes for s in setups])  # (B, features, k + n)
        self.y = torch.stack([s.data.y for s in setups])  # (B, n) observed labels
        self.y_true = torch.stack([s.data.y_true for s in setups])
        self.flipped = self.y != self.y_true
        self.has_flips = [s.config.flip_rate > 0 for s in setups]
        self.eps = torch.stack([s._eps for s in setups])  # (B, steps, n) label-noise GD flips (all +1 for GD)
        self.eta = torch.tensor([s.config.eta for s in setups], dtype=dtype, device=device)[:, None, None]
        self.p = torch.tensor([s.config.flip_probability for s in setups], dtype=dtype, device=device)
        self.n_test = cfg.n_test
        if self.n_test:
            self.test_probes = torch.stack([s.test_probes for s in setups])  # (B, features, k + n_test)
            for b, s in enumerate(setups):
                s.test_probes = self.test_probes[b]  # one copy in memory, not two
            self.y_test = torch.stack([s.data.y_test for s in setups])
            self.y_test_true = torch.stack([s.data.y_test_true for s in setups])
        arch = self.arch
        self._output = vmap(lambda zp, zn, yt: output_from_inner(zp, zn, yt, arch))
        self._loss = vmap(logistic_loss)

    def forward(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-activations ``(B, 2m, k + n)`` and margins ``y_i f(x_i)`` ``(B, n)`` at the current weights."""
        z = torch.bmm(self.weight, self.probes)
        m = self.m
        f = self._output(z[:, :m], z[:, m:], self.y_true)
        return z, self.y * f

    def step(self, t: int, margins: torch.Tensor) -> None:
        """One GD step of every run on its L^ε_S at the flips of step ``t``: W_b ← W_b − η_b ∇L_b."""
        self.weight.grad = None
        self._loss(self.eps[:, t] * margins).sum().backward()
        with torch.no_grad():
            self.weight.sub_(self.eta * self.weight.grad)
        self.weight.grad = None

    def scalars(self, t: int, margins: torch.Tensor) -> torch.Tensor:
        """The lone trainer's per-step scalars of every run, ``(B, len(_SCALARS))`` (NaN where a run has none)."""
        with torch.no_grad():
            mg = margins.detach()
            loss = self._loss(mg)
            cols = [loss, (1 - self.p) * loss + self.p * self._loss(-mg), mg.amin(1), mg.mean(1), mg.amax(1),
                    (mg <= 0).to(mg.dtype).mean(1),
                    ((mg <= 0) & self.flipped).to(mg.dtype).sum(1) / self.flipped.sum(1).clamp_min(1).to(mg.dtype)]
            if t < self.steps:
                eps = self.eps[:, t]
                cols += [self._loss(eps * mg), (eps < 0).to(mg.dtype).sum(1)]
            else:
                cols += [torch.full_like(loss, math.nan)] * 2
            return torch.stack(cols, dim=1)

    def test_errors(self) -> tuple[list[float], list[float]]:
        """Test error against the observed and against the true test labels, per run, at the current weights."""
        with torch.no_grad():
            z = torch.bmm(self.weight.detach(), self.test_probes)
            m = self.m
            f = self._output(z[:, :m], z[:, m:], self.y_test_true)
            observed = (self.y_test * f <= 0).to(torch.float64).mean(1)
            clean = (self.y_test_true * f <= 0).to(torch.float64).mean(1)
            return observed.tolist(), clean.tolist()

    def evaluate(self, runs: Sequence[int]) -> dict[int, dict[str, float]]:
        """What :meth:`CNNSetup.evaluate` returns, for the runs ``runs``."""
        out: dict[int, dict[str, float]] = {b: {} for b in runs}
        if self.n_test and runs:
            observed, clean = self.test_errors()
            for b in runs:
                out[b]["test_error"] = observed[b]
                if self.has_flips[b]:
                    out[b]["test_error_clean"] = clean[b]
        for b in runs:
            s = self.setups[b]
            if s._draws is not None:
                err, se = population_error(s.net, s.data.mu, s.config.sigma_p, s._draws,
                                           orthogonal=s.config.orthogonal_noise)
                out[b].update(population_error=err, population_error_se=se)
        return out


def _site_view(site: Site, weight: torch.Tensor) -> Site:
    """``site`` with its weight replaced by ``weight`` (a live view of the batch weight); probes and labels kept."""
    return Site(weight, signals=dict(site.signals), noise=site.noise, labels=site.labels,
                extra=dict(site.extra), store_probes=site.store_probes, store_weights=site.store_weights,
                track_change=site.track_change, coords=dict(site.coords), attrs=dict(site.attrs))


def _per_run(value: Any, count: int, what: str) -> list[Any]:
    if value is None or isinstance(value, Mapping):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ConfigError(f"train_batch: {count} configs but {len(values)} {what}")
    return values


def train_batch(
    configs: Sequence[CNNConfig],
    outs: Sequence[str | os.PathLike | None],
    *,
    overwrite: bool = False,
    progress: bool | None = False,
    attrs: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    resume: bool = False,
    setup: str | None = None,
    setup_class: type[CNNSetup] | None = None,
) -> list[RunSummary]:
    """Train ``configs`` (equal :func:`~dyn.setups.signal_noise_cnn.batch_key`) together, recording run ``b`` into
    ``outs[b]``.

    Each store is what :func:`~dyn.setups.signal_noise_cnn.train` writes for that config alone (within float
    tolerance), plus the root attribute ``batched`` (the batch size). A recorded run whose loss becomes NaN/inf
    stops there, its store marked ``diverged`` as a lone run's, while the others go on; any other error interrupts
    every run of the batch (their stores are marked ``interrupted`` and keep their last checkpoint).

    Parameters
    ----------
    configs : CNNConfigs (all of one class) with equal batch keys; seed, ‖μ‖, σ_p, σ₀, η, p and flip rate may
        differ.
    outs : one new store path per run, or None for a run trained without recording (its summary still has
        ``final_loss`` and ``final_test_error``).
    overwrite, chunk_bytes, checkpoint_every, checkpoint_seconds : as for :func:`~.trainer.train`, for every run.
    progress : a progress bar over steps (None: auto, see :mod:`dyn.progress`).
    attrs : extra root attributes: one mapping for every run, or one per run.
    resume : not supported (a :class:`~dyn.ConfigError`); resume single runs with :func:`~.trainer.train`.
    setup, setup_class : as for :func:`~.trainer.train` (the ``setup`` attribute, the :class:`CNNSetup` class).

    Returns
    -------
    list of RunSummary
        In the order of ``configs``; ``status`` is ``"complete"`` or ``"diverged"`` (a recorded run stopped by a
        non-finite loss, or an unrecorded run whose final loss is not finite; ``final_test_error`` is then NaN).
        ``seconds`` is the batch's time divided by B.

    Raises
    ------
    ConfigError
        Configs with different batch keys or classes, an optimizer other than ``"gd"``, ``resume``, a store given
        twice, ``mu_norm = 0`` for a recorded run. Nothing is written then.
    StoreError
        A store exists and ``overwrite`` is false (checked before any store is written).

    Examples
    --------
    >>> import tempfile, os
    >>> root = tempfile.mkdtemp()
    >>> cfgs = [CNNConfig(d=40, n=8, n_test=50, m=4, steps=5, seed=s, mu_norm=1.0 + s) for s in range(3)]
    >>> out = train_batch(cfgs, [os.path.join(root, "r0.zarr"), None, os.path.join(root, "r2.zarr")])
    >>> [s.status for s in out], out[1].path is None, 0 <= out[1].final_test_error <= 1
    (['complete', 'complete', 'complete'], True, True)
    """
    t0 = time.perf_counter()
    configs, outs = list(configs), list(outs)
    _check(configs, outs, resume, overwrite)
    per_run = _per_run(attrs, len(configs), "attrs")
    checkpoint_every, checkpoint_seconds = checkpoint_policy(checkpoint_every, checkpoint_seconds)
    build = setup_class or CNNSetup
    batch = _Batch([build(cfg) for cfg in configs])
    B, first = len(configs), configs[0]
    steps, every, test_every = first.steps, first.record_every, first.test_every
    name = setup or type(first).setup_name
    recs: list[Recorder | None] = [None] * B
    statuses = ["complete"] * B
    policy = {"checkpoint_every": checkpoint_every, "checkpoint_seconds": checkpoint_seconds}
    final: dict[str, list[Any]] = {}
    with contextlib.ExitStack() as stack:
        for b, (cfg, out) in enumerate(zip(configs, outs)):
            if out is None:
                continue
            run_attrs = {"algorithm": cfg.algorithm, "optimizer": cfg.optimizer, "network": cfg.network,
                         "q": float(cfg.q), "flip_probability": cfg.flip_probability, "flip_rate": cfg.flip_rate,
                         "sites_j": {"pos": 1, "neg": -1}}
            rec = Recorder(out, batch.setups[b].sites, every=every, config=cfg.to_dict(), seed=cfg.seed,
                           overwrite=overwrite, log_at="current", chunk_bytes=chunk_bytes,
                           attrs={"setup": name, **run_attrs, **policy, **(per_run[b] or {}), "batched": B})
            stack.enter_context(rec)  # opens it (step 0 recorded); closes it complete/interrupted on exit
            recs[b] = rec
            s = batch.setups[b]
            write_flips(rec, s.flips.numpy(), cfg.flip_probability)
            if cfg.flip_rate > 0:
                write_labels(rec, s.data, cfg.flip_rate)
        bar = stack.enter_context(progress_bar(steps, desc=f"{first.algorithm} ×{B}", unit="step", progress=progress))
        interrupt = stack.enter_context(DeferredInterrupt())
        live = [b for b in range(B) if recs[b] is not None]
        last_ckpt = time.perf_counter()
        for t in range(steps + 1):
            last = t == steps
            z, margins = batch.forward(t)
            if live and (t == 0 or last or t % every == 0):
                host = batch.scalars(t, margins).tolist()  # one host copy for every run's scalars
                evaluated = batch.evaluate(live) if t % test_every == 0 or last else {}
                inner = z.detach()
                m = batch.m
                for b in list(live):
                    rec = recs[b]
                    row = dict(zip(_SCALARS, host[b]))
                    if not batch.has_flips[b]:
                        del row["train_error_flipped"]
                    if last:
                        del row["loss_noisy"], row["flip_count"]
                    try:
                        if t > 0:  # step 0 was recorded when the recorder opened
                            rec.record(t, inner={"pos": inner[b, :m], "neg": inner[b, m:]})
                        rec.log(step=t, **row)  # the loss first: a non-finite one stops this run here
                        if b in evaluated:
                            rec.log(step=t, **evaluated[b])
                    except DivergenceError:
                        # This run stops here, as it would alone; the others are independent and go on.
                        statuses[b] = "diverged"
                        live.remove(b)
                        rec.close("diverged")
            if last:
                with torch.no_grad():
                    final["loss"] = batch._loss(margins.detach()).tolist()
                if batch.n_test:
                    final["test_error"] = batch.test_errors()[0]
                break
            batch.step(t, margins)
            if live and (interrupt.requested or (
                    (t + 1) % checkpoint_every == 0 if checkpoint_every
                    else time.perf_counter() - last_ckpt >= checkpoint_seconds)):
                for b in live:
                    recs[b].flush(checkpoint=batch.setups[b].state(), next_step=t + 1)
                last_ckpt = time.perf_counter()
            if interrupt.requested:
                raise KeyboardInterrupt
            bar.update(1)
    seconds = (time.perf_counter() - t0) / B
    summaries = []
    for b in range(B):
        path = recs[b].path if recs[b] is not None else None
        loss = final["loss"][b]
        test_error = final["test_error"][b] if "test_error" in final else None
        if recs[b] is None and not math.isfinite(loss):
            statuses[b] = "diverged"  # nothing recorded to mark: the summary says it
        if statuses[b] == "diverged" and test_error is not None:
            test_error = math.nan  # NaN outputs compare false with 0: they would count as correct
        summaries.append(RunSummary(path=path, status=statuses[b], steps=steps, final_loss=loss, seconds=seconds,
                                    nbytes=store_size(path) if path else 0, final_test_error=test_error))
    return summaries
