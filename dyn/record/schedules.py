"""Schedules: when to record. A schedule is any ``step -> bool`` callable; :func:`every` is the common one."""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError

__all__ = ["Schedule", "every", "log_spaced", "warmup"]

Schedule = Callable[[int], bool]


def every(k: int) -> Schedule:
    """Schedule that records every ``k``-th step.

    Examples
    --------
    >>> [t for t in range(10) if every(3)(t)]
    [0, 3, 6, 9]
    """
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise ConfigError(f"every must be a positive integer, got {k!r}")

    def schedule(step: int) -> bool:
        return step % k == 0

    schedule.__qualname__ = f"every({k})"
    return schedule


def log_spaced(per_decade: int = 20, *, dense: int = 100) -> Schedule:
    """Every step up to ``dense``, then about ``per_decade`` steps per decade (log-spaced), for long runs.

    The anchor is Cockpit's ``logarithmic`` schedule (Schneider et al., 2021): early dynamics change fastest, so
    recording density follows log(step). Step 0 and the last step are always recorded by the :class:`Recorder`.

    Examples
    --------
    >>> s = log_spaced(4, dense=3)
    >>> [t for t in range(1, 200) if s(t)]
    [1, 2, 3, 4, 6, 10, 18, 32, 57, 100, 178]
    """
    if not isinstance(per_decade, int) or per_decade <= 0 or not isinstance(dense, int) or dense < 0:
        raise ConfigError(f"log_spaced needs a positive per_decade and a non-negative dense, got {per_decade!r}, {dense!r}")
    import math

    def schedule(step: int) -> bool:
        if step <= dense or step <= 1:
            return True
        return math.floor(per_decade * math.log10(step)) > math.floor(per_decade * math.log10(step - 1))

    schedule.__qualname__ = f"log_spaced({per_decade}, dense={dense})"
    return schedule


def warmup(dense: int = 100, then: int = 10) -> Schedule:
    """Every step during the first ``dense`` steps (warm-up), then every ``then``-th (Cockpit's ``linear`` after an
    initial dense phase).

    Examples
    --------
    >>> s = warmup(3, then=5)
    >>> [t for t in range(1, 21) if s(t)]
    [1, 2, 3, 5, 10, 15, 20]
    """
    if not isinstance(dense, int) or dense < 0 or not isinstance(then, int) or then <= 0:
        raise ConfigError(f"warmup needs a non-negative dense and a positive then, got {dense!r}, {then!r}")

    def schedule(step: int) -> bool:
        return step <= dense or step % then == 0

    schedule.__qualname__ = f"warmup({dense}, then={then})"
    return schedule
