"""Checkpoints inside a run store: the state that resumes training, as plain zarr arrays (no pickle).

A checkpoint is the group ``/_checkpoint/step_<t>`` holding whatever arrays the trainer handed to
:meth:`dyn.Recorder.flush` (weights, RNG states, ...) to continue at step ``t``; the root attribute
``checkpoint_step`` points at the valid one and is written last (:meth:`dyn.store.StoreWriter.write_checkpoint`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import zarr

from ..errors import StoreError
from .reader import read_attrs, reading
from .safety import check_codecs

__all__ = ["CHECKPOINT_GROUP", "read_checkpoint"]

CHECKPOINT_GROUP = "_checkpoint"


def read_checkpoint(path: str | os.PathLike) -> tuple[int, dict[str, np.ndarray]]:
    """The step a store's last checkpoint resumes at, and its arrays.

    Raises
    ------
    StoreError
        The store has no checkpoint, or its checkpoint cannot be read.
    """
    p = Path(path)
    attrs = read_attrs(p)
    step = attrs.get("checkpoint_step")
    if not isinstance(step, int) or isinstance(step, bool):
        raise StoreError(f"{p} has no checkpoint to resume from (it stopped before the first one)")
    group_path = p / CHECKPOINT_GROUP / f"step_{step}"
    if not group_path.is_dir():
        raise StoreError(f"{p}: checkpoint of step {step} is missing ({group_path.relative_to(p)})")
    check_codecs(group_path)
    with reading(p, f"checkpoint of step {step}"):
        group = zarr.open_group(str(group_path), mode="r")
        arrays = {name: np.asarray(arr[...]) for name, arr in group.arrays()}
    return step, arrays
