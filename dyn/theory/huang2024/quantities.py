"""The quantities Huang et al. 2024's proofs are written in, computed from a recorded run.

A, Ψ and the sign sets U₊, I₊ (§5 of ``shared/theory/huang2024.md``), and the mean number of negatives M. Cached
per run and site in :attr:`dyn.Run.cache`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ...analysis.coefficients import coefficients

__all__ = ["proof_quantities", "proof", "mean_negatives"]


def proof_quantities(site: xr.Dataset, coeffs: xr.Dataset | None = None) -> xr.Dataset:
    """The quantities the proofs are written in (§5 of the summary).

    Returns
    -------
    xarray.Dataset
        - ``A(step, neuron, signal)``: ``±(γ_r + ⟨w_r(0), μ⟩)`` with the sign of ``⟨w_r(0), μ⟩`` ("total" signal).
        - ``Psi(step, neuron, sample)``: ``ρ_{r,i} + ⟨w_r(0), ξ_i⟩`` ("total" noise).
        - ``U_plus(step, neuron, signal)``: ``⟨w_r(t), μ⟩ > 0``; ``U_plus0(neuron, signal)`` at initialisation.
        - ``I_plus(step, neuron, sample)``: ``⟨w_r(t), ξ_i⟩ > 0``; ``I_plus0(neuron, sample)`` at initialisation.
    """
    coeffs = coefficients(site) if coeffs is None else coeffs
    sig0 = site["signal_inner"].isel(step=0, drop=True).astype(np.float64)
    noise0 = site["noise_inner"].isel(step=0, drop=True).astype(np.float64)
    sign = xr.where(sig0 >= 0, 1.0, -1.0)
    out = xr.Dataset(
        {
            "A": (sign * (coeffs["gamma"] + sig0)).transpose("step", "neuron", "signal"),
            "Psi": (coeffs["rho"] + noise0).transpose("step", "neuron", "sample"),
            "U_plus": site["signal_inner"] > 0,
            "I_plus": site["noise_inner"] > 0,
            "U_plus0": sig0 > 0,
            "I_plus0": noise0 > 0,
        }
    )
    return out


def proof(run: Any, site: str) -> xr.Dataset:
    """:func:`proof_quantities` of a run's site, computed once per run."""
    key = ("huang2024.proof", site)
    if key not in run.cache:
        coeffs = run.coefficients(site)
        run.cache[key] = proof_quantities(run.site(site), coeffs).compute()
    return run.cache[key]


def mean_negatives(run: Any) -> float:
    """Average number of negatives M per anchor, from the config and the stored labels."""
    key = "huang2024.mean_negatives"
    if key not in run.cache:
        neg = run.config.get("negatives", "all")
        if isinstance(neg, int):
            run.cache[key] = float(neg)
        else:
            labels = np.asarray(run.site(run.sites[0])["label"].values)
            run.cache[key] = float(np.mean([(labels != y).sum() for y in labels]))
    return run.cache[key]
