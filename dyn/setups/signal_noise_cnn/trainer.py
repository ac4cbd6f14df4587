"""Train a member of the signal–noise CNN family, recording every step.

Full-batch training on the (flipped-label) logistic loss ``L^ε_S(W) = (1/n) Σ_i ℓ(ε_i⁽ᵗ⁾ y_i f(W, x_i))`` with
the configured update: plain GD (``torch.optim.SGD`` without momentum: the theorems' update), heavy-ball SGD,
Adam, SAM, or any ``torch.optim`` class. Standard GD has ε ≡ 1; label-noise GD's flips of every step are drawn
before training (:func:`~dyn.setups.signal_noise_cnn.data.draw_flips`) and stored as ``flips/epsilon``.

Two recorder sites, one per filter bank: ``pos`` (j = +1) and ``neg`` (j = −1), each with the signal ``mu`` (and
``bias`` for the code network) and the training noise patches ξ_i with their observed labels. The forward pass
computes ``W_j [μ | (e_bias) | ξ_1..ξ_n]`` once per step; those pre-activations go to the recorder (no extra GEMM).
With label-flipping noise the group ``labels`` stores ``label_true(sample)`` and ``flipped(sample)``.

Logged at every recorded step t, at the weights W(t): ``loss`` (on the observed labels), ``loss_noisy`` (the loss
step t optimises, label-noise GD), ``loss_noisy_expected``, ``margin_min/mean/max`` of ``y_i f_i``,
``train_error`` (against the observed labels), ``flip_count``; with label-flipping noise also
``train_error_flipped`` (share of flipped samples not fitted); every ``test_every`` steps ``test_error`` (observed
test labels; Bayes error ``flip_rate``), ``test_error_clean`` (true labels; with label-flipping noise) and the
semi-analytic ``population_error`` (true labels) with its standard error.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ...errors import ConfigError, StoreError
from ...record import RecordSink, Recorder, Site
from ...store import read_static
from ..base import RunSummary as BaseRunSummary
from ..driver import Steps, drive
from .config import SETUP_NAME, CNNConfig
from .data import CNNData, draw_flips, make_data
from .model import Architecture, SignalNoiseCNN, logistic_loss, output_from_inner, population_error

__all__ = ["CNNSetup", "RunSummary", "train", "SITES", "FLIPS_GROUP", "LABELS_GROUP", "read_flips",
           "make_optimizer", "probe_matrix"]

#: Recorder site names of the filter banks, in the order j = +1, −1.
SITES = ("pos", "neg")
#: Store group holding label-noise GD's flips: ``epsilon(flip_step, sample)`` int8.
FLIPS_GROUP = "flips"
#: Store group holding the data's label flips: ``label_true(sample)``, ``flipped(sample)``.
LABELS_GROUP = "labels"
DEFAULT_CHUNK_BYTES = 8 << 20


@dataclass
class RunSummary(BaseRunSummary):
    """What :func:`train` reports: :class:`dyn.setups.base.RunSummary`'s fields plus the final test error."""

    final_test_error: float | None = None

    def __str__(self) -> str:
        base = super().__str__()
        if self.final_test_error is None:
            return base
        head, _, tail = base.partition(", ")  # "<status>: <steps> steps", then the rest
        return f"{head}, test error {self.final_test_error:.4g}, {tail}"


@dataclass
class StepState:
    """The forward pass at one step: pre-activations (the recorded inner products), outputs, margins, flips."""

    inner: dict[str, torch.Tensor]
    f: torch.Tensor
    margins: torch.Tensor
    eps: torch.Tensor | None

    def loss_noisy(self) -> torch.Tensor:
        """L^ε_S at this step's flips (the objective of the gradient step)."""
        return logistic_loss(self.eps * self.margins)


def probe_matrix(data: CNNData, arch: Architecture, noise: torch.Tensor | None = None) -> torch.Tensor:
    """``[μ | (e_bias) | ξ_1..ξ_n]`` as a (features, n_signals + n) matrix, in :meth:`dyn.Site.probe_matrix` order
    (the code network's features are the patch plus a constant 1, so μ and ξ get a 0 appended)."""
    xi = data.xi if noise is None else noise
    cols = torch.cat([data.mu[None], xi])
    if arch.bias:
        cols = torch.cat([cols, torch.zeros(cols.shape[0], 1, dtype=cols.dtype, device=cols.device)], dim=1)
        unit = torch.zeros(1, cols.shape[1], dtype=cols.dtype, device=cols.device)
        unit[0, -1] = 1.0
        cols = torch.cat([cols[:1], unit, cols[1:]])
    return cols.T.contiguous()


class CNNSetup:
    """Data, network, flips, optimizer and recorder sites of one run, built from a :class:`CNNConfig`.

    Attributes
    ----------
    config : CNNConfig
    arch : Architecture
    data : CNNData
    net : SignalNoiseCNN
    flips : (steps, n) int8 tensor of label-noise GD's ε_i⁽ᵗ⁾ (all +1 for standard GD), on the CPU.
    sites : dict of name → dyn.Site (``{"pos": ..., "neg": ...}``).

    Examples
    --------
    >>> setup = CNNSetup(CNNConfig(d=30, n=6, n_test=4, m=3, steps=2, network="code"))
    >>> state = setup.forward(0)
    >>> sorted(state.inner), tuple(state.inner["pos"].shape), list(setup.sites["pos"].signals)
    (['neg', 'pos'], (3, 8), ['mu', 'bias'])
    """

    def __init__(self, config: CNNConfig):
        self.config = config
        self.arch = Architecture.from_config(config)
        self.data = make_data(config)
        dtype, device = self.data.xi.dtype, self.data.xi.device
        self.net = SignalNoiseCNN(config.d, config.m, self.arch, sigma0=config.sigma0,
                                  generator=torch.Generator().manual_seed(config.seed + 1), dtype=dtype, device=device)
        self.flips = draw_flips(config)
        self._eps = self.flips.to(device=device, dtype=dtype)
        self.probes = probe_matrix(self.data, self.arch)
        self.test_probes = probe_matrix(self.data, self.arch, self.data.xi_test)
        self._draws = None
        if config.population_draws:
            gen = torch.Generator().manual_seed(config.seed + 4)
            draws = torch.randn(config.population_draws, 2 * config.m, generator=gen, dtype=torch.float64)
            self._draws = draws.to(device)  # drawn on the CPU (identical on every device), moved once
        self.optimizer = make_optimizer(list(self.net.parameters()), config)

    @functools.cached_property
    def sites(self) -> dict[str, Site]:
        """The recorder's sites (built on first use: an unrecorded run with ‖μ‖ = 0 has no signal direction)."""
        k = self.arch.n_signals
        signals = {"mu": self.probes[:, 0]}
        if self.arch.bias:
            signals["bias"] = self.probes[:, 1]
        noise = self.probes[:, k:].T
        return {name: Site(w, signals=signals, noise=noise, labels=self.data.y) for name, w in self.net.banks().items()}

    def forward(self, t: int) -> StepState:
        """The full-batch forward pass at the current weights, with the flips of step ``t`` (None at the end)."""
        z = self.net.inner(self.probes)
        f = output_from_inner(z["pos"], z["neg"], self.data.y_true, self.arch)
        eps = self._eps[t] if t < self.config.steps else None
        return StepState(inner=z, f=f, margins=self.data.y * f, eps=eps)

    def scalars(self, state: StepState) -> dict[str, torch.Tensor]:
        """Per-step scalars (0-d tensors on the training device; no host copy)."""
        with torch.no_grad():
            mg = state.margins.detach()
            p = self.config.flip_probability
            out = {
                "loss": logistic_loss(mg),
                "loss_noisy_expected": (1 - p) * logistic_loss(mg) + p * logistic_loss(-mg),
                "margin_min": mg.min(),
                "margin_mean": mg.mean(),
                "margin_max": mg.max(),
                "train_error": (~(mg > 0)).to(mg.dtype).mean(),  # a NaN margin is an error, not a fit
            }
            if self.config.flip_rate > 0:
                flipped = self.data.flipped
                out["train_error_flipped"] = ((~(mg > 0)) & flipped).to(mg.dtype).sum() / flipped.sum().clamp_min(1)
            if state.eps is not None:
                out["loss_noisy"] = logistic_loss(state.eps * mg)  # as loss_noisy(), without the graph
                out["flip_count"] = (state.eps < 0).to(mg.dtype).sum()
        return out

    def evaluate(self) -> dict[str, float]:
        """Test errors on the fresh test set and the population error (whichever the config asks for)."""
        out: dict[str, float] = {}
        with torch.no_grad():
            if self.config.n_test:
                z = self.net.inner(self.test_probes)
                f = output_from_inner(z["pos"], z["neg"], self.data.y_test_true, self.arch)
                # ~(y f > 0): a NaN output (a diverged run) is an error, never a correct prediction
                out["test_error"] = float((~(self.data.y_test * f > 0)).to(torch.float64).mean())
                if self.config.flip_rate > 0:
                    out["test_error_clean"] = float((~(self.data.y_test_true * f > 0)).to(torch.float64).mean())
            if self._draws is not None:
                err, se = population_error(self.net, self.data.mu, self.config.sigma_p, self._draws,
                                           orthogonal=self.config.orthogonal_noise)
                out.update(population_error=err, population_error_se=se)
        return out

    def loss_at_current(self, eps: torch.Tensor) -> torch.Tensor:
        """L^ε_S at the current weights (a fresh forward pass; SAM's second evaluation)."""
        z = self.net.inner(self.probes)
        f = output_from_inner(z["pos"], z["neg"], self.data.y_true, self.arch)
        return logistic_loss(eps * self.data.y * f)

    def step(self, state: StepState) -> None:
        """One step of the configured optimizer on L^ε_S at the flips of this step, by autograd."""
        eps = state.eps
        self.optimizer.zero_grad(set_to_none=True)
        state.loss_noisy().backward()
        if self.config.optimizer == "sam":
            sam_ascent_step(list(self.net.parameters()), self.config.sam_radius, lambda: self.loss_at_current(eps))
        self.optimizer.step()

    def state(self) -> dict[str, tuple[tuple[str, ...], Any]]:
        """The weights: with the config (which fixes data and flips), everything the rest of training depends on."""
        return {f"weight_{name}": (("neuron", "feature"), w.detach()) for name, w in self.net.banks().items()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for name, w in self.net.banks().items():
                w.copy_(torch.as_tensor(np.asarray(state[f"weight_{name}"])))


def sam_ascent_step(params: list[torch.Tensor], radius: float, loss_fn: Any) -> None:
    """Replace the gradients in ``params`` by SAM's: at ``w_adv = w + r ∇L/‖∇L‖`` (global norm), then restore w.

    The caller has computed ∇L at w into ``.grad``; afterwards ``.grad`` holds ∇L(w_adv) and the weights are w
    again, so a plain GD step applies SAM's update ``w ← w − η ∇L(w_adv)`` (Foret et al. 2021).
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    norm = torch.sqrt(sum((g.to(torch.float64) ** 2).sum() for g in grads))
    scale = radius / norm.clamp_min(torch.finfo(torch.float64).tiny)
    with torch.no_grad():
        shifts = [g * scale.to(g.dtype) for g in grads]
        for p, e in zip(params, shifts):
            p.add_(e)
    for p in params:
        p.grad = None
    loss_fn().backward()
    with torch.no_grad():
        for p, e in zip(params, shifts):
            p.sub_(e)


def make_optimizer(params: Any, config: CNNConfig) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer of ``config.optimizer`` at learning rate η.

    ``"gd"`` and ``"sam"`` step with ``SGD`` without momentum or weight decay (``"gd"`` is the theorems' update);
    ``"momentum"`` is heavy-ball ``SGD(momentum=config.momentum)``; ``"adam"`` is ``Adam`` with its defaults; any
    other name is the ``torch.optim`` class of that name with ``lr=η`` and its defaults.
    """
    if config.optimizer in ("gd", "sam"):
        return torch.optim.SGD(params, lr=config.eta, momentum=0.0, weight_decay=0.0)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.eta, momentum=config.momentum, weight_decay=0.0)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.eta)
    cls = getattr(torch.optim, config.optimizer, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(f"optimizer {config.optimizer!r} is not a torch.optim optimizer class")
    try:
        return cls(params, lr=config.eta)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"optimizer {config.optimizer!r} cannot be built with lr={config.eta}: {exc}") from None


def write_flips(rec: Recorder, flips: np.ndarray, p: float) -> None:
    """Store label-noise GD's flips as the group ``flips``: ``epsilon(flip_step, sample)`` int8.

    A group beside the sites because ``epsilon`` has one row per gradient step, 0..T−1, while ``step`` holds the
    recorded weights 0..T.
    """
    steps, n = flips.shape
    rec.write_group(FLIPS_GROUP, {
        "flip_step": (("flip_step",), np.arange(steps, dtype=np.int64)),
        "sample": (("sample",), np.arange(n, dtype=np.int64)),
        "epsilon": (("flip_step", "sample"), np.asarray(flips, dtype=np.int8)),
    }, attrs={"description": "label-flip signs epsilon_i^(t) of gradient step t (row t acts on the weights of step t)",
              "p": p, "generator": "torch.Generator().manual_seed(seed + 3); torch.rand((steps, n)) < p -> -1"})


def write_labels(rec: Recorder, data: CNNData, flip_rate: float) -> None:
    """Store the data's true labels and which training labels are flipped: group ``labels`` (its attribute
    ``test_flip_fraction`` is the share of flipped test labels: the test error of the Bayes classifier on this test
    set, which the excess test error is measured from)."""
    y_true = data.y_true.detach().cpu().numpy()
    rec.write_group(LABELS_GROUP, {
        "sample": (("sample",), np.arange(y_true.shape[0], dtype=np.int64)),
        "label_true": (("sample",), y_true.astype(np.int8)),
        "flipped": (("sample",), data.flipped.detach().cpu().numpy().astype(np.int8)),
    }, attrs={"description": "true labels and label-flip mask of the training data (observed label = "
                             "label_true * (1 - 2 flipped)); the signal patch holds label_true * mu",
              "flip_rate": flip_rate, "generator": "torch.Generator().manual_seed(seed + 5)",
              "test_flip_fraction": float((data.y_test != data.y_test_true).to(torch.float64).mean())
              if data.y_test.numel() else 0.0})


def read_flips(path: str | os.PathLike) -> np.ndarray:
    """The stored flips ``epsilon(flip_step, sample)`` of a run (int8), or a :class:`~dyn.StoreError`."""
    if not (Path(path) / FLIPS_GROUP / "epsilon").is_dir():
        raise StoreError(f"{path}: no stored label flips (group {FLIPS_GROUP!r})")
    return read_static(path, FLIPS_GROUP, "epsilon")


def train(
    config: CNNConfig,
    out: str | os.PathLike | None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    attrs: Mapping[str, Any] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    resume: bool = False,
    setup: str | None = None,
    setup_class: type[CNNSetup] | None = None,
    sinks: Sequence[RecordSink] = (),
) -> RunSummary:
    """Train ``config`` for ``config.steps`` steps and record every (scheduled) step into the store ``out``.

    Parameters
    ----------
    config : CNNConfig (or a subclass, e.g. a paper's config on this family)
    out : path of the new run store, or None to train without recording.
    overwrite : replace an existing store.
    progress : show a progress bar (None: in notebooks and terminals, see :mod:`dyn.progress`).
    attrs : extra root attributes (e.g. the preset name).
    chunk_bytes : target bytes per stored chunk.
    checkpoint_every, checkpoint_seconds, resume : as in :func:`dyn.train` (resume needs a stateless update:
        ``optimizer`` "gd" or "sam").
    setup : the ``setup`` attribute stored with the run (default: the config's ``setup_name``).
    setup_class : the :class:`CNNSetup` (sub)class that builds the run (a paper's setup may name its own).
    sinks : live exports the recorder feeds as it writes (as in :func:`dyn.train`).

    Returns
    -------
    RunSummary

    Raises
    ------
    DivergenceError
        When the loss becomes NaN/inf; the store keeps the steps before it and is marked ``diverged``.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> summary = train(CNNConfig(d=40, n=8, n_test=20, m=4, steps=5, flip_rate=0.2), out)
    >>> summary.status, summary.steps
    ('complete', 5)
    >>> sorted(dyn.open(out).children)
    ['flips', 'labels', 'neg', 'pos']
    """
    if not isinstance(config, CNNConfig):
        raise ConfigError(f"config must be a CNNConfig, got {type(config).__name__}")
    if resume and config.optimizer not in ("gd", "sam"):
        raise ConfigError(f"resume is only supported for optimizer 'gd' or 'sam' (the checkpoint holds the "
                          f"weights, not the {config.optimizer} optimizer's state)")
    if out is not None and config.mu_norm == 0:
        raise ConfigError("mu_norm = 0 leaves no signal direction to record; train unrecorded (out=None) or "
                          "use mu_norm > 0")
    run_attrs = {"algorithm": config.algorithm, "optimizer": config.optimizer, "network": config.network,
                 "q": float(config.q), "flip_probability": config.flip_probability, "flip_rate": config.flip_rate,
                 "sites_j": {"pos": 1, "neg": -1}}
    name = setup or type(config).setup_name
    build = setup_class or CNNSetup
    summary = drive(lambda: _Steps(build(config)), config, out, setup=name, run_attrs=run_attrs, summary=RunSummary,
                 overwrite=overwrite, progress=progress, desc=config.algorithm, attrs=attrs, chunk_bytes=chunk_bytes,
                 checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds, resume=resume,
                 sinks=sinks)
    if out is None and not math.isfinite(summary.final_loss):  # unrecorded: no recorder stopped it; say so
        summary.status, summary.final_test_error = "diverged", math.nan
    return summary


class _Steps(Steps):
    """One (label-noise) GD step, for :func:`~dyn.setups.driver.drive`."""

    def __init__(self, setup: CNNSetup):
        self.setup = setup
        self.flips = self.setup.flips.numpy()

    @property
    def sites(self) -> Mapping[str, Site]:  # type: ignore[override]
        return self.setup.sites

    def forward(self, step: int, last: bool) -> Any:
        return self.setup.forward(step)

    def inner(self, state: Any) -> Mapping[str, torch.Tensor]:
        return {k: v.detach() for k, v in state.inner.items()}

    def log(self, rec: Recorder, step: int, state: Any, last: bool) -> None:
        rec.log(step=step, **self.setup.scalars(state))  # first: a non-finite loss stops here
        if step % self.setup.config.test_every == 0 or last:
            rec.log(step=step, **self.setup.evaluate())

    def update(self, state: Any) -> None:
        self.setup.step(state)

    def state(self) -> dict[str, tuple[tuple[str, ...], Any]]:
        return self.setup.state()

    def restore(self, out: str | os.PathLike, step: int, arrays: Mapping[str, Any]) -> int:
        return _restore(self.setup, out, self.flips, step, arrays)

    def begin(self, rec: Recorder) -> None:
        write_flips(rec, self.flips, self.setup.config.flip_probability)
        if self.setup.config.flip_rate > 0:
            write_labels(rec, self.setup.data, self.setup.config.flip_rate)

    def finish(self, state: Any) -> dict[str, Any]:
        return {"final_loss": float(logistic_loss(state.margins.detach())),
                "final_test_error": self.setup.evaluate().get("test_error")}


def _restore(setup: CNNSetup, out: str | os.PathLike, flips: np.ndarray, step: int,
             state: Mapping[str, np.ndarray]) -> int:
    """Restore ``setup`` from a checkpoint's arrays; data and flips are re-drawn from the seed and must equal the
    stored ones. Returns the step to continue from."""
    try:
        setup.load_state(state)
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise StoreError(f"{out}: the checkpoint of step {step} cannot be restored: {str(exc).splitlines()[0]}") from None
    noise = read_static(out, SITES[0], "noise_vectors")
    if not np.array_equal(noise, setup.sites[SITES[0]].noise.cpu().numpy()):
        raise StoreError(f"resume: the data drawn from seed {setup.config.seed} differ from those stored in {out}")
    if not np.array_equal(read_flips(out), flips):
        raise StoreError(f"resume: the flips drawn from seed {setup.config.seed} differ from those stored in {out}")
    return step
