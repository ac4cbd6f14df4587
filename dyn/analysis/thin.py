"""Thinning on read: at most ``max_points`` points of a long curve for a figure, never hiding the first and last
steps or a spike (min-max decimation: each bucket keeps its smallest and largest value)."""

from __future__ import annotations

import numpy as np

__all__ = ["thin_indices"]


def thin_indices(values: np.ndarray | int, max_points: int = 2000) -> np.ndarray:
    """Sorted indices of at most ``max_points`` (+2) entries of ``values`` to draw.

    The first and last entries are always kept; the rest is cut into ``max_points // 2`` buckets of consecutive
    entries, each contributing the index of its minimum and of its maximum (NaN ignored), so a one-step spike survives
    any thinning. ``values`` may be ``(n,)`` or ``(n, k)`` (several curves sharing the steps: extremes over all
    of them), or just ``n`` (no values: an even stride, plus the ends).

    Examples
    --------
    >>> v = np.zeros(10_000); v[4321] = 50.0; v[-1] = 1.0
    >>> idx = thin_indices(v, max_points=100)
    >>> len(idx) <= 102, 0 in idx, 4321 in idx, 9999 in idx
    (True, True, True, True)
    >>> thin_indices(5, max_points=100).tolist()
    [0, 1, 2, 3, 4]
    """
    if isinstance(values, (int, np.integer)):
        n = int(values)
        step = max(1, -(-n // max(max_points, 1)))
        idx = np.arange(0, n, step)
        return idx if n == 0 or idx[-1] == n - 1 else np.append(idx, n - 1)
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    if n <= max_points + 2:
        return np.arange(n)
    flat = v.reshape(n, -1)
    buckets = max(1, max_points // 2)
    edges = np.linspace(1, n - 1, buckets + 1).astype(int)
    keep = [0, n - 1]
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi <= lo:
            continue
        block = flat[lo:hi]
        if np.isnan(block).all():
            keep.append(lo)
            continue
        hi_v = np.where(np.isnan(block), -np.inf, block)
        lo_v = np.where(np.isnan(block), np.inf, block)
        keep.append(lo + int(np.unravel_index(np.argmax(hi_v), block.shape)[0]))
        keep.append(lo + int(np.unravel_index(np.argmin(lo_v), block.shape)[0]))
    return np.unique(np.asarray(keep))
