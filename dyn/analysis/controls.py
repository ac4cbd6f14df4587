"""Controls that say "more than chance": per site, is signal learning / noise memorization above what a control
reaches, and by how much?

- **random directions** (recorded in the run): ``random_inner``, random directions with the noise probes' norms
  (:func:`dyn.record.probes.random_baseline`), the control of noise memorization: the largest final change of a
  noise inner product over that of a random direction; ``random_signal_inner``, random directions with the
  signals' norms, the control of signal learning: the largest final change of a signal inner product over that of a
  random signal.
- **a shuffled-label run** (a second store, given): the same model trained on permuted labels. Its γ is what
  "signal learning" reaches when the labels carry no signal; its ρ what memorizing every label needs.

Margins are ratios of final changes (raw inner products, so the runs compare in the same units whatever their
decomposition): above the control when the ratio exceeds 1, "clearly" when it exceeds :data:`CLEAR_MARGIN`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import StoreError
from .run import Run

__all__ = ["controls", "CLEAR_MARGIN", "statement"]

#: A margin (ratio to the control) above which the effect is called clearly above chance.
CLEAR_MARGIN = 2.0


def _change(ds: xr.Dataset, var: str) -> float:
    """Largest final |Δ⟨w_r, probe⟩| over neurons and probes of a recorded variable."""
    v = ds[var]
    return float(np.abs(np.asarray(v.isel(step=-1).values, dtype=np.float64)
                        - np.asarray(v.isel(step=0).values, dtype=np.float64)).max())


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else (float("inf") if a > 0 else float("nan"))


def controls(run: str | os.PathLike | xr.DataTree | Run, *, shuffled: Any = None) -> pd.DataFrame:
    """One row per site and control: the observed final change, the control's, their ratio and the verdict.

    Parameters
    ----------
    run : the run (path, DataTree or :class:`dyn.Run`).
    shuffled : the shuffled-label control run (same sites), optional.

    Returns
    -------
    pandas.DataFrame
        Columns ``site``, ``quantity`` (``signal learning`` or ``noise memorization``), ``control``
        (``random directions``, ``random signal``, ``shuffled labels``), ``observed``, ``control_value``,
        ``margin`` (observed / control) and ``above`` (margin > 1). Controls that were not recorded or given are
        absent.

    Raises
    ------
    StoreError
        The shuffled run lacks one of the run's sites.

    Examples
    --------
    >>> import tempfile, os
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x, y = torch.randn(40, 6), torch.arange(40) % 2
    >>> x[:, 0] += 3 * (2 * y - 1)  # a signal along feature 0
    >>> model = torch.nn.Linear(6, 2, bias=False)
    >>> site = dyn.probes.site_for(model, x, y)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> with dyn.Recorder(path, {"w": site}, optimizer=opt) as rec:
    ...     for _ in range(20):
    ...         loss = torch.nn.functional.cross_entropy(model(x), y); loss.backward(); opt.step(); opt.zero_grad()
    >>> table = controls(path)
    >>> table[["quantity", "control", "above"]].to_string(index=False)
    '          quantity          control  above\\n   signal learning    random signal   True\\nnoise memorization random directions   True'
    """
    run = Run.coerce(run)
    other = Run.coerce(shuffled) if shuffled is not None else None
    rows = []
    for site in run.sites:
        ds = run.site(site)
        sig, noise = _change(ds, "signal_inner"), _change(ds, "noise_inner")
        if "random_signal_inner" in ds:
            ctl = _change(ds, "random_signal_inner")
            rows.append((site, "signal learning", "random signal", sig, ctl))
        if "random_inner" in ds:
            ctl = _change(ds, "random_inner")
            rows.append((site, "noise memorization", "random directions", noise, ctl))
        if other is not None:
            if site not in other.sites:
                raise StoreError(f"the shuffled-label run has no site {site!r} (sites: {', '.join(other.sites)})")
            ods = other.site(site)
            rows.append((site, "signal learning", "shuffled labels", sig, _change(ods, "signal_inner")))
            rows.append((site, "noise memorization", "shuffled labels", noise, _change(ods, "noise_inner")))
    table = pd.DataFrame(rows, columns=["site", "quantity", "control", "observed", "control_value"])
    table["margin"] = [_ratio(a, b) for a, b in zip(table["observed"], table["control_value"])]
    table["above"] = table["margin"] > 1.0
    return table


def statement(table: pd.DataFrame, site: str) -> str:
    """One line per site: each quantity above or not above its controls, with the margins.

    Examples
    --------
    >>> t = pd.DataFrame({"site": ["h", "h"], "quantity": ["signal learning", "noise memorization"],
    ...                   "control": ["random signal", "random directions"], "observed": [4.0, 1.0],
    ...                   "control_value": [1.0, 2.0], "margin": [4.0, 0.5], "above": [True, False]})
    >>> statement(t, "h")
    'site h: signal learning clearly above chance (x4 random signal); noise memorization not above chance (x0.5 random directions)'
    """
    rows = table[table["site"] == site]
    if rows.empty:
        return f"site {site}: no control recorded or given"
    parts = []
    for quantity, group in rows.groupby("quantity", sort=False):
        margins = ", ".join(f"x{m:.3g} {c}" for c, m in zip(group["control"], group["margin"]))
        worst = float(group["margin"].min())
        verdict = ("clearly above chance" if worst > CLEAR_MARGIN else "above chance" if worst > 1
                   else "not above chance")
        parts.append(f"{quantity} {verdict} ({margins})")
    return f"site {site}: " + "; ".join(parts)
