"""What the framework callbacks share: build the sites, open or resume the store, follow the global step."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ...errors import ConfigError
from ..probes import sites_for, sites_from_store
from ..recorder import Recorder
from ..schedules import Schedule

__all__ = ["LayerRecording"]


class LayerRecording:
    """Record named layers of a model at every optimizer step counted by a training framework.

    Parameters
    ----------
    path : str or Path
        The run store.
    layers : module names, or a mapping site name → module name
        The layers to record (``dict(model.named_modules())`` keys); see :func:`dyn.record.probes.sites_for`.
    x, y : probe inputs (a tensor, or a mapping of keyword inputs) and their labels
        Deeper layers' probes are their inputs from one forward pass at the start (frozen, stored).
    every : int or callable
        Recording schedule (step 0 and the last step always).
    site_kwargs : mapping, optional
        Passed to :func:`dyn.record.probes.site_for` (``noise``, ``baseline``, ``per_image``, ``max_samples``...).
    recorder_kwargs : mapping, optional
        Passed to :class:`~dyn.record.Recorder` (``config``, ``seed``, ``chunk_bytes``, ...).
    overwrite : bool
        Replace an existing store when training starts from step 0.

    Notes
    -----
    The recorder advances to the framework's global step after each batch (:meth:`advance`), so micro-batches of
    gradient accumulation are not steps. The loss of step ``t`` is the mean of the losses of the micro-batches
    computed at ``W(t)``; it is logged when step ``t + 1`` is reached.
    """

    def __init__(self, path: str | os.PathLike, layers: Sequence[str] | Mapping[str, str], x: Any, y: Any, *,
                 every: int | Schedule = 1, site_kwargs: Mapping[str, Any] | None = None,
                 recorder_kwargs: Mapping[str, Any] | None = None, overwrite: bool = False):
        if isinstance(layers, str) or not layers:
            raise ConfigError("layers must be a non-empty list of module names (or a mapping site -> module)")
        self.path = Path(path)
        self.layers = layers
        self.x, self.y = x, y
        self.every = every
        self.site_kwargs = dict(site_kwargs or {})
        self.recorder_kwargs = dict(recorder_kwargs or {})
        self.overwrite = overwrite
        self.recorder: Recorder | None = None
        self._loss_sum: torch.Tensor | None = None
        self._loss_n = 0

    def start(self, model: torch.nn.Module, global_step: int) -> Recorder:
        """Open the store at step 0, or resume it at ``global_step`` (the restored weights are re-recorded)."""
        if global_step > 0 and self.path.exists():
            sites = sites_from_store(self.path, model)  # the frozen probes of the run's start, not new ones
            rec = Recorder(self.path, sites, every=self.every, log_at="current", resume_from=global_step,
                           **self.recorder_kwargs)
            rec.open()
            rec.record(global_step)
        elif global_step > 0:
            raise ConfigError(f"resuming at step {global_step} but the store {self.path} does not exist")
        else:
            x = self.x
            if isinstance(x, torch.Tensor):
                x = x.to(next(model.parameters()).device)
            sites = sites_for(model, self.layers, x, self.y, **self.site_kwargs)
            rec = Recorder(self.path, sites, every=self.every, log_at="current", overwrite=self.overwrite,
                           **self.recorder_kwargs)
            rec.open()
        self.recorder = rec
        return rec

    def add_loss(self, loss: Any) -> None:
        """Accumulate one micro-batch's loss (a 0-d tensor stays on its device)."""
        if loss is None:
            return
        loss = loss.detach() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        self._loss_sum = loss.clone() if self._loss_sum is None else self._loss_sum + loss
        self._loss_n += 1

    def advance(self, global_step: int) -> None:
        """Record every step up to ``global_step`` (per the schedule) and log the finished step's loss."""
        rec = self.recorder
        if rec is None or global_step <= rec.step_index:
            return
        previous = rec.step_index
        while rec.step_index < global_step:
            rec.step()
        if self._loss_sum is not None:
            rec.log(step=previous, loss=self._loss_sum / self._loss_n)
        self._loss_sum, self._loss_n = None, 0

    def checkpoint(self) -> None:
        """The framework is saving a checkpoint: write every step before the current one to the store."""
        if self.recorder is not None:
            self.recorder.flush_all_but_latest()

    def close(self, status: str = "complete", error: str | None = None) -> None:
        if self.recorder is not None:
            self.recorder.close(status, error=error)
            self.recorder = None
