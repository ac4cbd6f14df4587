"""A Hugging Face ``TrainerCallback`` that records chosen layers at every optimizer step (``pip install dyn[hf]``)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover
    from ...errors import ConfigError

    raise ConfigError("the Hugging Face callback needs transformers: pip install 'dyn[hf]'") from None

from ..schedules import Schedule
from .base import LayerRecording

__all__ = ["DynTrainerCallback"]


class DynTrainerCallback(TrainerCallback):
    """Record the named layers of the ``Trainer``'s model into a dyn store, one step per optimizer update.

    Parameters
    ----------
    path : the run store.
    layers : module names of the model (``dict(model.named_modules())`` keys), or site → module.
    x, y : probe inputs — a tensor or a mapping of keyword inputs (``model(**x)``, e.g. ``input_ids`` and
        ``attention_mask``) — and their labels. Every recorded layer's probes are its inputs from one forward pass
        at the start of training (frozen, stored); a ``Linear`` applied to sequences gets one probe per token.
    every, site_kwargs, recorder_kwargs, overwrite : see :class:`~dyn.record.integrations.LayerRecording`.

    Notes
    -----
    - Steps are ``state.global_step`` (one per optimizer update, whatever ``gradient_accumulation_steps``).
    - The logged ``loss`` is the Trainer's own logged loss, attributed to the step before the log; with
      ``logging_steps=1`` it is there for every step.
    - Only the main process records (one writer per store).
    - After the Trainer saves a checkpoint the store is flushed; ``trainer.train(resume_from_checkpoint=...)``
      resumes the same store at the checkpoint's step, with the probes read back from the store.

    Examples
    --------
    >>> cb = DynTrainerCallback("runs/hf.zarr", ["classifier"], batch, labels)  # doctest: +SKIP
    >>> Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, layers: Sequence[str] | Mapping[str, str], x: Any, y: Any, *,
                 every: int | Schedule = 1, site_kwargs: Mapping[str, Any] | None = None,
                 recorder_kwargs: Mapping[str, Any] | None = None, overwrite: bool = False):
        self.recording = LayerRecording(path, layers, x, y, every=every, site_kwargs=site_kwargs,
                                        recorder_kwargs=recorder_kwargs, overwrite=overwrite)

    @property
    def recorder(self):
        """The open :class:`~dyn.record.Recorder` (None before training starts and after it ends)."""
        return self.recording.recorder

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            x = self.recording.x
            if isinstance(x, Mapping):
                device = next(model.parameters()).device
                self.recording.x = {k: v.to(device) if hasattr(v, "to") else v for k, v in x.items()}
            self.recording.start(model, state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.recording.advance(state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        rec = self.recording.recorder
        if rec is not None and logs and "loss" in logs and state.global_step > 0:
            rec.log(step=state.global_step - 1, loss=float(logs["loss"]))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.recording.checkpoint()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.recording.close("complete")
