"""Record every neuron's inner products with signal vectors and noise patches, on any PyTorch training loop.

A :class:`Site` is one weight matrix whose rows are neurons plus its probes: named signal vectors ``μ_k``, the noise
patches ``ξ_i`` of the training samples (with labels), and optional extra probe sets. The :class:`Recorder` keeps,
for each recorded step ``t``, ``W(t) @ [μ_1..μ_K | ξ_1..ξ_n | extra]`` in a device buffer (one GEMM into
preallocated memory, or values the training loop already computed), and hands full chunks to a background thread
that writes them to the run's zarr store (:mod:`dyn.store`). Nothing is copied to the host on the training thread.

When to record is a schedule (``every=k`` or any ``step -> bool`` callable); step 0 (initialisation) and the last
step are always recorded. Steps advance on ``optimizer.step()`` through a post-step hook, or by calling
:meth:`Recorder.step` in loops without an optimizer.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
import warnings
from bisect import bisect_left
from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..errors import ConfigError, DivergenceError, DynError, StoreError, WriteError
from ..store import StoreWriter, read_static, site_arrays
from ..store.schema import CHANGE_DIM
from . import schedules
from .schedules import Schedule
from .site import Site

__all__ = ["Recorder", "DEFAULT_CHUNK_BYTES"]

#: Target bytes of one stored chunk of the largest per-step variable. Larger chunks write faster (fewer zarr
#: round trips) but lose more steps if the process is killed before a flush.
DEFAULT_CHUNK_BYTES = 8 << 20

#: Distinct scalar names one recorder can log (loss, loss-derivative bounds, accuracies, ...).
MAX_SCALARS = 64


def _warn_unless_live(sites: Mapping[str, Site], optimizer: torch.optim.Optimizer) -> None:
    """Warn about site weights that share no memory with any parameter the optimizer updates (stale copies)."""
    live = {p.untyped_storage().data_ptr() for group in optimizer.param_groups for p in group["params"]}
    for name, site in sites.items():
        if isinstance(site, Site) and site.weight.untyped_storage().data_ptr() not in live:
            warnings.warn(f"site {name!r}: its weight shares no memory with the optimizer's parameters, so it will not "
                          "change (a copy, or a layer this optimizer does not train); pass the live parameter",
                          stacklevel=3)


class _Chunk:
    """Device-side buffers for up to ``capacity`` recorded steps."""

    def __init__(self, capacity: int, sites: Mapping[str, tuple[Site, torch.Tensor]]):
        self.capacity = capacity
        self.steps: list[int] = []
        self.inner = {
            name: torch.empty((capacity, site.weight.shape[0], site.n_columns), dtype=probes.dtype, device=probes.device)
            for name, (site, probes) in sites.items()
        }
        self.device = next(iter(sites.values()))[1].device
        self.scalars: torch.Tensor | None = None  # (capacity, MAX_SCALARS) float64, allocated on first log
        self.logged = np.zeros((capacity, MAX_SCALARS), dtype=bool)  # host-side: which entries were logged

    @property
    def full(self) -> bool:
        return len(self.steps) >= self.capacity

    def row(self, step: int) -> int | None:
        i = bisect_left(self.steps, step)
        return i if i < len(self.steps) and self.steps[i] == step else None

    def set_scalars(self, row: int, cols: slice | torch.Tensor, col_list: list[int], values: torch.Tensor) -> None:
        if self.scalars is None:
            self.scalars = torch.full((self.capacity, MAX_SCALARS), math.nan, dtype=torch.float64, device=self.device)
        self.scalars[row, cols] = values
        self.logged[row, col_list] = True


class Recorder:
    """Record the inner products of every site at every (scheduled) step into a zarr store.

    Parameters
    ----------
    path : str, Path or StoreWriter
        The new run store (a directory; e.g. ``runs/mine.zarr``), or a :class:`~dyn.store.StoreWriter` that
        already holds an existing store's lock (a run being resumed: :func:`dyn.train` with ``resume=True``).
    sites : mapping of name to :class:`Site`
        What to record; names become the store's groups (e.g. ``{"h": ..., "g": ...}``).
    optimizer : torch.optim.Optimizer, optional
        Record after each of its steps (a post-step hook; the loop is not touched). Without it, call :meth:`step`.
        A site weight that shares no memory with the optimizer's parameters (a copy) is warned about: it would
        record constants.
    every : int or callable, optional
        Record every k-th step, or at steps where ``every(step)`` is true. Step 0 and the last step always are.
    config : mapping, optional
        JSON-serialisable run settings, stored in the root attribute ``config``.
    seed : int, optional
        Stored in the root attribute ``seed``.
    overwrite : bool
        Replace an existing store at ``path``.
    log_at : {"previous", "current"}
        Which step :meth:`log` attributes values to by default. ``"previous"`` (default) fits the usual order
        ``loss.backward(); opt.step(); rec.log(loss=loss)``: the loss was computed at the weights before the step.
    diverge_on : tuple of str
        Logged names whose non-finite value stops the run: the store keeps the steps before it, status ``diverged``,
        and :class:`~dyn.DivergenceError` is raised (at once for CPU values, at the next flush for GPU values).
    chunk_bytes : int
        Target size of one stored chunk of the largest per-step variable (sets the steps per chunk).
    queue_size : int
        Chunks that may wait for the writer thread before training blocks.
    flush_every : int, optional
        Also write buffered steps every this many recorded steps (crash safety for long runs with big chunks;
        the latest step stays buffered so its logged values can still arrive). See :meth:`flush`.
    attrs : mapping, optional
        Extra root attributes (JSON-serialisable).
    resume_from : int, optional
        Append to the existing store at ``path`` (a run being resumed) from this step on; the store is cut to the
        steps before it. Used by :func:`dyn.train` with ``resume=True``.

    Attributes
    ----------
    chunk_steps : int
        Recorded steps per stored chunk.
    stats : dict
        Chunks, bytes, steps written and seconds spent writing (by the writer thread).

    Examples
    --------
    >>> import tempfile, os, xarray as xr
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(5, 3, bias=False)
    >>> x, y = torch.randn(8, 5), torch.randn(8, 3)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> site = dyn.Site(model.weight, signals={"mu": torch.ones(5)}, noise=x)
    >>> path = os.path.join(tempfile.mkdtemp(), "mine.zarr")
    >>> with dyn.Recorder(path, sites={"w": site}, optimizer=opt) as rec:
    ...     for _ in range(4):
    ...         loss = ((model(x) - y) ** 2).mean()
    ...         loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)
    >>> tree = xr.open_datatree(path, engine="zarr")
    >>> tree["w"]["noise_inner"].sizes["step"], tree.attrs["status"]
    (5, 'complete')
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sites: Mapping[str, Site],
        *,
        optimizer: torch.optim.Optimizer | None = None,
        every: int | Schedule = 1,
        config: Mapping[str, Any] | None = None,
        seed: int | None = None,
        overwrite: bool = False,
        log_at: str = "previous",
        diverge_on: tuple[str, ...] = ("loss",),
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        queue_size: int = 2,
        flush_every: int | None = None,
        attrs: Mapping[str, Any] | None = None,
        resume_from: int | None = None,
    ):
        if not isinstance(sites, Mapping) or not sites:
            raise ConfigError("sites must be a non-empty mapping of name -> Site")
        for name, site in sites.items():
            if not isinstance(site, Site):
                raise ConfigError(f"site {name!r} must be a dyn.Site, got {type(site).__name__}")
            if not str(name).isidentifier():
                raise ConfigError(f"site name {name!r} must be an identifier (it becomes a store group)")
        if optimizer is not None:
            _warn_unless_live(sites, optimizer)
        devices = {site.weight.device for site in sites.values()}
        if len(devices) > 1:
            raise ConfigError(f"all site weights must be on one device, got {sorted(map(str, devices))}")
        if log_at not in ("previous", "current"):
            raise ConfigError(f"log_at must be 'previous' or 'current', got {log_at!r}")
        if chunk_bytes <= 0 or queue_size <= 0:
            raise ConfigError("chunk_bytes and queue_size must be positive")
        if flush_every is not None and (not isinstance(flush_every, int) or flush_every <= 0):
            raise ConfigError(f"flush_every must be a positive integer (steps), got {flush_every!r}")
        self.schedule: Schedule = schedules.every(every) if isinstance(every, int) else every
        if not callable(self.schedule):
            raise ConfigError(f"every must be an int or a callable step -> bool, got {type(every).__name__}")
        self.sites = dict(sites)
        self.optimizer = optimizer
        self.config = dict(config) if config is not None else None
        self.seed = seed
        self.log_at = log_at
        self.diverge_on = tuple(diverge_on)
        self.queue_size = queue_size
        self.attrs = dict(attrs or {})
        self.flush_every = flush_every
        self._resume_from = resume_from
        self._writer = path if isinstance(path, StoreWriter) else StoreWriter(
            path, overwrite=overwrite and resume_from is None, append=resume_from is not None)
        self.path = self._writer.path
        per_step = max(site.weight.shape[0] * site.n_columns * 4 for site in self.sites.values())
        self.chunk_steps = int(min(max(chunk_bytes // per_step, 1), 4096))
        self._t = 0
        self._last_recorded = -1
        self._since_flush = 0
        self._current: _Chunk | None = None
        self._pending: _Chunk | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._diverged: DivergenceError | None = None
        self._hook = None
        self._unrecorded: tuple[int, Any] = (-1, None)
        self._warned_early_log = False
        self._scalar_cols: dict[str, int] = {}
        self._column_cache: dict[tuple[str, ...], tuple[slice | torch.Tensor, list[int]]] = {}
        self._open = False
        self._closed = False
        self.stats = {"chunks": 0, "bytes": 0, "write_seconds": 0.0, "steps": 0}

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def __enter__(self) -> "Recorder":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            status = "complete"
        elif isinstance(exc, DivergenceError):
            status = "diverged"
        else:
            status = "interrupted"
        error = None if exc is None or isinstance(exc, DivergenceError) else f"{exc_type.__name__}: {exc}".splitlines()[0]
        self.close(status, error=error)
        return False

    def open(self) -> "Recorder":
        """Create the store, write the static data, record step 0 and attach the optimizer hook.

        The store is created here, on the calling thread: a background thread doing this Python-heavy zarr work
        would contend for the GIL with a training loop of many small torch calls and slow it far more.
        """
        if self._open:
            return self
        self._probes = {name: (site, site.probe_matrix()) for name, site in self.sites.items()}
        self._device = next(iter(self.sites.values())).weight.device
        self._w0 = {name: self._initial_weight(name, site) for name, site in self.sites.items() if site.track_change}
        attrs = {
            "sites": list(self.sites),
            "config": self.config,
            "seed": self.seed,
            "log_at": self.log_at,
            "schedule": getattr(self.schedule, "__qualname__", repr(self.schedule)),
            **self.attrs,
        }
        if self._resume_from is not None:
            stored = self._writer.reopen(self._resume_from, self.attrs)
            self._writer.chunk_steps = self.chunk_steps = int(stored["chunk_steps"])
        else:
            self._writer.prepare()
            statics = {name: self._site_statics(site) for name, site in self.sites.items()}
            try:
                self._create_store(attrs, statics)
            except DynError:
                raise
            except Exception as exc:
                raise StoreError(f"cannot create store {self.path}: {exc}") from None
        self._thread = threading.Thread(target=self._write_loop, name=f"dyn-writer:{self.path.name}", daemon=True)
        self._thread.start()
        self._open = True
        if self._resume_from is not None:
            self._t = self._last_recorded = self._resume_from - 1
        else:
            self._record(0)
        if self.optimizer is not None:
            self._hook = self.optimizer.register_step_post_hook(lambda opt, args, kwargs: self.step())
        return self

    def _initial_weight(self, name: str, site: Site) -> torch.Tensor:
        """W(0) on the device, for ``‖w_r(t) − w_r(0)‖²``: the current weight, or the stored one when resuming."""
        if self._resume_from is None:
            return site.weight.detach().clone()
        if not site.store_weights:
            raise ConfigError(f"site {name!r} tracks its change but stores no initial weights: cannot resume it")
        w0 = read_static(self.path, name, "weight_init")
        return torch.as_tensor(w0).to(device=site.weight.device, dtype=site.weight.dtype)

    @staticmethod
    def _site_statics(site: Site) -> dict[str, Any]:
        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", copy=True).numpy()

        return {
            "signals": host(torch.stack(list(site.signals.values()))),
            "noise": host(site.noise),
            "extra": {name: (dim, host(t)) for name, (dim, t) in site.extra.items()},
            "labels": None if site.labels is None else host(site.labels),
            "weight": host(site.weight) if site.store_weights else None,
        }

    def _create_store(self, attrs: Mapping[str, Any], statics: Mapping[str, Mapping[str, Any]]) -> None:
        try:
            self._writer.create(attrs, self.chunk_steps)
            for name, site in self.sites.items():
                self._add_site(name, site, statics[name])
        except BaseException:
            self._writer.abort()  # nothing was recorded yet: leave no half-created store
            raise

    def _add_site(self, name: str, site: Site, st: Mapping[str, Any]) -> None:
        layout = site_arrays(neurons=site.weight.shape[0], signal_names=list(site.signals), signals=st["signals"], noise=st["noise"],
                             labels=st["labels"], extra=st["extra"], weight=st["weight"],
                             store_probes=site.store_probes,
                             step_dims={var: dim for var, (dim, _) in site.layout().items()},
                             coords={**site.coords, **({CHANGE_DIM: (CHANGE_DIM, ["sum_sq"])} if site.track_change else {})},
                             attrs=site.attrs)
        self._writer.add_site(name, coords=layout["coords"], step_vars=layout["step_vars"], static=layout["static"],
                              attrs=layout["attrs"])

    # -- recording ----------------------------------------------------------------------------------------------
    @property
    def step_index(self) -> int:
        """Number of optimizer steps taken so far (the index of the current weights)."""
        return self._t

    def step(self) -> None:
        """Advance one training step and record it if the schedule says so (the optimizer hook calls this)."""
        self._t += 1
        if self.schedule(self._t):
            self._record(self._t)

    def record(self, step: int, inner: Mapping[str, torch.Tensor] | None = None) -> None:
        """Record ``step`` explicitly, optionally with inner products the training loop already computed.

        Parameters
        ----------
        step : int
            The step index; must increase from call to call.
        inner : mapping of site name to (neurons, probes) tensor, optional
            Precomputed ``W @ probes`` in the site's probe order (:meth:`Site.probe_matrix`), e.g. the
            pre-activations of a full-batch forward pass; sites not given are computed with one GEMM.
        """
        if step <= self._last_recorded:
            raise ConfigError(f"record: step {step} is not after the last recorded step {self._last_recorded}")
        self._t = step
        self._record(step, inner)

    def _record(self, step: int, inner: Mapping[str, torch.Tensor] | None = None) -> None:
        self._check_alive()
        chunk = self._current
        if chunk is None or chunk.full:
            if self._pending is not None:
                self._submit(self._pending)
            self._pending = chunk
            chunk = self._current = _Chunk(self.chunk_steps, self._probes)
        row = len(chunk.steps)
        with torch.no_grad():
            for name, (site, probes) in self._probes.items():
                out = chunk.inner[name][row]
                p = probes.shape[1]
                given = None if inner is None else inner.get(name)
                if given is None:
                    torch.mm(site.weight, probes, out=out[:, :p])
                else:
                    out[:, :p].copy_(given)
                if site.track_change:
                    out[:, p] = torch.sub(site.weight, self._w0[name]).square_().sum(1)
        chunk.steps.append(step)
        self._last_recorded = step
        self._since_flush += 1
        if self.flush_every is not None and self._since_flush > self.flush_every:
            self._flush_all_but_last()

    def log(self, step: int | None = None, **values: Any) -> None:
        """Log per-step scalars (e.g. ``loss=loss``) for a recorded step; tensors stay on their device.

        Values for steps the schedule did not record are dropped.

        Parameters
        ----------
        step : int, optional
            The step the values belong to (the index of the weights they were computed at). By default the
            step before the latest optimizer step (``log_at="previous"``) or the current step (``"current"``).
        **values
            Scalars: Python numbers or 0-d tensors.
        """
        self._check_alive()
        if step is None:
            if self.log_at == "previous" and self._t == 0 and values and not self._warned_early_log:
                self._warned_early_log = True
                warnings.warn("log: called before the first optimizer step; values go to the step before the latest "
                              "one, so call rec.log after opt.step() (or pass step=)", stacklevel=2)
            step = max(self._t - 1, 0) if self.log_at == "previous" else self._t
        if not values:
            return
        names = tuple(values)
        device = self._device
        parts = []
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                if value.dim() != 0:
                    if value.numel() != 1:
                        raise ConfigError(f"log: {name} must be a scalar, got shape {tuple(value.shape)}")
                    value = value.reshape(())
                parts.append(value.detach())
            elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                parts.append(torch.tensor(float(value), dtype=torch.float64, device=device))
            else:
                raise ConfigError(f"log: {name} must be a number or a 0-d tensor, got {type(value).__name__}")
        first = parts[0]
        if not all(p.dtype == first.dtype and p.device == device for p in parts):
            parts = [p.to(device=device, dtype=torch.float64) for p in parts]
        stacked = torch.stack(parts)  # one copy into the buffer below casts to float64
        if device.type == "cpu" and any(name in self.diverge_on for name in names):
            for name, value in zip(names, stacked.tolist()):
                if name in self.diverge_on and not math.isfinite(value):
                    self._diverge(step, name, value)
        cols, col_list = self._columns(names)
        for chunk in (self._current, self._pending):
            row = None if chunk is None else chunk.row(step)
            if row is not None:
                if chunk.logged[row, col_list].any():
                    again = [n for n, c in zip(names, col_list) if chunk.logged[row, c]]
                    warnings.warn(f"log: {', '.join(again)} already logged at step {step}; the earlier value is "
                                  "overwritten (one log per optimizer step, after opt.step())", stacklevel=2)
                chunk.set_scalars(row, cols, col_list, stacked)
                return
        if step == self._t:
            # The current step is not recorded (yet): keep its values in case close() records the final step.
            self._unrecorded = (step, (cols, col_list, stacked))

    def _columns(self, names: tuple[str, ...]) -> tuple[slice | torch.Tensor, list[int]]:
        """Buffer columns of ``names``: a slice when they are consecutive (one copy per log call)."""
        cached = self._column_cache.get(names)
        if cached is not None:
            return cached
        for name in names:
            if name not in self._scalar_cols:
                if len(self._scalar_cols) >= MAX_SCALARS:
                    raise ConfigError(f"log: more than {MAX_SCALARS} distinct scalar names; {name!r} is one too many")
                self._scalar_cols[name] = len(self._scalar_cols)
        col_list = [self._scalar_cols[name] for name in names]
        if col_list == list(range(col_list[0], col_list[0] + len(col_list))):
            cols: slice | torch.Tensor = slice(col_list[0], col_list[0] + len(col_list))
        else:
            cols = torch.tensor(col_list, device=self._device)
        self._column_cache[names] = (cols, col_list)
        return cols, col_list

    def _diverge(self, step: int, name: str, value: float) -> None:
        for chunk in (self._pending, self._current):
            if chunk is not None and chunk.steps and chunk.steps[-1] >= step:
                keep = bisect_left(chunk.steps, step)
                del chunk.steps[keep:]
        self._diverged = DivergenceError(f"{name} became {value} at step {step}; stopped, steps before it are kept", step)
        self._last_recorded = step - 1
        raise self._diverged

    def _check_alive(self) -> None:
        if not self._open or self._closed:
            raise StoreError(f"recorder for {self.path} is not open")
        if self._error is not None:
            raise self._write_failed()
        if self._diverged is not None:
            raise self._diverged

    # -- writing ------------------------------------------------------------------------------------------------
    def flush(self, checkpoint: Mapping[str, tuple[tuple[str, ...], Any]] | None = None,
              next_step: int | None = None) -> None:
        """Hand every buffered step to the writer now; optionally store a checkpoint to resume from.

        Parameters
        ----------
        checkpoint : mapping of name to (dims, array or tensor), optional
            State that resumes training at ``next_step`` (weights, RNG states). Arrays are copied before this
            returns; they are written after the steps, and the store points at them only once complete.
        next_step : int
            The step the checkpointed state is at (its weights are W(next_step), not yet recorded).

        Values logged later for steps flushed here are dropped.
        """
        self._check_alive()
        for chunk in (self._pending, self._current):
            if chunk is not None:
                self._submit(chunk)
        self._pending = self._current = None
        self._since_flush = 0
        if checkpoint is not None:
            if next_step is None or next_step <= self._last_recorded:
                raise ConfigError(f"checkpoint needs next_step after the last recorded step {self._last_recorded}")
            host = {k: (dims, (v.detach().to("cpu", copy=True).numpy() if isinstance(v, torch.Tensor) else np.array(v)))
                    for k, (dims, v) in checkpoint.items()}
            self._put(lambda: self._writer.write_checkpoint(next_step, host))

    def flush_all_but_latest(self) -> None:
        """Write every buffered step except the latest, whose logged values may still arrive.

        For framework callbacks that flush at a checkpoint of step ``k`` and log each step's loss explicitly
        (``log(step=...)``) one step later: the store then holds every step before ``k``, and resuming from the
        checkpoint re-records ``k`` from the restored weights.
        """
        self._check_alive()
        self._flush_all_but_last(hold=1)

    def write_group(self, name: str, arrays: Mapping[str, tuple[tuple[str, ...], Any]],
                    attrs: Mapping[str, Any] | None = None) -> None:
        """Store a static group of the run beside the sites (e.g. a trainer's random draws), written by the writer
        thread in order with the recorded steps. Arrays are copied before this returns."""
        self._check_alive()
        if not str(name).isidentifier() or name in self.sites:
            raise ConfigError(f"group name {name!r} must be an identifier and not a site's name")
        host = {k: (dims, (v.detach().to("cpu", copy=True).numpy() if isinstance(v, torch.Tensor) else np.array(v)))
                for k, (dims, v) in arrays.items()}
        self._put(lambda: self._writer.write_group(name, host, attrs))

    def _flush_all_but_last(self, hold: int | None = None) -> None:
        """Write every buffered step except the latest ones whose logged values may still arrive (the current
        step, and with ``log_at="previous"`` the one before it)."""
        hold = (2 if self.log_at == "previous" else 1) if hold is None else hold
        if self._pending is not None:
            self._submit(self._pending)
            self._pending = None
        chunk = self._current
        if chunk is None or len(chunk.steps) <= hold:
            return
        first = len(chunk.steps) - hold
        keep = _Chunk(self.chunk_steps, self._probes)
        keep.steps.extend(chunk.steps[first:])
        for name, buf in chunk.inner.items():
            keep.inner[name][:hold].copy_(buf[first:first + hold])
        if chunk.scalars is not None:
            keep.scalars = torch.full_like(chunk.scalars, math.nan)
            keep.scalars[:hold] = chunk.scalars[first:first + hold]
            keep.logged[:hold] = chunk.logged[first:first + hold]
        del chunk.steps[first:]
        self._submit(chunk)
        self._current = keep
        self._since_flush = hold

    def _put(self, item: Callable[[], None]) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if self._error is not None or not self._thread.is_alive():
                    raise self._write_failed()

    def _submit(self, chunk: _Chunk) -> None:
        if not chunk.steps:
            return
        k = len(chunk.steps)
        steps = np.asarray(chunk.steps, dtype=np.int64)
        inner = {name: buf[:k] for name, buf in chunk.inner.items()}
        scalars = None if chunk.scalars is None else chunk.scalars[:k]
        logged = chunk.logged[:k]
        columns = dict(self._scalar_cols)
        self._put(lambda: self._write(steps, inner, scalars, logged, columns))

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            try:
                item()
            except BaseException as exc:  # surfaced on the training thread at its next call
                self._error = exc

    def _write(
        self,
        steps: np.ndarray,
        inner: Mapping[str, torch.Tensor],
        scalars: torch.Tensor | None,
        logged: np.ndarray,
        columns: Mapping[str, int],
    ) -> None:
        t0 = time.perf_counter()
        host = None if scalars is None else scalars.cpu().numpy()
        host_scalars = {} if host is None else {name: host[:, col] for name, col in columns.items() if logged[:, col].any()}
        k = len(steps)
        for name in self.diverge_on:
            values = host_scalars.get(name)
            if values is None:
                continue
            bad_rows = np.flatnonzero(~np.isfinite(values) & logged[:, columns[name]])
            if bad_rows.size:
                bad = int(bad_rows[0])
                if self._diverged is None:
                    self._diverged = DivergenceError(
                        f"{name} became {values[bad]} at step {int(steps[bad])}; stopped, steps before it are kept",
                        int(steps[bad]),
                    )
                k = min(k, bad)
        if self._diverged is not None:
            k = min(k, int(np.searchsorted(steps, self._diverged.step)))
        if k == 0:
            return
        arrays = {}
        nbytes = 0
        for name, buf in inner.items():
            host = buf[:k].to("cpu", torch.float32).numpy()
            site = self.sites[name]
            arrays[name] = {var: host[:, :, cols] for var, (_, cols) in site.layout().items()}
            nbytes += host.nbytes
        self._writer.append(steps[:k], arrays, {n: v[:k] for n, v in host_scalars.items()})
        self.stats["chunks"] += 1
        self.stats["bytes"] += nbytes
        self.stats["steps"] += k
        self.stats["write_seconds"] += time.perf_counter() - t0

    def close(self, status: str = "complete", error: str | None = None) -> None:
        """Flush all buffered steps, store the final weights, set ``status`` and consolidate the store."""
        if self._closed or not self._open:
            return
        if self._hook is not None:
            self._hook.remove()
        if self._diverged is not None:
            status = "diverged"
        elif status != "diverged" and self._last_recorded < self._t and self._error is None:
            self._record(self._t)  # the schedule skipped the final weights: record them anyway
            step, logged = self._unrecorded
            if step == self._t:
                self._current.set_scalars(len(self._current.steps) - 1, *logged)
        for chunk in (self._pending, self._current):
            if chunk is not None and self._error is None:
                self._submit(chunk)
        self._pending = self._current = None
        self._queue.put(None)
        self._thread.join()
        self._closed = True
        attrs: dict[str, Any] = {}
        if self._diverged is not None:
            attrs["diverged_at"] = self._diverged.step
            attrs["error"] = str(self._diverged)
        elif error:
            attrs["error"] = error
        if self._error is not None:
            attrs["error"] = f"write failed: {self._error}"
            status = "interrupted"
        try:
            for name, site in self.sites.items():
                if site.store_weights and self._error is None and status != "diverged":
                    self._writer.write_static(
                        name, "weight_final", ("neuron", "feature"), site.weight.detach().cpu().numpy(),
                        attrs={"step": self._t},
                    )
        finally:
            self._writer.close(status, **attrs)
        if self._error is not None:
            raise self._write_failed()

    def _write_failed(self) -> StoreError:
        """The error the writer thread met, for the training thread: a :class:`WriteError` when the disk refused."""
        kind = WriteError if isinstance(self._error, (WriteError, OSError)) else StoreError
        error = kind(f"writing {self.path} failed: {self._error}")
        error.__cause__ = self._error
        return error
