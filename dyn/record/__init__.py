"""Recording: sites, probe helpers (:mod:`.probes`), schedules, the :class:`Recorder` and its device buffers;
framework callbacks in :mod:`.integrations` (Lightning, Hugging Face).

Works on any PyTorch loop; imports only :mod:`dyn.store` (and torch). Knows nothing about any paper.
"""

from __future__ import annotations

from . import probes
from .devices import resolve_device
from .recorder import DEFAULT_CHUNK_BYTES, Recorder
from .schedules import Schedule, every, log_spaced, warmup
from ..store.sinks import RecordSink
from .site import Site

__all__ = ["DEFAULT_CHUNK_BYTES", "RecordSink", "Recorder", "Schedule", "Site", "every", "log_spaced", "probes", "resolve_device", "warmup"]
