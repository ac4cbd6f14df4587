"""The run store: schema, writer (with its own small zarr v3 writer, :mod:`dyn.store.v3`), reader, checkpoints,
codec policy and safe output folders.

The only package that touches zarr (and its internals); it knows sites, probes and steps, never a paper or a
model. Open a run with :func:`open_run` (``dyn.open``) or plain ``xr.open_datatree(path, engine="zarr")``.
"""

from __future__ import annotations

from .checkpoint import CHECKPOINT_GROUP, read_checkpoint
from .reader import open_run, read_attrs, read_static, reading
from .safety import SAFE_CODECS, check_codecs
from .schema import SCHEMA_VERSION, STATUSES, STEP_VARS, site_arrays, validate_tree
from .writer import CODECS, DEFAULT_CODEC, StoreWriter, library_versions, run_status, writer_alive

__all__ = [
    "CHECKPOINT_GROUP",
    "CODECS",
    "DEFAULT_CODEC",
    "SAFE_CODECS",
    "SCHEMA_VERSION",
    "STATUSES",
    "STEP_VARS",
    "StoreWriter",
    "check_codecs",
    "library_versions",
    "open_run",
    "read_attrs",
    "read_checkpoint",
    "read_static",
    "reading",
    "run_status",
    "site_arrays",
    "validate_tree",
    "writer_alive",
]
