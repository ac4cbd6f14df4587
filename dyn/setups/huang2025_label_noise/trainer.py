"""Train the two-layer squared-ReLU CNN with standard GD or label-noise GD (Algorithm 1), recording every step.

Full-batch GD with learning rate η: ``torch.optim.SGD`` (no momentum, no weight decay) on the label-flipped loss
``L^ε_S(W) = (1/n) Σ_i ℓ(ε_i⁽ᵗ⁾ y_i f(W, x_i))``; standard GD has ε ≡ 1. The flips of every step are drawn before
training from their own seeded generator (:func:`~dyn.setups.huang2025_label_noise.data.draw_flips`) and stored
in the run as ``flips/epsilon(flip_step, sample)``, so every step can be replayed.

Two recorder sites, one per filter bank: ``pos`` (j = +1) and ``neg`` (j = −1), each with the signal ``mu`` and
the training noise patches ξ_i (with labels). The forward pass computes ``W_j [μ | ξ_1..ξ_n]`` once per step; those
pre-activations are handed to the recorder, so recording costs no extra GEMM.

Logged at every recorded step t, at the weights W(t):

- ``loss``: the clean training loss L_S; ``loss_noisy``: the loss actually optimised at step t, L^ε_S with ε⁽ᵗ⁾
  (not defined at the last step, which takes no gradient step); ``loss_noisy_expected``: its mean over the flips,
  ``(1/n) Σ_i [(1−p) ℓ(y_i f_i) + p ℓ(−y_i f_i)]``;
- ``margin_min``, ``margin_mean``, ``margin_max`` of ``y_i f(W, x_i)``; ``train_error``; ``flip_count`` (how many
  labels step t flips);
- every ``test_every`` steps (and at step 0 and the last step): ``test_error`` on the fresh test set,
  ``population_error`` and ``population_error_se`` (semi-analytic Monte Carlo, see
  :func:`~dyn.setups.huang2025_label_noise.model.population_error`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ...record import Recorder, Site
from ...store import read_static
from ..base import RunSummary as BaseRunSummary
from ..driver import Steps, drive
from ...errors import ConfigError, StoreError
from .config import SETUP_NAME, LabelNoiseConfig
from .data import LabelNoiseData, draw_flips, make_data
from .model import SquaredReLUCNN, logistic_loss, output_from_inner, population_error

__all__ = ["LabelNoiseSetup", "RunSummary", "train", "SITES", "FLIPS_GROUP", "read_flips"]

#: Recorder site names of the filter banks, in the order j = +1, −1.
SITES = ("pos", "neg")
#: Store group holding the label flips: ``epsilon(flip_step, sample)`` int8.
FLIPS_GROUP = "flips"
#: Chunk size of the stored per-step inner products (as :class:`dyn.Recorder`'s default).
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


class LabelNoiseSetup:
    """Data, network, flips and recorder sites of one run, built from a :class:`LabelNoiseConfig`.

    Attributes
    ----------
    config : LabelNoiseConfig
    data : LabelNoiseData
    net : SquaredReLUCNN
    flips : (steps, n) int8 tensor of ε_i⁽ᵗ⁾ (all +1 for standard GD), on the CPU.
    sites : dict of name → dyn.Site
        ``{"pos": ..., "neg": ...}``.

    Examples
    --------
    >>> from dyn.setups.huang2025_label_noise import LabelNoiseConfig
    >>> setup = LabelNoiseSetup(LabelNoiseConfig(d=30, n=6, n_test=4, m=3, steps=2))
    >>> state = setup.forward(0)
    >>> sorted(state.inner), tuple(state.inner["pos"].shape)
    (['neg', 'pos'], (3, 7))
    """

    def __init__(self, config: LabelNoiseConfig):
        self.config = config
        self.data: LabelNoiseData = make_data(config)
        dtype, device = self.data.xi.dtype, self.data.xi.device
        self.net = SquaredReLUCNN(config.d, config.m, config.sigma0, generator=torch.Generator().manual_seed(config.seed + 1),
                                  dtype=dtype, device=device)
        self.flips = draw_flips(config)
        self._eps = self.flips.to(device=device, dtype=dtype)
        self.probes = self.data.probes()
        self.test_probes = torch.cat([self.data.mu[None], self.data.xi_test]).T.contiguous()
        d = self.data
        self.sites = {name: Site(w, signals={"mu": d.mu}, noise=d.xi, labels=d.y) for name, w in self.net.banks().items()}
        self._draws = None
        if config.population_draws:
            gen = torch.Generator().manual_seed(config.seed + 4)
            draws = torch.randn(config.population_draws, 2 * config.m, generator=gen, dtype=torch.float64)
            self._draws = draws.to(device)  # drawn on the CPU (identical on every device), moved once
        self.optimizer = make_optimizer(self.net.parameters(), config)

    def forward(self, t: int) -> StepState:
        """The full-batch forward pass at the current weights, with the flips of step ``t`` (None at the end)."""
        z = self.net.inner(self.probes)
        f = output_from_inner(z["pos"], z["neg"], self.data.y)
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
                "train_error": (mg <= 0).to(mg.dtype).mean(),
            }
            if state.eps is not None:
                out["loss_noisy"] = state.loss_noisy()
                out["flip_count"] = (state.eps < 0).to(mg.dtype).sum()
        return out

    def evaluate(self) -> dict[str, float]:
        """Test error on the fresh test set and the population error (whichever the config asks for)."""
        out: dict[str, float] = {}
        with torch.no_grad():
            if self.config.n_test:
                z = self.net.inner(self.test_probes)
                f = output_from_inner(z["pos"], z["neg"], self.data.y_test)
                out["test_error"] = float((self.data.y_test * f <= 0).to(torch.float64).mean())
            if self._draws is not None:
                err, se = population_error(self.net, self.data.mu, self.config.sigma_p, self._draws)
                out.update(population_error=err, population_error_se=se)
        return out

    def step(self, state: StepState) -> None:
        """One step of the configured optimizer on L^ε_S (Algorithm 1 for ``optimizer="gd"``) by autograd."""
        self.optimizer.zero_grad(set_to_none=True)
        state.loss_noisy().backward()
        self.optimizer.step()

    def state(self) -> dict[str, tuple[tuple[str, ...], Any]]:
        """The weights: with the config (which fixes data and flips), everything the rest of training depends on."""
        return {f"weight_{name}": (("neuron", "feature"), w.detach()) for name, w in self.net.banks().items()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for name, w in self.net.banks().items():
                w.copy_(torch.as_tensor(np.asarray(state[f"weight_{name}"])))


def make_optimizer(params: Any, config: LabelNoiseConfig) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer of ``config.optimizer`` at learning rate η.

    ``"gd"`` is ``SGD`` without momentum or weight decay: exactly the paper's update (2) (and the only optimizer
    the theory's identities describe); ``"momentum"`` is heavy-ball ``SGD(momentum=config.momentum)``; ``"adam"``
    is ``Adam`` with its default betas and eps.
    """
    if config.optimizer == "gd":
        return torch.optim.SGD(params, lr=config.eta, momentum=0.0, weight_decay=0.0)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=config.eta, momentum=config.momentum, weight_decay=0.0)
    return torch.optim.Adam(params, lr=config.eta)


def write_flips(rec: Recorder, flips: np.ndarray, p: float) -> None:
    """Store the flips in the run as the group ``flips``: ``epsilon(flip_step, sample)`` int8.

    A group beside the sites (through the store's writer, committed like the recording) because ``epsilon`` has one
    row per gradient step, 0..T−1, while ``step`` holds the recorded weights 0..T.
    """
    steps, n = flips.shape
    rec.write_group(FLIPS_GROUP, {
        "flip_step": (("flip_step",), np.arange(steps, dtype=np.int64)),
        "sample": (("sample",), np.arange(n, dtype=np.int64)),
        "epsilon": (("flip_step", "sample"), np.asarray(flips, dtype=np.int8)),
    }, attrs={"description": "label-flip signs epsilon_i^(t) of gradient step t (row t acts on the weights of step t)",
              "p": p, "generator": "torch.Generator().manual_seed(seed + 3); torch.rand((steps, n)) < p -> -1"})


def read_flips(path: str | os.PathLike) -> np.ndarray:
    """The stored flips ``epsilon(flip_step, sample)`` of a run (int8), or a :class:`~dyn.StoreError`."""
    if not (Path(path) / FLIPS_GROUP / "epsilon").is_dir():
        raise StoreError(f"{path}: no stored label flips (group {FLIPS_GROUP!r})")
    return read_static(path, FLIPS_GROUP, "epsilon")


def train(
    config: LabelNoiseConfig,
    out: str | os.PathLike | None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    attrs: Mapping[str, Any] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    resume: bool = False,
) -> RunSummary:
    """Train ``config`` for ``config.steps`` steps and record every (scheduled) step into the store ``out``.

    Parameters
    ----------
    config : LabelNoiseConfig
    out : path of the new run store, or None to train without recording.
    overwrite : replace an existing store.
    progress : show a progress bar (None: in notebooks and terminals, see :mod:`dyn.progress`).
    attrs : extra root attributes (e.g. the preset name).
    chunk_bytes : target bytes per stored chunk.
    checkpoint_every : steps between checkpoints (None: time-based, see ``checkpoint_seconds``).
    checkpoint_seconds : seconds of training between checkpoints when ``checkpoint_every`` is None (default
        :data:`dyn.setups.base.DEFAULT_CHECKPOINT_SECONDS`). The policy is stored with the run; Ctrl-C finishes the
        step, checkpoints and stops (the same reliability rules as the huang2024 trainer).
    resume : continue the unfinished run at ``out`` (``config`` must be the stored one) from its last checkpoint,
        or from step 0 if it has none.

    Returns
    -------
    RunSummary

    Raises
    ------
    DivergenceError
        When the clean loss becomes NaN/inf; the store keeps the steps before it and is marked ``diverged``.
    StoreError
        ``resume`` on a store that is complete, has no checkpoint, or holds other data or flips.

    Examples
    --------
    >>> import tempfile, os
    >>> from dyn.setups.huang2025_label_noise import LabelNoiseConfig
    >>> out = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> summary = train(LabelNoiseConfig(d=40, n=8, n_test=20, m=4, steps=5, population_draws=0), out)
    >>> summary.status, summary.steps
    ('complete', 5)
    >>> sorted(dyn.open(out).children)
    ['flips', 'neg', 'pos']
    """
    if not isinstance(config, LabelNoiseConfig):
        raise ConfigError(f"config must be a LabelNoiseConfig, got {type(config).__name__}")
    if resume and config.optimizer != "gd":
        raise ConfigError(f"resume is only supported for optimizer 'gd' (the checkpoint holds the weights, not the "
                          f"{config.optimizer} optimizer's state)")
    run_attrs = {"algorithm": config.algorithm, "optimizer": config.optimizer,
                 "flip_probability": config.flip_probability, "sites_j": {"pos": 1, "neg": -1}}
    return drive(lambda: _Steps(config), config, out, setup=SETUP_NAME, run_attrs=run_attrs, summary=RunSummary,
                 overwrite=overwrite, progress=progress, desc=config.algorithm, attrs=attrs, chunk_bytes=chunk_bytes,
                 checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds, resume=resume)


class _Steps(Steps):
    """One (label-noise) GD step, for :func:`~dyn.setups.driver.drive`."""

    def __init__(self, config: LabelNoiseConfig):
        self.setup = LabelNoiseSetup(config)
        self.sites = self.setup.sites
        self.flips = self.setup.flips.numpy()

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

    def finish(self, state: Any) -> dict[str, Any]:
        return {"final_loss": float(logistic_loss(state.margins.detach())),
                "final_test_error": self.setup.evaluate().get("test_error")}


def _restore(setup: LabelNoiseSetup, out: str | os.PathLike, flips: np.ndarray, step: int,
             state: Mapping[str, np.ndarray]) -> int:
    """Restore ``setup`` from a checkpoint's arrays; data and flips are re-drawn from the seed and must equal the
    stored ones. Returns the step to continue from."""
    try:
        setup.load_state(state)
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise StoreError(f"{out}: the checkpoint of step {step} cannot be restored: {str(exc).splitlines()[0]}") from None
    noise = read_static(out, SITES[0], "noise_vectors")
    if not np.array_equal(noise, setup.data.xi.cpu().numpy()):
        raise StoreError(f"resume: the data drawn from seed {setup.config.seed} differ from those stored in {out}")
    if not np.array_equal(read_flips(out), flips):
        raise StoreError(f"resume: the flips drawn from seed {setup.config.seed} differ from those stored in {out}")
    return step
