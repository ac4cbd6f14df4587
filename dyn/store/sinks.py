"""Sinks: code that receives every chunk of recorded steps as the recorder writes it (live exports). The base
class lives with the store (torch-free), so exports in any layer (:mod:`dyn.viz.tensorboard`) can implement it.

A :class:`RecordSink` is handed to :class:`~dyn.Recorder` (``sinks=[...]``). The recorder calls, in order:

- :meth:`RecordSink.open` once, on the training thread, when the store is created (or continued on resume);
- :meth:`RecordSink.write` on the writer thread after each chunk is in the store, with the same steps, inner
  products (per site and variable, the arrays the store got) and logged scalars (NaN where nothing was logged);
- :meth:`RecordSink.close` once, on the training thread, after the last chunk and before the store's final commit.

The store is the record: a sink that raises is dropped (it gets no more calls, its ``close`` is still called) and
the recorder warns once on the training thread, naming the sink, the step and the error; the recording goes on.
:class:`dyn.viz.tensorboard.TensorBoardStream` is one (scalars and γ/ρ summaries streamed to TensorBoard); any
other tool a lab uses (a W&B or MLflow logger) is a subclass with these three methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["RecordSink"]


class RecordSink:
    """Receives the recorded steps chunk by chunk (see the module notes); override what you need.

    Examples
    --------
    >>> import torch, tempfile, os
    >>> class Count(RecordSink):
    ...     steps = 0
    ...     def write(self, steps, inner, scalars):
    ...         self.steps += len(steps)
    >>> w = torch.nn.Parameter(torch.randn(3, 5))
    >>> site = dyn.Site(w, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    >>> sink = Count()
    >>> with dyn.Recorder(os.path.join(tempfile.mkdtemp(), "r.zarr"), {"h": site}, sinks=[sink]) as rec:
    ...     rec.step(); rec.step()
    >>> sink.steps
    3
    """

    def open(self, store: Path, sites: Mapping[str, "object"], first_step: int) -> None:
        """The store at ``store`` now exists (its static arrays committed); recording starts at ``first_step``
        (0, or the step a resumed run continues from). ``sites``: the recorder's :class:`~dyn.Site` objects."""

    def write(self, steps: np.ndarray, inner: Mapping[str, Mapping[str, np.ndarray]],
              scalars: Mapping[str, np.ndarray]) -> None:
        """``steps`` ``(k,)``; ``inner[site][variable]`` ``(k, neuron, probes)`` float32 (``signal_inner``,
        ``noise_inner``, ...); ``scalars[name]`` ``(k,)`` float64, NaN where not logged. Do not keep the arrays:
        the recorder may reuse their memory after this returns."""

    def close(self, status: str) -> None:
        """The run ended with ``status`` (``complete``, ``interrupted``, ``diverged``)."""
