"""Framework callbacks that record chosen layers by name at every optimizer step.

- :class:`dyn.record.integrations.lightning.DynCallback` — PyTorch Lightning (``pip install dyn[lightning]``).
- :class:`dyn.record.integrations.huggingface.DynTrainerCallback` — Hugging Face ``Trainer`` (``dyn[hf]``).

Both count steps with the framework's global step (one per optimizer update, whatever the gradient accumulation),
record on the main process only (one writer per store), flush the store when the framework saves a checkpoint and
resume the same store when training resumes from one. The shared logic is :class:`LayerRecording`.
"""

from __future__ import annotations

from .base import LayerRecording

__all__ = ["LayerRecording"]
