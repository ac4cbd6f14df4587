"""Record every neuron's inner products with signal vectors and noise patches, on any PyTorch training loop.

A :class:`Site` is one weight matrix whose rows are neurons plus its probes: named signal vectors ``μ_k``, the noise
patches ``ξ_i`` of the training samples (with labels), and optional extra probe sets. The :class:`Recorder` keeps,
for each recorded step ``t``, ``W(t) @ [μ_1..μ_K | ξ_1..ξ_n | extra]`` in a device buffer (one GEMM into
preallocated memory, or values the training loop already computed: ``record(t, inner=...)``, or a layer's forward
pass through :meth:`Recorder.capture`), and hands full chunks to a background thread that writes them to the run's
zarr store (:mod:`dyn.store`). Nothing is copied to the host on the training thread, and a recorded step allocates
no device memory (chunk buffers are allocated once per chunk).

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
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DivergenceError, DynError, StoreError, WriteError
from ..store import StoreWriter, read_static, site_arrays
from ..store.schema import CHANGE_DIM
from . import budget, schedules
from .schedules import Schedule
from ..store.sinks import RecordSink
from .site import Site

__all__ = ["Recorder", "DEFAULT_CHUNK_BYTES", "DEFAULT_COMMIT_INTERVAL"]

#: Target bytes of one stored chunk of the largest per-step variable. Larger chunks write faster (fewer zarr
#: round trips) but lose more steps if the process is killed before a flush.
DEFAULT_CHUNK_BYTES = 8 << 20

#: Seconds a written chunk may wait for its commit (:class:`Recorder` ``commit_interval``): the delay after which a
#: live reader sees it. Committing every chunk (a root ``zarr.json`` replaced per chunk) took 7-19 % of the writer
#: thread's time (see :mod:`dyn.store.writer`).
DEFAULT_COMMIT_INTERVAL = 1.0

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

    def set_values(self, row: int, col_list: list[int], parts: list[Any]) -> None:
        """Write logged values into row ``row``: device tensors by copy, host numbers as scalars (no H2D copy)."""
        if self.scalars is None:
            self.scalars = torch.full((self.capacity, MAX_SCALARS), math.nan, dtype=torch.float64, device=self.device)
        _write_values(self.scalars.select(0, row), col_list, parts)
        logged = self.logged[row]
        for col in col_list:  # scalar assignments: cheaper than numpy fancy indexing for a few columns
            logged[col] = True


def _write_values(target: torch.Tensor, col_list: list[int], parts: list[Any]) -> None:
    """Write logged values into a row of the scalar buffer without allocating or copying to/from the host:
    a device tensor by a copy (cast to float64 on the way), a Python float by a fill with a scalar argument
    (``target[col] = 0.5`` would allocate a wrapped-number tensor; ``torch.stack(..., out=)`` a temporary)."""
    for col, value in zip(col_list, parts):
        if isinstance(value, float):
            target.select(0, col).fill_(value)
        else:
            target.select(0, col).copy_(value)


class _SiteSpec:
    """What recording one site needs at every step, resolved once at open (no per-step dict lookups)."""

    __slots__ = ("name", "weight", "probes", "p", "track", "w0", "scratch", "capture")

    def __init__(self, name: str, site: Site, probes: torch.Tensor, w0: torch.Tensor | None):
        self.name, self.weight, self.probes, self.p = name, site.weight, probes, probes.shape[1]
        self.track, self.w0 = site.track_change, w0
        # ‖w_r − w_r(0)‖² is computed in this preallocated buffer: no (neurons, features) temporary per step.
        self.scratch = torch.empty_like(site.weight) if site.track_change else None
        self.capture: _Capture | None = None


class _Capture:
    """Forward capture of one site: the module, the input it was verified on, and the row awaiting values."""

    __slots__ = ("name", "module", "weight", "inputs", "ptr", "shape", "stride", "version", "rows", "index",
                 "handle", "pending", "enabled")

    def __init__(self, name: str, module: torch.nn.Module, weight: torch.Tensor, inputs: torch.Tensor,
                 rows: slice | torch.Tensor | None):
        self.name, self.module, self.weight = name, module, weight
        # Held, so that its memory cannot be freed and reused by another tensor of the same shape, which the
        # address check below would take for the probes.
        self.inputs = inputs
        # The forward's input is recognised by its memory, shape and in-place version: the very tensor whose
        # rows were checked against the probes, unmodified since. Anything else is not the probes.
        self.ptr, self.shape, self.stride, self.version = (inputs.data_ptr(), tuple(inputs.shape), inputs.stride(),
                                                         inputs._version)
        self.rows = rows if not isinstance(rows, torch.Tensor) else None
        self.index = rows if isinstance(rows, torch.Tensor) else None
        self.handle = None
        self.pending: tuple[_Chunk, int, int] | None = None  # (chunk, row, the weight's version at the step)
        self.enabled = True


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
    commit_interval : float
        Seconds between commits (default :data:`DEFAULT_COMMIT_INTERVAL`, 1 s). The writer thread writes every
        chunk it is handed at once but commits (replaces the store's root ``zarr.json``, which makes the new steps
        visible) at most once per interval, and always within the interval after its last write: a live reader
        (``dyn watch``, :func:`dyn.open`) sees a step at most ``commit_interval`` seconds after its chunk was
        written. :meth:`flush`, checkpoints and :meth:`close` commit at once. ``0`` commits every chunk. A kill
        loses at most the steps written in the last interval (the store stays sound: they lie beyond its commit).
    attrs : mapping, optional
        Extra root attributes (JSON-serialisable).
    sinks : sequence of :class:`~dyn.store.sinks.RecordSink`, optional
        Live exports that receive every chunk as it is written, e.g.
        ``dyn.viz.tensorboard.TensorBoardStream("runs/tb/mine")`` (scalars and γ/ρ summaries in TensorBoard while
        the run trains). A sink that fails is dropped with a warning; the store is not affected.
    resume_from : int, optional
        Append to the existing store at ``path`` (a run being resumed) from this step on; the store is cut to the
        steps before it. Used by :func:`dyn.train` with ``resume=True``.
    steps : int, optional
        Optimizer steps the run will take: with it the pre-flight estimate also covers the store's disk size.
    max_store_bytes, max_memory_bytes : int, optional
        Stated limits on the store's size and on each site's analysis peak memory. Before anything is written,
        the recorder estimates both per site (:mod:`dyn.record.budget`) and refuses with a one-line
        :class:`~dyn.ConfigError` naming the numbers and the fixes (``per_image``, ``max_samples``, ``every=``, fewer
        layers) when they exceed these limits, the free disk or the available memory. ``budget`` holds the estimates.

    Notes
    -----
    Per recorded step the training thread does one ``torch.mm(W, probes, out=row)`` per site (none for a site
    captured from its forward pass, :meth:`capture`), a few in-place ops for ``track_change`` in a preallocated
    buffer, and one in-place copy per logged value; no host synchronisation. Logged device values are checked
    for divergence by the writer thread, host values (Python numbers, CPU tensors) at once.

    Attributes
    ----------
    chunk_steps : int
        Recorded steps per stored chunk.
    stats : dict
        Chunks, bytes, steps written and seconds spent writing them and committing (by the writer thread:
        ``write_seconds`` wall, ``write_cpu_seconds`` that thread's CPU time, ``sink_seconds`` in sinks); ``captured`` and
        ``fallback``: steps of captured sites taken from a forward pass, and computed instead (:meth:`capture`).

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
        commit_interval: float = DEFAULT_COMMIT_INTERVAL,
        attrs: Mapping[str, Any] | None = None,
        sinks: Sequence[RecordSink] = (),
        resume_from: int | None = None,
        steps: int | None = None,
        max_store_bytes: int | None = None,
        max_memory_bytes: int | None = None,
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
        if isinstance(commit_interval, bool) or not isinstance(commit_interval, (int, float)) or \
                not math.isfinite(commit_interval) or commit_interval < 0:
            raise ConfigError(f"commit_interval must be a finite number of seconds >= 0, got {commit_interval!r}")
        self.commit_interval = float(commit_interval)
        sinks = list(sinks) if isinstance(sinks, (list, tuple)) else sinks
        if not isinstance(sinks, list) or not all(isinstance(k, RecordSink) for k in sinks):
            raise ConfigError("sinks must be a list of dyn.store.sinks.RecordSink objects (e.g. "
                              f"dyn.viz.tensorboard.TensorBoardStream(folder)), got {sinks!r}")
        self.sinks = sinks
        self._sink_errors: list[str] = []  # one line per dropped sink, warned on the training thread
        self._commit_due = math.inf  # monotonic time by which written steps must be committed
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
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 0):
            raise ConfigError(f"steps must be a non-negative integer, got {steps!r}")
        self.budget = budget.check(path.path if isinstance(path, StoreWriter) else path, self.sites, steps=steps,
                                   schedule=self.schedule, max_store_bytes=max_store_bytes,
                                   max_memory_bytes=max_memory_bytes)
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
        self._unrecorded: tuple[int, list[int]] = (-1, [])  # the unrecorded current step, its logged columns
        self._stage: torch.Tensor | None = None  # (MAX_SCALARS,) values logged for that step
        self._warned_early_log = False
        self._scalar_cols: dict[str, int] = {}
        self._column_cache: dict[tuple[str, ...], tuple[slice | torch.Tensor, list[int]]] = {}
        self._captures: dict[str, _Capture] = {}
        self._waiting: list[_Capture] = []  # captures whose latest recorded row still awaits a forward pass
        self._pre_hook = None
        self._specs: list[_SiteSpec] = []
        self._open = False
        self._closed = False
        self._per_sample: dict[str, dict[int, np.ndarray]] = {}  # name -> step -> (examples,) host values
        self.stats = {"chunks": 0, "bytes": 0, "write_seconds": 0.0, "write_cpu_seconds": 0.0, "sink_seconds": 0.0,
                      "steps": 0, "captured": 0, "fallback": 0}

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
        self._specs = [_SiteSpec(name, site, probes, self._w0.get(name)) for name, (site, probes) in self._probes.items()]
        for spec in self._specs:
            spec.capture = self._captures.get(spec.name)
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
        first = self._resume_from if self._resume_from is not None else 0
        for sink in list(self.sinks):
            self._to_sink(sink, "open", self.path, dict(self.sites), first)
        self._warn_sinks()
        self._thread = threading.Thread(target=self._write_loop, name=f"dyn-writer:{self.path.name}", daemon=True)
        self._thread.start()
        self._open = True
        if self._resume_from is not None:
            self._t = self._last_recorded = self._resume_from - 1
        else:
            self._record(0)
        if self.optimizer is not None:
            self._hook = self.optimizer.register_step_post_hook(lambda opt, args, kwargs: self.step())
            # Before the weights change, a row still awaiting its forward pass is computed from them (GEMM).
            self._pre_hook = self.optimizer.register_step_pre_hook(self._before_step)
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
        if self._waiting:
            self._settle()
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
        # The hot path: one GEMM per site into the preallocated chunk, no host sync, no device allocation.
        # Site weights are detached and the buffers need no grad, so no autograd context is needed either.
        self._check_alive()
        if self._waiting:
            self._settle()
        chunk = self._current
        if chunk is None or chunk.full:
            if self._pending is not None:
                self._submit(self._pending)
            self._pending = chunk
            chunk = self._current = _Chunk(self.chunk_steps, self._probes)
        row = len(chunk.steps)
        inner_bufs = chunk.inner
        for spec in self._specs:
            out = inner_bufs[spec.name].select(0, row)  # select: cheaper than indexing, the same view
            given = None if inner is None else inner.get(spec.name)
            cap = spec.capture
            if given is not None:
                out[:, :spec.p].copy_(given.detach())
            elif cap is not None and cap.enabled:
                # Taken from the next forward pass if it runs at these very weights; else computed (_settle).
                cap.pending = (chunk, row, spec.weight._version)
                self._waiting.append(cap)
            else:
                torch.mm(spec.weight, spec.probes, out=out if not spec.track else out[:, :spec.p])
            if spec.track:
                torch.sub(spec.weight, spec.w0, out=spec.scratch)
                spec.scratch.square_()
                torch.sum(spec.scratch, 1, out=out.select(1, spec.p))
        chunk.steps.append(step)
        self._last_recorded = step
        self._since_flush += 1
        if self.flush_every is not None and self._since_flush > self.flush_every:
            self._flush_all_but_last()

    def capture(self, site: str, module: torch.nn.Module, inputs: torch.Tensor, *,
                rows: slice | range | Any | None = None) -> None:
        """Take ``site``'s inner products from ``module``'s forward pass instead of computing them a second time.

        For full-batch loops whose forward pass evaluates the site's layer on its probe vectors: the layer's
        outputs then *are* ``W @ probes``, and a forward hook copies them into the recording buffer. A step
        recorded by the optimizer hook (after ``opt.step()``) waits for the next forward pass; its values are
        taken only when that pass runs on ``inputs`` (the same tensor, unmodified) at exactly the weights of the
        step (the weight's in-place version counter is unchanged). Otherwise - another input, gradient
        accumulation over minibatches, no forward before the next ``opt.step()`` or before :meth:`close` - the
        step is computed with one GEMM before the weights change, so no value ever belongs to other weights.
        If the weights change outside the optimizer before a forward pass (e.g. a projection after
        ``opt.step()``), capture is switched off for the site with a warning and that step holds the changed
        weights' values. ``stats["captured"]`` and ``stats["fallback"]`` count the two outcomes. The recorder
        holds ``inputs`` (its memory cannot be reused by another tensor). Writes through ``tensor.data`` bypass
        torch's version counters: do not change ``inputs`` or the weights that way while capturing.

        Parameters
        ----------
        site : str
            Name of a site of this recorder.
        module : torch.nn.Linear
            A bias-free linear layer whose weight is the site's weight (its output is ``inputs @ W.T``).
        inputs : torch.Tensor, shape (..., features)
            The tensor the loop passes to ``module`` at every step; its rows ``rows`` must be the site's probe
            vectors in recording order (:meth:`Site.probe_matrix` columns: signals, noise, extra). Checked once
            here (to float tolerance); a one-line :class:`~dyn.ConfigError` otherwise.
        rows : slice, range or sequence of int, optional
            Which rows of ``inputs`` (flattened to ``(-1, features)``) are the probes; default all of them.

        Examples
        --------
        >>> import tempfile, os
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x = torch.randn(6, 5)
        >>> layer = torch.nn.Linear(5, 3, bias=False)
        >>> opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        >>> site = dyn.Site(layer.weight, signals={"mu": x[0]}, noise=x[1:])
        >>> rec = dyn.Recorder(os.path.join(tempfile.mkdtemp(), "c.zarr"), {"w": site}, optimizer=opt)
        >>> rec.capture("w", layer, x)  # row 0 is the signal, rows 1..5 the noise: the site's probe order
        >>> with rec:
        ...     for _ in range(3):
        ...         loss = layer(x).square().mean()
        ...         opt.zero_grad(); loss.backward(); opt.step(); rec.log(loss=loss)
        >>> rec.stats["captured"], rec.stats["fallback"]  # steps 0-2 from the forward passes; step 3 at close
        (3, 1)
        """
        if self._closed:
            raise StoreError(f"recorder for {self.path} is closed")
        if site not in self.sites:
            raise ConfigError(f"capture: no site named {site!r} (sites: {', '.join(self.sites)})")
        if site in self._captures:
            raise ConfigError(f"capture: site {site!r} is already captured")
        s = self.sites[site]
        if not isinstance(module, torch.nn.Linear):
            raise ConfigError(f"capture: module must be a torch.nn.Linear (its output is inputs @ W.T), got "
                              f"{type(module).__name__}; other layers are recorded with one GEMM per step")
        if module.bias is not None:
            raise ConfigError(f"capture: {site!r}'s layer has a bias, so its outputs are not W @ probes; create it "
                              "with bias=False or do not capture it")
        w = module.weight
        if w.data_ptr() != s.weight.data_ptr() or tuple(w.shape) != tuple(s.weight.shape):
            raise ConfigError(f"capture: the module's weight is not site {site!r}'s weight")
        d = s.weight.shape[1]
        if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2 or inputs.shape[-1] != d:
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise ConfigError(f"capture: inputs must be a tensor (..., {d}) fed to the layer, got {shape}")
        if inputs.device != s.weight.device or inputs.dtype != s.weight.dtype:
            raise ConfigError(f"capture: inputs are {inputs.dtype} on {inputs.device}, the weight {s.weight.dtype} on "
                              f"{s.weight.device}; the layer's outputs would not be the recorded values")
        flat = inputs.detach().reshape(-1, d)
        n_rows, n_probes = flat.shape[0], s.n_probes
        if rows is None:
            sel: slice | torch.Tensor = slice(0, n_rows)
        elif isinstance(rows, (slice, range)):
            r = range(n_rows)[rows] if isinstance(rows, slice) else rows
            if r.step != 1 or (len(r) and not 0 <= r.start < r.stop <= n_rows):
                raise ConfigError(f"capture: rows {rows!r} must be a contiguous range inside the {n_rows} input rows")
            sel = slice(r.start, r.stop)
        else:
            try:
                sel = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=inputs.device).reshape(-1)
            except (TypeError, ValueError):
                raise ConfigError(f"capture: rows must be a slice, range or sequence of ints, got {type(rows).__name__}") from None
            if sel.numel() and not (0 <= int(sel.min()) and int(sel.max()) < n_rows):
                raise ConfigError(f"capture: rows index outside the {n_rows} input rows")
        picked = flat[sel]
        if picked.shape[0] != n_probes:
            raise ConfigError(f"capture: {picked.shape[0]} input rows selected, site {site!r} has {n_probes} probes")
        # Checked once, here (setup time): the selected rows must be the probes, in the site's order.
        probes = s.probe_matrix().T
        scale = float(probes.abs().max()) if probes.numel() else 1.0
        if not torch.allclose(picked, probes, rtol=1e-5, atol=1e-6 * max(scale, 1e-30)):
            raise ConfigError(f"capture: the selected rows of inputs are not site {site!r}'s probe vectors in its "
                              "recording order (signals, noise, extra); pass rows= or do not capture")
        cap = _Capture(site, module, s.weight, inputs, sel if isinstance(sel, torch.Tensor) else (
            None if sel == slice(0, n_rows) else sel))
        cap.handle = module.register_forward_hook(lambda mod, args, output: self._on_forward(cap, args, output))
        self._captures[site] = cap
        for spec in self._specs:
            if spec.name == site:
                spec.capture = cap

    def _on_forward(self, cap: _Capture, args: tuple, output: Any) -> None:
        """Forward hook: fill the awaiting row from the layer's outputs when they are this step's ``W @ probes``."""
        pending = cap.pending
        if pending is None or not args:
            return
        x = args[0]
        if (not isinstance(x, torch.Tensor) or x.data_ptr() != cap.ptr or tuple(x.shape) != cap.shape
                or x.stride() != cap.stride or x._version != cap.version):
            return  # not the probes (a minibatch, another input, or inputs modified in place): GEMM later
        chunk, row, version = pending
        if cap.weight._version != version or not isinstance(output, torch.Tensor) or output.dtype != cap.weight.dtype:
            return  # other weights (changed after the step) or another dtype (autocast): never recorded
        y = output.detach().reshape(-1, cap.weight.shape[0])
        if cap.rows is not None:
            y = y[cap.rows]
        elif cap.index is not None:
            y = y.index_select(0, cap.index)
        chunk.inner[cap.name][row, :, :y.shape[0]].copy_(y.T)
        cap.pending = None
        self._waiting.remove(cap)
        self.stats["captured"] += 1

    def _before_step(self, *args: Any) -> None:
        if self._waiting:
            self._settle()

    def _settle(self) -> None:
        """Compute every row still awaiting a forward pass with one GEMM, at the weights it belongs to."""
        for cap in self._waiting:
            chunk, row, version = cap.pending
            cap.pending = None
            spec = next(s for s in self._specs if s.name == cap.name)
            if spec.weight._version != version and cap.enabled:
                cap.enabled = False
                warnings.warn(f"capture: site {cap.name!r}'s weights changed outside optimizer.step() before the "
                              f"forward pass; step {chunk.steps[row]} holds the changed weights' values and capture "
                              "is off for this site (one GEMM per step from now on)", stacklevel=3)
            out = chunk.inner[cap.name][row]
            torch.mm(spec.weight, spec.probes, out=out[:, :spec.p])
            if spec.track and spec.weight._version != version:  # the whole row from the same (changed) weights
                torch.sub(spec.weight, spec.w0, out=spec.scratch)
                spec.scratch.square_()
                torch.sum(spec.scratch, 1, out=out.select(1, spec.p))
            self.stats["fallback"] += 1
        self._waiting.clear()

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
                              "one, so call rec.log after opt.step() (or pass step=)" if self.optimizer is not None else
                              "log: called before the first rec.step(); without optimizer= the recorder advances only "
                              "when the loop calls rec.step() after each update", stacklevel=2)
            step = max(self._t - 1, 0) if self.log_at == "previous" else self._t
        if not values:
            return
        names = tuple(values)
        device = self._device
        # Values stay where they are: a tensor on the recording device is copied into the device buffer (no
        # host sync); a Python number or a CPU tensor (already on the host) is written as a scalar kernel
        # argument, never through a host-to-device copy of its own.
        parts: list[Any] = []
        on_host = device.type == "cpu"
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                if value.dim() != 0:
                    if value.numel() != 1:
                        raise ConfigError(f"log: {name} must be a scalar, got shape {tuple(value.shape)}")
                    value = value.reshape(())
                value = value.detach()
                if value.device != device:
                    if value.device.type == "cpu":
                        on_host = True
                        value = value.item()
                    else:
                        value = value.to(device=device, dtype=torch.float64)
            elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                value = float(value)
                on_host = True
            else:
                raise ConfigError(f"log: {name} must be a number or a 0-d tensor, got {type(value).__name__}")
            parts.append(value)
        if on_host:
            # Host values are checked at once (reading them costs nothing); device values on the writer thread.
            for name, value in zip(names, parts):
                if name in self.diverge_on:
                    host = value if isinstance(value, float) else value.item() if value.device.type == "cpu" else None
                    if host is not None and not math.isfinite(host):
                        self._diverge(step, name, host)
        cols, col_list = self._columns(names)
        chunk, row = self._row_of(step)
        if chunk is not None:
            logged = chunk.logged[row]
            if any(logged[c] for c in col_list):
                again = [n for n, c in zip(names, col_list) if logged[c]]
                if self.optimizer is None and self._t == 0:
                    raise ConfigError(f"log: {', '.join(again)} logged twice at step 0 and rec.step() was never called: "
                                      "a Recorder without optimizer= advances only when the loop calls rec.step() after "
                                      "each update (or pass optimizer=)")
                warnings.warn(f"log: {', '.join(again)} already logged at step {step}; the earlier value is "
                              "overwritten (one log per optimizer step, after opt.step())", stacklevel=2)
            chunk.set_values(row, col_list, parts)
            return
        if step == self._t:
            # The current step is not recorded (yet): keep its values, in a preallocated row, in case close()
            # records the final step.
            if self._stage is None or self._unrecorded[0] != step:
                if self._stage is None:
                    self._stage = torch.empty(MAX_SCALARS, dtype=torch.float64, device=device)
                self._stage.fill_(math.nan)
                self._unrecorded = (step, [])
            _write_values(self._stage, col_list, parts)
            self._unrecorded[1].extend(col_list)

    def _row_of(self, step: int) -> tuple[_Chunk | None, int]:
        """The buffered chunk and row of a recorded step (the latest one first: the usual case)."""
        chunk = self._current
        if chunk is not None and chunk.steps:
            steps = chunk.steps
            if steps[-1] == step:
                return chunk, len(steps) - 1
            if len(steps) > 1 and steps[-2] == step:
                return chunk, len(steps) - 2
        for chunk in (self._current, self._pending):
            row = None if chunk is None else chunk.row(step)
            if row is not None:
                return chunk, row
        return None, 0

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

    def _drop_waiting(self) -> None:
        for cap in self._waiting:
            cap.pending = None
        self._waiting.clear()

    def _diverge(self, step: int, name: str, value: float) -> None:
        self._drop_waiting()  # the rows awaiting values are cut below
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
        if self._sink_errors:
            self._warn_sinks()

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
        if self._waiting:
            self._settle()
        for chunk in (self._pending, self._current):
            if chunk is not None:
                self._submit(chunk)
        self._pending = self._current = None
        self._since_flush = 0
        if checkpoint is None:
            self._put(self._commit_now)  # flushed steps are shown at once, not within the commit interval
        else:  # the checkpoint's own commit shows them
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
        if self._waiting:
            self._settle()  # rows are copied or handed to the writer below: they must hold their values
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
            if self._error is None and self._writer.uncommitted:
                try:
                    item = self._queue.get(timeout=max(0.0, self._commit_due - time.monotonic()))
                except queue.Empty:  # written steps waited the commit interval: show them
                    item = self._commit_now
            else:
                item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            try:
                item()
            except BaseException as exc:  # surfaced on the training thread at its next call
                self._error = exc

    def _commit_now(self) -> None:
        """Commit every step written so far (writer thread)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        self._writer.commit()
        self._commit_due = math.inf
        self.stats["write_seconds"] += time.perf_counter() - t0
        self.stats["write_cpu_seconds"] += time.thread_time() - c0

    def _write(
        self,
        steps: np.ndarray,
        inner: Mapping[str, torch.Tensor],
        scalars: torch.Tensor | None,
        logged: np.ndarray,
        columns: Mapping[str, int],
    ) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
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
        now = time.monotonic()
        if self._commit_due == math.inf:
            self._commit_due = now + self.commit_interval
        kept = {n: v[:k] for n, v in host_scalars.items()}
        self._writer.append(steps[:k], arrays, kept, commit=now >= self._commit_due)
        if not self._writer.uncommitted:
            self._commit_due = math.inf
        self.stats["chunks"] += 1
        self.stats["bytes"] += nbytes
        self.stats["steps"] += k
        self.stats["write_seconds"] += time.perf_counter() - t0
        self.stats["write_cpu_seconds"] += time.thread_time() - c0
        if self.sinks:
            t0 = time.perf_counter()
            for sink in list(self.sinks):
                self._to_sink(sink, "write", steps[:k], arrays, kept)
            self.stats["sink_seconds"] += time.perf_counter() - t0

    def log_per_sample(self, step: int | None = None, **values: Any) -> None:
        """Log values per training example (e.g. ``loss=per_sample_loss``, ``margin=...``), each ``(examples,)``.

        Unlike :meth:`log` the values are copied to the host at once (one device synchronisation: log them at a few
        steps, not at every step of a GPU loop) and written at :meth:`close` as the store's ``per_sample`` group,
        ``<name>(logged_step, example)`` float64. Examples are the rows of the data given to the probe helpers:
        the per-sample views (:func:`dyn.analysis.samples.sample_table`) join them to a site's noise probes by
        sample index, or by ``patch_image`` for conv patches.

        Parameters
        ----------
        step : int, optional
            As in :meth:`log` (default: the step the values were computed at under ``log_at``).
        **values : (examples,) tensors or arrays

        Raises
        ------
        ConfigError
            A value that is not one number per example, a length different from earlier ones, or a step not after
            the previous per-sample step.

        Examples
        --------
        >>> import tempfile, os
        >>> w = torch.nn.Parameter(torch.zeros(2, 3))
        >>> site = dyn.Site(w, signals={"mu": torch.ones(3)}, noise=torch.eye(3))
        >>> path = os.path.join(tempfile.mkdtemp(), "s.zarr")
        >>> with dyn.Recorder(path, {"h": site}) as rec:
        ...     rec.step(); rec.log_per_sample(loss=torch.tensor([0.5, 0.25, 0.125]))
        >>> dyn.open(path)["per_sample"]["loss"].values.tolist()
        [[0.5, 0.25, 0.125]]
        """
        if self._closed:
            raise StoreError(f"recorder for {self.path} is closed")
        if step is None:
            step = max(self._t - 1, 0) if self.log_at == "previous" else self._t
        store = self._per_sample
        for name, value in values.items():
            if not str(name).isidentifier():
                raise ConfigError(f"log_per_sample: name {name!r} must be an identifier")
            arr = (value.detach().to("cpu", torch.float64).numpy() if isinstance(value, torch.Tensor)
                   else np.asarray(value, dtype=np.float64))
            if arr.ndim != 1 or arr.size == 0:
                raise ConfigError(f"log_per_sample: {name} has shape {arr.shape}, expected one value per example")
            rows = store.setdefault(str(name), {})
            earlier = next(iter(rows.values()), None)
            if earlier is not None and earlier.shape != arr.shape:
                raise ConfigError(f"log_per_sample: {name} has {arr.size} values, {earlier.size} before")
            if rows and step < max(rows):
                raise ConfigError(f"log_per_sample: step {step} is before the last logged step {max(rows)} of {name}")
            rows[int(step)] = arr.copy()

    def _write_per_sample(self) -> None:
        store = self._per_sample
        if not store:
            return
        steps = sorted({s for rows in store.values() for s in rows})
        sizes = {rows[next(iter(rows))].size for rows in store.values()}
        if len(sizes) != 1:
            warnings.warn(f"log_per_sample: values of different lengths {sorted(sizes)}; not stored", stacklevel=3)
            return
        (n,) = sizes
        arrays = {"logged_step": (("logged_step",), np.asarray(steps, dtype=np.int64)),
                  "example": (("example",), np.arange(n, dtype=np.int64))}
        for name, rows in store.items():
            data = np.full((len(steps), n), np.nan)
            for i, s in enumerate(steps):
                if s in rows:
                    data[i] = rows[s]
            arrays[name] = (("logged_step", "example"), data)
        self._writer.write_group("per_sample", arrays, attrs={"description": "values logged per training example "
                                                              "(Recorder.log_per_sample)"})

    def close(self, status: str = "complete", error: str | None = None) -> None:
        """Flush all buffered steps, store the final weights, set ``status`` and consolidate the store."""
        if self._closed or not self._open:
            return
        if self._hook is not None:
            self._hook.remove()
        if self._pre_hook is not None:
            self._pre_hook.remove()
        for cap in self._captures.values():
            if cap.handle is not None:
                cap.handle.remove()
        if self._diverged is not None:
            status = "diverged"
        elif status != "diverged" and self._last_recorded < self._t and self._error is None:
            self._record(self._t)  # the schedule skipped the final weights: record them anyway
            step, logged = self._unrecorded
            if step == self._t and logged:
                cols = sorted(set(logged))
                self._current.set_scalars(len(self._current.steps) - 1, torch.tensor(cols, device=self._device),
                                          cols, self._stage[cols])
        if self._waiting:
            if self._error is None and self._diverged is None:
                self._settle()  # no forward pass comes after the last step
            self._drop_waiting()
        for chunk in (self._pending, self._current):
            if chunk is not None and self._error is None:
                self._submit(chunk)
        self._pending = self._current = None
        self._queue.put(None)
        self._thread.join()
        self._closed = True
        final = "interrupted" if self._error is not None else ("diverged" if self._diverged is not None else status)
        for sink in list(self.sinks):
            self._to_sink(sink, "close", final)
        self._warn_sinks()
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
            if self._error is None:
                self._write_per_sample()
            for name, site in self.sites.items():
                # Only a complete run's weights are known to be those of its last recorded step: an interrupted
                # one may have been stopped after an update (its checkpoint holds the state to resume from).
                if site.store_weights and self._error is None and status == "complete":
                    self._writer.write_static(
                        name, "weight_final", ("neuron", "feature"), site.weight.detach().cpu().numpy(),
                        attrs={"step": self._t},
                    )
        finally:
            self._writer.close(status, **attrs)
        if self._error is not None:
            raise self._write_failed()

    def _to_sink(self, sink: RecordSink, method: str, *args: Any) -> None:
        """Call a sink; one that raises is dropped (still closed) and reported by :meth:`_warn_sinks`."""
        try:
            getattr(sink, method)(*args)
        except Exception as exc:
            if sink in self.sinks:
                self.sinks.remove(sink)
                where = f"at step {int(args[0][0])}" if method == "write" and len(args[0]) else f"in {method}"
                self._sink_errors.append(f"{type(sink).__name__} stopped {where}: {type(exc).__name__}: {exc}"
                                         .splitlines()[0] + f"; the store {self.path} is not affected")
                if method != "close":
                    try:
                        sink.close("interrupted")
                    except Exception:
                        pass

    def _warn_sinks(self) -> None:
        while self._sink_errors:
            warnings.warn(self._sink_errors.pop(0), stacklevel=3)

    def _write_failed(self) -> StoreError:
        """The error the writer thread met, for the training thread: a :class:`WriteError` when the disk refused."""
        kind = WriteError if isinstance(self._error, (WriteError, OSError)) else StoreError
        error = kind(f"writing {self.path} failed: {self._error}")
        error.__cause__ = self._error
        return error
