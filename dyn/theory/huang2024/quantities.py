"""The quantities Huang et al. 2024's proofs are written in, computed from a recorded run, once per run.

A, Ψ and the sign sets U₊, I₊ (§5 of ``shared/theory/huang2024.md``), the number of negatives M, the curves the
claims are judged on, and the empirical end of stage 1 (the loss-derivative band and two-phase fits with their
bootstrap intervals). Everything is kept in :attr:`dyn.Run.cache`, so a :func:`dyn.compare` computes each once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ...analysis.coefficients import coefficients, decomposition_operator
from ...analysis.phases import Stage1Fit, fit_stage1
from ...errors import NotCheckable, PhaseError
from . import constants as C

__all__ = ["proof_quantities", "proof", "mean_negatives", "negatives_range", "signal_curve", "noise_curve",
           "coefficient_maxima", "Stage1End", "stage1_end", "moved", "cached", "index_at",
           "basis_condition", "coefficients_of", "rounding"]


def cached(run: Any, key: Any, compute):
    """``run.cache[key]``, computed by ``compute()`` the first time."""
    if key not in run.cache:
        run.cache[key] = compute()
    return run.cache[key]


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
    return xr.Dataset(
        {
            "A": (sign * (coeffs["gamma"] + sig0)).transpose("step", "neuron", "signal"),
            "Psi": (coeffs["rho"] + noise0).transpose("step", "neuron", "sample"),
            "U_plus": site["signal_inner"] > 0,
            "I_plus": site["noise_inner"] > 0,
            "U_plus0": sig0 > 0,
            "I_plus0": noise0 > 0,
        }
    )


def basis_condition(run: Any, site: str) -> float:
    """Condition number of the site's Gram matrix normalised to unit diagonal (the solve ``c = D K⁻¹ ΔP`` is
    scale-free, so the scale of the probes does not count); ``inf`` when the basis is dependent."""
    def compute() -> float:
        gram = np.asarray(run.site(site)["gram"].values, dtype=np.float64)
        scale = np.sqrt(np.clip(np.diag(gram), 1e-300, None))
        eig = np.linalg.eigvalsh(gram / scale[:, None] / scale[None, :])
        return float(eig[-1] / eig[0]) if eig[0] > 0 else math.inf

    return cached(run, ("huang2024.condition", site), compute)


def coefficients_of(run: Any, site: str) -> xr.Dataset:
    """The run's exact γ/ρ of ``site``, refused (NotCheckable) when they are not determined.

    The exact decomposition needs a well-conditioned basis: with float32 recordings a coefficient's relative error
    is about ``condition × 6e-8``, so a basis whose normalised Gram condition exceeds
    :data:`~.constants.MAX_BASIS_CONDITION` (e.g. signals that are class means of the noise rows) gives numbers
    that mean nothing. A decomposition whose ``method`` is not ``"exact"`` (a projection onto a rank-deficient basis)
    cannot test the theorem's exact statements either.
    """
    cond = basis_condition(run, site)
    if not cond <= C.MAX_BASIS_CONDITION:
        raise NotCheckable(f"gamma/rho are not determined: the probe basis of site {site} is numerically dependent "
                           f"(normalised Gram condition {cond:.3g} > {C.MAX_BASIS_CONDITION:.0e})")
    c = run.coefficients(site)
    if c.attrs.get("method", "exact") != "exact":
        raise NotCheckable(f"gamma/rho of site {site} are a projection (rank-deficient basis), not the exact "
                           "decomposition the theorem is written in")
    return c


def proof(run: Any, site: str) -> xr.Dataset:
    """:func:`proof_quantities` of a run's site, computed once per run."""
    return cached(run, ("huang2024.proof", site),
                  lambda: proof_quantities(run.site(site), coefficients_of(run, site)).compute())


def _stored_negatives(run: Any) -> np.ndarray | None:
    """The negative-pair mask the objective used (group ``negatives``), or None for a run that stores none."""
    tree = getattr(run, "tree", None)
    if tree is None or "negatives" not in tree.children or "mask" not in tree["negatives"].ds:
        return None
    return np.asarray(tree["negatives"]["mask"].values).astype(bool)


def opposite_negative_share(run: Any) -> float:
    """Share of the stored negative pairs whose samples have opposite labels (1.0 without a stored mask)."""
    mask = _stored_negatives(run)
    if mask is None or not mask.any():
        return 1.0
    labels = np.asarray(run.site(run.sites[0])["label"].values)
    return float((labels[:, None] != labels[None, :])[mask].mean())


def _negative_counts(run: Any) -> np.ndarray:
    def compute() -> np.ndarray:
        mask = _stored_negatives(run)
        if mask is not None:  # what the objective used, whatever drew it
            return mask.sum(axis=1).astype(np.float64)
        labels = np.asarray(run.site(run.sites[0])["label"].values)
        counts = np.array([(labels != y).sum() for y in labels], dtype=np.float64)
        neg = run.config.get("negatives", "all")
        return np.minimum(counts, float(neg)) if isinstance(neg, int) else counts

    return cached(run, "huang2024.negative_counts", compute)


def mean_negatives(run: Any) -> float:
    """Average number of negatives M per anchor: from the stored negative-pair mask, or (older runs) from the
    config and the stored labels."""
    return float(_negative_counts(run).mean())


def negatives_range(run: Any) -> tuple[float, float]:
    """Fewest and most negatives of any anchor (they differ when the classes have different sizes)."""
    counts = _negative_counts(run)
    return float(counts.min()), float(counts.max())


def signal_curve(run: Any) -> np.ndarray:
    """max_r A_r(t) of encoder h."""
    return cached(run, "huang2024.signal_curve", lambda: proof(run, "h")["A"].values[:, :, 0].max(axis=1))


def noise_curve(run: Any) -> np.ndarray:
    """max over (r, i ∈ I_{r,+}(0)) of Ψ_{r,i}(t) of encoder h."""
    def compute() -> np.ndarray:
        pq = proof(run, "h")
        psi = np.where(pq["I_plus0"].values[None], pq["Psi"].values, -np.inf)
        return psi.reshape(psi.shape[0], -1).max(axis=1)

    return cached(run, "huang2024.noise_curve", compute)


def coefficient_maxima(run: Any, site: str = "h") -> tuple[np.ndarray, np.ndarray]:
    """max_r |γ_r(t)| and max_{r,i} ρ_{r,i}(t) per step: the quantities the regime is decided on."""
    def compute() -> tuple[np.ndarray, np.ndarray]:
        c = coefficients_of(run, site)
        return np.abs(c["gamma"].values).max(axis=(1, 2)), c["rho"].values.max(axis=(1, 2))

    return cached(run, ("huang2024.maxima", site), compute)


def rounding(run: Any, site: str, what: str) -> float:
    """The largest change float32 rounding of the recorded inner products can make in one ``what`` coefficient
    (``"gamma"`` or ``"rho"``), in that coefficient's own units.

    ``c_b = Σ_j S_bj ΔP_j`` and a float32 inner product ``P_j = ⟨w, v_j⟩`` is off by at most about
    ``ε₃₂ ‖w‖ ‖v_j‖`` (the rounding of its terms, not of its value: a near-orthogonal ``P_j`` is small, its error
    is not), so ``|δc_b| <= 2 ε₃₂ Σ_j |S_bj| ‖w‖ ‖v_j‖`` with each probe's own norm. A bound with one scale for every
    coefficient (``solve_error_bound``) grows as ‖ξ‖/‖μ‖ for ρ when ‖μ‖ is small (0.67 at ‖μ‖ = 1e-4), so a
    violated exact zero passed as rounding; here the cross term ``S_ρμ ΔP_μ`` carries ‖μ‖ and the bound keeps ρ's
    own scale. ``‖w‖`` is the largest neuron norm of the stored initial and final weights, or, without them, of
    the weights' part inside the probes' span (a lower estimate).
    """
    def compute() -> float:
        coefficients_of(run, site)  # refuses a dependent basis first
        ds = run.site(site)
        op = decomposition_operator(ds, method="exact")
        k = ds.sizes["signal"]
        gram = np.asarray(ds["gram"].values, dtype=np.float64)
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        stored = [v for v in ("weight_init", "weight_final") if v in ds]
        if stored:
            w_norm = max(float(np.linalg.norm(ds[v].values.astype(np.float64), axis=1).max()) for v in stored)
        else:  # ‖proj w‖² = Pᵀ K⁻¹ P at the first and last step
            p = np.concatenate([ds["signal_inner"].isel(step=[0, -1]).values,
                                ds["noise_inner"].isel(step=[0, -1]).values], axis=-1).astype(np.float64)
            w_norm = float(np.sqrt(np.max(np.einsum("snj,jk,snk->sn", p, np.linalg.pinv(gram), p))))
        recorded = np.concatenate([np.abs(ds["signal_inner"]).max(["step", "neuron"]).values,
                                   np.abs(ds["noise_inner"]).max(["step", "neuron"]).values]).astype(np.float64)
        scale = np.maximum(w_norm * norms, recorded)
        per = 2.0 * float(np.finfo(np.float32).eps) * (np.abs(op.matrix) @ scale)
        return float((per[:k] if what == "gamma" else per[k:]).max())

    return cached(run, ("huang2024.rounding", site, what), compute)


def moved(run: Any, site: str, what: str = "rho") -> tuple[bool, float, float]:
    """Whether a coefficient moved beyond rounding: ``(moved, max |change|, the rounding tolerance)``, the
    tolerance :data:`~.constants.MOVED_FACTOR` times :func:`rounding` in the coefficient's own units.

    A check of an invariant on a run where nothing moved cannot fail; it is not evidence.
    """
    def compute() -> tuple[bool, float, float]:
        c = coefficients_of(run, site)
        tol = C.MOVED_FACTOR * rounding(run, site, what)
        biggest = float(np.abs(c[what].values).max())
        return biggest > tol, biggest, tol

    return cached(run, ("huang2024.moved", site, what), compute)


@dataclass(frozen=True)
class Stage1End:
    """The end of stage 1 as the recorded run shows it.

    Attributes
    ----------
    band_recorded : bool
        Whether the loss-derivative band (``lp_*`` scalars) was logged.
    in_band_at_start : bool or None
        Whether every ℓ'_i and ℓ'_{i,j} lay in the stage-1 band at step 0 (Lemma C.2's premise).
    band_exit : float or None
        First step out of the band (None: never left).
    band : (float, float)
        The band used, ``[1/(C(1 + M_max)), C/(1 + M_min)]`` over anchors with M_i negatives each.
    fits : dict
        ``signal`` / ``noise``: the :class:`Stage1Fit` of ``log max A`` / ``log max Ψ``, or why there is none.
    """

    band_recorded: bool
    in_band_at_start: bool | None
    band_exit: float | None
    band: tuple[float, float]
    fits: dict[str, Stage1Fit | str]

    def fit(self, which: str) -> Stage1Fit | None:
        f = self.fits.get(which)
        return f if isinstance(f, Stage1Fit) else None


def stage1_end(run: Any) -> Stage1End:
    """Band exit and two-phase fits (with bootstrap intervals) of the run, computed once per run."""

    def compute() -> Stage1End:
        lo_m, hi_m = negatives_range(run)
        band = (1.0 / (C.BAND_C * (1 + hi_m)), C.BAND_C / (1 + lo_m))
        lp = [run.scalar(k) for k in ("lp_pos_min", "lp_pos_max", "lp_neg_min", "lp_neg_max")]
        recorded = all(v is not None for v in lp)
        start = exit_ = None
        if recorded:
            # a single band for all anchors: the lower edge from the most negatives, the upper from the fewest
            exit_ = _band_exit(run.steps, lp, band)
            start = bool(exit_ is None or exit_ > float(run.steps[0]))
        fits: dict[str, Stage1Fit | str] = {}
        for name, curve in (("signal", signal_curve(run)), ("noise", noise_curve(run))):
            try:
                fits[name] = fit_stage1(run.steps, curve, level=C.LEVEL)
            except PhaseError as exc:
                fits[name] = str(exc)
        return Stage1End(recorded, start, exit_, band, fits)

    return cached(run, "huang2024.stage1_end", compute)


def _band_exit(steps: np.ndarray, lp: list[np.ndarray], band: tuple[float, float]) -> float | None:
    lo, hi = band
    out = (lp[0] < lo) | (lp[1] > hi) | (lp[2] < lo) | (lp[3] > hi) | ~np.isfinite(lp[0] + lp[1] + lp[2] + lp[3])
    idx = np.flatnonzero(out)
    return float(steps[idx[0]]) if idx.size else None


def index_at(run: Any, t: float) -> int | None:
    """Index of the last recorded step ≤ t, or None when t lies beyond the run."""
    if not math.isfinite(t) or t > run.steps[-1]:
        return None
    return int(np.flatnonzero(run.steps <= t + 1e-9)[-1])
