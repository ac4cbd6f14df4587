"""Helpers to test analysis and theory code on runs whose answer is known: synthetic runs built in memory, and an
assertion on a :func:`dyn.compare` table. No torch, no files.

A synthetic run is an :class:`xarray.DataTree` with the store schema (:mod:`dyn.store.schema`): root ``step`` and
per-step scalars, one group per site with ``signal_inner(step, neuron, signal)``, ``noise_inner(step, neuron,
sample)``, ``label(sample)`` and the Gram matrix of the probes. By default the probes are orthogonal (``gram`` is
diagonal), so the exact coefficients are simply ``γ = Δ⟨w, μ⟩`` and ``ρ = Δ⟨w, ξ⟩``: write the curves you want
the decomposition to return.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import xarray as xr

from .errors import ConfigError
from .store.schema import SCHEMA_VERSION, validate_tree

__all__ = ["make_site", "make_run", "assert_verdicts"]


def make_site(
    signal_inner: np.ndarray,
    noise_inner: np.ndarray,
    *,
    gram: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    signal_names: list[str] | None = None,
    steps: np.ndarray | None = None,
    signal_norm2: float | np.ndarray = 1.0,
    noise_norm2: float | np.ndarray = 1.0,
) -> xr.Dataset:
    """One site group: recorded inner products ``(step, neuron, signal)`` and ``(step, neuron, sample)``.

    Parameters
    ----------
    signal_inner, noise_inner : arrays
        ``⟨w_r(t), μ_k⟩`` and ``⟨w_r(t), ξ_i⟩``; a 2-D ``signal_inner`` is one signal.
    gram : array, optional
        Gram matrix of (μ_1..μ_K, ξ_1..ξ_n); default diagonal with ``signal_norm2`` and ``noise_norm2``.
    labels : array, optional
        ``label(sample)``; default alternating +1, -1.
    signal_names : list of str, optional
        The ``signal`` coordinate; default ``["mu"]`` (``mu0, mu1, ...`` for several).
    steps : array, optional
        Default ``0, 1, 2, ...``.
    signal_norm2, noise_norm2 : float or array
        Squared norms on the diagonal of the default Gram matrix.
    """
    sig = np.asarray(signal_inner, dtype=np.float32)
    if sig.ndim == 2:
        sig = sig[:, :, None]
    noise = np.asarray(noise_inner, dtype=np.float32)
    if sig.ndim != 3 or noise.ndim != 3 or sig.shape[:2] != noise.shape[:2]:
        raise ConfigError(f"signal_inner {sig.shape} and noise_inner {noise.shape} need matching (step, neuron)")
    n_steps, m, k = sig.shape
    n = noise.shape[2]
    steps = np.arange(n_steps) if steps is None else np.asarray(steps, dtype=np.int64)
    names = signal_names or (["mu"] if k == 1 else [f"mu{j}" for j in range(k)])
    if gram is None:
        gram = np.diag(np.concatenate([np.broadcast_to(signal_norm2, (k,)), np.broadcast_to(noise_norm2, (n,))]))
    gram = np.asarray(gram, dtype=np.float64)
    labels = np.where(np.arange(n) % 2 == 0, 1, -1) if labels is None else np.asarray(labels)
    basis = [f"signal:{s}" for s in names] + [f"sample:{i}" for i in range(n)]
    return xr.Dataset(
        {
            "signal_inner": (("step", "neuron", "signal"), sig),
            "noise_inner": (("step", "neuron", "sample"), noise),
            "label": (("sample",), labels),
            "gram": (("basis", "basis_dual"), gram),
        },
        coords={"step": steps, "neuron": np.arange(m), "signal": names, "sample": np.arange(n), "basis": basis,
                "basis_dual": basis},
    )


def make_run(
    signal_inner: np.ndarray | None = None,
    noise_inner: np.ndarray | None = None,
    *,
    sites: Mapping[str, xr.Dataset] | None = None,
    config: Any = None,
    setup: str | None = None,
    scalars: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
    **site_kwargs: Any,
):
    """A :class:`dyn.Run` over an in-memory tree with the store schema.

    Either give one site's inner products (site ``h``; ``site_kwargs`` go to :func:`make_site`) or ``sites``
    (name → :func:`make_site` dataset; all with the same steps).

    Parameters
    ----------
    config : mapping or object with ``to_dict()``, optional
        Stored as the root ``config`` attribute (a setup's typed config, e.g. ``dyn.Config(...)``).
    setup : str, optional
        The root ``setup`` attribute, which picks the theory.
    scalars : mapping name → (step,) array, optional
        Per-step logged scalars (``loss``, ...).
    attrs : mapping, optional
        Extra root attributes.

    Examples
    --------
    >>> t = np.arange(5.0)
    >>> run = make_run(np.zeros((5, 2)), np.tile(t[:, None, None], (1, 2, 3)), scalars={"loss": 1 / (1 + t)})
    >>> float(run.coefficients("h")["rho"].isel(step=4).max()), float(run.scalar("loss")[-1])
    (4.0, 0.2)
    """
    from .analysis.run import Run

    if sites is None:
        if signal_inner is None or noise_inner is None:
            raise ConfigError("make_run needs signal_inner and noise_inner, or sites")
        sites = {"h": make_site(signal_inner, noise_inner, **site_kwargs)}
    elif signal_inner is not None or noise_inner is not None or site_kwargs:
        raise ConfigError("give either one site's arrays or sites, not both")
    first = next(iter(sites.values()))
    steps = first["step"].values
    for name, ds in sites.items():
        if not np.array_equal(ds["step"].values, steps):
            raise ConfigError(f"site {name!r} has different steps from the first site")
    cfg = config.to_dict() if hasattr(config, "to_dict") else (dict(config) if config is not None else None)
    root_attrs: dict[str, Any] = {
        "dyn_schema_version": SCHEMA_VERSION, "status": "complete", "sites": list(sites),
        "last_step": int(steps[-1]), "n_recorded": len(steps), "synthetic": True,
    }
    if cfg is not None:
        root_attrs["config"] = cfg
    if setup is not None:
        root_attrs["setup"] = setup
    root_attrs.update(attrs or {})
    root = xr.Dataset({k: (("step",), np.asarray(v, dtype=np.float64)) for k, v in (scalars or {}).items()},
                      coords={"step": steps}, attrs=root_attrs)
    tree = xr.DataTree.from_dict({"/": root, **{f"/{k}": v for k, v in sites.items()}})
    validate_tree("synthetic run", tree, root_attrs)
    return Run(tree)


def assert_verdicts(table: pd.DataFrame, expected: Mapping[str, str | tuple[str, bool | None]]) -> None:
    """Assert the verdict (and, given as a pair, ``hypotheses_met``) of each named claim of a :func:`dyn.compare`
    table; every mismatch is listed, with what was observed and why.

    Examples
    --------
    >>> table = pd.DataFrame({"claim": ["a", "b"], "verdict": ["holds", "violated"], "observed": ["1", "2"],
    ...                       "reason": ["", ""], "hypotheses_met": [True, False]})
    >>> assert_verdicts(table, {"a": "holds", "b": ("violated", False)})
    >>> assert_verdicts(table, {"a": "violated"})
    Traceback (most recent call last):
    ...
    AssertionError: 1 verdict(s) differ:
      a: expected violated, got holds (observed: 1)
    """
    rows = {r["claim"]: r for r in table.to_dict("records")}
    problems = []
    for claim, want in expected.items():
        verdict, met = (want, "any") if isinstance(want, str) else want
        if claim not in rows:
            problems.append(f"{claim}: not in the table")
            continue
        row = rows[claim]
        got_met = row.get("hypotheses_met")
        got_met = None if got_met is None or (isinstance(got_met, float) and np.isnan(got_met)) or got_met is pd.NA \
            else bool(got_met)
        if row["verdict"] != verdict or (met != "any" and got_met != met):
            detail = f"observed: {row.get('observed', '')}"
            if row.get("reason"):
                detail += f"; reason: {row['reason']}"
            hyp = "" if met == "any" else f", hypotheses_met {got_met} (expected {met})"
            problems.append(f"{claim}: expected {verdict}, got {row['verdict']}{hyp} ({detail})")
    if problems:
        raise AssertionError(f"{len(problems)} verdict(s) differ:\n  " + "\n  ".join(problems))
