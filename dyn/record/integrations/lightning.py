"""A PyTorch Lightning callback that records chosen layers at every optimizer step (``pip install dyn[lightning]``).

Works with ``lightning`` (``lightning.pytorch``) or the older ``pytorch_lightning`` package.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - the standalone package
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        from ...errors import ConfigError

        raise ConfigError("the Lightning callback needs PyTorch Lightning: pip install 'dyn[lightning]'") from None

from ..schedules import Schedule
from .base import LayerRecording

__all__ = ["DynCallback"]


class DynCallback(Callback):
    """Record the named layers of the ``LightningModule`` into a dyn store, one step per optimizer update.

    Parameters
    ----------
    path : the run store.
    layers : module names of the ``LightningModule`` (``dict(module.named_modules())`` keys), or site → module.
    x, y : probe inputs and labels (see :func:`dyn.record.probes.sites_for`); deeper layers' probes are their
        inputs at the start of training (frozen, stored).
    every, site_kwargs, recorder_kwargs, overwrite : see :class:`~dyn.record.integrations.LayerRecording`.

    Notes
    -----
    - Steps are ``trainer.global_step``: with ``accumulate_grad_batches=k`` one step is ``k`` micro-batches.
    - The logged ``loss`` of step ``t`` is the mean of ``training_step``'s losses computed at ``W(t)``.
    - Only global rank 0 records (one writer per store).
    - When the trainer saves a checkpoint the store is flushed; ``trainer.fit(..., ckpt_path=...)`` resumes the same
      store at the checkpoint's step, with the probes read back from the store.

    Examples
    --------
    >>> import lightning.pytorch as pl  # doctest: +SKIP
    >>> cb = DynCallback("runs/lit.zarr", ["net.0", "net.2"], x_probe, y_probe)  # doctest: +SKIP
    >>> pl.Trainer(max_steps=100, callbacks=[cb]).fit(module, loader)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, layers: Sequence[str] | Mapping[str, str], x: Any, y: Any, *,
                 every: int | Schedule = 1, site_kwargs: Mapping[str, Any] | None = None,
                 recorder_kwargs: Mapping[str, Any] | None = None, overwrite: bool = False):
        super().__init__()
        self.recording = LayerRecording(path, layers, x, y, every=every, site_kwargs=site_kwargs,
                                        recorder_kwargs=recorder_kwargs, overwrite=overwrite)

    @property
    def recorder(self):
        """The open :class:`~dyn.record.Recorder` (None before training starts and after it ends)."""
        return self.recording.recorder

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # after the checkpoint (weights, global step) is restored when resuming
        if trainer.is_global_zero:
            self.recording.start(pl_module, trainer.global_step)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.recording.recorder is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        self.recording.add_loss(loss)  # computed at the weights before this batch's optimizer step, if any
        self.recording.advance(trainer.global_step)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        self.recording.checkpoint()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.recording.close("complete")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.recording.close("interrupted", error=f"{type(exception).__name__}: {exception}".splitlines()[0])
