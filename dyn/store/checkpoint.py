"""Checkpoints inside a run store: the state that resumes training, as plain zarr arrays (no pickle).

A checkpoint is a group ``/_checkpoint/slot_<k>`` (attributes ``step`` and ``arrays``, the names of the arrays
it holds) holding whatever arrays the trainer handed to :meth:`dyn.Recorder.flush` (weights, RNG states, ...) to
continue at that step; anything else in the slot is not dyn's and is neither read nor removed. Two slots take turns;
the root attributes ``checkpoint_step`` and ``checkpoint_slot`` point at the valid one and are committed only
once it is completely written (:meth:`dyn.store.StoreWriter.write_checkpoint`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import zarr

from ..errors import StoreError
from .reader import CHECKPOINT_GROUP, missing_chunks, read_attrs, reading
from .safety import check_codecs

__all__ = ["CHECKPOINT_GROUP", "read_checkpoint"]


def read_checkpoint(path: str | os.PathLike) -> tuple[int, dict[str, np.ndarray]]:
    """The step a store's last checkpoint resumes at, and its arrays.

    Every chunk of every array must be on disk: a missing one would otherwise read as zeros (weights) or fill
    values, and the resumed run would silently differ.

    Raises
    ------
    StoreError
        The store has no checkpoint, or its checkpoint is missing, incomplete or cannot be read.
    """
    p = Path(path)
    attrs = read_attrs(p)
    step = attrs.get("checkpoint_step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise StoreError(f"{p} has no checkpoint to resume from (it stopped before the first one)")
    slot = attrs.get("checkpoint_slot")
    if not isinstance(slot, str) or not slot.startswith("slot_"):
        raise StoreError(f"{p}: the checkpoint of step {step} is missing (no valid checkpoint_slot); the store is damaged")
    group_path = p / CHECKPOINT_GROUP / slot
    where = group_path.relative_to(p)
    try:
        meta = json.loads((group_path / "zarr.json").read_text())
    except (OSError, ValueError):
        raise StoreError(f"{p}: the checkpoint of step {step} is missing ({where}); the store is damaged") from None
    held = (meta.get("attributes") or {}).get("step") if isinstance(meta, dict) else None
    if held != step:
        raise StoreError(f"{p}: the checkpoint pointer says step {step} but {where} holds step {held}; the store is damaged")
    check_codecs(group_path)
    listed = (meta.get("attributes") or {}).get("arrays")
    if isinstance(listed, list):  # the arrays dyn wrote there (a user's group beside them is not the state)
        names = sorted(str(n) for n in listed)
    else:  # a store of an earlier dyn: every array in the slot
        names = sorted(d.name for d in group_path.iterdir() if (d / "zarr.json").is_file())
    if not names:
        raise StoreError(f"{p}: the checkpoint of step {step} is empty ({where}); the store is damaged")
    for name in names:
        if not (group_path / name / "zarr.json").is_file():
            raise StoreError(f"{p}: the checkpoint of step {step} is damaged: its array {where}/{name} is missing")
        with reading(p, f"checkpoint of step {step}"):
            meta = json.loads((group_path / name / "zarr.json").read_text())
        gap = missing_chunks(group_path, name, meta)
        if gap is not None:
            raise StoreError(f"{p}: the checkpoint of step {step} is damaged: {gap}")
    with reading(p, f"checkpoint of step {step}"):
        arrays = {name: np.asarray(zarr.open_array(str(group_path / name), mode="r")[...]) for name in names}
    return step, arrays
