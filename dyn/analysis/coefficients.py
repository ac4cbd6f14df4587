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
from typing import Callable

import numpy as np
import scipy.linalg
import xarray as xr

from ..errors import ConfigError, StoreError
from ..store.schema import CHANGE_VAR

__all__ = ["coefficients", "coefficient_solver", "describe", "error_bounds", "decomposition_operator", "reconstruction_residual", "recording_error", "basis_vectors",
           "weights_at", "DecompositionOperator", "DEFAULT_RCOND", "METHODS"]

#: Eigenvalues of the normalised Gram matrix below this share of the largest are numerical zeros: such a basis
#: is dependent, and the exact solve would amplify the float32 rounding of the recording by more than 1/rcond.
DEFAULT_RCOND = 1e-6
METHODS = ("auto", "exact", "projection")
#: A decomposition is called exact only when its error bound is at most this share of the values it bounds.
EXACT_RTOL = 1e-3
#: Cut eigenvalues (relative to the largest) below this are exact dependence up to float32 rounding of the probes
#: (class means of the noise rows, more probes than features); above it the basis is merely near-dependent.
EXACT_DEPENDENCE = 1e-10
#: A probe whose leverage in the kept spectrum is below ``1 - LEVERAGE_TOL`` lies (numerically) in the span of the
#: other probes: its coefficient is not determined by the recording (any split with the others fits it).
LEVERAGE_TOL = 1e-3
_U32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff of the float32 recording


@dataclass(frozen=True)
class DecompositionOperator:
    """``c = S ΔP`` for one site, held in factored form ``S = D^{1/2} U Λ⁻¹ Uᵀ D^{-1/2}`` (never a dense
    (n + K)² matrix), with what is needed to judge numerical error and identifiability.

    ``C = D^{-1/2} K D^{-1/2}`` is the Gram matrix of the normalised basis, ``U Λ Uᵀ`` its eigendecomposition with
    the eigenvalues below ``rcond·λ_max`` cut (exact solve: none cut). When the probes outnumber the features the
    factors come from a QR decomposition of the ``(basis, feature)`` probe vectors, so memory is O((n + K)·d).

    Attributes
    ----------
    u : (basis, rank) float64, orthonormal eigenvectors of C that are kept.
    lam : (rank,) float64, their eigenvalues.
    norms : (basis,) float64, ``‖b_j‖²``.
    condition : condition number of the normalised Gram matrix C (inf when singular).
    method : ``"exact"`` or ``"projection"``.
    rank : numerical rank of the basis (eigenvalues kept).
    rcond : the spectral cutoff used.
    n_features : the fan-in d (-1 when unknown).
    cut_max : the largest eigenvalue that was cut, relative to the largest (0 when none): between
        :data:`EXACT_DEPENDENCE` and ``rcond`` the basis is independent in exact arithmetic but not at float32
        precision (near-dependent); below, dependent by construction (e.g. class means of the noise rows).
    """

    u: np.ndarray
    lam: np.ndarray
    norms: np.ndarray
    condition: float
    method: str = "exact"
    rank: int = 0
    rcond: float = DEFAULT_RCOND
    n_features: int = -1
    cut_max: float = 0.0

    @property
    def n_basis(self) -> int:
        return int(self.u.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held by the factors (O((n + K)·rank))."""
        return int(self.u.nbytes + self.lam.nbytes + self.norms.nbytes)

    @property
    def matrix(self) -> np.ndarray:
        """The dense ``(basis, basis)`` operator ``S``: O((n + K)²) memory, for small bases and tests only."""
        return self.apply(np.eye(self.n_basis)).T

    def _scales(self) -> tuple[np.ndarray, np.ndarray]:
        pos = self.norms > 0
        sqrt = np.sqrt(np.where(pos, self.norms, 0.0))
        inv = np.where(pos, 1.0 / np.sqrt(np.where(pos, self.norms, 1.0)), 0.0)
        return sqrt, inv

    def apply(self, dp: np.ndarray) -> np.ndarray:
        """``c`` for inner-product changes ``dp (..., basis)`` (rows): ``((dp D^{-1/2}) U Λ⁻¹ Uᵀ) D^{1/2}``."""
        sqrt, inv = self._scales()
        return (((dp * inv) @ self.u) / self.lam) @ self.u.T * sqrt

    def leverage(self) -> np.ndarray:
        """``h_j = ‖U_j‖²`` per probe: 1 when the probe is (numerically) outside the span of the others."""
        return np.einsum("jr,jr->j", self.u, self.u)

    def separation(self) -> np.ndarray:
        """Per probe, the distance of its normalised vector from the span of the other probes (0 to 1).

        ``1/sqrt((C⁺)_jj)`` where the probe is outside the others' span (leverage 1), 0 where it is inside it
        (up to the cut): then its coefficient is not determined by the recording.
        """
        diag = np.einsum("jr,jr->j", self.u / self.lam, self.u)
        with np.errstate(divide="ignore"):
            sep = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 0.0)
        return np.where(self.leverage() >= 1.0 - LEVERAGE_TOL, np.minimum(sep, 1.0), 0.0)

    def sensitivity(self) -> np.ndarray:
        """Per coefficient ``c_j``: ``‖b_j‖ ‖(C⁺)_{j,:}‖₂``, the growth of an error in the normalised inner products
        ``ΔP_k/‖b_k‖`` (Euclidean norm over k) into ``c_j``."""
        sqrt, _ = self._scales()
        return sqrt * np.sqrt(np.einsum("jr,jr->j", self.u / self.lam ** 2, self.u))


def _factor_gram(gram: np.ndarray, rcond: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    norms = np.diag(gram).copy()
    inv_sqrt = np.where(norms > 0, 1.0 / np.sqrt(np.where(norms > 0, norms, 1.0)), 0.0)
    corr = gram * inv_sqrt[:, None] * inv_sqrt[None, :]  # unit diagonal: the cutoff ignores the probes' scales
    lam, vec = np.linalg.eigh(corr)
    return norms, lam, vec


def _factor_vectors(basis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen-pairs of the normalised Gram matrix from the ``(p, d)`` vectors, O(p·d) memory: the left singular
    vectors of the normalised basis (a QR first when p > d, so no (p, p) array is ever formed)."""
    norms = np.einsum("jd,jd->j", basis, basis)
    inv_sqrt = np.where(norms > 0, 1.0 / np.sqrt(np.where(norms > 0, norms, 1.0)), 0.0)
    unit = basis * inv_sqrt[:, None]
    del basis
    if unit.shape[0] > unit.shape[1]:
        q, r = scipy.linalg.qr(unit, mode="economic", overwrite_a=True, check_finite=False)
        ur, s, _ = np.linalg.svd(r)
        vec = q @ ur
        del q
    else:
        vec, s, _ = np.linalg.svd(unit, full_matrices=False)
    order = np.argsort(s)  # ascending, like eigh
    return norms, s[order] ** 2, vec[:, order]


def _basis_source(site: xr.Dataset) -> str:
    """``"gram"`` or ``"vectors"``: what the factorisation reads (vectors when the Gram matrix would be larger)."""
    has_vec = "signal_vectors" in site and "noise_vectors" in site
    if "gram" in site and not (has_vec and site.sizes["signal"] + site.sizes["sample"] > site.sizes.get("feature", 0)):
        return "gram"
    if has_vec:
        return "vectors"
    raise StoreError("site has neither 'gram' nor the probe vectors (signal_vectors, noise_vectors): it was not "
                     "written by dyn's recorder")


def decomposition_operator(site: xr.Dataset, *, method: str = "auto", rcond: float = DEFAULT_RCOND) -> DecompositionOperator:
    """Factorise the site's basis once and return the operator ``S`` with ``c = S ΔP`` (in factored form).

    Parameters
    ----------
    site : xarray.Dataset
        One site group: it must hold ``gram`` (stores whose probes do not outnumber the features, and stores
        written before the Gram matrix was dropped) or ``signal_vectors`` and ``noise_vectors``. With more probes
        than features the vectors are used (QR, O((n + K)·d) memory) even when an old store also has ``gram``.
    method : {"auto", "exact", "projection"}
        ``"auto"`` solves exactly when the basis is numerically independent (every eigenvalue of the normalised
        Gram matrix above ``rcond`` times the largest) and projects otherwise.
    rcond : float
        The spectral cutoff, relative to the largest eigenvalue of the normalised Gram matrix.

    Raises
    ------
    StoreError
        If the site has neither ``gram`` nor probe vectors, or ``method="exact"`` and the basis is dependent
        (e.g. more samples than dimensions), in which case γ and ρ are not unique.
    ConfigError
        Unknown ``method`` or an ``rcond`` outside (0, 1).

    Examples
    --------
    >>> from dyn.testing import make_site
    >>> site = make_site(np.zeros((3, 2)), np.zeros((3, 2, 4)))
    >>> op = decomposition_operator(site)
    >>> op.method, op.rank, op.matrix.shape
    ('exact', 5, (5, 5))
    """
    if method not in METHODS:
        raise ConfigError(f"unknown decomposition method {method!r} (choose from {', '.join(METHODS)})")
    if not 0 < rcond < 1:
        raise ConfigError(f"rcond must be in (0, 1), got {rcond!r}")
    source = _basis_source(site)
    if source == "gram":
        gram = np.asarray(site["gram"].values, dtype=np.float64)
        if not np.isfinite(gram).all():
            raise StoreError("the site's Gram matrix holds NaN or inf")
        norms, lam, vec = _factor_gram(gram, rcond)
        del gram
    else:
        basis = basis_vectors(site)
        if not np.isfinite(basis).all():
            raise StoreError("the site's probe vectors hold NaN or inf")
        norms, lam, vec = _factor_vectors(basis)
        del basis
    p = norms.shape[0]
    top = max(float(lam[-1]), 0.0) if lam.size else 0.0
    keep = lam > rcond * top
    rank = int(keep.sum())
    full = lam.shape[0] == p and rank == p and bool((norms > 0).all())
    condition = float(top / lam[0]) if full and lam[0] > 0 else float("inf")
    if method == "exact" and not full:
        raise StoreError(
            f"the basis (signals and noise patches, {p} vectors) is linearly dependent (rank {rank}): gamma/rho are "
            "not unique (more probes than feature dimensions?); use method='projection'"
        )
    kind = "exact" if full and method != "projection" else "projection"
    cut = lam[~keep]
    return DecompositionOperator(u=np.ascontiguousarray(vec[:, keep]), lam=lam[keep].copy(), norms=norms,
                                 condition=condition, method=kind, rank=rank, rcond=rcond,
                                 n_features=int(site.sizes.get("feature", -1)),
                                 cut_max=float(max(cut.max(), 0.0) / top) if cut.size and top > 0 else 0.0)


def _l1_rows(op: DecompositionOperator, block: int = 512) -> np.ndarray:
    """``‖(C⁺)_{j,:}‖₁`` per probe, in blocks of rows (O(block·p) memory); used for bases of up to 4,096 probes."""
    w = op.u / op.lam
    out = np.empty(op.n_basis)
    for start in range(0, op.n_basis, block):
        out[start:start + block] = np.abs(w[start:start + block] @ op.u.T).sum(1)
    return out


def _weight_norm(site: xr.Dataset, op: DecompositionOperator) -> tuple[float, str]:
    """An upper estimate of ``max_{t,r} ‖w_r(t)‖`` (which sets the float32 rounding of the recording), and its
    source: ``‖w_r(0)‖ + max_t ‖w_r(t) − w_r(0)‖`` from the stored initial weights and the tracked change, else
    the largest of the stored weights' norms and ``|⟨w, b_k⟩|/‖b_k‖`` over the recording (a lower bound on ‖w‖)."""
    k = site.sizes["signal"]
    _, inv = op._scales()
    seen = max(float(abs(site["signal_inner"] * xr.DataArray(inv[:k], dims="signal")).max()),
               float(abs(site["noise_inner"] * xr.DataArray(inv[k:], dims="sample")).max()))
    norms = [seen]
    if "weight_init" in site:
        w0 = np.linalg.norm(np.asarray(site["weight_init"].values, dtype=np.float64), axis=1)
        norms.append(float(w0.max()))
        if CHANGE_VAR in site:
            change = site[CHANGE_VAR].isel({site[CHANGE_VAR].dims[-1]: 0}, drop=True).transpose("step", "neuron")
            moved = np.sqrt(np.maximum(np.asarray(change.max("step").values, dtype=np.float64), 0.0))
            return float(max(seen, (w0 + moved).max())), "stored initial weights and tracked change"
    if "weight_final" in site:
        norms.append(float(np.linalg.norm(np.asarray(site["weight_final"].values, dtype=np.float64), axis=1).max()))
    return max(norms), "recorded inner products and stored weights (estimate)"


def error_bounds(site: xr.Dataset, op: DecompositionOperator) -> dict[str, object]:
    """Per coefficient, the largest error that float32 rounding of the recorded inner products can cause, and
    whether the recording determines it at all.

    Each recorded ``P_k = fl(⟨w, b_k⟩)`` is off by at most ``u (1 + c_d) ‖w‖ ‖b_k‖`` (``u`` = 2⁻²⁴, ``c_d =
    min(d, √d)``: the float32 dot product of length d, with the probabilistic rounding bound of Higham and Mary
    (2019) beyond small d; the worst case ``d`` is rarely approached by blocked BLAS sums), so every normalised
    change ``ΔP_k/‖b_k‖`` is off by at most ``ε = 2u(1 + c_d) max ‖w‖``. Then
    ``|δc_j| ≤ ‖b_j‖ ‖(C⁺)_{j,:}‖₁ ε`` (bases of up to 4,096 probes; ``√p ‖(C⁺)_{j,:}‖₂`` beyond). A probe
    inside the span of the others (leverage below 1 after the cut) has no determined coefficient: its bound is
    infinite, since any split with the others fits the recording.

    Returns
    -------
    dict
        ``bound`` (basis,) float64; ``rounding`` (basis,), the same bound ignoring identifiability (how far
        float32 rounding alone moves the minimum-norm coefficients); ``separation`` (basis,) (see :meth:`DecompositionOperator.separation`);
        ``per_probe_error`` (ε); ``weight_norm`` and ``weight_norm_source``.
    """
    d = op.n_features if op.n_features > 0 else 1
    c_d = min(float(d), float(np.sqrt(d)))
    w_norm, source = _weight_norm(site, op)
    eps = 2.0 * _U32 * (1.0 + c_d) * w_norm
    sqrt, _ = op._scales()
    if op.n_basis <= 4096:
        growth = sqrt * _l1_rows(op)
    else:
        growth = op.sensitivity() * np.sqrt(op.n_basis)
    sep = op.separation()
    rounding = growth * eps
    bound = np.where(sep > 0, rounding, np.inf)
    return {"bound": bound, "rounding": rounding, "separation": sep, "per_probe_error": eps, "weight_norm": w_norm, "weight_norm_source": source}


def coefficient_solver(op: DecompositionOperator, sig0: np.ndarray,
                       noise0: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The solve :func:`coefficients` applies to every block of steps: ``solve(sig, noise) -> c``.

    ``sig0`` ``(neuron, signal)`` and ``noise0`` ``(neuron, sample)`` are the inner products at step 0;
    ``solve`` takes blocks ``(..., neuron, signal)`` and ``(..., neuron, sample)`` of later steps and returns
    ``(..., neuron, signal + sample)``: γ then ρ (float64). For code that gets the recording a chunk at a time
    (:class:`dyn.viz.tensorboard.TensorBoardStream`) and must agree with :func:`coefficients`.

    Examples
    --------
    >>> from dyn.testing import make_site
    >>> site = make_site(np.zeros((3, 2)), np.zeros((3, 2, 4)))
    >>> op = decomposition_operator(site)
    >>> solve = coefficient_solver(op, np.zeros((2, 1)), np.zeros((2, 4)))
    >>> solve(np.zeros((7, 2, 1)), np.zeros((7, 2, 4))).shape
    (7, 2, 5)
    """
    k = len(op.norms) - np.asarray(noise0).shape[-1]
    sig0 = np.asarray(sig0, dtype=np.float64)
    noise0 = np.asarray(noise0, dtype=np.float64)
    sqrt, inv = op._scales()
    # c = D^{1/2} U Λ⁻¹ Uᵀ D^{-1/2} ΔP in factored form: O((n + K)·rank) memory, never an (n + K)² operator
    u_sig, u_noise = op.u[:k] * inv[:k, None], op.u[k:] * inv[k:, None]
    back_sig, back_noise = (op.u[:k] * sqrt[:k, None]).T.copy(), (op.u[k:] * sqrt[k:, None]).T.copy()

    def solve(sig_block: np.ndarray, noise_block: np.ndarray) -> np.ndarray:
        # float64, two BLAS products into the rank-dimensional space and one back, no concatenated copy
        y = (np.subtract(sig_block, sig0, dtype=np.float64) @ u_sig
             + np.subtract(noise_block, noise0, dtype=np.float64) @ u_noise) / op.lam
        return np.concatenate([y @ back_sig, y @ back_noise], axis=-1)

    return solve


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
        span the whole space and the coverage is 1 by construction), ``rcond``, ``gram_condition`` (of the
        normalised Gram matrix), the float32 error bounds of :func:`error_bounds` — ``gamma_error_bound`` (per
        signal), ``rho_error_bound`` (max over samples), ``solve_error_bound`` (max over all; infinite when a
        coefficient is not determined by the recording), ``solve_error_bound_finite``, ``rho_rounding_bound``,
        ``relative_error_bound`` (largest bound over the largest coefficient) — ``exact`` (the solve is exact
        *and* ``relative_error_bound ≤ EXACT_RTOL``), ``signal_separation`` (distance of each normalised signal
        from the span of the other probes; 0 inside it), ``signal_resolved`` / ``separable`` (γ's bound below its
        values for every signal), ``near_dependent`` (independent in exact arithmetic but not at float32
        precision), ``cut_eigenvalue_max``, ``weight_norm`` and its source. :func:`describe` words all this.

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
    solve = coefficient_solver(op, sig0, noise0)
    if sig.chunks is not None:  # align the step chunks of both inputs; probes stay whole within a chunk
        steps = noise.chunks[0]
        sig, noise = sig.chunk({"step": steps, "signal": -1}), noise.chunk({"step": steps, "sample": -1})
    c = xr.apply_ufunc(solve, sig, noise, input_core_dims=[["signal"], ["sample"]], output_core_dims=[["basis"]],
                       dask="parallelized", output_dtypes=[np.float64],
                       dask_gufunc_kwargs={"output_sizes": {"basis": op.n_basis}})
    gamma = c.isel(basis=slice(0, k)).rename(basis="signal").assign_coords(signal=site["signal"].values)
    rho = c.isel(basis=slice(k, None)).rename(basis="sample").assign_coords(sample=site["sample"].values)
    norms = op.norms
    safe = np.where(norms > 0, norms, 1.0)
    # |proj Δw|^2 = ΔPᵀ K⁺ ΔP = Σ_j ΔP_j c_j / |b_j|^2, since c = D K⁺ ΔP
    span_sq = ((sig - sig0).astype(np.float64) * gamma / xr.DataArray(safe[:k], dims="signal")).sum("signal") + \
              ((noise - noise0).astype(np.float64) * rho / xr.DataArray(safe[k:], dims="sample")).sum("sample")
    err = error_bounds(site, op)
    bound, sep = err["bound"], err["separation"]
    gamma_max = np.asarray(abs(gamma).max(["step", "neuron"]).values, dtype=np.float64)  # one eager pass each
    rho_max = float(abs(rho).max()) if rho.size else 0.0
    g_bound, r_bound = bound[:k], float(bound[k:].max()) if bound.size > k else 0.0
    # against the largest coefficient of the site: one group may be exactly zero (nothing memorized) and is then
    # determined to the same absolute error
    top = max(float(gamma_max.max(initial=0.0)), rho_max)
    worst = max(float(g_bound.max(initial=0.0)), r_bound)
    rel = worst / top if top > 0 else float("inf")
    resolved = np.isfinite(g_bound) & (g_bound < gamma_max)
    exact = op.method == "exact" and rel <= EXACT_RTOL
    out = xr.Dataset({"gamma": gamma, "rho": rho, "span_sq": span_sq})
    what = ("exact, eq. 11" if exact else
            f"exact solve, error bound {rel:.2g} of the values" if op.method == "exact" else
            f"minimum-norm least-squares projection on rank {op.rank}")
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
    finite = bound[np.isfinite(bound)]
    # near-dependent: a basis that is independent in exact arithmetic but whose split float32 cannot resolve
    # (with more probes than features the dependence is by construction, whatever the spectrum)
    near = (op.method == "exact" and not bool(resolved.all())) or (
        EXACT_DEPENDENCE <= op.cut_max and not op.n_basis > op.n_features > 0)
    out.attrs.update(method=op.method, exact=bool(exact), rank=op.rank, n_basis=op.n_basis,
                     n_features=site.sizes.get("feature", -1), rcond=op.rcond, gram_condition=op.condition,
                     solve_error_bound=float(bound.max()) if bound.size else 0.0,
                     solve_error_bound_finite=float(finite.max()) if finite.size else 0.0,
                     rho_rounding_bound=float(err["rounding"][k:].max()) if bound.size > k else 0.0,
                     gamma_error_bound=[float(b) for b in g_bound], rho_error_bound=r_bound,
                     relative_error_bound=rel, signal_separation=[float(s) for s in sep[:k]],
                     near_dependent=bool(near), cut_eigenvalue_max=op.cut_max,
                     signal_resolved=[bool(v) for v in resolved], separable=bool(resolved.all()),
                     weight_norm=float(err["weight_norm"]), weight_norm_source=str(err["weight_norm_source"]))
    return out


def describe(c: xr.Dataset, *, short: bool = False) -> str:
    """How to name a site's coefficients in text and titles: ``"exact"`` only when the solve is exact *and* its
    error bound is small against the values; otherwise ``"projection (coverage …)"`` or the exact solve with its
    relative error bound, and a warning when the basis cannot separate the signal from the noise (``short``: a
    count instead of every signal's numbers, for plot titles).

    Examples
    --------
    >>> from dyn.testing import make_site
    >>> site = make_site(np.linspace(0, 1, 4)[:, None] * np.ones((4, 2)), np.zeros((4, 2, 3)))
    >>> describe(coefficients(site))
    'exact'
    """
    parts = []
    if c.attrs.get("exact"):
        parts.append("exact")
    elif c.attrs.get("method") == "exact":
        parts.append(f"exact solve with error bound {c.attrs.get('relative_error_bound', float('nan')):.2g} of the values")
    else:
        cov = ""
        if "span_coverage" in c:
            final = np.asarray(c["span_coverage"].isel(step=-1).values, dtype=np.float64)
            final = final[np.isfinite(final)]
            cov = f"coverage {np.median(final):.3f}" if final.size else "coverage n/a"
        else:
            cov = "coverage not recorded"
        parts.append(f"projection ({cov}, rank {c.attrs.get('rank')} of {c.attrs.get('n_basis')})")
    if not c.attrs.get("separable", True):
        if short:
            bad = sum(1 for ok in c.attrs.get("signal_resolved", []) if not ok)
            parts.append(f"{bad} of {c.sizes['signal']} signals not separable from the noise")
        else:
            parts.append(separation_note(c))
    return "; ".join(parts)


def separation_note(c: xr.Dataset) -> str:
    """One line naming the signals whose γ the recording does not determine, with the numbers ("" if none)."""
    gmax = np.asarray(abs(c["gamma"]).max(["step", "neuron"]).values, dtype=np.float64)
    notes, inside = [], []
    for name, ok, sep, bound, top in zip(c["signal"].values, c.attrs.get("signal_resolved", []),
                                         c.attrs.get("signal_separation", []), c.attrs.get("gamma_error_bound", []), gmax):
        if ok:
            continue
        if sep <= 0:
            inside.append(str(name))
        else:
            notes.append(f"{name}: separation {sep:.2g}, γ error bound {bound:.2g} ≥ max |γ| {top:.2g}")
    if inside:
        notes.insert(0, f"{', '.join(inside)}: inside the span of the other probes")
    if not notes:
        return ""
    return "the basis cannot separate signal from noise (" + "; ".join(notes) + "): γ and ρ are one split among many"


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
