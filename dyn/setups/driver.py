"""The training loop every setup's trainer shares: record, log, checkpoint, resume, Ctrl-C, progress.

A setup describes *one step* of its training as a :class:`Steps` object (forward pass, what to log, the update,
its resumable state); :func:`drive` runs it for ``config.steps`` steps with the reliability rules every dyn run
follows, so a new setup writes none of them again:

- the run store is created by a :class:`~dyn.Recorder` (or continued, ``resume=True``, under the store's lock
  taken before anything is read: :func:`~dyn.setups.base.open_for_resume`);
- at every recorded step the forward pass's pre-activations go to the recorder (no second GEMM) and the step's
  scalars are logged at the weights they were computed at;
- a checkpoint (recorded steps written, state stored) every ``checkpoint_seconds`` of training or every
  ``checkpoint_every`` steps, only at a step boundary; Ctrl-C finishes the step, checkpoints and stops;
- a non-finite loss marks the store ``diverged``.
"""

from __future__ import annotations

import abc
import contextlib
import os
import time
from typing import Any, Callable, Mapping, Sequence

import torch

from ..errors import DivergenceError
from ..progress import progress_bar, progress_enabled
from ..record import DEFAULT_CHUNK_BYTES, RecordSink, Recorder, Site
from .base import DeferredInterrupt, RunSummary, checkpoint_policy, open_for_resume, store_size

__all__ = ["Steps", "drive"]


class Steps(abc.ABC):
    """One setup's training step, as :func:`drive` runs it.

    Attributes
    ----------
    sites : mapping of name to :class:`~dyn.Site`
        What the recorder records.
    """

    sites: Mapping[str, Site]

    @abc.abstractmethod
    def forward(self, step: int, last: bool) -> Any:
        """The forward pass at the weights of ``step`` (whatever :meth:`update` and :meth:`log` need)."""

    def inner(self, state: Any) -> Mapping[str, torch.Tensor] | None:
        """The sites' ``W @ probes`` this forward pass computed (detached), or None to let the recorder compute them."""
        return None

    @abc.abstractmethod
    def log(self, rec: Recorder, step: int, state: Any, last: bool) -> None:
        """Log the scalars of a recorded ``step`` (``rec.log(step=step, ...)``); the loss first, so a non-finite
        one stops the run before anything else is logged."""

    @abc.abstractmethod
    def update(self, state: Any) -> None:
        """Take the optimizer step from ``state`` (weights of step t → t + 1)."""

    @abc.abstractmethod
    def state(self) -> dict[str, tuple[tuple[str, ...], Any]]:
        """Everything that, with the config, determines the rest of training (stored in checkpoints)."""

    @abc.abstractmethod
    def restore(self, out: str | os.PathLike, step: int, arrays: Mapping[str, Any]) -> int:
        """Restore a checkpoint of ``step`` read from ``out``; return the step to continue from. A one-line
        :class:`~dyn.StoreError` when the checkpoint does not belong to this run."""

    @abc.abstractmethod
    def finish(self, state: Any) -> dict[str, Any]:
        """Fields of the run's summary from the final forward pass (``final_loss`` at least)."""

    def begin(self, rec: Recorder) -> None:
        """Called once when a *new* run's store is open, before step 0's scalars (e.g. to store random draws)."""

    def postfix(self, step: int, state: Any) -> dict[str, str] | None:
        """What the progress bar shows after ``step`` (None: nothing new)."""
        return None


def drive(
    build: Callable[[], Steps],
    config: Any,
    out: str | os.PathLike | None,
    *,
    setup: str,
    run_attrs: Mapping[str, Any],
    summary: type[RunSummary] = RunSummary,
    overwrite: bool = False,
    progress: bool | None = False,
    desc: str = "train",
    attrs: Mapping[str, Any] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    resume: bool = False,
    sinks: Sequence[RecordSink] = (),
) -> RunSummary:
    """Train ``config.steps`` steps of the :class:`Steps` that ``build()`` makes, recording into ``out``.

    Parameters
    ----------
    build : makes the run's :class:`Steps` (data, model, optimizer) from the config it closes over.
    config : the setup's config (``steps``, ``record_every``, ``seed``, ``to_dict()``).
    out : the run store, or None to train without recording.
    setup : the setup's registry name (stored as the ``setup`` attribute; a resumed store must carry it).
    run_attrs : the setup's own root attributes (e.g. the modality).
    summary : the :class:`~dyn.setups.base.RunSummary` class to return (a setup may add fields, filled from
        :meth:`Steps.finish`).
    overwrite, progress, attrs, chunk_bytes, checkpoint_every, checkpoint_seconds, resume, sinks :
        as in :func:`dyn.train`; ``progress=None`` shows a bar in notebooks and terminals (:mod:`dyn.progress`).
    desc : the progress bar's label.

    Returns
    -------
    RunSummary

    Examples
    --------
    >>> import tempfile, os
    >>> from dyn.setups.huang2024 import Config
    >>> out = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> dyn.train(Config(d=30, n=10, n_test=4, m=4, steps=5), out).status  # runs through drive()
    'complete'
    """
    t0 = time.perf_counter()
    resumed = open_for_resume(out, setup=setup, config=config) if resume else None
    writer = resumed.writer if resumed is not None else None
    found = resumed.checkpoint if resumed is not None else None
    try:
        checkpoint_every, checkpoint_seconds = checkpoint_policy(checkpoint_every, checkpoint_seconds,
                                                                 resumed.attrs if resumed is not None else None)
        if resumed is not None:
            attrs = {**{k: resumed.attrs[k] for k in ("preset",) if k in resumed.attrs}, **(attrs or {})}
        steps = build()
        start = steps.restore(out, *found) if found is not None else 0
    except BaseException:
        if writer is not None:
            writer.release()
        raise
    every = config.record_every
    rec = None
    finished: dict[str, Any] = {}
    show = progress_enabled(progress)
    bar = progress_bar(config.steps, desc=desc, unit="step", progress=show, initial=start)
    try:
        if out is not None:
            policy = {"checkpoint_every": checkpoint_every, "checkpoint_seconds": checkpoint_seconds}
            rec = Recorder(writer if writer is not None else out, steps.sites, every=every, config=config.to_dict(),
                           seed=config.seed, overwrite=overwrite, log_at="current", chunk_bytes=chunk_bytes,
                           resume_from=start if found is not None else None,
                           steps=config.steps if found is None else None, sinks=sinks,
                           attrs={"setup": setup, **run_attrs, **policy, **(attrs or {})})
        with rec if rec is not None else contextlib.nullcontext(), DeferredInterrupt() as interrupt:
            if rec is not None and found is None:
                steps.begin(rec)
            last_ckpt = time.perf_counter()
            for t in range(start, config.steps + 1):
                last = t == config.steps
                state = steps.forward(t, last)
                if rec is not None and (t == 0 or last or t % every == 0):
                    if t > 0 or found is not None:  # step 0 of a new run was recorded when the recorder opened
                        rec.record(t, inner=steps.inner(state))
                    steps.log(rec, t, state, last)
                if last:
                    finished = steps.finish(state)
                    break
                steps.update(state)
                # Step t+1's state is complete here: the only place a checkpoint (or a deferred Ctrl-C) may happen.
                if rec is not None and (interrupt.requested or (
                        (t + 1) % checkpoint_every == 0 if checkpoint_every
                        else time.perf_counter() - last_ckpt >= checkpoint_seconds)):
                    rec.flush(checkpoint=steps.state(), next_step=t + 1)
                    last_ckpt = time.perf_counter()
                if interrupt.requested:
                    raise KeyboardInterrupt
                bar.update(1)
                postfix = steps.postfix(t, state) if show and t % 10 == 0 else None
                if postfix:
                    bar.set_postfix(postfix)
    except DivergenceError as exc:
        raise DivergenceError(f"{exc}; store {rec.path} is marked diverged", exc.step) from None
    finally:
        bar.close()
        if writer is not None:
            writer.release()  # in case the recorder never opened (closing it releases the lock too)
    path = rec.path if rec is not None else None
    return summary(path=path, status="complete", steps=config.steps, seconds=time.perf_counter() - t0,
                   nbytes=store_size(path) if path else 0, **finished)
