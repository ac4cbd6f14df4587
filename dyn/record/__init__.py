"""Recording: sites, schedules, the :class:`Recorder` and its device buffers.

Works on any PyTorch loop; imports only :mod:`dyn.store` (and torch). Knows nothing about any paper.
"""

from __future__ import annotations

from .recorder import DEFAULT_CHUNK_BYTES, Recorder
from .schedules import Schedule, every
from .site import Site

__all__ = ["DEFAULT_CHUNK_BYTES", "Recorder", "Schedule", "Site", "every"]
