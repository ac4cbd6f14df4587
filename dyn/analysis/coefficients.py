"""Signal learning γ and noise memorization ρ from recorded inner products: exact where the basis allows it, the
best least-squares projection where it does not, and how much of each neuron's change the probes explain.

When every update lies in span{μ, ξ₁..ξₙ} and the basis is independent (the paper's encoders, GD/SGD on the layer
whose inputs are the probes), (eq. 11)

    w_r(t) = w_r(0) + γ_r(t) μ/‖μ‖² + Σ_i ρ_{r,i}(t) ξ_i/‖ξ_i‖²

holds exactly. With ``ΔP = P(t) − P(0)`` the recorded inner products with the basis (μ_1..μ_K, ξ_1..ξ_n), ``K`` their
Gram matrix and ``D = diag(‖b_j‖²)``: ``ΔP = K D⁻¹ c``, so ``c = D K⁻¹ ΔP`` (Cholesky of ``K``, once per site).

When the basis is rank-deficient (more probes than features, n + K > d), numerically dependent (signals that are
class means of the noise rows) or simply does not contain the updates (Adam, a hidden layer), the coefficients are
the minimum-norm least-squares fit of ``w_r(t) − w_r(0)`` by the basis: ``c = D^{1/2} C⁺ D^{-1/2} ΔP`` with ``C`` the
Gram matrix of the normalised basis and ``C⁺`` its pseudo-inverse, eigenvalues below ``rcond·λ_max`` cut. The
squared norm of the part of the change inside the probes' span is ``ΔPᵀ K⁺ ΔP``, known at every step from the
recording; a site recorded with ``track_change=True`` also holds ``‖w_r(t) − w_r(0)‖²``, so the span coverage (the
share of the change the probes explain) and the residual are known per step and neuron without any weights.

The solve is applied lazily, chunk by chunk, when the recording is dask-backed (``dyn.open(..., chunks={})``). The
raw inner products are the paper's proxies (Lemma C.1); the coefficients remove their cross-talk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import xarray as xr

from ..errors import ConfigError, StoreError
from ..store.schema import CHANGE_VAR

__all__ = ["coefficients", "decomposition_operator", "reconstruction_residual", "recording_error", "basis_vectors",
           "weights_at", "DecompositionOperator", "DEFAULT_RCOND", "METHODS"]

#: Eigenvalues of the normalised Gram matrix below this share of the largest are numerical zeros: such a basis
#: is dependent, and the exact solve would amplify the float32 rounding of the recording by more than 1/rcond.
DEFAULT_RCOND = 1e-6
METHODS = ("auto", "exact", "projection")


@dataclass(frozen=True)
class DecompositionOperator:
    """``S`` with ``c = S ΔP`` for one site, with what is needed to judge numerical error.

    Attributes
    ----------
    matrix : (basis, basis) float64 array, ``c = S @ ΔP``: ``D K⁻¹`` (exact) or ``D^{1/2} C⁺ D^{-1/2}`` (projection).
    condition : condition number of the Gram matrix K (inf when singular).
    row_sum_norm : ``‖S‖_∞``, the factor by which errors in ΔP can grow in c.
    method : ``"exact"`` or ``"projection"``.
    rank : numerical rank of the basis (eigenvalues kept).
    rcond : the spectral cutoff used.
    """

    matrix: np.ndarray
    condition: float
    row_sum_norm: float
    method: str = "exact"
    rank: int = 0
    rcond: float = DEFAULT_RCOND


def decomposition_operator(site: xr.Dataset, *, method: str = "auto", rcond: float = DEFAULT_RCOND) -> DecompositionOperator:
    """Factorise the site's Gram matrix once and return the operator ``S`` with ``c = S ΔP``.

    Parameters
    ----------
    site : xarray.Dataset
        One site group (it must hold ``gram``).
    method : {"auto", "exact", "projection"}
        ``"auto"`` solves exactly when the basis is numerically independent (every eigenvalue of the normalised
        Gram matrix above ``rcond`` times the largest) and projects otherwise.
    rcond : float
        The spectral cutoff, relative to the largest eigenvalue of the normalised Gram matrix.

    Raises
    ------
    StoreError
        If the site has no ``gram``, or ``method="exact"`` and the basis is dependent (e.g. more samples than
        dimensions), in which case γ and ρ are not unique.
    ConfigError
        Unknown ``method`` or an ``rcond`` outside (0, 1).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown decomposition method {method!r} (choose from {', '.join(METHODS)})")
    if not 0 < rcond < 1:
        raise ConfigError(f"rcond must be in (0, 1), got {rcond!r}")
    if "gram" not in site:
        raise StoreError("site has no 'gram' variable; it was not written by dyn's recorder")
    gram = np.asarray(site["gram"].values, dtype=np.float64)
    if not np.isfinite(gram).all():
        raise StoreError("the site's Gram matrix holds NaN or inf")
    p = gram.shape[0]
    norms = np.diag(gram).copy()
    inv_sqrt = np.where(norms > 0, 1.0 / np.sqrt(np.where(norms > 0, norms, 1.0)), 0.0)
    corr = gram * inv_sqrt[:, None] * inv_sqrt[None, :]  # unit diagonal: the cutoff ignores the probes' scales
    lam, vec = np.linalg.eigh(corr)
    keep = lam > rcond * max(lam[-1], 0.0)
    rank = int(keep.sum())
    eig = np.linalg.eigvalsh(gram)
    condition = float(eig[-1] / eig[0]) if eig[0] > 0 else float("inf")
    independent = rank == p and bool((norms > 0).all())
    if method == "exact" and not independent:
        raise StoreError(
            f"the basis (signals and noise patches, {p} vectors) is linearly dependent (rank {rank}): gamma/rho are "
            "not unique (more probes than feature dimensions?); use method='projection'"
        )
    if independent and method != "projection":
        try:
            factor = scipy.linalg.cho_factor(gram, lower=True, check_finite=True)
        except (np.linalg.LinAlgError, ValueError):
            factor = None
        if factor is not None:
            s = scipy.linalg.cho_solve(factor, np.eye(p)) * norms[:, None]  # D K^-1 (K symmetric)
            return DecompositionOperator(matrix=s, condition=condition, row_sum_norm=float(np.abs(s).sum(1).max()),
                                         method="exact", rank=rank, rcond=rcond)
    v = vec[:, keep]
    pinv = (v / lam[keep]) @ v.T  # C+ with the numerical null space cut
    s = np.sqrt(norms)[:, None] * pinv * inv_sqrt[None, :]  # D^{1/2} C+ D^{-1/2}: c = D K+ ΔP
    return DecompositionOperator(matrix=s, condition=condition, row_sum_norm=float(np.abs(s).sum(1).max()),
                                 method="projection", rank=rank, rcond=rcond)


def coefficients(site: xr.Dataset, *, method: str = "auto", rcond: float = DEFAULT_RCOND) -> xr.Dataset:
    """γ (per signal) and ρ (per sample) at every recorded step, and how much of each neuron's change they explain.

    Parameters
    ----------
    site : xarray.Dataset
        One site group of a run (``dyn.open(path)["h"].to_dataset()``), possibly dask-backed.
    method : {"auto", "exact", "projection"}
        See :func:`decomposition_operator`; ``"auto"`` (default) is exact wherever the basis allows it.
    rcond : float
        Spectral cutoff of the projection, relative to the largest eigenvalue of the normalised Gram matrix.

    Returns
    -------
    xarray.Dataset
        ``gamma(step, neuron, signal)`` and ``rho(step, neuron, sample)`` (float64, lazy if the input is);
        ``span_sq(step, neuron)``, the squared norm of the part of ``w_r(t) − w_r(0)`` inside the probes' span
        (from the recording and the Gram matrix alone). For a site recorded with ``track_change=True`` also
        ``change_sq(step, neuron)`` = ``‖w_r(t) − w_r(0)‖²``, ``span_coverage = span_sq / change_sq`` (NaN where
        the neuron has not moved) and ``residual`` = ``‖Δw − proj Δw‖ / ‖Δw‖``. Attributes: ``method``
        (``"exact"`` or ``"projection"``), ``rank``, ``n_basis``, ``n_features`` (when ``rank == n_features`` the probes
        span the whole space and the coverage is 1 by construction), ``rcond``, ``gram_condition`` and
        ``solve_error_bound`` (the largest change in a coefficient that float32 rounding of the recorded inner
        products can cause).

    Examples
    --------
    >>> import torch, tempfile, os
    >>> cfg = dyn.Config(d=60, n=8, m=4, steps=5, dtype="float64")
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(cfg, path)
    >>> c = coefficients(dyn.open(path)["h"].to_dataset())
    >>> c["rho"].dims, float(abs(c["rho"].isel(step=0)).max()), c.attrs["method"]
    (('step', 'neuron', 'sample'), 0.0, 'exact')

    A basis with more probes than features is projected, never refused:

    >>> w = torch.nn.Parameter(torch.randn(3, 4))
    >>> site = dyn.Site(w, signals={"mu": torch.ones(4)}, noise=torch.randn(6, 4), track_change=True)
    >>> path = os.path.join(tempfile.mkdtemp(), "p.zarr")
    >>> with dyn.Recorder(path, sites={"h": site}) as rec:
    ...     with torch.no_grad():
    ...         _ = w.add_(torch.randn(3, 4))
    ...     rec.step()
    >>> c = coefficients(dyn.open(path)["h"].to_dataset())
    >>> c.attrs["method"], c.attrs["rank"], round(float(c["span_coverage"].isel(step=1).min()), 4)
    ('projection', 4, 1.0)
    """
    op = decomposition_operator(site, method=method, rcond=rcond)
    k = site.sizes["signal"]
    sig = site["signal_inner"].transpose("step", "neuron", "signal")
    noise = site["noise_inner"].transpose("step", "neuron", "sample")
    sig0 = sig.isel(step=0).values.astype(np.float64)
    noise0 = noise.isel(step=0).values.astype(np.float64)
    s_sig, s_noise = op.matrix[:, :k].T.copy(), op.matrix[:, k:].T.copy()  # S = [S_sig | S_noise]

    def solve(sig_block: np.ndarray, noise_block: np.ndarray) -> np.ndarray:
        # c = S (P(t) - P(0)) for a block of steps: two BLAS products, float64, no concatenated copy
        return (np.subtract(sig_block, sig0, dtype=np.float64) @ s_sig
                + np.subtract(noise_block, noise0, dtype=np.float64) @ s_noise)

    if sig.chunks is not None:  # align the step chunks of both inputs; probes stay whole within a chunk
        steps = noise.chunks[0]
        sig, noise = sig.chunk({"step": steps, "signal": -1}), noise.chunk({"step": steps, "sample": -1})
    c = xr.apply_ufunc(solve, sig, noise, input_core_dims=[["signal"], ["sample"]], output_core_dims=[["basis"]],
                       dask="parallelized", output_dtypes=[np.float64],
                       dask_gufunc_kwargs={"output_sizes": {"basis": op.matrix.shape[0]}})
    gamma = c.isel(basis=slice(0, k)).rename(basis="signal").assign_coords(signal=site["signal"].values)
    rho = c.isel(basis=slice(k, None)).rename(basis="sample").assign_coords(sample=site["sample"].values)
    norms = np.diag(np.asarray(site["gram"].values, dtype=np.float64))
    safe = np.where(norms > 0, norms, 1.0)
    # |proj Δw|^2 = ΔPᵀ K⁺ ΔP = Σ_j ΔP_j c_j / |b_j|^2, since c = D K⁺ ΔP
    span_sq = ((sig - sig0).astype(np.float64) * gamma / xr.DataArray(safe[:k], dims="signal")).sum("signal") + \
              ((noise - noise0).astype(np.float64) * rho / xr.DataArray(safe[k:], dims="sample")).sum("sample")
    scale = max(float(abs(site["signal_inner"]).max()), float(abs(site["noise_inner"]).max()))  # one eager pass
    bound = op.row_sum_norm * scale * 2.0 * float(np.finfo(np.float32).eps)
    out = xr.Dataset({"gamma": gamma, "rho": rho, "span_sq": span_sq})
    what = "exact, eq. 11" if op.method == "exact" else f"minimum-norm least-squares projection on rank {op.rank}"
    out["gamma"].attrs.update(long_name="signal learning γ", description=what)
    out["rho"].attrs.update(long_name="noise memorization ρ", description=what)
    out["span_sq"].attrs.update(long_name="‖proj w(t) − w(0)‖²", description="squared norm of the change inside the probes' span")
    if CHANGE_VAR in site:
        change = site[CHANGE_VAR].isel({site[CHANGE_VAR].dims[-1]: 0}, drop=True).astype(np.float64)
        change = change.transpose("step", "neuron")
        coverage = (span_sq / change.where(change > 0)).transpose("step", "neuron")
        out["change_sq"] = change.assign_attrs(long_name="‖w(t) − w(0)‖²")
        out["span_coverage"] = coverage.assign_attrs(long_name="span coverage",
                                                     description="share of ‖w(t) − w(0)‖² inside the probes' span")
        out["residual"] = np.sqrt(np.maximum(1.0 - coverage, 0.0)).assign_attrs(
            long_name="reconstruction residual", description="‖Δw − proj Δw‖ / ‖Δw‖ per step and neuron")
    out.attrs.update(method=op.method, rank=op.rank, n_basis=int(op.matrix.shape[0]), n_features=site.sizes.get("feature", -1),
                     rcond=op.rcond,
                     gram_condition=op.condition, solve_error_bound=bound)
    return out


def basis_vectors(site: xr.Dataset) -> np.ndarray:
    """The stored basis (signals then noise patches), ``(basis, feature)`` float64."""
    if "signal_vectors" not in site or "noise_vectors" not in site:
        raise StoreError("site stores no probe vectors (recorded with store_probes=False)")
    return np.concatenate([site["signal_vectors"].values, site["noise_vectors"].values]).astype(np.float64)


def weights_at(site: xr.Dataset, step: int, coeffs: xr.Dataset | None = None) -> np.ndarray:
    """``W(step)`` rebuilt from the initial weights and the exact coefficients (eq. 11), ``(neuron, feature)``.

    Raises
    ------
    StoreError
        If the site stores no initial weights or no probe vectors.
    """
    if "weight_init" not in site:
        raise StoreError("site stores no weights (recorded with store_weights=False)")
    coeffs = coefficients(site) if coeffs is None else coeffs
    basis = basis_vectors(site)
    norms = np.einsum("jd,jd->j", basis, basis)
    c = np.concatenate([coeffs["gamma"].sel(step=step).values, coeffs["rho"].sel(step=step).values], axis=1)
    return site["weight_init"].values.astype(np.float64) + (c / norms) @ basis


def reconstruction_residual(site: xr.Dataset, coeffs: xr.Dataset | None = None) -> dict[str, float]:
    """How well ``w_r(0) + Σ_j c_j b_j/‖b_j‖²`` rebuilds the stored final weights.

    Returns
    -------
    dict
        ``abs``: max |W_rebuilt − W_final| over entries; ``rel``: that over max |W_final − W_init| (the size of the
        change being explained); ``step``: the step of the final weights; ``coverage``: the share of
        ``‖W_final − W_init‖²`` inside the probes' span (1 when the decomposition is exact); ``method``: the
        coefficients' method (``exact`` or ``projection``).

    Raises
    ------
    StoreError
        If the site stores no weights or no probe vectors.
    """
    if "weight_init" not in site or "weight_final" not in site:
        raise StoreError("site stores no weights (recorded with store_weights=False)")
    coeffs = coefficients(site) if coeffs is None else coeffs
    final_step = int(site["weight_final"].attrs.get("step", int(site["step"].values[-1])))
    if final_step not in set(int(s) for s in site["step"].values):
        raise StoreError(f"final weights are from step {final_step}, which is not recorded")
    w0 = site["weight_init"].values.astype(np.float64)
    w1 = site["weight_final"].values.astype(np.float64)
    rebuilt = weights_at(site, final_step, coeffs)
    err = float(np.abs(rebuilt - w1).max())
    change = float(np.abs(w1 - w0).max())
    total = float(((w1 - w0) ** 2).sum())
    outside = float(((rebuilt - w1) ** 2).sum())
    return {"abs": err, "rel": err / change if change > 0 else float("nan"), "step": final_step,
            "coverage": 1.0 - outside / total if total > 0 else float("nan"),
            "method": str(coeffs.attrs.get("method", "exact"))}


def recording_error(site: xr.Dataset) -> dict[str, float]:
    """Do the recorded inner products agree with the stored weights and probes? (Independent of any solve.)

    Compares ``W_init @ probes`` and ``W_final @ probes`` (float64, from the stored arrays) with the recorded
    ``signal_inner``/``noise_inner`` at step 0 and at the final weights' step.

    Returns
    -------
    dict
        ``rel``: the largest mismatch over the largest recorded magnitude (float32 rounding gives ~1e-7);
        ``step``: the final step compared.

    Raises
    ------
    StoreError
        If the site stores no weights or no probe vectors, or the final weights' step is not recorded.
    """
    if "weight_init" not in site or "weight_final" not in site:
        raise StoreError("site stores no weights (recorded with store_weights=False)")
    basis = basis_vectors(site)
    steps = [int(s) for s in site["step"].values]
    final_step = int(site["weight_final"].attrs.get("step", steps[-1]))
    if final_step not in steps:
        raise StoreError(f"final weights are from step {final_step}, which is not recorded")
    worst, scale = 0.0, 0.0
    for step, name in ((steps[0], "weight_init"), (final_step, "weight_final")):
        expected = site[name].values.astype(np.float64) @ basis.T
        recorded = np.concatenate([site["signal_inner"].sel(step=step).transpose("neuron", "signal").values,
                                   site["noise_inner"].sel(step=step).transpose("neuron", "sample").values], axis=1)
        worst = max(worst, float(np.abs(expected - recorded).max()))
        scale = max(scale, float(np.abs(expected).max()))
    return {"rel": worst / scale if scale > 0 else worst, "step": final_step}
