"""Train many Huang et al. 2024 runs of one shape in one process, as a batch dimension, each recorded as its own run.

A sweep's grid points differ mostly in what only changes the data (seed, ``mu_norm``, ``mu_tilde_norm``, ...), not
in the shapes of the tensors. At the paper's scale a run's step is a handful of small GEMMs whose cost is mostly
Python and dispatch overhead, so B runs stacked along a leading batch dimension (``torch.bmm`` and batched
einsums) cost little more per step than one run: runs per second grow with B.

Each run is still drawn exactly as :func:`.train.train` draws it (its own :class:`~.train.Huang2024Setup`: data,
negatives and initial weights from its seed), stacked, trained with full-batch GD on the sum of the runs' losses
(runs share no parameters, so each run's gradient is its own), and recorded by its own :class:`dyn.Recorder` into
its own store: same variables, dims and attributes as a sequential run (plus the root attribute ``batched``, the
batch size), within float tolerance of it (batched reductions may sum in another order).

What may differ inside one batch (:func:`batch_key` groups the rest): everything that only changes the data or
the initial weights (seed, signal norms and axes, ``sigma_xi``, ``sigma_eps``, ``sigma0``, ``negatives``), and the
learning rate ``eta`` and temperature ``tau`` (per-run tensors). Equal across the batch: modality, ``d``, ``n``,
``n_test``, ``m``, ``steps``, ``record_every``, ``dtype``, ``device``. Not supported (a one-line
:class:`~dyn.ConfigError`, and ``dyn sweep`` trains such runs one by one with :func:`.train.train`): minibatch SGD,
``redraw_eps``, ``resume``. Checkpoints are written per run in the sequential trainer's format, so an interrupted
batch member is resumed (or retrained) like any run.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Mapping, Sequence

import torch

from ...errors import ConfigError, DivergenceError
from ...progress import progress_bar
from ...record import DEFAULT_CHUNK_BYTES, Recorder, Site
from ..base import DeferredInterrupt, RunSummary, checkpoint_policy, store_size
from . import BATCH_FIELDS, batch_key
from .config import Config
from .train import _build, write_negatives

__all__ = ["train_batch", "batch_key", "BATCH_FIELDS"]

def _check(configs: Sequence[Config], outs: Sequence[Any], resume: bool) -> None:
    if not configs:
        raise ConfigError("train_batch needs at least one config")
    if len(outs) != len(configs):
        raise ConfigError(f"train_batch: {len(configs)} configs but {len(outs)} outputs")
    if resume:
        raise ConfigError("train_batch cannot resume; resume each run with dyn.train(..., resume=True)")
    for cfg in configs:
        if not isinstance(cfg, Config):
            raise ConfigError(f"train_batch takes huang2024 Configs, got {type(cfg).__name__}")
        if cfg.optimizer != "gd":
            raise ConfigError(f"train_batch supports full-batch GD only, not optimizer={cfg.optimizer!r}")
        if cfg.redraw_eps:
            raise ConfigError("train_batch does not support redraw_eps=true; train such runs with dyn.train")
    first = configs[0]
    for cfg in configs[1:]:
        for name in BATCH_FIELDS:
            if getattr(cfg, name) != getattr(first, name):
                raise ConfigError(f"train_batch: runs differ in {name} ({getattr(first, name)!r} vs "
                                  f"{getattr(cfg, name)!r}); only runs of one shape form a batch")
    paths = [os.fspath(o) for o in outs if o is not None]
    if len(set(paths)) != len(paths):
        raise ConfigError("train_batch: two runs of the batch write to the same store")


class _Batch:
    """B runs stacked: weights ``(B, m, d)`` per encoder, probes ``(B, d, P)``, labels, masks, η and τ per run."""

    def __init__(self, setups: Sequence[Any]):
        self.setups = list(setups)
        cfg = setups[0].config
        self.n, self.modality = cfg.n, cfg.modality
        self.names = list(setups[0].encoders)
        dtype = setups[0].encoders["h"].weight.dtype
        device = setups[0].encoders["h"].weight.device
        # One leaf per encoder holding every run's weight; each run's Site reads its live row (a view).
        self.weights = {name: torch.stack([s.encoders[name].weight.detach() for s in setups]).requires_grad_(True)
                        for name in self.names}
        self.probes = {name: torch.stack([s._probes[name] for s in setups]) for name in self.names}
        self.y = torch.stack([s.data.y for s in setups])  # (B, n)
        self.negatives = torch.stack([s.data.negatives for s in setups])  # (B, n, n)
        self.eta = torch.tensor([s.config.eta for s in setups], dtype=dtype, device=device)[:, None, None]
        self.tau = torch.tensor([s.config.tau for s in setups], dtype=dtype, device=device)[:, None]
        self.sites = [
            {name: _site_view(site, self.weights[name].detach()[b]) for name, site in s.sites.items()}
            for b, s in enumerate(setups)
        ]

    def _features(self, z: torch.Tensor, columns: slice) -> torch.Tensor:
        """Patch features (B, n, 2, m) from pre-activations (B, m, probes), as Huang2024Setup._features per run."""
        signal = torch.relu(self.y[:, :, None] * z[:, :, 0][:, None, :])
        noise = torch.relu(z[:, :, columns].transpose(1, 2))
        return torch.stack([signal, noise], dim=2)

    def _info_nce(self, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-run InfoNCE (B,) and its ℓ' band, as :func:`.objective.info_nce` for every run at once."""
        negatives = self.negatives
        logits = torch.cat([(pos / self.tau)[:, :, None], (neg / self.tau[:, :, None]).masked_fill(~negatives, float("-inf"))],
                           dim=2)
        log_norm = torch.logsumexp(logits, dim=2)
        loss = (log_norm - logits[:, :, 0]).mean(dim=1)
        with torch.no_grad():
            probs = torch.exp(logits - log_norm[:, :, None])
            neg_probs = probs[:, :, 1:]
            big = torch.finfo(probs.dtype).max
            return (loss, probs[:, :, 0], neg_probs.masked_fill(~negatives, big).amin(dim=(1, 2)),
                    neg_probs.masked_fill(~negatives, -big).amax(dim=(1, 2)))

    def loss(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Per-run losses (B,), their ℓ' scalars (B, 5: loss, lp_pos_min/max, lp_neg_min/max), pre-activations."""
        n = self.n
        z = {name: torch.bmm(self.weights[name], self.probes[name]) for name in self.names}
        f = self._features(z["h"], slice(1, 1 + n))
        m = f.shape[-1]

        def paired(a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return (a * p.detach()).sum(dim=(-2, -1)) / m

        def allpairs(a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return torch.einsum("bipr,bjpr->bij", a, p.detach()) / m

        if self.modality == "single":
            f_aug = self._features(z["h"], slice(1 + n, 1 + 2 * n))
            loss, lp_pos, neg_min, neg_max = self._info_nce(paired(f, f_aug), allpairs(f, f))
        else:
            g = self._features(z["g"], slice(1, 1 + n))
            hg = self._info_nce(paired(f, g), allpairs(f, g))
            gh = self._info_nce(paired(g, f), allpairs(g, f))
            loss = hg[0] + gh[0]
            lp_pos = torch.cat([hg[1], gh[1]], dim=1)
            neg_min, neg_max = torch.minimum(hg[2], gh[2]), torch.maximum(hg[3], gh[3])
        scalars = torch.stack([loss.detach(), lp_pos.amin(dim=1), lp_pos.amax(dim=1), neg_min, neg_max], dim=1)
        return loss, scalars, {name: v.detach() for name, v in z.items()}

    def step(self, loss: torch.Tensor) -> None:
        """One GD step of every run: W_b ← W_b − η_b ∇L_b (the sum's gradient w.r.t. W_b is ∇L_b)."""
        for w in self.weights.values():
            w.grad = None
        loss.sum().backward()
        with torch.no_grad():
            for w in self.weights.values():
                w.sub_(self.eta * w.grad)

    def state(self, b: int) -> dict[str, tuple[tuple[str, ...], Any]]:
        """Run ``b``'s checkpoint, in the sequential trainer's format (see Huang2024Setup.state)."""
        setup = self.setups[b]
        out: dict[str, tuple[tuple[str, ...], Any]] = {
            f"weight_{name}": (("neuron", "feature"), self.weights[name].detach()[b]) for name in self.names}
        out["rng_sgd"] = (("rng_sgd_byte",), setup._sgd_gen.get_state())
        out["rng_eps"] = (("rng_eps_byte",), setup.data._eps_generator.get_state())
        return out

    def probe_accuracy(self, b: int, protocol: str) -> float:
        """Run ``b``'s OOD probe accuracy at its current weights (Huang2024Setup.probe_accuracy on the view)."""
        from .probe import ood_probe_accuracy

        w = self.weights["h"].detach()[b]
        data = self.setups[b].data

        def embed(x: torch.Tensor) -> torch.Tensor:  # PatchReLUEncoder.forward with this run's weight
            return torch.relu(x @ w.T).sum(dim=-2)

        return ood_probe_accuracy(embed(data.test_inputs()), data.y_test, protocol=protocol,
                                  train_features=embed(data.inputs()), train_labels=data.y)


def _site_view(site: Site, weight: torch.Tensor) -> Site:
    """``site`` with its weight replaced by a live view of the batched weight (same probes, labels, options)."""
    return Site(weight, signals=dict(site.signals), noise=site.noise, labels=site.labels,
                extra=dict(site.extra), store_probes=site.store_probes, store_weights=site.store_weights,
                track_change=site.track_change, coords=dict(site.coords), attrs=dict(site.attrs))


_SCALARS = ("loss", "lp_pos_min", "lp_pos_max", "lp_neg_min", "lp_neg_max")


def train_batch(
    configs: Sequence[Config],
    outs: Sequence[str | os.PathLike | None],
    *,
    overwrite: bool = False,
    progress: bool | None = False,
    attrs: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    resume: bool = False,
    evaluate_every: int | None = None,
) -> list[RunSummary]:
    """Train ``configs`` (one shape, see :func:`batch_key`) together, recording run ``b`` into ``outs[b]``.

    Each store is what :func:`.train.train` would write for that config (within float tolerance), plus the root
    attribute ``batched`` (the batch size). A run whose loss becomes NaN/inf is stopped and its store marked
    ``diverged`` (its summary says so) while the others go on; any other error interrupts every run of the batch
    (their stores are marked ``interrupted`` and keep their last checkpoint).

    Parameters
    ----------
    configs : huang2024 Configs that agree on :data:`BATCH_FIELDS`; η and τ may differ.
    outs : one new store path per run (or None for every run: train without recording, a benchmark baseline).
    overwrite, chunk_bytes, checkpoint_every, checkpoint_seconds, evaluate_every : as for :func:`.train.train`,
        applied to every run.
    progress : a progress bar over steps (None: auto, see :mod:`dyn.progress`).
    attrs : extra root attributes: one mapping for every run, or one per run.
    resume : not supported (a :class:`~dyn.ConfigError`); resume single runs with :func:`.train.train`.

    Returns
    -------
    list of RunSummary
        In the order of ``configs``; ``status`` is ``"complete"`` or ``"diverged"``.

    Raises
    ------
    ConfigError
        Configs of different shapes, minibatch SGD, ``redraw_eps``, ``resume``, or a store given twice.

    Examples
    --------
    >>> import tempfile, os
    >>> root = tempfile.mkdtemp()
    >>> cfgs = [Config(d=30, n=10, n_test=4, m=4, steps=5, seed=s) for s in (0, 1, 2)]
    >>> out = train_batch(cfgs, [os.path.join(root, f"run{s}.zarr") for s in (0, 1, 2)])
    >>> [s.status for s in out]
    ['complete', 'complete', 'complete']
    """
    t0 = time.perf_counter()
    configs, outs = list(configs), list(outs)
    _check(configs, outs, resume)
    if any(o is None for o in outs) and not all(o is None for o in outs):
        raise ConfigError("train_batch: give a store for every run, or None for every run")
    per_run = list(attrs) if attrs is not None and not isinstance(attrs, Mapping) else [attrs] * len(configs)
    if len(per_run) != len(configs):
        raise ConfigError(f"train_batch: {len(configs)} configs but {len(per_run)} attrs")
    checkpoint_every, checkpoint_seconds = checkpoint_policy(checkpoint_every, checkpoint_seconds)
    batch = _Batch([_build(cfg) for cfg in configs])
    B, steps, every = len(configs), configs[0].steps, configs[0].record_every
    record = outs[0] is not None
    recs: list[Recorder | None] = [None] * B
    statuses = ["complete"] * B
    final_loss = [float("nan")] * B
    policy = {"checkpoint_every": checkpoint_every, "checkpoint_seconds": checkpoint_seconds}
    with contextlib.ExitStack() as stack:
        if record:
            for b, (cfg, out) in enumerate(zip(configs, outs)):
                rec = Recorder(out, batch.sites[b], every=every, config=cfg.to_dict(), seed=cfg.seed,
                               overwrite=overwrite, log_at="current", chunk_bytes=chunk_bytes,
                               attrs={"setup": "huang2024", "modality": cfg.modality, **policy,
                                      **(per_run[b] or {}), "batched": B})
                stack.enter_context(rec)  # opens it (step 0 recorded); closes it complete/interrupted on exit
                write_negatives(rec, batch.setups[b].data.negatives, cfg.negative_pairs)  # as the lone trainer does
                recs[b] = rec
        bar = stack.enter_context(progress_bar(steps, desc=f"{configs[0].modality}-modal ×{B}", unit="step",
                                               progress=progress))
        interrupt = stack.enter_context(DeferredInterrupt())
        live = [b for b in range(B)]
        last_ckpt = time.perf_counter()
        for t in range(steps + 1):
            last = t == steps
            loss, scalars, inner = batch.loss()
            if record and (t == 0 or last or t % every == 0):
                host = scalars.tolist()  # one host copy for all runs' scalars (as the CPU recorder does per run)
                evaluate = bool(evaluate_every) and (t % evaluate_every == 0 or last)
                for b in list(live):
                    rec = recs[b]
                    try:
                        if t > 0:  # step 0 was recorded when the recorder opened
                            rec.record(t, inner={name: z[b] for name, z in inner.items()})
                        values: dict[str, Any] = dict(zip(_SCALARS, host[b]))
                        if evaluate:
                            values["probe_acc"] = batch.probe_accuracy(b, "paper")
                            values["probe_acc_transfer"] = batch.probe_accuracy(b, "transfer")
                        rec.log(step=t, **values)
                    except DivergenceError:
                        # This run stops here, as it would alone; the others are independent and go on.
                        statuses[b] = "diverged"
                        live.remove(b)
                        rec.close("diverged")
            if last:
                final_loss = [float(v) for v in loss.detach().tolist()]
                break
            batch.step(loss)
            if record and (interrupt.requested or (
                    (t + 1) % checkpoint_every == 0 if checkpoint_every
                    else time.perf_counter() - last_ckpt >= checkpoint_seconds)):
                for b in live:
                    recs[b].flush(checkpoint=batch.state(b), next_step=t + 1)
                last_ckpt = time.perf_counter()
            if interrupt.requested:
                raise KeyboardInterrupt
            bar.update(1)
    seconds = time.perf_counter() - t0
    out_summaries = []
    for b in range(B):
        path = recs[b].path if recs[b] is not None else None
        out_summaries.append(RunSummary(path=path, status=statuses[b], steps=steps, final_loss=final_loss[b],
                                        seconds=seconds / B, nbytes=store_size(path) if path else 0))
    return out_summaries
