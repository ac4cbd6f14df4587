"""The claims of Huang, Han et al. 2025, one small unit each, checked on a :class:`~.quantities.Recording`.

Every claim is a module-level function ``Recording -> Outcome`` registered with :func:`claim`, which records its
name, stage, statement (with its source), the algorithm it is about and the assumptions it needs. Rules:

- A claim about one algorithm run on the other is *not checkable* (wrong algorithm), with the reason.
- Theorem/lemma claims are still checked when Assumption 3.1 fails, but the outcome says so: ``numbers`` carries
  ``hypotheses_met`` and ``hypotheses_failed``, and the observed text ends with the failed hypotheses.
- A bound that cannot fail on this run (implied by an exact identity, or weaker than the trivial bound) is *not
  checkable: vacuous*, never support.
- Constants the paper leaves unspecified (C₀, C₁, c₁, c₂, C_ι) are measured and reported, never assumed.
- Words the paper leaves unquantified are read by the named constants of :mod:`.constants`.

Stages: ``assumption``, ``data``, ``identity`` (exact; must hold on every correct run), ``invariant``,
``stage 1``, ``T1``, ``stage 2``, ``test error``, ``empirical`` (the paper's Figure-2 reports), ``heuristic``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...analysis.phases import MIN_EFFECT, stage2_growth
from ...analysis.summary import winner
from ..base import NotCheckable, Outcome
from . import constants as C
from .quantities import J, Params, Recording, binary_entropy, coefficient_increments, first_crossing, logistic

__all__ = ["ClaimSpec", "CLAIMS", "claim", "assumptions", "ratios", "stage1_end_gd", "stage1_end_ln", "stage2_window_ln"]


@dataclass(frozen=True)
class ClaimSpec:
    """A registered claim: metadata plus its check.

    Attributes
    ----------
    name, stage, statement : as in :class:`dyn.theory.base.Claim`.
    predicted : the prediction in words, or a function of :class:`Params` giving it.
    algorithm : ``"gd"``, ``"label_noise"`` or None (both).
    hypotheses : names of :func:`assumptions` entries the claim's source needs.
    check : ``Recording -> Outcome``.
    """

    name: str
    stage: str
    statement: str
    predicted: str | Callable[[Params], str]
    algorithm: str | None
    hypotheses: tuple[str, ...]
    check: Callable[[Recording], Outcome]

    def predicted_text(self, params: Params) -> str:
        return self.predicted(params) if callable(self.predicted) else self.predicted

    def evaluate(self, rec: Recording) -> Outcome:
        """Run the check with the algorithm guard and the hypothesis report."""
        if self.algorithm is not None and rec.params.algorithm != self.algorithm:
            names = {"gd": "standard GD", "label_noise": "label-noise GD"}
            raise NotCheckable(f"wrong algorithm: this claim is about {names[self.algorithm]}, the run used "
                               f"{names.get(rec.params.algorithm, rec.params.algorithm)}")
        if self.stage not in STATIC_STAGES:
            _need_movement(rec)
        out = self.check(rec)
        if self.hypotheses or "hypotheses_measured" in out.numbers:
            table = assumptions(rec.params)
            status = {name: table[name][0] for name in self.hypotheses}
            status.update(out.numbers.pop("hypotheses_measured", {}))
            failed = [name for name, ok in status.items() if ok is False]
            out.numbers["hypotheses_met"] = not failed
            out.numbers["hypotheses_failed"] = failed
            if failed:
                out.observed += f" [hypotheses not met: {', '.join(failed)}]"
        return out


#: Every claim, in reading order.
CLAIMS: list[ClaimSpec] = []
#: Stages checked on any run, moved or not: the config's hypotheses, the data, and the exact update identities
#: (tested beyond the float error bound, which any step moves past). Every other claim is about the dynamics.
STATIC_STAGES = ("assumption", "data", "identity")


def _need_movement(rec: Recording) -> None:
    """NotCheckable unless max γ or max ρ̄ grew by (MIN_EFFECT − 1) times its initial scale (σ₀‖μ‖, σ₀σ_p√d) at
    some step: a bound, a race or a loss level read off a run that did not move is no evidence."""
    p = rec.params
    g, r = float(np.max(rec.signal_max())), float(np.max(rec.noise_max()))
    if not (np.isfinite(g) and np.isfinite(r)):
        return  # a diverged run moved; its claims say what they can
    if winner(max(g, 0.0), max(r, 0.0), signal_scale=p.s_mu, noise_scale=p.s_xi) == "did not move":
        raise NotCheckable(f"did not move: max gamma reached {_fmt(g)} and max rho_bar {_fmt(r)}, less than "
                           f"{MIN_EFFECT - 1:g} x their initial scales {_fmt(p.s_mu)} and {_fmt(p.s_xi)} (minimum "
                           f"effect x{MIN_EFFECT:g})")


def claim(name: str, stage: str, statement: str, predicted: str | Callable[[Params], str], *,
          algorithm: str | None = None, hypotheses: tuple[str, ...] = ()) -> Callable:
    """Register the decorated ``Recording -> Outcome`` function as a claim (see :class:`ClaimSpec`)."""

    def wrap(fn: Callable[[Recording], Outcome]) -> Callable[[Recording], Outcome]:
        CLAIMS.append(ClaimSpec(name, stage, statement, predicted, algorithm, hypotheses, fn))
        fn.spec = CLAIMS[-1]  # type: ignore[attr-defined]
        return fn

    return wrap


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.4g}"


def _need(ok: bool, reason: str) -> None:
    if not ok:
        raise NotCheckable(reason)


def _consecutive_pairs(rec: Recording) -> np.ndarray:
    """Indices k with steps[k + 1] = steps[k] + 1 and a gradient step at steps[k]."""
    k = np.flatnonzero((np.diff(rec.steps) == 1) & (rec.steps[:-1] < rec.params.steps))
    _need(k.size > 0, "needs consecutive recorded steps: train with `dyn run --set record_every=1`")
    return k


def _blocks(idx: np.ndarray, size: int = 256):
    for start in range(0, len(idx), size):
        yield idx[start:start + size]


# -- Assumption 3.1 and the proofs' conditions ---------------------------------------------------------------------
def assumptions(p: Params) -> dict[str, tuple[bool | None, str, dict[str, float]]]:
    """Every hypothesis of the theorems evaluated on the config: name → (holds, observed text, numbers).

    ``holds`` is None where the hypothesis does not concern the run's algorithm. Polylog factors (Õ, Ω̃) are read
    as 1; δ = 1/d.
    """
    d, n, m = p.d, p.n, p.m
    out: dict[str, tuple[bool | None, str, dict[str, float]]] = {}
    dim_signal = n * p.mu_norm**2 / p.sigma_p**2
    snr_max = 1 / math.sqrt(n)
    ok = d >= n * n and d >= dim_signal and p.snr <= snr_max
    out["(i) high dimension"] = (ok, f"d = {d} vs n^2 = {n * n}, n|mu|^2/sigma_p^2 = {_fmt(dim_signal)}; "
                                     f"SNR = {_fmt(p.snr)} vs 1/sqrt(n) = {_fmt(snr_max)}",
                                 {"d": d, "n_squared": n * n, "n_mu2_over_sigma_p2": dim_signal, "snr": p.snr})
    log_d = math.log(d)
    ok = m >= log_d and n >= log_d and d >= math.log(4 * n / p.delta)
    out["(ii) width and samples"] = (ok, f"m = {m}, n = {n} vs log d = {_fmt(log_d)}", {"m": m, "n": n, "log_d": log_d})
    eta_max = 1 / (p.sigma_p**2 * d)
    eta_prop = 2 * n * m / (3 * p.sigma_p**2 * d)
    out["(iii) learning rate"] = (p.eta <= eta_max, f"eta = {_fmt(p.eta)} vs 1/(sigma_p^2 d) = {_fmt(eta_max)} "
                                                    f"(Prop. 4.1's 2nm/(3 sigma_p^2 d) = {_fmt(eta_prop)})",
                                  {"eta": p.eta, "eta_max": eta_max, "eta_prop41": eta_prop})
    lo = n / (p.sigma_p * d**0.75)
    hi = min(1 / (p.mu_norm * d**0.625), 1 / (p.sigma_p * math.sqrt(d)))
    out["(iv) init scale"] = (lo <= p.sigma0 <= hi, f"sigma0 = {_fmt(p.sigma0)} vs [{_fmt(lo)}, {_fmt(hi)}]"
                                                   + (" (empty interval)" if lo > hi else ""),
                              {"sigma0": p.sigma0, "lower": lo, "upper": hi})
    p_min = log_d / math.sqrt(m * n)
    if p.algorithm == "label_noise":
        out["(v) flip rate"] = (p.p > p_min, f"p = {_fmt(p.p)} vs log d/sqrt(mn) = {_fmt(p_min)} (C = 1; "
                                             "the upper end 1/C is unspecified)", {"p": p.p, "p_min": p_min})
    else:
        out["(v) flip rate"] = (None, "standard GD has no flips", {"p_min": p_min})
    if p.algorithm == "gd":
        ok = p.s_xi < 1 and p.n_snr2 <= 1 / math.log(1 / p.s_xi)
        bound = 1 / math.log(1 / p.s_xi) if p.s_xi < 1 else 0.0
        out["low SNR (proof)"] = (ok, f"n SNR^2 = {_fmt(p.n_snr2)} vs 1/log(1/s_xi) = {_fmt(bound)} (Lemma 4.2 proof)",
                                  {"n_snr2": p.n_snr2, "bound": bound})
    else:
        ratio = C.T1_LN_LOG_NUMERATOR / p.s_xi
        bound = 1 / math.log(ratio) if ratio > 1 else 0.0
        out["low SNR (proof)"] = (p.n_snr2 <= bound, f"n SNR^2 = {_fmt(p.n_snr2)} vs 1/log(20/s_xi) = {_fmt(bound)} "
                                                     "(Lemma 4.4 proof)", {"n_snr2": p.n_snr2, "bound": bound})
    return out


ALL_31 = ("(i) high dimension", "(ii) width and samples", "(iii) learning rate", "(iv) init scale")
LN_31 = (*ALL_31, "(v) flip rate")


def _assumption_claim(name: str, key: str, statement: str) -> None:
    """Register the claim ``assumption.<name>``: the hypothesis ``key`` of :func:`assumptions`, as a verdict."""

    def check(rec: Recording) -> Outcome:
        ok, text, numbers = assumptions(rec.params)[key]
        _need(ok is not None, text)
        return Outcome(text, ok, dict(numbers))

    check.__name__ = f"assumption_{name}"
    claim(f"assumption.{name}", "assumption", statement, "holds")(check)


_assumption_claim("high_dimension", "(i) high dimension", "d >= n^2, d >= n|mu|^2/sigma_p^2 and SNR <= 1/sqrt(n), polylogs read as 1 "
                                        "(Assumption 3.1(i))")
_assumption_claim("width_and_samples", "(ii) width and samples", "m, n >= log d and d >= log(4n/delta), delta = 1/d (Assumption 3.1(ii), "
                                            "Lemmas B.1, B.2)")
_assumption_claim("learning_rate", "(iii) learning rate", "eta <= 1/(sigma_p^2 d), polylogs read as 1 (Assumption 3.1(iii))")
_assumption_claim("init_scale", "(iv) init scale", "n/(sigma_p d^(3/4)) <= sigma0 <= min(1/(|mu| d^(5/8)), 1/(sigma_p sqrt d)) "
                                     "(Assumption 3.1(iv))")
_assumption_claim("flip_rate", "(v) flip rate", "p > log d/sqrt(mn), C = 1 (Assumption 3.1(v); label-noise GD)")
_assumption_claim("low_snr", "low SNR (proof)", "n SNR^2 <= 1/log(1/s_xi) (GD, Lemma 4.2 proof) or <= 1/log(20/s_xi) "
                                     "(label-noise GD, Lemma 4.4 proof), s_xi = sigma0 sigma_p sqrt(d)")


# -- data and initialisation (probability 1 - delta) -----------------------------------------------------------------
@claim("data.noise_norms", "data",
       "sigma_p^2 d/2 <= |xi_i|^2 <= 3 sigma_p^2 d/2 and |<xi_i, xi_i'>| <= 2 sigma_p^2 sqrt(d log(4n^2/delta)), "
       "w.p. 1 - delta (Lemma B.1)", "holds with probability 1 - 1/d")
def noise_norms(rec: Recording) -> Outcome:
    p = rec.params
    k = rec.gram[1:, 1:]
    norms = np.diag(k) / (p.sigma_p**2 * p.d)
    cross = np.abs(k - np.diag(np.diag(k))).max() if p.n > 1 else 0.0
    cross_bound = C.B1_CROSS_FACTOR * p.sigma_p**2 * math.sqrt(p.d * math.log(4 * p.n**2 / p.delta))
    lo, hi = C.B1_NORM_BAND
    ok = bool(norms.min() >= lo and norms.max() <= hi and cross <= cross_bound)
    return Outcome(f"|xi|^2/(sigma_p^2 d) in [{_fmt(norms.min())}, {_fmt(norms.max())}]; max cross {_fmt(cross)} vs "
                   f"{_fmt(cross_bound)}", ok,
                   {"norm_ratio_min": float(norms.min()), "norm_ratio_max": float(norms.max()),
                    "cross_max": float(cross), "cross_bound": cross_bound,
                    "hypotheses_measured": {"d >= log(4n/delta)": p.d >= math.log(4 * p.n / p.delta)}})


@claim("data.init_scales", "data",
       "|<w(0), mu>| <= sqrt(2 log(8m/delta)) s_mu, |<w(0), xi_i>| <= 2 sqrt(log(8mn/delta)) s_xi, "
       "max_r j<w_jr(0), mu> >= s_mu/2, max_r <w_jr(0), xi_i> >= s_xi/4, w.p. 1 - delta (Lemma B.2)",
       "holds with probability 1 - 1/d")
def init_scales(rec: Recording) -> Outcome:
    p = rec.params
    a0, b0 = rec.a[0], rec.b[0]
    sig_hi = math.sqrt(2 * math.log(C.B2_SIGNAL_LOG_NUMERATOR * p.m / p.delta)) * p.s_mu
    noise_hi = C.B2_NOISE_FACTOR * math.sqrt(math.log(8 * p.m * p.n / p.delta)) * p.s_xi
    sig_lo = float((J[:, None] * a0).max(axis=1).min())
    noise_lo = float(b0.max(axis=1).min())
    checks = {"signal_upper": float(np.abs(a0).max()) <= sig_hi, "noise_upper": float(np.abs(b0).max()) <= noise_hi,
              "signal_lower": sig_lo >= C.B2_SIGNAL_LOWER * p.s_mu, "noise_lower": noise_lo >= C.B2_NOISE_LOWER * p.s_xi}
    failed = [k for k, v in checks.items() if not v]
    return Outcome("all four bounds hold" if not failed else f"fails: {', '.join(failed)}", not failed,
                   {"max_abs_signal": float(np.abs(a0).max()), "signal_upper": sig_hi,
                    "max_abs_noise": float(np.abs(b0).max()), "noise_upper": noise_hi,
                    "min_max_signal": sig_lo, "signal_lower": C.B2_SIGNAL_LOWER * p.s_mu,
                    "min_max_noise": noise_lo, "noise_lower": C.B2_NOISE_LOWER * p.s_xi,
                    "hypotheses_measured": {"m >= log(1/delta)": p.m >= math.log(1 / p.delta)}})


# -- exact identities ----------------------------------------------------------------------------------------------
@claim("identity.noise_orthogonal", "identity", "<xi_i, mu> = 0 for every training patch (Definition 2.1 projection)",
       "max |cos(xi_i, mu)| <= 1e-12 (float64 data) / 1e-6 (float32)")
def noise_orthogonal(rec: Recording) -> Outcome:
    cos = np.abs(rec.gram[0, 1:]) / np.sqrt(rec.gram[0, 0] * np.diag(rec.gram)[1:])
    tol = 1e-12 if rec.train_dtype == "float64" else 1e-6
    worst = float(cos.max())
    return Outcome(f"max |cos| = {_fmt(worst)}", worst <= tol, {"max_cos": worst, "tolerance": tol})


@claim("identity.span", "identity",
       "w_jr(t) - w_jr(0) lies in span{mu, xi_1..xi_n} (decomposition (3)); checked on the stored final weights",
       "relative off-span residual at rounding level")
def span(rec: Recording) -> Outcome:
    _need(rec.basis is not None and len(rec.weights) == 2, "the run stores no weights or probe vectors")
    eps_train = float(np.finfo(np.dtype(rec.train_dtype)).eps)
    chol = np.linalg.cholesky(rec.gram)
    worst_ratio, numbers = 0.0, {}
    for site, (w0, w1, step) in rec.weights.items():
        dw = w1 - w0
        coef = np.linalg.solve(chol.T, np.linalg.solve(chol, rec.basis @ dw.T))  # K^-1 B dW^T
        res = dw - coef.T @ rec.basis
        tol = C.IDENTITY_SAFETY * max(step, 1) * eps_train * (np.linalg.norm(w0) + np.linalg.norm(w1))
        ratio = float(np.linalg.norm(res) / tol) if tol > 0 else math.inf
        numbers[f"residual_{site}"] = float(np.linalg.norm(res))
        numbers[f"change_{site}"] = float(np.linalg.norm(dw))
        numbers[f"tolerance_{site}"] = float(tol)
        worst_ratio = max(worst_ratio, ratio)
    numbers["residual_over_tolerance"] = worst_ratio
    return Outcome(f"off-span residual / rounding tolerance = {_fmt(worst_ratio)}", worst_ratio <= 1.0, numbers)


def _identity_residuals(rec: Recording) -> dict[str, Any]:
    """Observed vs predicted coefficient increments over all consecutive recorded steps, with error bounds
    (computed once per recording: four claims read it)."""
    if rec not in _RESIDUALS:
        _RESIDUALS[rec] = _compute_identity_residuals(rec)
    return _RESIDUALS[rec]


#: Identity residuals per recording (keyed by the immutable recording itself, dropped with it).
_RESIDUALS: "weakref.WeakKeyDictionary[Recording, dict[str, Any]]" = weakref.WeakKeyDictionary()


def _compute_identity_residuals(rec: Recording) -> dict[str, Any]:
    p = rec.params
    pairs = _consecutive_pairs(rec)
    eps_all = rec.flips_at_steps()
    cerr = rec.coefficient_error()
    ierr = rec.inner_error()
    out = {"gamma_ratio": 0.0, "rho_ratio": 0.0, "gamma_abs": 0.0, "rho_abs": 0.0, "gate_ratio": 0.0,
           "sign_mismatch": 0, "sign_checked": 0, "steps": int(pairs.size)}
    for blk in _blocks(pairs):
        a, b, eps = rec.a[blk], rec.b[blk], eps_all[blk]
        dg_pred, dr_pred = coefficient_increments(a, b, rec.y, eps, eta=p.eta, mu_norm2=rec.mu_norm2,
                                                  xi_norm2=rec.xi_norm2)
        dg_obs = rec.gamma[blk + 1] - rec.gamma[blk]
        dr_obs = rec.rho[blk + 1] - rec.rho[blk]
        # first-order error of the prediction from the inner products' errors (through f, ℓ', σ')
        dz = ierr[blk][:, None, None, None]
        f_err = (2.0 / p.m) * (np.abs(a)[..., None] + np.abs(b) + dz).sum(axis=(1, 2)) * ierr[blk][:, None]
        w_err = f_err / 4.0  # |d(1/(1+e^u))/du| <= 1/4
        sig_grad = 2.0 * np.maximum(rec.y * a[..., None], 0.0)
        g_pred_err = (p.eta * rec.mu_norm2 / (p.n * p.m)) * ((sig_grad + 2 * dz) * w_err[:, None, None, :]
                                                             + 2 * dz).sum(-1)
        r_pred_err = (p.eta * rec.xi_norm2 / (p.n * p.m)) * (2.0 * np.maximum(b, 0.0) * w_err[:, None, None, :] + 2 * dz)
        obs_err = (cerr[blk] + cerr[blk + 1])[:, None, None]
        g_tol = C.IDENTITY_SAFETY * (obs_err + g_pred_err)
        r_tol = C.IDENTITY_SAFETY * (obs_err[..., None] + r_pred_err)
        g_res, r_res = np.abs(dg_obs - dg_pred), np.abs(dr_obs - dr_pred)
        out["gamma_ratio"] = max(out["gamma_ratio"], float((g_res / g_tol).max()))
        out["rho_ratio"] = max(out["rho_ratio"], float((r_res / r_tol).max()))
        out["gamma_abs"] = max(out["gamma_abs"], float(g_res.max()))
        out["rho_abs"] = max(out["rho_abs"], float(r_res.max()))
        closed = b <= 0
        if closed.any():
            out["gate_ratio"] = max(out["gate_ratio"], float((np.abs(dr_obs) / r_tol)[closed].max()))
        moved = np.abs(dr_obs) > r_tol
        expected = np.sign(J[None, :, None, None] * rec.y * eps[:, None, None, :]) * (b > 0)
        out["sign_checked"] += int(moved.sum())
        out["sign_mismatch"] += int((moved & (np.sign(dr_obs) != expected)).sum())
    return out


@claim("identity.signal_update", "identity",
       "gamma_jr(t+1) - gamma_jr(t) = -(eta/nm) sum_i l'_i eps_i sigma'(y_i <w_jr, mu>) |mu|^2, with the stored flips "
       "(update (4), RECON; both algorithms)", "equal at every step within the float error bound")
def signal_update(rec: Recording) -> Outcome:
    return _update_outcome(rec, "gamma")


def _update_outcome(rec: Recording, which: str) -> Outcome:
    """The outcome of an update identity: the largest residual of ``which`` (gamma or rho) against its bound."""
    r = _identity_residuals(rec)
    worst, ratio = r[f"{which}_abs"], r[f"{which}_ratio"]
    return Outcome(f"max |residual| = {_fmt(worst)} over {r['steps']} steps ({_fmt(ratio)} of the error bound)",
                   ratio <= 1.0, {"max_residual": worst, "residual_over_bound": ratio, "steps": r["steps"]})


@claim("identity.noise_update", "identity",
       "rho_jri(t+1) - rho_jri(t) = -(eta/nm) j y_i l'_i eps_i sigma'(<w_jr, xi_i>) |xi_i|^2 (updates (5)/(6), RECON; "
       "both algorithms)", "equal at every step within the float error bound")
def noise_update(rec: Recording) -> Outcome:
    return _update_outcome(rec, "rho")


@claim("identity.gating", "identity", "rho_jri is frozen on every step where <w_jr(t), xi_i> <= 0 (squared-ReLU gate, "
       "§4.2)", "no change through a closed gate (within the float error bound)")
def gating(rec: Recording) -> Outcome:
    r = _identity_residuals(rec)
    return Outcome(f"largest change through a closed gate = {_fmt(r['gate_ratio'])} of the error bound",
                   r["gate_ratio"] <= 1.0, {"closed_gate_change_over_bound": r["gate_ratio"]})


@claim("identity.flip_sign_rule", "identity",
       "sign(Delta rho_jri) = j y_i eps_i 1(<w_jr, xi_i> > 0) whenever rho moves (§4.3; standard GD: eps = 1)",
       "no mismatch")
def flip_sign_rule(rec: Recording) -> Outcome:
    r = _identity_residuals(rec)
    _need(r["sign_checked"] > 0, "no coefficient moved beyond the float error bound")
    return Outcome(f"{r['sign_mismatch']} mismatches in {r['sign_checked']} moves", r["sign_mismatch"] == 0,
                   {"mismatches": r["sign_mismatch"], "moves": r["sign_checked"]})


@claim("identity.signal_envelope", "identity",
       "|gamma_jr(t)| + |<w_jr(0), mu>| <= (1 + 2 eta |mu|^2/m)^t |<w_jr(0), mu>| (Lemma D.1's one-step argument; "
       "exact for both algorithms at every t)", lambda p: f"per-step factor <= {_fmt(p.envelope_rate)}")
def signal_envelope(rec: Recording) -> Outcome:
    a0 = np.abs(rec.a[0])
    _need(bool((a0 > 0).all()), "some neuron starts exactly orthogonal to mu")
    lhs = np.log(np.abs(rec.gamma) + a0) - np.log(a0)
    rhs = rec.steps[:, None, None] * math.log(rec.params.envelope_rate)
    tol = (rec.coefficient_error()[:, None, None] / a0) * C.IDENTITY_SAFETY
    excess = float((lhs - rhs - tol).max())
    return Outcome(f"largest log-excess over the envelope {_fmt(excess)} (<= 0 required)", excess <= 0,
                   {"max_log_excess": excess, "max_log_growth": float(lhs.max())})


@claim("identity.logged_outputs", "identity",
       "the logged clean loss L_S and margins y_i f_i (min, mean, max) equal those rebuilt from the recorded inner "
       "products with f = (1/m) sum_{j,r} j [sigma(<w_jr, y_i mu>) + sigma(<w_jr, xi_i>)] (the network of §2)",
       "equal at every step within the float error bound")
def logged_outputs(rec: Recording) -> Outcome:
    names = ("loss", "margin_min", "margin_mean", "margin_max")
    _need(all(k in rec.scalars for k in names), "the run logged no loss or margins")
    mg = rec.margins()
    rebuilt = {"loss": logistic(mg).mean(axis=1), "margin_min": mg.min(axis=1), "margin_mean": mg.mean(axis=1),
               "margin_max": mg.max(axis=1)}
    # |d margin| <= (2/m) sum_{j,r} (|a| + |b|) dz per sample; the loss moves by at most that (|l'| < 1)
    dz = rec.inner_error()
    bound = C.IDENTITY_SAFETY * (2.0 / rec.params.m) * (
        (np.abs(rec.a)[..., None] + np.abs(rec.b)).sum(axis=(1, 2)).max(axis=1) + dz) * dz
    worst = {k: float(np.nanmax(np.abs(rec.scalars[k] - rebuilt[k]) / bound)) for k in names}
    ratio = max(worst.values())
    return Outcome(f"largest mismatch {_fmt(ratio)} of the error bound ({max(worst, key=worst.get)})", ratio <= 1.0,
                   {f"{k}_over_bound": v for k, v in worst.items()})


@claim("identity.noisy_loss_floor", "identity",
       "the logged flip-averaged loss (1/n) sum_i [(1-p) l(y_i f_i) + p l(-y_i f_i)] equals its value from the "
       "recorded inner products and is >= H_b(p) at every step (§7.6)",
       lambda p: f">= H_b(p) = {_fmt(binary_entropy(p.p))}", algorithm="label_noise")
def noisy_loss_floor(rec: Recording) -> Outcome:
    p = rec.params.p
    _need(0 < p < 1, f"p = {p}: the floor H_b(p) is 0")
    logged = rec.scalars.get("loss_noisy_expected")
    _need(logged is not None, "the run logged no flip-averaged loss")
    mg = rec.margins()
    rebuilt = ((1 - p) * logistic(mg) + p * logistic(-mg)).mean(axis=1)
    dz = rec.inner_error()
    bound = C.IDENTITY_SAFETY * (2.0 / rec.params.m) * (
        (np.abs(rec.a)[..., None] + np.abs(rec.b)).sum(axis=(1, 2)).max(axis=1) + dz) * dz
    mismatch = float(np.max(np.abs(logged - rebuilt) / bound))
    floor = binary_entropy(p)
    worst = float(logged.min())
    slack = C.IDENTITY_SAFETY * 4 * float(np.finfo(np.dtype(rec.train_dtype)).eps)  # the logged value's rounding
    return Outcome(f"min logged {_fmt(worst)} vs H_b(p) = {_fmt(floor)}; mismatch with the recording "
                   f"{_fmt(mismatch)} of the error bound", worst >= floor * (1 - slack) and mismatch <= 1.0,
                   {"min_expected_loss": worst, "floor": floor, "mismatch_over_bound": mismatch})


# -- standard GD invariants ------------------------------------------------------------------------------------------
@claim("invariant.gd_signs", "invariant",
       "standard GD: gamma >= 0 and non-decreasing, rho_bar >= 0 and non-decreasing, rho_under <= 0 and "
       "non-increasing, at every step (§4.3; Lemma 4.3 proof 'rho never decreases')",
       "all hold (within the float error bound)", algorithm="gd")
def gd_signs(rec: Recording) -> Outcome:
    pairs = _consecutive_pairs(rec)
    err = C.IDENTITY_SAFETY * rec.coefficient_error()
    own = np.broadcast_to(rec.y[None, None, :] == J[:, None, None], rec.rho.shape[1:])  # y_i = j: rho_bar
    e = err[:, None, None]
    bad = {
        "gamma_negative": int((rec.gamma < -e).sum()),
        "rho_bar_negative": int(((rec.rho < -e[..., None]) & own).sum()),
        "rho_under_positive": int(((rec.rho > e[..., None]) & ~own).sum()),
    }
    de = (err[pairs] + err[pairs + 1])[:, None, None]
    dg = rec.gamma[pairs + 1] - rec.gamma[pairs]
    dr = rec.rho[pairs + 1] - rec.rho[pairs]
    bad["gamma_decrease"] = int((dg < -de).sum())
    bad["rho_bar_decrease"] = int(((dr < -de[..., None]) & own).sum())
    bad["rho_under_increase"] = int(((dr > de[..., None]) & ~own).sum())
    failed = {k: v for k, v in bad.items() if v}
    text = "all sign and monotonicity constraints hold" if not failed else \
        "violations: " + ", ".join(f"{k} x{v}" for k, v in failed.items())
    return Outcome(text, not failed, bad)


# -- coefficient bound (both algorithms) -----------------------------------------------------------------------------
@claim("bounded.coefficients", "stage 2", "every |gamma|, |rho| <= alpha = 4 log T* for t <= T* (Prop. 4.1, both "
       "algorithms); T* = the run's last step", lambda p: f"<= {_fmt(p.alpha(p.steps))}",
       hypotheses=("(iii) learning rate",))
def bounded_coefficients(rec: Recording) -> Outcome:
    p = rec.params
    alpha = p.alpha(rec.last_step)
    beta = 2 * max(float(np.abs(rec.a[0]).max()), float(np.abs(rec.b[0]).max()))
    cond = beta + C.PROP41_CROSS_TALK * math.sqrt(math.log(4 * p.n**2 / p.delta) / p.d) * p.n * alpha <= 2 * alpha
    worst = max(float(np.abs(rec.gamma).max()), float(np.abs(rec.rho).max()))
    return Outcome(f"max |gamma|, |rho| = {_fmt(worst)} vs alpha = {_fmt(alpha)}", worst <= alpha,
                   {"max": worst, "alpha": alpha, "beta": beta,
                    "hypotheses_measured": {"beta + 16 sqrt(log(4n^2/delta)/d) n alpha <= 2 alpha": cond}})


# -- standard GD, stage 1 and T1 ---------------------------------------------------------------------------------------
def stage1_end_gd(rec: Recording) -> dict[str, Any]:
    """T₁ of standard GD (formula) and the measured C₁ = min |ℓ'| over [0, min(T₁, end)]."""
    t1 = rec.params.t1_gd()
    _need(math.isfinite(t1), f"s_xi = {_fmt(rec.params.s_xi)} >= 1: no small initialisation, T1 undefined")
    lp = rec.loss_derivatives()
    mask = rec.upto(t1)[: lp.shape[0]]
    c1 = float(lp[mask].min())
    return {"T1": t1, "C1": c1, "T1_in_run": t1 <= rec.last_step}


GD_STAGE1 = (*ALL_31, "low SNR (proof)")


@claim("gd.noise_memorized_by_T1", "T1",
       "standard GD: min_i max_r rho_bar_{y_i,r,i}(T1) >= 1 at T1 = 4 log(1/s_xi)/lambda_n (Lemma 4.2(i), D.4)",
       lambda p: f"the first step with min_i max_r rho_bar >= 1 is <= T1 = {_fmt(p.t1_gd())}", algorithm="gd",
       hypotheses=GD_STAGE1)
def gd_noise_memorized(rec: Recording) -> Outcome:
    s = stage1_end_gd(rec)
    first = first_crossing(rec.steps, rec.noise_min(), C.NOISE_LEVEL_T1)
    if first is None:
        _need(s["T1_in_run"], f"run too short: T1 = {_fmt(s['T1'])} > last step {rec.last_step} and the noise has "
                              "not reached 1 yet")
        return Outcome(f"min_i R_i never reaches 1 (max {_fmt(float(rec.noise_min().max()))})", False,
                       {"T1": s["T1"], "first_step": None})
    return Outcome(f"min_i R_i reaches 1 at step {_fmt(first)} (T1 = {_fmt(s['T1'])})", first <= s["T1"],
                   {"T1": s["T1"], "first_step": first})


@claim("gd.noise_lower_curve", "stage 1",
       "standard GD: max_r rho_bar_{y_i,r,i}(t) >= exp(eta C1 sigma_p^2 d t/(2nm)) s_xi/4 - 0.6 beta_bar for t <= T1, "
       "C1 = min |l'| measured on [0, T1] (Lemma D.4)", "holds for every sample and step up to T1", algorithm="gd",
       hypotheses=GD_STAGE1)
def gd_noise_lower_curve(rec: Recording) -> Outcome:
    p = rec.params
    s = stage1_end_gd(rec)
    mask = rec.upto(s["T1"])
    beta_bar = float(np.take_along_axis(rec.b[0], rec.own_bank()[None, None, :], axis=0)[0].max(axis=0).min())
    rate = p.eta * s["C1"] * p.sigma_p**2 * p.d / (C.D4_RATE_DIVISOR * p.n * p.m)
    bound = np.exp(rate * rec.steps[mask]) * p.s_xi * C.D4_INIT_FRACTION - C.D4_BETA_FRACTION * beta_bar
    _need(bool((bound > 0).any()), f"vacuous: the bound is <= 0 at every step up to T1 (beta_bar = {_fmt(beta_bar)})")
    obs = rec.noise_per_sample()[mask]
    ok = obs >= bound[:, None] - C.IDENTITY_SAFETY * rec.coefficient_error()[mask][:, None]
    return Outcome(f"{ok.mean():.1%} of (step, sample) satisfy it up to step {int(rec.steps[mask][-1])}",
                   bool(ok.all()), {"C1": s["C1"], "rate": rate, "beta_bar": beta_bar, "T1": s["T1"],
                                    "fraction": float(ok.mean())})


@claim("gd.wrong_label_noise_small", "stage 1",
       "standard GD: max |rho_under|(t) <= (3 eta sigma_p^2 d t/(nm)) sqrt(log(8mn/delta)) s_xi for t <= T1 "
       "(Lemma D.2 as printed; Lemma 4.2(ii))", "holds at every step up to T1", algorithm="gd", hypotheses=GD_STAGE1)
def gd_wrong_label_small(rec: Recording) -> Outcome:
    p = rec.params
    s = stage1_end_gd(rec)
    mask = rec.upto(s["T1"])
    t = rec.steps[mask]
    bound = C.D2_FACTOR * p.lambda_n * t * math.sqrt(math.log(C.D2_LOG_NUMERATOR * p.m * p.n / p.delta)) * p.s_xi
    obs = rec.wrong_label_max()[mask]
    ok = obs <= bound + C.IDENTITY_SAFETY * rec.coefficient_error()[mask]
    return Outcome(f"{ok.mean():.1%} of steps satisfy it; max ratio {_fmt(float(np.max(obs[1:] / bound[1:])) if len(t) > 1 else 0.0)}",
                   bool(ok.all()), {"T1": s["T1"], "fraction": float(ok.mean())})


@claim("gd.signal_small_at_T1", "stage 1",
       "standard GD: max gamma(t) <= e^8 sqrt(2 log(8m/delta)) s_mu for t <= T1 (Lemma 4.2(iii): D.1 at T1 under the "
       "low-SNR condition, with Lemma B.2)", lambda p: f"<= {_fmt(C.SIGNAL_T1_GROWTH * math.sqrt(2 * math.log(8 * p.m / p.delta)) * p.s_mu)}",
       algorithm="gd", hypotheses=GD_STAGE1)
def gd_signal_small(rec: Recording) -> Outcome:
    p = rec.params
    s = stage1_end_gd(rec)
    mask = rec.upto(s["T1"])
    bound = C.SIGNAL_T1_GROWTH * math.sqrt(2 * math.log(C.B2_SIGNAL_LOG_NUMERATOR * p.m / p.delta)) * p.s_mu
    envelope = (p.envelope_rate ** rec.steps[mask] - 1) * float(np.abs(rec.a[0]).max())
    _need(bool((bound < envelope).any()), "vacuous: the bound is implied by the exact signal envelope at every step "
                                          "up to T1")
    obs = rec.signal_max()[mask]
    worst = float(obs.max())
    return Outcome(f"max gamma = {_fmt(worst)} = {_fmt(worst / p.s_mu)} s_mu up to step {int(rec.steps[mask][-1])}",
                   worst <= bound, {"max_gamma": worst, "bound": bound, "ratio_to_s_mu": worst / p.s_mu, "T1": s["T1"]})


@claim("gd.harmful_overfitting", "test error",
       "standard GD reaches L_S <= eps with population 0-1 error >= 0.24 (Theorem 3.2); checked at every evaluated "
       "step after T1 whose clean loss is <= eps = 0.1 (so for every eps <= 0.1)", "error >= 0.24",
       algorithm="gd", hypotheses=ALL_31)
def gd_harmful_overfitting(rec: Recording) -> Outcome:
    err, se, source = _test_error(rec)
    loss = rec.scalars.get("loss")
    _need(loss is not None, "no training loss logged")
    t1 = rec.params.t1_gd()
    sel = np.isfinite(err) & (loss <= C.GD_OVERFIT_LOSS_EPS) & (rec.steps >= min(t1, rec.last_step))
    _need(bool(sel.any()), f"the training loss never falls to {C.GD_OVERFIT_LOSS_EPS} at an evaluated step after T1")
    low = float((err[sel] + C.ERROR_SE_MULTIPLIER * se[sel]).min())
    return Outcome(f"{source} >= {_fmt(float(err[sel].min()))} at the {int(sel.sum())} evaluated steps with "
                   f"L_S <= {C.GD_OVERFIT_LOSS_EPS}", low >= C.GD_TEST_ERROR_FLOOR,
                   {"min_error": float(err[sel].min()), "error_source": source, "steps": int(sel.sum()),
                    "final_error": float(err[np.isfinite(err)][-1])})


def _test_error(rec: Recording) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-step error (NaN where not evaluated) and its standard error: the population error when logged,
    else the test-set error with its binomial standard error."""
    if "population_error" in rec.scalars:
        se = rec.scalars.get("population_error_se", np.zeros_like(rec.scalars["population_error"]))
        return rec.scalars["population_error"], np.nan_to_num(se), "population error"
    if "test_error" in rec.scalars:
        e = rec.scalars["test_error"]
        n_test = max(int(rec.params.config.get("n_test", 0)), 1)
        return e, np.sqrt(np.clip(e * (1 - e), 0, None) / n_test), "test error"
    raise NotCheckable("no test or population error logged (n_test = 0 and population_draws = 0): train with "
                       "`dyn run --set population_draws=5000`")


# -- label-noise GD, stage 1 and T1 --------------------------------------------------------------------------------------
def stage1_end_ln(rec: Recording) -> dict[str, Any]:
    """T₁ of label-noise GD with C₀ measured over the empirical stage 1.

    C₀ is the stage-1 lower bound on |ℓ̃'| (Lemma E.1). Taking the minimum up to the formula's own T₁ has no
    fixed point once margins grow (C₀ falls, T₁ grows), so it is measured as min |ℓ̃'_i(t)| over t up to the first
    step at which every sample is memorized at the level Lemma 4.4(i) states (min_i max_{j,r} ρ ≥ 0.1; the whole
    run if never); then T₁ = 4 log(20/s_ξ)/(C₀ λ_n).
    """
    lp = rec.loss_derivatives()
    event = first_crossing(rec.steps, rec.memorized(), C.NOISE_LEVEL_T1_LN_STATED)
    upto = rec.last_step if event is None else event
    mask = rec.upto(upto)[: lp.shape[0]]
    c0 = float(lp[mask].min())
    t1 = rec.params.t1_ln(c0)
    _need(math.isfinite(t1), "T1 undefined (C0 = 0 or s_xi >= 20)")
    return {"T1": t1, "C0": c0, "memorized_at": event, "T1_in_run": t1 <= rec.last_step}


def stage2_window_ln(rec: Recording) -> dict[str, Any]:
    """[T₁, min(T₂, end)] of label-noise GD, with c₁, c₂ measured on it (T₂ depends on c₂: iterated to a fixed
    point, starting from the whole recorded stage 2)."""
    s = stage1_end_ln(rec)
    _need(s["T1_in_run"], f"run too short: T1 = {_fmt(s['T1'])} (C0 = {_fmt(s['C0'])}) > last step {rec.last_step}")
    mg = rec.margins()
    stop = float(rec.last_step)
    for _ in range(50):
        win = rec.window(s["T1"], stop)
        if not win.any():
            break
        c2 = float(mg[win].max())
        t2 = rec.params.t2_ln(s["T1"], c2)
        new_stop = min(t2, float(rec.last_step))
        if new_stop >= stop:
            break
        stop = new_stop
    win = rec.window(s["T1"], stop)
    _need(int(win.sum()) >= C.MIN_WINDOW_STEPS, f"stage-2 window [{_fmt(s['T1'])}, {_fmt(stop)}] has "
                                                f"{int(win.sum())} recorded steps (< {C.MIN_WINDOW_STEPS})")
    c1 = float(mg[win].min())
    c2 = float(mg[win].max())
    p_ok = C.E4_P_FACTOR * rec.params.p <= 0.5 / (1 + math.exp(min(c2, 700.0)))
    return {**s, "T2": rec.params.t2_ln(s["T1"], c2), "stop": stop, "window": win, "c1": c1, "c2": c2,
            "T2_in_run": rec.params.t2_ln(s["T1"], c2) <= rec.last_step, "p_condition": p_ok}


LN_STAGE1 = (*LN_31, "low SNR (proof)")


@claim("ln.noise_memorized_by_T1", "T1",
       "label-noise GD: min_i max_{j,r} rho_jri(T1) >= 0.1 (Lemma 4.4(i) as stated; its proof gives >= 1) at "
       "T1 = 4 log(20/s_xi)/(C0 lambda_n), C0 measured", ">= 0.1 at T1", algorithm="label_noise", hypotheses=LN_STAGE1)
def ln_noise_memorized(rec: Recording) -> Outcome:
    s = stage1_end_ln(rec)
    i = rec.index_at(s["T1"])
    _need(i is not None, f"run too short: T1 = {_fmt(s['T1'])} > last step {rec.last_step}")
    value = float(rec.memorized()[i])
    return Outcome(f"{_fmt(value)} at step {int(rec.steps[i])} (T1 = {_fmt(s['T1'])}, C0 = {_fmt(s['C0'])}); the "
                   f"proof's level 1 {'also holds' if value >= C.NOISE_LEVEL_T1 else 'fails'}",
                   value >= C.NOISE_LEVEL_T1_LN_STATED,
                   {"value": value, "T1": s["T1"], "C0": s["C0"], "proof_level_holds": value >= C.NOISE_LEVEL_T1,
                    "hypotheses_measured": {"p < C0/6 (Lemma E.1)": rec.params.p < s["C0"] / C.E1_P_DIVISOR}})


@claim("ln.signal_lower_curve", "stage 1",
       "label-noise GD: B_j(t) = max_r j<w_jr(t), mu> >= exp(C0 eta |mu|^2 t/(8m)) s_mu/2 for t <= T1, j = +-1 "
       "(Lemma E.1, needs p < C0/6)", "holds at every step up to T1 for both banks", algorithm="label_noise",
       hypotheses=LN_STAGE1)
def ln_signal_lower_curve(rec: Recording) -> Outcome:
    p = rec.params
    s = stage1_end_ln(rec)
    mask = rec.upto(s["T1"])
    rate = s["C0"] * p.eta * p.mu_norm**2 / (C.E1_RATE_DIVISOR * p.m)
    bound = np.exp(rate * rec.steps[mask]) * p.s_mu * C.E1_INIT_FRACTION
    obs = rec.signal_total()[mask]
    ok = obs >= bound[:, None] - C.IDENTITY_SAFETY * rec.coefficient_error()[mask][:, None]
    return Outcome(f"{ok.mean():.1%} of (step, bank) satisfy it up to step {int(rec.steps[mask][-1])}; "
                   f"B(0) = {_fmt(float(obs[0].min()))} vs s_mu/2 = {_fmt(p.s_mu / 2)}", bool(ok.all()),
                   {"C0": s["C0"], "rate": rate, "T1": s["T1"], "fraction": float(ok.mean()),
                    "hypotheses_measured": {"p < C0/6 (Lemma E.1)": p.p < s["C0"] / C.E1_P_DIVISOR}})


# -- label-noise GD, stage 2 -----------------------------------------------------------------------------------------------
def _window_numbers(w: dict[str, Any]) -> dict[str, Any]:
    return {"T1": w["T1"], "T2": w["T2"], "window_end": w["stop"], "C0": w["C0"], "c1": w["c1"], "c2": w["c2"]}


def _log_growth(steps: np.ndarray, curve: np.ndarray) -> dict[str, Any]:
    """The fit a + b log t of a curve over a window (:func:`dyn.phases.stage2_growth`): b ≈ 1 is GD's logarithmic
    margin growth, b ≈ 0 a bounded curve."""
    return stage2_growth(steps, curve, float(steps[0]))


LN_STAGE2 = LN_31


def _e4_condition(w: dict[str, Any]) -> dict[str, bool]:
    return {"3p/2 <= 1/(2(1 + e^c2)) (Lemma E.4)": w["p_condition"]}


@claim("ln.memorization_bounded", "stage 2",
       "label-noise GD: noise memorization iota_i = (1/m) sum_r rho_bar_{y_i,r,i}^2 stays in a constant band on "
       "[T1, T2] (Lemma 4.5(i)); read as: max_i iota_i fitted by a + b log t over the window has b <= 0.5 (standard GD: "
       "b ~ 1); C_iota and iota*_i measured", "b <= 0.5 (bounded, vs logarithmic growth under GD)",
       algorithm="label_noise", hypotheses=LN_STAGE2)
def ln_memorization_bounded(rec: Recording) -> Outcome:
    w = stage2_window_ln(rec)
    iota = rec.iota()[w["window"]]
    fit = _log_growth(rec.steps[w["window"]], iota.max(axis=1))
    center = iota.mean(axis=0)
    c_iota = float(np.abs(iota - center).max())
    return Outcome(f"max_i iota ~ a + {_fmt(fit['log_coefficient'])} log t over [{_fmt(w['T1'])}, {_fmt(w['stop'])}]; "
                   f"measured C_iota = {_fmt(c_iota)}, iota* in [{_fmt(float(center.min()))}, {_fmt(float(center.max()))}]",
                   fit["log_coefficient"] <= C.BOUNDED_LOG_COEFFICIENT,
                   {**_window_numbers(w), "log_coefficient": fit["log_coefficient"],
                    "relative_change": fit["relative_change"], "C_iota": c_iota,
                    "iota_star_min": float(center.min()), "iota_star_max": float(center.max()),
                    "hypotheses_measured": _e4_condition(w)})


@claim("ln.output_tracks_noise_energy", "stage 2",
       "label-noise GD: iota_i/2 <= y_i f_i <= 2 iota_i on [T1, T2] (Lemma 4.5(iii), appendix form; needs gamma << 1)",
       "holds for every sample and step of the window", algorithm="label_noise", hypotheses=LN_STAGE2)
def ln_output_tracks_noise(rec: Recording) -> Outcome:
    w = stage2_window_ln(rec)
    iota = rec.iota()[w["window"]]
    mg = rec.margins()[w["window"]]
    lo, hi = C.IOTA_OUTPUT_BAND
    ok = (mg >= lo * iota) & (mg <= hi * iota)
    gmax = float(rec.signal_max()[w["window"]].max())
    return Outcome(f"{ok.mean():.1%} of (step, sample) in the band", bool(ok.all()),
                   {**_window_numbers(w), "fraction": float(ok.mean()), "max_gamma": gmax,
                    "hypotheses_measured": {**_e4_condition(w), "gamma <= 0.1 (Lemma 4.5(ii))": gmax <= C.SIGNAL_CAP_PRINTED}})


@claim("ln.margins_bounded", "stage 2",
       "label-noise GD: c1 <= y_i f_i <= c2 on [T1, T2] for constants 0 < c1 <= c2 (Lemma E.4 induction); read as: "
       "min margin > 0 and max_i y_i f_i fitted by a + b log t over the window has b <= 0.5 (standard GD: b ~ 1); "
       "c1, c2 measured", "margins positive and bounded", algorithm="label_noise", hypotheses=LN_STAGE2)
def ln_margins_bounded(rec: Recording) -> Outcome:
    w = stage2_window_ln(rec)
    fit = _log_growth(rec.steps[w["window"]], rec.margins()[w["window"]].max(axis=1))
    ok = w["c1"] > 0 and fit["log_coefficient"] <= C.BOUNDED_LOG_COEFFICIENT
    return Outcome(f"margins in [{_fmt(w['c1'])}, {_fmt(w['c2'])}], max margin ~ a + {_fmt(fit['log_coefficient'])} "
                   "log t", ok, {**_window_numbers(w), "log_coefficient": fit["log_coefficient"],
                                  "hypotheses_measured": _e4_condition(w)})


@claim("ln.signal_grows", "stage 2",
       "label-noise GD: max_r (gamma_jr(t) + |<w_jr(0), mu>|) >= exp(eta |mu|^2 (t - T1)/(16m)) max_r |j<w_jr(T1), mu>| "
       "on [T1, T2], j = +-1 (Lemma 4.5(iv) as printed; the RECON rate eta|mu|^2/(4m(1 + e^c2)) is reported)",
       lambda p: f"growth rate >= {_fmt(p.eta * p.mu_norm**2 / (C.SIGNAL_RATE_DIVISOR_PRINTED * p.m))} per step",
       algorithm="label_noise", hypotheses=LN_STAGE2)
def ln_signal_grows(rec: Recording) -> Outcome:
    p = rec.params
    w = stage2_window_ln(rec)
    win = w["window"]
    t = rec.steps[win].astype(np.float64)
    i1 = int(np.flatnonzero(win)[0])
    lhs = (rec.gamma + np.abs(rec.a[0])[None]).max(axis=2)[win]  # (T, 2)
    start = np.abs(rec.a[i1]).max(axis=1)  # (2,)
    printed = p.eta * p.mu_norm**2 / (C.SIGNAL_RATE_DIVISOR_PRINTED * p.m)
    recon = p.eta * p.mu_norm**2 / (C.SIGNAL_RATE_DIVISOR_RECON * p.m * (1 + math.exp(min(w["c2"], 700.0))))
    tol = C.IDENTITY_SAFETY * rec.coefficient_error()[win][:, None]

    def holds(rate: float) -> np.ndarray:
        return lhs >= np.exp(rate * (t - t[0]))[:, None] * start[None] - tol

    ok = holds(printed)
    slope = [float(np.polyfit(t, np.log(np.maximum(lhs[:, j], 1e-300)), 1)[0]) for j in range(2)]
    return Outcome(f"{ok.mean():.1%} of (step, bank) satisfy the printed rate; fitted log-slopes "
                   f"{_fmt(slope[0])}, {_fmt(slope[1])} vs printed {_fmt(printed)}, RECON {_fmt(recon)}",
                   bool(ok.all()), {**_window_numbers(w), "fraction": float(ok.mean()), "rate_printed": printed,
                                    "rate_recon": recon, "recon_rate_holds": bool(holds(recon).all()),
                                    "slope_pos": slope[0], "slope_neg": slope[1],
                                    "hypotheses_measured": _e4_condition(w)})


@claim("ln.signal_cap_printed", "stage 2",
       "label-noise GD: gamma_jr(t) <= 0.1 on [T1, T2] (Lemma 4.5(ii) as printed; conflicts with (iv) and T2, "
       "notes §11.1)", "max gamma <= 0.1", algorithm="label_noise", hypotheses=LN_STAGE2)
def ln_signal_cap(rec: Recording) -> Outcome:
    w = stage2_window_ln(rec)
    worst = float(rec.signal_max()[w["window"]].max())
    return Outcome(f"max gamma = {_fmt(worst)} on the window", worst <= C.SIGNAL_CAP_PRINTED,
                   {**_window_numbers(w), "max_gamma": worst, "hypotheses_measured": _e4_condition(w)})


@claim("ln.signal_reaches_constant", "stage 2",
       "label-noise GD: B_j(T2) = max_r j<w_jr(T2), mu> >= 3 for j = +-1 (RECON of Lemma 4.5 / T2's constants, "
       "notes §7.5)", lambda p: ">= 3 at T2", algorithm="label_noise", hypotheses=LN_STAGE2)
def ln_signal_reaches_constant(rec: Recording) -> Outcome:
    w = stage2_window_ln(rec)
    b = rec.signal_total()
    first = first_crossing(rec.steps, b.min(axis=1), C.SIGNAL_LEVEL_T2_RECON)
    numbers = {**_window_numbers(w), "B_end": [float(v) for v in b[-1]], "first_step_both_ge_3": first}
    _need(w["T2_in_run"], f"run too short: T2 = {_fmt(w['T2'])} (c2 = {_fmt(w['c2'])}) > last step {rec.last_step}; "
                          f"B_j at the end = {_fmt(float(b[-1, 0]))}, {_fmt(float(b[-1, 1]))}; both >= 3 first at "
                          f"step {_fmt(first)}")
    i = rec.index_at(w["T2"])
    value = float(b[i].min())
    return Outcome(f"min_j B_j(T2) = {_fmt(value)} at step {int(rec.steps[i])}", value >= C.SIGNAL_LEVEL_T2_RECON,
                   {**numbers, "value": value, "hypotheses_measured": _e4_condition(w)})


@claim("ln.loss_order_one", "stage 2",
       "label-noise GD: the clean training loss stays Theta(1) (Theorem 3.3); read as: L_S >= l(z*)/2 on [T1, end], "
       "z* = log((1-p)/p) the equilibrium margin (§7.6)",
       lambda p: f"L_S >= {_fmt(C.LOSS_ORDER_ONE_FRACTION * float(logistic(p.equilibrium_margin)))}",
       algorithm="label_noise", hypotheses=LN_31)
def ln_loss_order_one(rec: Recording) -> Outcome:
    s = stage1_end_ln(rec)
    _need(s["T1_in_run"], f"run too short: T1 = {_fmt(s['T1'])} > last step {rec.last_step}")
    loss = rec.scalars.get("loss")
    _need(loss is not None, "no training loss logged")
    floor = C.LOSS_ORDER_ONE_FRACTION * float(logistic(rec.params.equilibrium_margin))
    worst = float(loss[rec.window(s["T1"], rec.last_step)].min())
    return Outcome(f"min L_S after T1 = {_fmt(worst)} vs {_fmt(floor)}", worst >= floor,
                   {"min_loss": worst, "floor": floor, "T1": s["T1"]})


# -- empirical reports of Figure 2 ---------------------------------------------------------------------------------------
def _figure2_config(p: Params) -> dict[str, bool]:
    same = all(math.isclose(float(p.config.get(k, math.nan)), float(v)) for k, v in C.FIGURE2.items()
               if not (k == "p" and p.algorithm == "gd"))
    return {"the paper's Figure-2 configuration": same}


@claim("gd.loss_near_zero", "empirical", "standard GD minimizes the training loss 'to a near-zero value' (§5, Fig. 2); "
       "read as: L_S < 0.01 at the last step", "L_S < 0.01 at the end", algorithm="gd")
def gd_loss_near_zero(rec: Recording) -> Outcome:
    loss = rec.scalars.get("loss")
    _need(loss is not None, "no training loss logged")
    final = float(loss[-1])
    return Outcome(f"L_S = {_fmt(final)} at step {rec.last_step}", final < C.GD_LOSS_NEAR_ZERO,
                   {"final_loss": final, "hypotheses_measured": _figure2_config(rec.params)})


@claim("gd.noise_exceeds_signal", "empirical",
       "standard GD: noise memorization 'significantly exceeds' signal learning (§5, Fig. 2); read as: "
       "max rho_bar / max gamma >= 10 at the last step", ">= 10 at the end", algorithm="gd")
def gd_noise_exceeds_signal(rec: Recording) -> Outcome:
    r = ratios(rec)
    main = r["rho_bar_max_over_gamma_max"]
    return Outcome(f"max rho_bar / max gamma = {_fmt(main)} at step {rec.last_step}", main >= C.GD_RATIO_SIGNIFICANT,
                   {**r, "hypotheses_measured": _figure2_config(rec.params)})


def ratios(rec: Recording, i: int = -1) -> dict[str, float]:
    """The candidate readings of Figure 2's "ratio" at recorded index ``i`` (notes §10.6)."""
    g = float(rec.signal_max()[i])
    b_total = float(rec.signal_total()[i].max())
    mean_noise = float(rec.noise_per_sample()[i].mean())
    raw_sig = float(np.abs(rec.a[i]).max())
    return {"rho_bar_max_over_gamma_max": float(rec.noise_max()[i]) / g if g > 0 else math.inf,
            "rho_bar_min_over_gamma_max": float(rec.noise_min()[i]) / g if g > 0 else math.inf,
            "raw_inner_max_ratio": float(rec.b[i].max()) / raw_sig if raw_sig > 0 else math.inf,
            "mean_R_over_max_B": mean_noise / b_total if b_total > 0 else math.inf}


@claim("ln.loss_near_half", "empirical", "label-noise GD: the training loss 'oscillates around 0.5' (§5, Fig. 2); read "
       "as: the mean of the clean or of the optimised loss over the second half of the run lies in [0.4, 0.6]",
       "one of the two means in [0.4, 0.6]", algorithm="label_noise")
def ln_loss_near_half(rec: Recording) -> Outcome:
    half = rec.steps >= rec.last_step / 2
    means = {}
    for name in ("loss", "loss_noisy"):
        v = rec.scalars.get(name)
        if v is not None and np.isfinite(v[half]).any():
            means[name] = float(np.nanmean(v[half]))
    _need(bool(means), "no training loss logged")
    lo, hi = C.LN_LOSS_AROUND_HALF
    ok = any(lo <= v <= hi for v in means.values())
    return Outcome(", ".join(f"mean {k} = {_fmt(v)}" for k, v in means.items())
                   + f" (H_b(p) = {_fmt(binary_entropy(rec.params.p))})", ok,
                   {**{f"mean_{k}": v for k, v in means.items()}, "binary_entropy": binary_entropy(rec.params.p),
                    "hypotheses_measured": _figure2_config(rec.params)})


@claim("ln.test_accuracy_improves", "empirical",
       "label-noise GD: test accuracy 'steadily improves' after stage 1 (§5, Fig. 2); read as: the error at the last "
       "evaluation is below the error when every sample is first memorized (min_i max rho >= 0.1, Lemma 4.4(i)), by "
       "2 standard errors", "final error < error at the end of stage 1", algorithm="label_noise")
def ln_test_accuracy_improves(rec: Recording) -> Outcome:
    err, se, source = _test_error(rec)
    event = stage1_end_ln(rec)["memorized_at"]
    _need(event is not None, "no sample-wide memorization (min_i max rho >= 0.1) in the run: no end of stage 1")
    ev = np.flatnonzero(np.isfinite(err) & (rec.steps >= event))
    _need(ev.size >= 2, "fewer than two evaluations after stage 1")
    first, last = ev[0], ev[-1]
    _need(err[first] > C.ERROR_SE_MULTIPLIER * se[first] + 0.0,
          f"the {source} is already {_fmt(float(err[first]))} at the end of stage 1 (step {int(rec.steps[first])})")
    diff = float(err[first] - err[last])
    ok = diff > C.ERROR_SE_MULTIPLIER * float(se[first] + se[last])
    return Outcome(f"{source} {_fmt(float(err[first]))} at step {int(rec.steps[first])} -> {_fmt(float(err[last]))} at "
                   f"step {int(rec.steps[last])}", ok,
                   {"error_start": float(err[first]), "error_end": float(err[last]), "start_step": int(rec.steps[first]),
                    "error_source": source, "hypotheses_measured": _figure2_config(rec.params)})


# -- heuristics (DERIVED, notes §7.6) ------------------------------------------------------------------------------------
@claim("heuristic.race", "heuristic",
       "the noise reaches Theta(1) before the signal iff n SNR^2/2 < log(1/(sqrt(2 log m) s_mu))/log(1/(sqrt(2 log m) "
       "s_xi)) (DERIVED, notes §7.6): which of min_i R_i and max gamma first reaches 1",
       lambda p: ("noise first" if p.race_prediction().get("noise_first") else "signal first")
       if p.race_prediction()["applicable"] else "not applicable (initialisation at the Theta(1) scale)")
def race(rec: Recording) -> Outcome:
    pred = rec.params.race_prediction()
    _need(pred["applicable"], "initialisation already at the Theta(1) scale")
    t_noise = first_crossing(rec.steps, rec.noise_min(), 1.0)
    t_signal = first_crossing(rec.steps, rec.signal_max(), 1.0)
    _need(t_noise is not None or t_signal is not None, "neither reaches 1 within the run")
    noise_first = t_signal is None or (t_noise is not None and t_noise < t_signal)
    return Outcome(f"noise reaches 1 at step {_fmt(t_noise)}, signal at {_fmt(t_signal)}",
                   noise_first == pred["noise_first"],
                   {"t_noise": t_noise, "t_signal": t_signal, "predicted_noise_first": pred["noise_first"],
                    "lhs": pred["lhs"], "rhs": pred["rhs"], "t_noise_heuristic": pred["t_noise"],
                    "t_signal_heuristic": pred["t_signal"]})


@claim("heuristic.equilibrium_margin", "heuristic",
       "label-noise GD: the median stage-2 margin y_i f_i lies slightly below z* = log((1-p)/p) (DERIVED, notes §7.6); "
       "read as: in [z*/2, z*]", lambda p: f"in [{_fmt(p.equilibrium_margin / 2)}, {_fmt(p.equilibrium_margin)}]",
       algorithm="label_noise")
def equilibrium_margin(rec: Recording) -> Outcome:
    z = rec.params.equilibrium_margin
    _need(math.isfinite(z) and z > 0, f"p = {rec.params.p}: no positive equilibrium margin")
    s = stage1_end_ln(rec)
    _need(s["T1_in_run"], f"run too short: T1 = {_fmt(s['T1'])} > last step {rec.last_step}")
    median = float(np.median(rec.margins()[rec.window(s["T1"], rec.last_step)]))
    lo, hi = C.EQUILIBRIUM_MARGIN_BAND
    return Outcome(f"median margin {_fmt(median)} vs z* = {_fmt(z)}", lo * z <= median <= hi * z,
                   {"median_margin": median, "z_star": z, "T1": s["T1"]})
