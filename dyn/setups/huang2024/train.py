"""Train the paper's contrastive setups with gradient descent, recording every step.

Full-batch GD with learning rate η is exactly the paper's update (eq. 7 single-modal, eq. 10 multi-modal):
``torch.optim.SGD`` without momentum or weight decay applied to the loss of eq. 6 / eq. 9, whose stop-gradients
make autograd produce those updates term by term. Minibatch SGD over anchors is an option.

The forward pass evaluates each encoder once on its unique patch vectors ``[μ, ξ_1..ξ_n, (ξ_i+ε_i)..]``, so the
pre-activations it computes *are* the inner products the recorder stores; they are handed to the recorder instead
of being computed a second time.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ...errors import ConfigError, StoreError
from ...record import DEFAULT_CHUNK_BYTES, RecordSink, Recorder, Site
from ...store import read_static
from ..base import DEFAULT_CHECKPOINT_SECONDS, RunSummary
from ..driver import Steps, drive
from .config import Config
from .data import SyntheticData, make_data
from .model import PatchReLUEncoder
from .objective import ContrastiveLoss, multi_modal_loss, single_modal_loss

__all__ = ["Huang2024Setup", "train", "DEFAULT_CHECKPOINT_SECONDS"]



class Huang2024Setup:
    """Data, encoders, sites and loss of one Huang et al. 2024 run, built from a :class:`Config`.

    Attributes
    ----------
    config : Config
    data : SyntheticData
    encoders : dict of name → PatchReLUEncoder
        ``{"h": ...}`` single-modal, ``{"h": ..., "g": ...}`` multi-modal.
    sites : dict of name → Site
        What the recorder records for each encoder.

    Examples
    --------
    >>> setup = Huang2024Setup(Config(d=20, n=8, m=4, modality="multi"))
    >>> sorted(setup.encoders), float(setup.loss().loss.detach()) > 0
    (['g', 'h'], True)
    """

    def __init__(self, config: Config):
        self.config = config
        self.data: SyntheticData = make_data(config)
        dtype = getattr(torch, config.dtype)
        gen = torch.Generator().manual_seed(config.seed + 1)
        names = ["h"] if config.modality == "single" else ["h", "g"]
        self.encoders = {
            name: PatchReLUEncoder(config.d, config.m, config.sigma0, generator=gen, dtype=dtype, device=config.device)
            for name in names
        }
        data = self.data
        h = Site(self.encoders["h"].weight, signals={"mu": data.mu}, noise=data.xi, labels=data.y,
                 extra={} if config.modality == "multi" or config.redraw_eps else {"noise_aug": data.xi + data.eps})
        self.sites = {"h": h}
        if config.modality == "multi":
            self.sites["g"] = Site(self.encoders["g"].weight, signals={"mu_tilde": data.mu_tilde},
                                   noise=data.xi_tilde, labels=data.y)
        self._probes = {name: site.probe_matrix() for name, site in self.sites.items()}
        self._sgd_gen = torch.Generator().manual_seed(config.seed + 2)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [enc.weight for enc in self.encoders.values()]

    def _features(self, z: torch.Tensor, columns: slice) -> torch.Tensor:
        """Patch features (n, 2, m) from pre-activations ``z = W @ probes`` (m, probes)."""
        y = self.data.y
        signal = torch.relu(y[:, None] * z[:, 0][None, :])  # ⟨w_r, y_i μ⟩ = y_i ⟨w_r, μ⟩
        noise = torch.relu(z[:, columns].T)
        return torch.stack([signal, noise], dim=1)

    def loss(self, anchors: torch.Tensor | None = None) -> ContrastiveLoss:
        """Loss at the current weights; its pre-activations are kept in :attr:`last_inner` for the recorder."""
        n = self.config.n
        z = {name: self.encoders[name].weight @ probes for name, probes in self._probes.items()}
        self.last_inner = {name: v.detach() for name, v in z.items()}
        f = self._features(z["h"], slice(1, 1 + n))
        if self.config.modality == "single":
            if self.config.redraw_eps:
                aug_noise = torch.relu((self.data.xi + self.data.eps) @ self.encoders["h"].weight.T)
                f_aug = torch.stack([f[:, 0], aug_noise], dim=1)
            else:
                f_aug = self._features(z["h"], slice(1 + n, 1 + 2 * n))
            return single_modal_loss(f, f_aug, self.data.negatives, self.config.tau, anchors)
        g = self._features(z["g"], slice(1, 1 + n))
        return multi_modal_loss(f, g, self.data.negatives, self.config.tau, anchors)

    def state(self) -> dict[str, tuple[tuple[str, ...], Any]]:
        """Everything that, with the config, determines the rest of training: weights and RNG states."""
        out: dict[str, tuple[tuple[str, ...], Any]] = {
            f"weight_{name}": (("neuron", "feature"), enc.weight.detach()) for name, enc in self.encoders.items()
        }
        out["rng_sgd"] = (("rng_sgd_byte",), self._sgd_gen.get_state())
        out["rng_eps"] = (("rng_eps_byte",), self.data._eps_generator.get_state())
        if self.config.redraw_eps:
            out["eps"] = (("sample", "feature"), self.data.eps)
        return out

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` saved (arrays as read back from a store)."""
        with torch.no_grad():
            for name, enc in self.encoders.items():
                enc.weight.copy_(torch.as_tensor(np.asarray(state[f"weight_{name}"])))
        self._sgd_gen.set_state(torch.as_tensor(np.asarray(state["rng_sgd"]), dtype=torch.uint8))
        self.data._eps_generator.set_state(torch.as_tensor(np.asarray(state["rng_eps"]), dtype=torch.uint8))
        if self.config.redraw_eps:
            self.data.eps = torch.as_tensor(np.asarray(state["eps"])).to(self.data.eps)

    def probe_accuracy(self, protocol: str = "paper") -> float:
        """OOD accuracy of a linear head on h(x_test) (§3.3, §6); ``protocol`` as in :mod:`.probe`."""
        from .probe import ood_probe_accuracy

        enc = self.encoders["h"]
        with torch.no_grad():
            return ood_probe_accuracy(enc(self.data.test_inputs()), self.data.y_test, protocol=protocol,
                                      train_features=enc(self.data.inputs()), train_labels=self.data.y)

    def anchors(self) -> torch.Tensor | None:
        """The anchors of the next step: all (GD) or a random minibatch (SGD)."""
        if self.config.optimizer == "gd":
            return None
        idx = torch.randperm(self.config.n, generator=self._sgd_gen)[: self.config.batch_size]
        return idx.to(self.config.device)


class _Steps(Steps):
    """One GD (or minibatch SGD) step of the paper's loss, for :func:`~dyn.setups.driver.drive`."""

    def __init__(self, config: Config, evaluate_every: int | None):
        self.setup = _build(config)
        self.sites = self.setup.sites
        self.evaluate_every = evaluate_every
        self.opt = torch.optim.SGD(self.setup.parameters(), lr=config.eta, momentum=0.0, weight_decay=0.0)

    def forward(self, step: int, last: bool) -> ContrastiveLoss:
        if self.setup.config.redraw_eps and step > 0:
            self.setup.data.redraw_augmentation()
        return self.setup.loss(None if last else self.setup.anchors())

    def inner(self, state: ContrastiveLoss) -> Mapping[str, torch.Tensor]:
        return self.setup.last_inner

    def log(self, rec: Recorder, step: int, state: ContrastiveLoss, last: bool) -> None:
        scalars = state.scalars()
        if self.evaluate_every and (step % self.evaluate_every == 0 or last):
            scalars["probe_acc"] = self.setup.probe_accuracy("paper")
            scalars["probe_acc_transfer"] = self.setup.probe_accuracy("transfer")
        rec.log(step=step, **scalars)

    def update(self, state: ContrastiveLoss) -> None:
        self.opt.zero_grad(set_to_none=True)
        state.loss.backward()
        self.opt.step()

    def state(self) -> dict[str, tuple[tuple[str, ...], Any]]:
        return self.setup.state()

    def restore(self, out: str | os.PathLike, step: int, arrays: Mapping[str, Any]) -> int:
        return _restore(self.setup, out, step, arrays)

    def finish(self, state: ContrastiveLoss) -> dict[str, Any]:
        return {"final_loss": float(state.loss.detach())}

    def begin(self, rec: Recorder) -> None:
        write_negatives(rec, self.setup.data.negatives, self.setup.config.negative_pairs)


def write_negatives(rec: Recorder, mask: torch.Tensor, pairs: str) -> None:
    """Store the negative-pair mask the objective uses as the group ``negatives``: ``mask(anchor, candidate)`` int8
    (1 where the candidate is a negative of the anchor). The theory reads M, and whether the negatives have the
    opposite label, from it."""
    mask = mask.detach().cpu().numpy().astype(np.int8)
    n = mask.shape[0]
    rec.write_group("negatives", {
        "anchor": (("anchor",), np.arange(n, dtype=np.int64)),
        "candidate": (("candidate",), np.arange(n, dtype=np.int64)),
        "mask": (("anchor", "candidate"), mask),
    }, attrs={"description": "mask[i, j] = 1 if sample j is a negative of anchor i in the contrastive objective",
              "negative_pairs": pairs})

    def postfix(self, step: int, state: ContrastiveLoss) -> dict[str, str]:
        return {"loss": f"{float(state.loss.detach()):.4f}"}


def train(
    config: Config,
    out: str | os.PathLike | None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    attrs: Mapping[str, Any] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    resume: bool = False,
    evaluate_every: int | None = None,
    sinks: Sequence[RecordSink] = (),
) -> RunSummary:
    """Train ``config`` for ``config.steps`` steps and record every (scheduled) step into the store ``out``.

    The loss and the loss-derivative band (``lp_pos_min`` … ``lp_neg_max``) are logged at every recorded step,
    evaluated at that step's weights; the final step's loss comes from one more forward pass at the final weights.

    Checkpoints: every ``checkpoint_seconds`` of training (default :data:`DEFAULT_CHECKPOINT_SECONDS`), or every
    ``checkpoint_every`` steps when given, the recorded steps are written and the weights and RNG states stored,
    so a run killed at any moment loses at most that much work. Ctrl-C finishes the current step and checkpoints
    before stopping (a second Ctrl-C stops at once). The policy is stored with the run (root attributes
    ``checkpoint_every``, ``checkpoint_seconds``) and a resumed run keeps it unless given a new one. The loop is
    :func:`dyn.setups.driver.drive`, shared by every setup.

    Parameters
    ----------
    config : Config
    out : path of the new run store, or None to train without recording (the benchmarks' baseline).
    overwrite : replace an existing run store.
    progress : show a progress bar (None: in notebooks and terminals, see :mod:`dyn.progress`).
    attrs : extra root attributes (e.g. the preset name).
    chunk_bytes : target bytes per stored chunk.
    checkpoint_every : steps between checkpoints (None: time-based, see ``checkpoint_seconds``).
    checkpoint_seconds : seconds of training between checkpoints when ``checkpoint_every`` is None.
    resume : continue the unfinished run at ``out`` (``config`` must be the stored one) from its last checkpoint,
        or from step 0 if it has none; the result is identical to an uninterrupted run.
    evaluate_every : also log ``probe_acc``, the OOD accuracy of a linear probe on h(x_test) (cross-validated on
        h(x_test), the paper's protocol), and ``probe_acc_transfer`` (head fitted on h(x_train)); see
        :mod:`dyn.setups.huang2024.probe`. At step 0, every this many steps and at the last step.
    sinks : live exports the recorder feeds as it writes (:class:`~dyn.store.sinks.RecordSink`, e.g.
        ``dyn.viz.tensorboard.TensorBoardStream(folder)``).

    Returns
    -------
    RunSummary

    Raises
    ------
    DivergenceError
        When the loss becomes NaN/inf; the store keeps the steps before it and is marked ``diverged``.
    StoreError
        ``resume`` on a store that is complete, being written, or damaged.
    ConfigError
        The run does not fit in this machine's memory, or the checkpoint policy is invalid.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> summary = train(Config(d=30, n=10, n_test=4, m=4, steps=5), out)
    >>> summary.status, summary.steps
    ('complete', 5)
    """
    return drive(lambda: _Steps(config, evaluate_every), config, out, setup="huang2024",
                 run_attrs={"modality": config.modality}, overwrite=overwrite, progress=progress,
                 desc=f"{config.modality}-modal", attrs=attrs, chunk_bytes=chunk_bytes,
                 checkpoint_every=checkpoint_every, checkpoint_seconds=checkpoint_seconds, resume=resume,
                 sinks=sinks)


def _bytes_needed(config: Config) -> int:
    """A lower bound on the memory a run needs: the data drawn in float64 and cast, the probes and the weights."""
    itemsize = 4 if config.dtype == "float32" else 8
    sites = 1 if config.modality == "single" else 2
    rows = 3 * config.n + config.n_test
    return config.d * (8 * rows + itemsize * (rows + sites * (2 + 2 * config.n + 3 * config.m)))


def _build(config: Config) -> Huang2024Setup:
    """The run's data, encoders and sites; a one-line ConfigError when they do not fit in memory."""
    need = _bytes_needed(config)
    if config.device.startswith("cpu"):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else math.inf
        if need > total:
            raise ConfigError(f"this run needs at least {need / 2**30:.3g} GiB of memory (d={config.d}, n={config.n}, "
                              f"m={config.m}); this machine has {total / 2**30:.3g} GiB")
    try:
        return Huang2024Setup(config)
    except (MemoryError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, MemoryError) or "alloc" in msg.lower() or "out of memory" in msg.lower():
            raise ConfigError(f"cannot allocate this run's tensors (d={config.d}, n={config.n}, m={config.m}; needs "
                              f"at least {need / 2**30:.3g} GiB): {msg}") from None
        raise


def _restore(setup: Huang2024Setup, out: str | os.PathLike, step: int, state: Mapping[str, np.ndarray]) -> int:
    """Restore ``setup`` from a checkpoint's arrays; return the step to continue from."""
    expected = setup.state()
    for name, (_, value) in expected.items():
        if name not in state:
            raise StoreError(f"{out}: the checkpoint of step {step} lacks {name!r}; the store is damaged")
        if tuple(np.shape(state[name])) != tuple(value.shape):
            raise StoreError(f"{out}: the checkpoint of step {step} has {name} of shape {np.shape(state[name])}, "
                             f"expected {tuple(value.shape)}; the store is damaged")
    try:
        setup.load_state(state)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise StoreError(f"{out}: the checkpoint of step {step} cannot be restored: {str(exc).splitlines()[0]}") from None
    # The data are re-drawn from the seed: make sure they are the data the run started with.
    noise = read_static(out, "h", "noise_vectors")
    if not np.array_equal(noise, setup.data.xi.cpu().numpy()):
        raise StoreError(f"resume: the data drawn from seed {setup.config.seed} differ from those stored in {out}")
    return step
