"""Exact signal learning γ and noise memorization ρ from recorded inner products.

Every update of the paper's encoders lies in span{μ, ξ₁..ξₙ}, so (eq. 11)

    w_r(t) = w_r(0) + γ_r(t) μ/‖μ‖² + Σ_i ρ_{r,i}(t) ξ_i/‖ξ_i‖²

holds exactly. With ``ΔP = P(t) − P(0)`` the recorded inner products with the basis (μ_1..μ_K, ξ_1..ξ_n), ``K`` their
Gram matrix and ``D = diag(‖b_j‖²)``: ``ΔP = K D⁻¹ c``, so ``c = D K⁻¹ ΔP``. ``K`` is factorised once per site
(Cholesky); the solve is applied lazily, chunk by chunk, when the recording is dask-backed (``dyn.open(...,
chunks={})``), so recordings larger than memory work.

The raw inner products are the paper's proxies (Lemma C.1); the exact coefficients remove their cross-talk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import xarray as xr

from ..errors import StoreError

__all__ = ["coefficients", "decomposition_operator", "reconstruction_residual", "basis_vectors", "weights_at",
           "DecompositionOperator"]


@dataclass(frozen=True)
class DecompositionOperator:
    """``S = D K⁻¹`` for one site, with what is needed to judge numerical error.

    Attributes
    ----------
    matrix : (basis, basis) float64 array, ``c = S @ ΔP``.
    condition : condition number of the Gram matrix K.
    row_sum_norm : ``‖S‖_∞``, the factor by which errors in ΔP can grow in c.
    """

    matrix: np.ndarray
    condition: float
    row_sum_norm: float


def decomposition_operator(site: xr.Dataset) -> DecompositionOperator:
    """Factorise the site's Gram matrix once and return ``S = D K⁻¹``.

    Raises
    ------
    StoreError
        If the site has no ``gram`` or the basis is linearly dependent (e.g. more samples than dimensions), in
        which case γ and ρ are not unique.
    """
    if "gram" not in site:
        raise StoreError("site has no 'gram' variable; it was not written by dyn's recorder")
    gram = np.asarray(site["gram"].values, dtype=np.float64)
    try:
        factor = scipy.linalg.cho_factor(gram, lower=True, check_finite=True)
    except (np.linalg.LinAlgError, ValueError):
        raise StoreError(
            f"the basis (signals and noise patches, {gram.shape[0]} vectors) is linearly dependent: "
            "gamma/rho are not unique (more probes than feature dimensions?)"
        ) from None
    s = scipy.linalg.cho_solve(factor, np.eye(gram.shape[0])) * np.diag(gram)[:, None]  # D K^-1 (K symmetric)
    eig = np.linalg.eigvalsh(gram)
    return DecompositionOperator(matrix=s, condition=float(eig[-1] / eig[0]), row_sum_norm=float(np.abs(s).sum(1).max()))


def coefficients(site: xr.Dataset) -> xr.Dataset:
    """Exact γ (per signal) and ρ (per sample) at every recorded step, plus the raw-proxy differences.

    Parameters
    ----------
    site : xarray.Dataset
        One site group of a run (``dyn.open(path)["h"].to_dataset()``), possibly dask-backed.

    Returns
    -------
    xarray.Dataset
        ``gamma(step, neuron, signal)`` and ``rho(step, neuron, sample)`` (float64, lazy if the input is), with
        attributes ``gram_condition`` and ``solve_error_bound`` (the largest change in a coefficient that float32
        rounding of the recorded inner products can cause).

    Examples
    --------
    >>> import torch, tempfile, os
    >>> cfg = dyn.Config(d=60, n=8, m=4, steps=5, dtype="float64")
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(cfg, path)
    >>> c = coefficients(dyn.open(path)["h"].to_dataset())
    >>> c["rho"].dims, float(abs(c["rho"].isel(step=0)).max())
    (('step', 'neuron', 'sample'), 0.0)
    """
    op = decomposition_operator(site)
    k = site.sizes["signal"]
    sig = site["signal_inner"].transpose("step", "neuron", "signal")
    noise = site["noise_inner"].transpose("step", "neuron", "sample")
    sig0 = sig.isel(step=0).values.astype(np.float64)
    noise0 = noise.isel(step=0).values.astype(np.float64)
    s_sig, s_noise = op.matrix[:, :k].T.copy(), op.matrix[:, k:].T.copy()  # S = [S_sig | S_noise]

    def solve(sig_block: np.ndarray, noise_block: np.ndarray) -> np.ndarray:
        # c = D K^-1 (P(t) - P(0)) for a block of steps: two BLAS products, float64, no concatenated copy
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
    scale = max(float(abs(site["signal_inner"]).max()), float(abs(site["noise_inner"]).max()))  # one eager pass
    bound = op.row_sum_norm * scale * 2.0 * float(np.finfo(np.float32).eps)
    out = xr.Dataset({"gamma": gamma, "rho": rho})
    out["gamma"].attrs.update(long_name="signal learning γ", description="exact, eq. 11")
    out["rho"].attrs.update(long_name="noise memorization ρ", description="exact, eq. 11")
    out.attrs.update(gram_condition=op.condition, solve_error_bound=bound)
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
        change being explained); ``step``: the step of the final weights.

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
    return {"abs": err, "rel": err / change if change > 0 else float("nan"), "step": final_step}
