"""Schedules: when to record. A schedule is any ``step -> bool`` callable; :func:`every` is the common one."""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError

__all__ = ["Schedule", "every"]

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
