"""Before training: how large a recording's store will be and how much memory its analysis will need, per site,
and a one-line refusal when that exceeds the machine (free disk, available memory) or a stated limit.

The numbers follow the store schema and the decomposition (:mod:`dyn.analysis.coefficients`): per recorded step a
site writes ``neurons × (probes + tracked change)`` float32 values; its static part is the probe vectors
(``(K + n) × d``), the Gram matrix only when ``K + n ≤ d``, and the weights. The analysis of a site (eager, as
``dyn report``/``dyn.summary`` run it) holds the recorded ``signal_inner``/``noise_inner`` (float32), the float64
coefficients of every step (γ, ρ and their temporaries: about three float64 copies), and the factorisation of the
basis (four ``(K + n) × d`` float64 arrays, or the Gram matrix's eigenvectors when it is stored).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ..errors import ConfigError
from ..store.reader import refuse_url
from ..store.schema import basis_uses_gram
from .site import Site

__all__ = ["SiteBudget", "estimate", "check", "recorded_steps", "available_memory"]

#: float64 copies of the (step, neuron, probe) coefficients the eager analysis holds at its peak (measured: 3-4).
ANALYSIS_COPIES = 4


@dataclass(frozen=True)
class SiteBudget:
    """Estimated sizes of one site, in bytes."""

    name: str
    neurons: int
    probes: int
    features: int
    per_step: int
    static: int
    store: int
    analysis: int

    def line(self, steps: int | None) -> str:
        when = f"{steps:,} recorded steps" if steps is not None else "per recorded step"
        return (f"site {self.name!r}: {self.probes:,} probes x {self.features} features x {self.neurons} neurons; "
                f"store ~{_size(self.store)} ({when}), analysis peak ~{_size(self.analysis)}")


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def recorded_steps(steps: int, schedule: Callable[[int], bool]) -> int:
    """Steps recorded in a run of ``steps`` optimizer steps: step 0, the scheduled ones and the last.

    Examples
    --------
    >>> from dyn.record.schedules import every
    >>> recorded_steps(10, every(3)), recorded_steps(10, every(1))
    (5, 11)
    """
    if steps > 10_000_000:  # never evaluate a schedule that often before training: every-k arithmetic is close
        return steps + 1
    return 1 + sum(1 for t in range(1, steps + 1) if t == steps or schedule(t))


def estimate(name: str, site: Site, recorded: int | None) -> SiteBudget:
    """Store and analysis bytes of one site for ``recorded`` steps (``None``: one step).

    Examples
    --------
    >>> site = dyn.Site(torch.zeros(8, 9), signals={"mu": torch.ones(9)}, noise=torch.randn(10_000, 9))
    >>> b = estimate("conv", site, 501)
    >>> b.per_step, round(b.store / 1e6)
    (320032, 161)
    """
    m, d = site.weight.shape
    k, n = len(site.signals), site.noise.shape[0]
    p = k + n
    per_step = 4 * m * site.n_columns
    extra = sum(t.shape[0] for _, t in site.extra.values())
    static = 4 * p * d + (8 * p * p if basis_uses_gram(p, d) else 0) + (4 * extra * d if site.store_probes else 0)
    static += (8 * m * d if site.store_weights else 0) + 16 * n
    steps = 1 if recorded is None else recorded
    store = static + steps * per_step
    factor = 8 * p * p * 2 if basis_uses_gram(p, d) else 8 * p * d * 4
    analysis = factor + steps * m * (4 * site.n_columns + ANALYSIS_COPIES * 8 * p)
    return SiteBudget(name, m, p, d, per_step, static, store, analysis)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` of /proc/meminfo), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _free_disk(path: Path) -> int | None:
    for parent in [path, *path.parents]:
        if parent.exists():
            try:
                return shutil.disk_usage(parent).free
            except OSError:
                return None
    return None


def check(path: str | os.PathLike, sites: Mapping[str, Site], *, steps: int | None,
          schedule: Callable[[int], bool], max_store_bytes: int | None = None,
          max_memory_bytes: int | None = None) -> list[SiteBudget]:
    """Estimate every site and refuse, in one line with the numbers and the fixes, a recording that does not fit.

    The store (all sites, for ``steps`` optimizer steps under ``schedule``; skipped when ``steps`` is None) must fit
    the free disk at ``path`` and ``max_store_bytes``; each site's analysis peak must fit the available memory and
    ``max_memory_bytes``.

    Raises
    ------
    ConfigError
        When an estimate exceeds a limit.
    StoreError
        ``path`` is a URL: dyn records to local stores only.

    Examples
    --------
    >>> site = dyn.Site(torch.zeros(8, 9), signals={"mu": torch.ones(9)}, noise=torch.randn(76_800, 9))
    >>> check("runs/x.zarr", {"conv": site}, steps=500, schedule=lambda t: True, max_memory_bytes=10**9)
    Traceback (most recent call last):
    ...
    dyn.errors.ConfigError: site 'conv': 76,801 probes x 9 features x 8 neurons; store ~1.2 GB (501 recorded steps), analysis peak ~11.1 GB exceeds the memory limit 1.0 GB: record fewer probes (per_image= or max_samples= in probes.sites_for), record less often (every=), or fewer layers
    """
    refuse_url(path, "dyn records to")  # before anything: Path("s3://b/r.zarr") would be a local "s3:" folder
    recorded = None if steps is None else recorded_steps(steps, schedule)
    budgets = [estimate(name, site, recorded) for name, site in sites.items()]
    fixes = ("record fewer probes (per_image= or max_samples= in probes.sites_for), record less often (every=), "
             "or fewer layers")
    memory = available_memory()
    for b in budgets:
        for limit, what in ((max_memory_bytes, "the memory limit"), (memory, "the available memory")):
            if limit is not None and b.analysis > limit:
                raise ConfigError(f"{b.line(recorded)} exceeds {what} {_size(limit)}: {fixes}")
    if recorded is not None:
        total = sum(b.store for b in budgets)
        disk = _free_disk(Path(path).absolute().parent)
        for limit, what in ((max_store_bytes, "the store limit"), (disk, "the free disk")):
            if limit is not None and total > limit:
                detail = "; ".join(b.line(recorded) for b in budgets)
                raise ConfigError(f"store ~{_size(total)} exceeds {what} {_size(limit)} ({detail}): {fixes}")
    return budgets
