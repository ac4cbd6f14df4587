"""The claims of Huang et al. 2024, one module-level function each, checked on a recorded run.

Each claim is registered with :func:`claim`: its name, stage, statement (with the lemma it comes from), prediction,
the modality it concerns and the hypotheses it is proven under (Assumption 4.1, term by term: :data:`.ASSUMPTIONS`).
A check receives the run and its :class:`~.params.Params` and returns an :class:`~dyn.theory.Outcome`. Rules:

- Every check can fail, and says "not checkable" with the reason when the run cannot decide: too short to reach
  the theory's T₁, nothing moved beyond float rounding (an untrained run supports nothing), a stage-1 rate,
  direction or bound (or a stage-2 claim) on a window where neither max A nor max Ψ changed by
  :data:`~dyn.analysis.phases.MIN_EFFECT` ("did not move"), a race closer than
  :data:`~dyn.analysis.summary.TIE_RTOL` (a tie), a confidence interval that straddles the prediction, or a bound
  that cannot fail on this run ("vacuous: ...").
- Tolerances of exact identities are in each coefficient's own units (:func:`.quantities.rounding`).
- Rates are judged against the rigorous per-step bounds of the lemmas with a confidence interval (AR(1)-aware),
  the qualitative direction (which of signal and noise grows faster) exactly; never a "within ×2" window.
- Claims about stage 1 use the window from step 0 to the earlier of the theory's T₁ and the step where the loss
  derivatives leave the stage-1 band (Lemma C.2's premise); if the band is left at step 0 the premise is reported
  as a hypothesis not met. Claims at T₁ use the recorded step at the formula's T₁.
- Derived quantities (A, Ψ, fits and their bootstraps) are computed once per run (:mod:`.quantities`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import scipy.stats

from ...analysis.coefficients import weights_at
from ...analysis.phases import MIN_EFFECT, log_slope, stage2_growth
from ...analysis.summary import TIE_RTOL, winner
from ...errors import NotCheckable
from ..base import Claim, Outcome
from . import constants as C
from .params import ASSUMPTIONS, TEST_SIGNAL, Params, conditions
from .quantities import (coefficient_maxima, coefficients_of, index_at, mean_negatives, moved, noise_curve, proof,
                         rounding, signal_curve, stage1_end)

__all__ = ["ClaimSpec", "CLAIMS", "claim", "claims_for", "condition_claims", "observed_winner"]

#: Relative slack for inequalities checked at equality on float32 recordings.
REL_TOL = 1e-5
#: READING: stage-1 rates closer than this fraction are a tie (the direction is undecided).
DIRECTION_MARGIN = 0.05
#: The band-premise hypothesis a run itself can fail (beside the config's Assumption 4.1).
BAND_PREMISE = "stage-1 band at step 0 (Lemma C.2)"


@dataclass(frozen=True)
class ClaimSpec:
    """A registered claim: metadata plus its check ``(run, params) -> Outcome``."""

    name: str
    stage: str
    statement: Callable[[Params], str]
    predicted: Callable[[Params], str]
    check: Callable[[Any, Params], Outcome]
    modality: str | None
    hypotheses: tuple[str, ...]

    def bind(self, p: Params) -> Claim:
        """The :class:`~dyn.theory.Claim` of this spec for a run with params ``p``."""
        return Claim(self.name, self.stage, self.statement(p), self.predicted(p),
                     lambda run: self.check(run, p), self.hypotheses)


#: Every claim, in reading order.
CLAIMS: list[ClaimSpec] = []


def _text(x: str | Callable[[Params], str]) -> Callable[[Params], str]:
    return x if callable(x) else (lambda p: x)


def claim(name: str, stage: str, statement: str | Callable[[Params], str], predicted: str | Callable[[Params], str],
          *, modality: str | None = None, hypotheses: tuple[str, ...] = ASSUMPTIONS) -> Callable:
    """Register the decorated ``(run, params) -> Outcome`` function as a claim (see :class:`ClaimSpec`)."""

    def wrap(fn: Callable[[Any, Params], Outcome]) -> Callable[[Any, Params], Outcome]:
        CLAIMS.append(ClaimSpec(name, stage, _text(statement), _text(predicted), fn, modality, hypotheses))
        fn.spec = CLAIMS[-1]  # type: ignore[attr-defined]
        return fn

    return wrap


def condition_claims(p: Params) -> list[Claim]:
    """Assumption 4.1 term by term and the proofs' constants, as rows (conditions, not claims)."""
    out = []
    for c in conditions(p):
        outcome = Outcome(c.observed, c.met, dict(c.numbers))
        out.append(Claim(c.name, "assumption" if c.gating else "condition", f"{c.statement} ({c.source})",
                         c.required, lambda run, o=outcome: o))
    return out


def claims_for(p: Params) -> list[Claim]:
    """Conditions, then every claim about ``p``'s modality, in reading order."""
    return [*condition_claims(p), *(s.bind(p) for s in CLAIMS if s.modality in (None, p.modality))]


# -- helpers -------------------------------------------------------------------------------------------------------------
def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.4g}"


def _at_t1(run: Any, p: Params) -> int:
    """Index of the recorded step at the formula's T₁; NotCheckable when the run ends before it."""
    if not math.isfinite(p.T1):
        raise NotCheckable(f"T1 is infinite: nothing grows at eta = {_fmt(p.eta)}")
    i = index_at(run, p.T1)
    if i is None:
        raise NotCheckable(f"run too short: ends at step {int(run.steps[-1])}, before T1 = {_fmt(p.T1)} (formula)")
    return i


def _need_moved(run: Any, site: str, what: str) -> None:
    ok, biggest, tol = moved(run, site, what)
    if not ok:
        raise NotCheckable(f"nothing moved: max |{what}| = {_fmt(biggest)} in site {site} is within float rounding "
                           f"({_fmt(tol)}); an untrained run is no evidence")


def _stage1_window(run: Any, p: Params, what: str = "gamma") -> tuple[np.ndarray, tuple[str, ...], str]:
    """Steps of stage 1 (≤ T₁ and before the band is left), the band hypothesis if unmet, and a description."""
    _need_moved(run, "h", what)
    end = stage1_end(run)
    stop = min(p.T1, float(run.steps[-1]))
    unmet: tuple[str, ...] = ()
    where = f"steps 0..{int(run.steps[run.steps <= stop + 1e-9][-1])} (T1 = {_fmt(p.T1)})"
    if end.in_band_at_start is False:
        unmet = (BAND_PREMISE,)
        where += "; the loss derivatives were outside the stage-1 band from step 0"
    elif end.band_exit is not None and end.band_exit < stop:
        stop = end.band_exit
        where = f"steps 0..{int(stop)} (band left at step {_fmt(end.band_exit)}, T1 = {_fmt(p.T1)})"
    mask = run.steps <= stop + 1e-9
    if mask.sum() < 5:
        raise NotCheckable(f"stage 1 too short to judge a rate: {int(mask.sum())} recorded steps in {where}")
    _need_effect(run, mask, where)
    return mask, unmet, where


def _change(curve: np.ndarray) -> float:
    """The factor by which a positive curve moved away from its first value (either way); inf if not finite."""
    c = np.asarray(curve, dtype=np.float64)
    if not (np.all(np.isfinite(c)) and np.all(c > 0)):
        return math.inf
    return float(np.exp(np.max(np.abs(np.log(c / c[0])))))


def _need_effect(run: Any, mask: np.ndarray, where: str) -> None:
    """NotCheckable unless max A or max Psi changed by MIN_EFFECT over ``mask``: a rate, a direction or a bound read
    off a run that did not move is no evidence (an upper bound cannot fail, a slope of x1.005 is no growth law)."""
    sig, noise = _change(signal_curve(run)[mask]), _change(noise_curve(run)[mask])
    if max(sig, noise) < MIN_EFFECT:
        raise NotCheckable(f"did not move: over {where} max A changed by x{sig:.4g} and max Psi by x{noise:.4g}, "
                           f"less than the minimum effect x{MIN_EFFECT:g}")


def _bound_verdict(ci: tuple[float, float], bound: float, kind: str) -> tuple[bool | None, str]:
    """Verdict of "value ≤ bound" (kind "upper") or "≥ bound" ("lower") from a confidence interval."""
    lo, hi = ci
    if kind == "upper":
        if hi <= bound:
            return True, ""
        if lo > bound:
            return False, ""
    else:
        if lo >= bound:
            return True, ""
        if hi < bound:
            return False, ""
    return None, f"undecided: the {C.LEVEL:.0%} interval [{_fmt(lo)}, {_fmt(hi)}] contains the bound {_fmt(bound)}"


def _wilson(k: float, n: int, level: float = C.LEVEL) -> tuple[float, float]:
    z = float(scipy.stats.norm.ppf(0.5 + level / 2))
    phat = k / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# -- regime (Lemmas 5.2 / 5.4) --------------------------------------------------------------------------------------------------
@claim("regime.winner", "regime",
       lambda p: ("signal learning wins the stage-1 race in the multi-modal setting: max|gamma| > max rho at T1 "
                  "(Lemma 5.4, under n SNR^2 >= 1.7 and C_mu >= 2.66)") if p.multi else
       "noise memorization wins in the single-modal setting: max rho > max|gamma| at T1 (Lemma 5.2, under n SNR^2 <= 1.8)",
       lambda p: f"{'signal learning' if p.multi else 'noise memorization'} at T1 = {_fmt(p.T1)} "
                 f"(n SNR^2 = {_fmt(p.n_snr2)}" + (f", C_mu n SNR^2 = {_fmt(p.c_mu * p.n_snr2)})" if p.multi else ")"))
def regime_winner(run: Any, p: Params) -> Outcome:
    i = _at_t1(run, p)
    g, r = coefficient_maxima(run)
    gi, ri = float(g[i]), float(r[i])
    predicted = "signal learning" if p.multi else "noise memorization"
    observed, note = observed_winner(gi, ri, p)
    numbers = {"at_step": int(run.steps[i]), "max_gamma": gi, "max_rho": ri, "T1": p.T1}
    text = f"{observed}: max|gamma| {_fmt(gi)} vs max rho {_fmt(ri)} at step {int(run.steps[i])}"
    if observed not in ("signal learning", "noise memorization"):
        return Outcome(text, None, numbers, reason=f"undecided: {note}")
    return Outcome(text, observed == predicted, numbers)


def observed_winner(gamma: float, rho: float, p: Params) -> tuple[str | None, str]:
    """The race at one step by :func:`dyn.analysis.summary.winner` (max |γ| vs max ρ, each judged moved against its
    initial scale σ₀‖μ‖ / σ₀σ_ξ√d), and a note when it names no side; None when the coefficients are not finite."""
    if not (math.isfinite(gamma) and math.isfinite(rho)):
        return None, f"the coefficients are not finite (max|gamma| {_fmt(gamma)}, max rho {_fmt(rho)}): the run diverged"
    out = winner(gamma, max(rho, 0.0), signal_scale=p.signal_init, noise_scale=p.noise_init)
    if out == "did not move":
        return out, (f"neither max|gamma| {_fmt(gamma)} nor max rho {_fmt(rho)} grew by {MIN_EFFECT - 1:g} x its initial "
                     f"scale ({_fmt(p.signal_init)}, {_fmt(p.noise_init)}): no quantity changed by x{MIN_EFFECT:g}")
    if out == "tie":
        return out, f"max|gamma| {_fmt(gamma)} and max rho {_fmt(rho)} differ by less than {TIE_RTOL:.0%}"
    return out, ""


# -- stage 1: rates against the rigorous bounds, and the direction ----------------------------------------------------------------
def _rate_claim(run: Any, p: Params, which: str) -> Outcome:
    mask, unmet, where = _stage1_window(run, p, "gamma" if which == "signal" else "rho")
    curve = (signal_curve if which == "signal" else noise_curve)(run)
    slope, ci = log_slope(run.steps[mask], curve[mask], level=C.LEVEL)
    bound = p.signal_rate_bound if which == "signal" else p.noise_rate_bound
    kind = {("signal", False): "upper", ("noise", False): "lower", ("signal", True): "lower",
            ("noise", True): "upper"}[(which, p.multi)]
    holds, reason = _bound_verdict(ci, bound, kind)
    label = "A" if which == "signal" else "Psi"
    return Outcome(f"log max {label} slope {_fmt(slope)} per step ({C.LEVEL:.0%} CI {_fmt(ci[0])}..{_fmt(ci[1])}) "
                   f"over {where}", holds,
                   {"slope": slope, "ci_low": ci[0], "ci_high": ci[1], "bound": bound, "ratio": slope / bound,
                    "window_end": float(run.steps[mask][-1])}, reason=reason, unmet=unmet)


@claim("stage1.signal_rate", "stage 1",
       lambda p: ("log max_r A_r grows at least at log(1 + 0.48 C_mu eta|mu|^2/(m tau)) per step in stage 1 (Lemma D.4)"
                  if p.multi else "log max_r A_r grows at most at log(1 + 0.52 eta|mu|^2/(m tau)) per step in stage 1 (Lemma C.4)"),
       lambda p: f"log-slope {'>=' if p.multi else '<='} {_fmt(p.signal_rate_bound)}")
def signal_rate(run: Any, p: Params) -> Outcome:
    return _rate_claim(run, p, "signal")


@claim("stage1.noise_rate", "stage 1",
       lambda p: ("log max Psi grows at most at log(1 + 1.06 eta sigma^2 d/(n m tau)) per step in stage 1 (Lemma D.8)"
                  if p.multi else "log max Psi grows at least at log(1 + 0.96 eta sigma^2 d/(n m tau)) per step in stage 1 (Lemma C.11)"),
       lambda p: f"log-slope {'<=' if p.multi else '>='} {_fmt(p.noise_rate_bound)}")
def noise_rate(run: Any, p: Params) -> Outcome:
    return _rate_claim(run, p, "noise")


@claim("stage1.direction", "stage 1",
       lambda p: ("signal grows faster than noise in stage 1: average log-slope of max A > that of max Psi "
                  "(Lemma 5.4: exponent ratio >= 1/(2.21/(C_mu n SNR^2) + 0.01))") if p.multi else
       "noise grows faster than signal in stage 1: average log-slope of max Psi > that of max A "
       "(Lemma 5.2: exponent ratio <= 0.55 n SNR^2 + 0.01)",
       lambda p: (f"signal faster over stage 1 (the bounds give signal/noise >= {_fmt(1 / (2.21 / (p.c_mu * p.n_snr2) + 0.01))})"
                  if p.multi else f"noise faster over stage 1 (the bounds give signal/noise <= {_fmt(0.55 * p.n_snr2 + 0.01)})"))
def direction(run: Any, p: Params) -> Outcome:
    mask, unmet, where = _stage1_window(run, p, "gamma")
    _need_moved(run, "h", "rho")
    t = run.steps[mask]
    span = float(t[-1] - t[0])
    s_sig = float(np.log(signal_curve(run)[mask][-1] / signal_curve(run)[mask][0])) / span
    s_noise = float(np.log(noise_curve(run)[mask][-1] / noise_curve(run)[mask][0])) / span
    fast, slow = (s_sig, s_noise) if p.multi else (s_noise, s_sig)
    numbers = {"signal_slope": s_sig, "noise_slope": s_noise, "ratio": s_sig / s_noise if s_noise else math.inf}
    faster = "signal" if s_sig > s_noise else "noise"
    text = (f"{faster} faster: average log-slope of max A {_fmt(s_sig)}, of max Psi {_fmt(s_noise)} per step over "
            f"{where}")
    if abs(fast - slow) < DIRECTION_MARGIN * max(abs(fast), abs(slow)):
        return Outcome(text, None, numbers, unmet=unmet,
                       reason=f"undecided: the two rates differ by less than {DIRECTION_MARGIN:.0%}")
    return Outcome(text, fast > slow, numbers, unmet=unmet)


@claim("stage1.signal_bound", "stage 1",
       lambda p: ("A_r(t) >= (1 + 0.48 C_mu eta|mu|^2/(m tau))^t (A_r(0) + A~_r(0)/C_mu) - 1 on same-sign neurons in "
                  "stage 1 (Lemma D.4)") if p.multi else
       "A_r(t) <= (1 + 0.52 eta|mu|^2/(m tau))^t A_r(0) for every neuron in stage 1 (Lemma C.4)",
       lambda p: f"every (step, neuron) within the bound (per-step factor {_fmt(math.exp(p.signal_rate_bound))})")
def signal_bound(run: Any, p: Params) -> Outcome:
    mask, unmet, where = _stage1_window(run, p, "gamma")
    t = run.steps[mask][:, None]
    a = proof(run, "h")["A"].values[mask, :, 0]
    if p.multi:
        same = proof(run, "h")["U_plus0"].values[:, 0] == proof(run, "g")["U_plus0"].values[:, 0]
        if not same.any():
            raise NotCheckable("no neuron has the same initial signal sign in both encoders")
        a = a[:, same]
        at = proof(run, "g")["A"].values[mask, :, 0][:, same]
        bound = np.exp(p.signal_rate_bound * t) * (a[0] + at[0] / p.c_mu)[None] - 1
        informative = bound > 0  # the "- 1" makes the bound trivial until it passes 0
        if not informative.any():
            return Outcome(f"bound <= 0 at every (step, neuron) of {where}", None, {"informative": 0.0},
                           reason="vacuous: the lower bound is negative throughout stage 1 (its '- 1' term)",
                           unmet=unmet)
        ok = (a >= bound - REL_TOL * np.abs(bound) - 1e-12)[informative]
        numbers = {"fraction": float(ok.mean()), "informative": float(informative.mean()), "neurons": int(same.sum())}
        text = f"{ok.mean():.1%} of {int(informative.sum())} informative (step, neuron) within the bound over {where}"
    else:
        bound = np.exp(p.signal_rate_bound * t) * a[0][None]
        ok = a <= bound * (1 + REL_TOL) + 1e-12
        numbers = {"fraction": float(ok.mean()), "max_ratio": float(np.max(a / bound))}
        text = f"{ok.mean():.1%} of (step, neuron) within the bound over {where}; largest A/bound {_fmt(numbers['max_ratio'])}"
    return Outcome(text, bool(ok.all()), numbers, unmet=unmet)


@claim("stage1.noise_bound", "stage 1",
       lambda p: ("Psi_ri(t) <= (1 + 1.06 eta sigma^2 d/(n m tau))^t (Psi_ri(0) + Psi~_ri(0)) for i in I_r+(0) and "
                  "I~_r+(0) in stage 1 (Lemma D.8)") if p.multi else
       "Psi_ri(t) >= (1 + 0.96 eta sigma^2 d/(n m tau))^t Psi_ri(0) in stage 1, for the pairs (r, i) with "
       "Psi_ri >= 101 C_ell B_r,-y_i/(M + 1), C_ell = 1.01 (Lemma C.11)",
       lambda p: f"every (step, pair) within the bound (per-step factor {_fmt(math.exp(p.noise_rate_bound))})")
def noise_bound(run: Any, p: Params) -> Outcome:
    mask, unmet, where = _stage1_window(run, p, "rho")
    t = run.steps[mask][:, None, None]
    ph = proof(run, "h")
    psi = ph["Psi"].values[mask]
    if p.multi:
        pg = proof(run, "g")
        sel = ph["I_plus0"].values & pg["I_plus0"].values
        bound = np.exp(p.noise_rate_bound * t) * (psi[0] + pg["Psi"].values[0])[None]
        ok = (psi <= bound * (1 + REL_TOL) + 1e-12)[:, sel]
        pairs = int(sel.sum())
    else:
        # Lemma C.11's premise, at initialisation: Psi_ri >= 101 C_ell/(M+1) times the opposite-label total B
        active = ph["I_plus0"].values
        labels = np.asarray(run.site("h")["label"].values)
        psi0 = np.where(active, psi[0], 0.0)
        b_opp = np.stack([psi0[:, labels != y].sum(axis=1) for y in labels], axis=1)  # (neuron, sample)
        factor = C.NOISE_PREMISE_FACTOR * C.C_ELL / (mean_negatives(run) + 1)
        sel = active & (psi[0] >= factor * b_opp)
        pairs = int(sel.sum())
        if not pairs:
            return Outcome(f"no (neuron, sample) pair meets the premise Psi >= {_fmt(factor)} B (of {int(active.sum())} "
                           "active pairs)", None, {"pairs": 0, "active": int(active.sum())},
                           reason="not applicable: no pair meets Lemma C.11's premise", unmet=unmet)
        bound = np.exp(p.noise_rate_bound * t) * psi[0][None]
        ok = (psi >= bound * (1 - REL_TOL) - 1e-12)[:, sel]
    return Outcome(f"{ok.mean():.1%} of (step, pair) within the bound over {where} ({pairs} pairs)", bool(ok.all()),
                   {"fraction": float(ok.mean()), "pairs": pairs}, unmet=unmet)


# -- T1 (Lemmas 5.2 / 5.4, C.2) --------------------------------------------------------------------------------------------
@claim("T1.end_of_stage1", "T1",
       lambda p: ("stage 1 - loss derivatives l'_i, l'_ij in [1/(C(1+M)), C/(1+M)] (Lemma C.2; C = 2, dyn's reading of "
                  "C_ell) - holds from step 0, lasts while the dominant coefficient grows, and ends by T1 = "
                  + ("log(20/(sigma0|mu|))/log(1 + 0.48 C_mu eta|mu|^2/(m tau)) (Lemma 5.4)" if p.multi else
                     "log(20/(sigma0 sigma_xi sqrt d))/log(1 + 0.96 eta sigma^2 d/(n m tau)) (Lemma 5.2)")),
       lambda p: f"in the band at step 0; dominant curve at least doubles; band left by T1 = {_fmt(p.T1)}")
def end_of_stage1(run: Any, p: Params) -> Outcome:
    _need_moved(run, "h", "gamma" if p.multi else "rho")
    end = stage1_end(run)
    if not end.band_recorded:
        raise NotCheckable("the loss-derivative band (lp_* scalars) was not logged")
    fit = end.fit("signal" if p.multi else "noise")
    numbers: dict[str, Any] = {"T1": p.T1, "band_exit": end.band_exit, "band_low": end.band[0],
                               "band_high": end.band[1]}
    fit_text = "no two-phase fit"
    if fit is not None:
        numbers.update(t1_fit=fit.t1, t1_fit_ci_low=fit.t1_ci[0], t1_fit_ci_high=fit.t1_ci[1])
        fit_text = f"fitted T1 = {_fmt(fit.t1)} ({C.LEVEL:.0%} CI {_fmt(fit.t1_ci[0])}..{_fmt(fit.t1_ci[1])})"
    else:
        fit_text = "fit: " + str(end.fits["signal" if p.multi else "noise"])
    if not end.in_band_at_start:
        return Outcome(f"band left at step 0 (band [{_fmt(end.band[0])}, {_fmt(end.band[1])}]); {fit_text}", False,
                       numbers)
    if end.band_exit is None:
        if run.steps[-1] < p.T1:
            raise NotCheckable(f"run too short: band not left by the last step {int(run.steps[-1])}, T1 = {_fmt(p.T1)}")
        return Outcome(f"band never left up to step {int(run.steps[-1])} > T1; {fit_text}", False, numbers)
    curve = signal_curve(run) if p.multi else noise_curve(run)
    i = int(np.flatnonzero(run.steps <= end.band_exit)[-1])
    growth = float(curve[i] / curve[0])
    numbers["growth_at_exit"] = growth
    text = f"band left at step {_fmt(end.band_exit)}, after the dominant curve grew x{_fmt(growth)}; {fit_text}"
    return Outcome(text, end.band_exit <= p.T1 and growth >= 2.0, numbers)


@claim("T1.dominant_scale", "T1",
       lambda p: ("(1/m) sum over r in U+(0) and U~+(0) of A_r reaches 3 within T1 (proof of Lemma 5.4)" if p.multi else
                  "for every sample i, (1/m) sum over r with i in I_r+(0) of Psi_ri reaches 3 within T1 (proof of Lemma 5.2)"),
       lambda p: f">= {_fmt(C.DOMINANT_AVERAGE)} by T1 = {_fmt(p.T1)}")
def dominant_scale(run: Any, p: Params) -> Outcome:
    i = index_at(run, p.T1)
    last = len(run.steps) - 1 if i is None else i
    ph = proof(run, "h")
    if p.multi:
        _need_moved(run, "h", "gamma")
        same = ph["U_plus0"].values[:, 0] & proof(run, "g")["U_plus0"].values[:, 0]
        avg = ph["A"].values[: last + 1, same, 0].sum(axis=1) / p.m
        what = "(1/m) sum A over U+ and U~+"
    else:
        _need_moved(run, "h", "rho")
        active = ph["I_plus0"].values
        avg = (np.where(active[None], ph["Psi"].values[: last + 1], 0.0).sum(axis=1) / p.m).min(axis=1)
        what = "min over samples of (1/m) sum Psi over I+(0)"
    best = float(avg.max())
    reached = best >= C.DOMINANT_AVERAGE
    if i is None and not reached:
        raise NotCheckable(f"run too short: {what} = {_fmt(best)} by step {int(run.steps[-1])}, before T1 = {_fmt(p.T1)}")
    return Outcome(f"{what} reaches {_fmt(best)} by step {int(run.steps[last])}", reached,
                   {"value": best, "threshold": C.DOMINANT_AVERAGE})


@claim("T1.minority_scale", "T1",
       lambda p: ("max Psi(T1) <= sqrt(24 log(8mn/delta)) sqrt(sigma0 sigma_xi sqrt(d)/|mu|) (Lemma 5.4)" if p.multi else
                  "max_r A_r(T1) <= 20 sqrt(2 log(8m/delta)) SNR (Lemma 5.2)"),
       lambda p: f"<= {_fmt(_minority_bound(p))} at T1 = {_fmt(p.T1)}")
def minority_scale(run: Any, p: Params) -> Outcome:
    bound = _minority_bound(p)
    i = _at_t1(run, p)
    value = float((noise_curve if p.multi else signal_curve)(run)[i])
    label = "max Psi" if p.multi else "max A"
    numbers = {"value": value, "bound": bound, "dominant_threshold": C.DOMINANT_AVERAGE}
    text = f"{label} = {_fmt(value)} at step {int(run.steps[i])}"
    if bound >= C.DOMINANT_AVERAGE:
        return Outcome(text, None, numbers, reason=f"vacuous: the bound {_fmt(bound)} is not below the dominant "
                                                   f"scale {_fmt(C.DOMINANT_AVERAGE)}, so it cannot tell minority from dominant")
    return Outcome(text, value <= bound, numbers)


def _minority_bound(p: Params) -> float:
    if p.multi:
        return math.sqrt(C.MINORITY_NOISE_FACTOR * p.logs["Lmn"]) * math.sqrt(p.noise_init / p.mu) if p.mu > 0 else math.inf
    return C.MINORITY_SIGNAL_FACTOR * math.sqrt(2 * p.logs["Lm"]) * p.snr


# -- stage 2 (§8.3) ----------------------------------------------------------------------------------------------------------
def _stage2_start(run: Any, p: Params) -> int:
    i = _at_t1(run, p)
    if len(run.steps) - i < 4:
        raise NotCheckable(f"stage 2 too short: {len(run.steps) - i} recorded steps from T1 = {_fmt(p.T1)}")
    _need_effect(run, np.ones(len(run.steps), dtype=bool), f"steps 0..{int(run.steps[-1])}")
    return i


@claim("stage2.log_bound", "stage 2", "all |gamma|, |rho| <= log(3 M T*) for t <= T*, T* the last step (Prop. C.13)",
       lambda p: f"<= {_fmt(math.log(C.LOG_BOUND_FACTOR * p.M * max(p.last_step, 1)))}")
def log_bound(run: Any, p: Params) -> Outcome:
    _stage2_start(run, p)
    bound = math.log(C.LOG_BOUND_FACTOR * p.M * max(p.last_step, 1))
    worst = max(max(float(np.abs(coefficients_of(run, s)["gamma"].values).max()),
                    float(np.abs(coefficients_of(run, s)["rho"].values).max())) for s in run.sites)
    return Outcome(f"max |gamma|, |rho| = {_fmt(worst)}", worst <= bound, {"max": worst, "bound": bound})


@claim("stage2.averaged_loss", "stage 2",
       "running-average loss from T1 <= ||W(T1) - W*||_F^2/(eta (t - T1 + 1)) + k eps, W* = W(0) + 2 tau log(2M/eps) "
       "(sum_i xi_i/|xi_i|^2 single, theta_r mu/|mu|^2 multi), k = 1 single, 2 multi (Lemma C.18/D.15)",
       "the bound holds at every step where it is below the loss itself")
def averaged_loss(run: Any, p: Params) -> Outcome:
    i1 = _stage2_start(run, p)
    loss = run.scalar("loss")
    if loss is None:
        raise NotCheckable("no loss was logged")
    t, l = run.steps[i1:], loss[i1:]
    if not np.all(np.diff(t) == 1):
        raise NotCheckable("needs every step after T1 recorded: train with `dyn run --set record_every=1`")
    if not np.all(np.isfinite(l)):
        raise NotCheckable("the loss is not finite after T1")
    positive = l[l > 0]
    if not positive.size:
        raise NotCheckable("the loss underflowed to 0 after T1: eps (and W*) are undefined")
    eps = float(positive.min())
    scale = C.W_STAR_FACTOR * p.tau * math.log(2 * p.M / eps)
    dist2 = 0.0
    for site in run.sites:
        ds = run.site(site)
        missing = [v for v in ("weight_init", "signal_vectors", "noise_vectors") if v not in ds]
        if missing:
            raise NotCheckable(f"W* needs the stored weights and probe vectors; site {site} lacks {', '.join(missing)}")
        w = weights_at(ds, int(run.steps[i1]), coefficients_of(run, site))
        w_star = ds["weight_init"].values.astype(np.float64)
        if p.multi:
            mu = ds["signal_vectors"].values[0].astype(np.float64)
            theta = np.where(ds["signal_inner"].values[0, :, 0] >= 0, 1.0, -1.0)
            w_star = w_star + scale * theta[:, None] * (mu / (mu @ mu))[None]
        else:
            xi = ds["noise_vectors"].values.astype(np.float64)
            w_star = w_star + scale * (xi / np.einsum("id,id->i", xi, xi)[:, None]).sum(0)[None]
        dist2 += float(np.sum((w - w_star) ** 2))
    k = C.AVERAGED_LOSS_EPS[p.modality]
    avg = np.cumsum(l) / np.arange(1, len(l) + 1)
    bound = dist2 / (p.eta * (t - t[0] + 1)) + k * eps
    trivial = np.maximum.accumulate(l)  # a running mean never exceeds the running maximum
    informative = bound < trivial
    numbers = {"dist2": dist2, "eps": eps, "informative_fraction": float(informative.mean()),
               "min_bound_over_loss": float(np.min(bound / np.maximum(trivial, 1e-300)))}
    if not informative.any():
        return Outcome(f"bound >= the running maximum of the loss at every step after T1 (||W(T1) - W*||^2 = "
                       f"{_fmt(dist2)}, eps = {_fmt(eps)})", None, numbers,
                       reason="vacuous: the bound is never below the loss itself, so it cannot fail")
    ok = (avg <= bound * (1 + REL_TOL))[informative]
    numbers["fraction"] = float(ok.mean())
    return Outcome(f"within the bound at {ok.mean():.1%} of the {int(informative.sum())} steps where it is informative "
                   f"(||W(T1) - W*||^2 = {_fmt(dist2)}, eps = {_fmt(eps)})", bool(ok.all()), numbers)


@claim("stage2.growth", "stage 2", "after T1 the dominant coefficient grows at most logarithmically (§8.3)",
       "flat, decreasing or log-like after T1")
def growth(run: Any, p: Params) -> Outcome:
    i1 = _stage2_start(run, p)
    _need_moved(run, "h", "gamma" if p.multi else "rho")
    curve = signal_curve(run) if p.multi else noise_curve(run)
    res = stage2_growth(run.steps, curve, float(run.steps[i1]))
    return Outcome(f"{res['kind']} (relative change {_fmt(res['relative_change'])}, R^2 log {res['r2_log']:.3f} vs "
                   f"linear {res['r2_linear']:.3f})", res["kind"] in ("flat", "decreasing", "log-like"), res)


@claim("stage2.scale_gap", "stage 2",
       lambda p: ("max |rho|, |rho~| <= sigma0 sigma_xi sqrt(d) for t in [T1, T]: noise stays at its initial scale (§8.3)"
                  if p.multi else "max_r |gamma_r(t)| <= 3 beta, beta = max_r |gamma_r(T1)|, for t in [T1, T] (§8.3)"),
       lambda p: f"<= {_fmt(p.noise_init)}" if p.multi else "<= 3 beta")
def scale_gap(run: Any, p: Params) -> Outcome:
    i1 = _stage2_start(run, p)
    if p.multi:
        _need_moved(run, "h", "gamma")
        bound = p.noise_init
        worst = max(float(np.abs(coefficients_of(run, s)["rho"].values[i1:]).max()) for s in ("h", "g"))
        return Outcome(f"max |rho|, |rho~| after T1 = {_fmt(worst)}", worst <= bound, {"max": worst, "bound": bound})
    _need_moved(run, "h", "rho")
    g = coefficients_of(run, "h")["gamma"].values
    beta = float(np.abs(g[i1]).max())
    worst = float(np.abs(g[i1:]).max())
    return Outcome(f"max |gamma| after T1 = {_fmt(worst)} vs 3 beta = {_fmt(C.SCALE_GAP_SINGLE * beta)}",
                   worst <= C.SCALE_GAP_SINGLE * beta, {"max": worst, "beta": beta})


# -- downstream (Theorems 4.2 / 4.3, item 2) ----------------------------------------------------------------------------------------
@claim("theorem.downstream", "theorem",
       lambda p: ("OOD test error of a linear head on h(x_test) is o(1) (Theorem 4.3); read as <= 0.1; "
                  "probe_acc, the paper's protocol" if p.multi else
                  "OOD test error of a linear head on h(x_test) is Theta(1) (Theorem 4.2); read as >= 0.2; "
                  "probe_acc, the paper's protocol"),
       lambda p: "test error <= 0.1" if p.multi else "test error >= 0.2", hypotheses=(*ASSUMPTIONS, TEST_SIGNAL))
def downstream(run: Any, p: Params) -> Outcome:
    acc = run.scalar("probe_acc")
    if acc is None or not np.isfinite(acc).any():
        raise NotCheckable("no probe accuracy was logged: train with `dyn run --evaluate-every 10` "
                           "(dyn.train(..., evaluate_every=10))")
    idx = np.flatnonzero(np.isfinite(acc))
    last = int(idx[-1])
    if not math.isfinite(p.T1) or run.steps[last] < p.T1:
        raise NotCheckable(f"the last probe evaluation (step {int(run.steps[last])}) is before T1 = {_fmt(p.T1)}")
    n_test = p.config.n_test
    if n_test <= 0:
        raise NotCheckable("n_test = 0: no test set")
    err = 1.0 - float(acc[last])
    lo, hi = _wilson(err * n_test, n_test)
    numbers = {"error": err, "ci_low": lo, "ci_high": hi, "n_test": n_test, "at_step": int(run.steps[last])}
    text = f"test error {_fmt(err)} ({C.LEVEL:.0%} CI {_fmt(lo)}..{_fmt(hi)}, n_test = {n_test}) at step {int(run.steps[last])}"
    if p.multi:
        holds = True if hi <= C.ERROR_SMALL else (False if lo >= C.ERROR_CONSTANT else None)
    else:
        holds = True if lo >= C.ERROR_CONSTANT else (False if hi <= C.ERROR_SMALL else None)
    reason = "" if holds is not None else (f"undecided: the interval reaches between the readings of o(1) "
                                           f"(<= {C.ERROR_SMALL}) and Theta(1) (>= {C.ERROR_CONSTANT})")
    return Outcome(text, holds, numbers, reason=reason)


# -- invariants (exact for the paper's updates) -------------------------------------------------------------------------------------
def _tol(run: Any, site: str, what: str = "rho") -> float:
    """Rounding allowance of an exact identity on ``what``: its float32 rounding bound in its own units
    (:func:`.quantities.rounding`), times 16 for the float32 arithmetic of training itself (a real violation moves a
    coefficient by a gradient step, orders larger)."""
    return 16 * rounding(run, site, what)


@claim("invariant.signal_sign", "invariant",
       lambda p: "U+/-(t) = U+/-(0) and gamma monotone (up on U+, down on U-)" + (
           " on same-sign neurons (Lemma D.3)" if p.multi else " (Lemma C.3)"),
       "sign kept and gamma monotone at every step")
def signal_sign(run: Any, p: Params) -> Outcome:
    _need_moved(run, "h", "gamma")
    pq = proof(run, "h")
    u0 = pq["U_plus0"].values[:, 0]
    keep = (u0 == proof(run, "g")["U_plus0"].values[:, 0]) if p.multi else np.ones_like(u0)
    if not keep.any():
        raise NotCheckable("no neuron has the same initial signal sign in both encoders")
    signs = run.site("h")["signal_inner"].values[:, :, 0]
    same = ((signs > 0) == u0[None])[:, keep]
    g = coefficients_of(run, "h")["gamma"].values[:, :, 0][:, keep]
    dg = np.diff(g, axis=0) * np.where(u0[keep], 1.0, -1.0)[None]
    mono = dg >= -_tol(run, "h", "gamma")
    return Outcome(f"sign kept in {same.mean():.1%} of (step, neuron); gamma monotone in {mono.mean():.1%}",
                   bool(same.all() and mono.all()),
                   {"sign_kept": float(same.mean()), "monotone": float(mono.mean()), "neurons": int(keep.sum())})


def _consecutive(run: Any) -> None:
    if not np.all(np.diff(run.steps) == 1):
        raise NotCheckable("needs every step recorded: train with `dyn run --set record_every=1`")


@claim("invariant.noise_gating", "invariant",
       "rho_ri changes only while <w_r, xi_i> > 0 (the ReLU gate of eqs. 13/16; an identity of the update, no assumption)",
       "no change through a closed gate (up to solve error)", hypotheses=())
def noise_gating(run: Any, p: Params) -> Outcome:
    _consecutive(run)
    _need_moved(run, "h", "rho")
    worst, fracs, tols = 0.0, [], []
    for site in run.sites:
        rho = coefficients_of(run, site)["rho"].values
        gate = run.site(site)["noise_inner"].values[:-1] <= 0
        change = np.abs(np.diff(rho, axis=0))[gate]
        tol = _tol(run, site)
        tols.append(tol)
        fracs.append(float((change > tol).mean()) if change.size else 0.0)
        worst = max(worst, float(change.max()) if change.size else 0.0)
    return Outcome(f"largest rho change through a closed gate {_fmt(worst)} (tolerance {_fmt(max(tols))})",
                   worst <= max(tols), {"max_change": worst, "fraction_violating": max(fracs)})


@claim("invariant.noise_exact_zero", "invariant", "rho_ri(t) = 0 for all t when i in I_r-(0) (Lemma C.7)",
       "exactly 0 (up to solve error)", modality="single")
def noise_exact_zero(run: Any, p: Params) -> Outcome:
    _need_moved(run, "h", "rho")
    pq = proof(run, "h")
    neg = ~pq["I_plus0"].values
    if not neg.any():
        raise NotCheckable("no (neuron, sample) pair starts in I-(0)")
    rho = np.abs(coefficients_of(run, "h")["rho"].values)[:, neg]
    bad = rho > _tol(run, "h")
    flipped = pq["I_plus"].values[:, neg]
    return Outcome(f"rho != 0 for {bad[-1].mean():.1%} of pairs in I-(0) by the end; {flipped[-1].mean():.1%} changed sign",
                   not bad.any(), {"fraction_nonzero_end": float(bad[-1].mean()),
                                   "fraction_flipped_end": float(flipped[-1].mean()),
                                   "max_abs_rho": float(rho.max())})


def _case(k: int) -> Callable[[Any, Params], Outcome]:
    def check(run: Any, p: Params) -> Outcome:
        _need_moved(run, "h", "rho")
        ih, ig = proof(run, "h")["I_plus0"].values, proof(run, "g")["I_plus0"].values
        rho, rhot = coefficients_of(run, "h")["rho"].values, coefficients_of(run, "g")["rho"].values
        th, tg = _tol(run, "h"), _tol(run, "g")
        if k == 1:
            sel = ~ih & ~ig
            ok = (np.abs(rho) <= th) & (np.abs(rhot) <= tg)
        elif k == 2:
            sel = ~ih & ig
            ok = (np.abs(rho) <= th) & (np.diff(rhot, axis=0, prepend=rhot[:1]) <= tg)
        else:
            sel = ih & ~ig
            ok = (np.abs(rhot) <= tg) & (np.diff(rho, axis=0, prepend=rho[:1]) <= th)
        if not sel.any():
            raise NotCheckable("no (neuron, sample) pair in this case")
        frac = float(ok[:, sel].mean())
        return Outcome(f"{frac:.1%} of (step, pair) satisfy it ({int(sel.sum())} pairs)", bool(ok[:, sel].all()),
                       {"fraction": frac, "pairs": int(sel.sum())})

    return check


claim("invariant.multi_case1", "invariant", "on I-(0) and I~-(0): rho = rho~ = 0 (Lemma D.8, case 1)", "exactly 0",
      modality="multi")(_case(1))
claim("invariant.multi_case2", "invariant", "on I-(0) and I~+(0): rho = 0 and rho~ non-increasing (Lemma D.8, case 2)",
      "at every step", modality="multi")(_case(2))
claim("invariant.multi_case3", "invariant", "on I+(0) and I~-(0): rho~ = 0 and rho non-increasing (Lemma D.8, case 3)",
      "at every step", modality="multi")(_case(3))


@claim("invariant.synchronization", "invariant", "mixed-sign neurons (U+ and U~-, or U- and U~+) become same-sign by T1 "
       "(Lemma D.10)", lambda p: f"all synchronised by T1 = {_fmt(p.T1)}", modality="multi")
def synchronization(run: Any, p: Params) -> Outcome:
    _need_moved(run, "h", "gamma")
    uh = run.site("h")["signal_inner"].values[:, :, 0] > 0
    ug = run.site("g")["signal_inner"].values[:, :, 0] > 0
    mixed = uh[0] != ug[0]
    if not mixed.any():
        raise NotCheckable("no neuron starts with mixed signs")
    i = index_at(run, p.T1)
    at = len(run.steps) - 1 if i is None else i
    synced = (uh[at] == ug[at])[mixed]
    if i is None and not synced.all():
        raise NotCheckable(f"run too short: {synced.mean():.1%} synchronised by the last step {int(run.steps[-1])}, "
                           f"before T1 = {_fmt(p.T1)}")
    return Outcome(f"{synced.mean():.1%} of {int(mixed.sum())} mixed-sign neurons synchronised by step {int(run.steps[at])}",
                   bool(synced.all()), {"fraction": float(synced.mean()), "mixed": int(mixed.sum())})


@claim("invariant.coupling_gap", "invariant", "C_mu A - A~ shrinks relative to C_mu A + A~ on same-sign neurons by T1 "
       "(eqs. 41-42)", lambda p: f"relative gap smaller at T1 = {_fmt(p.T1)} than at step 0", modality="multi")
def coupling_gap(run: Any, p: Params) -> Outcome:
    _need_moved(run, "h", "gamma")
    same = proof(run, "h")["U_plus0"].values[:, 0] == proof(run, "g")["U_plus0"].values[:, 0]
    if not same.any():
        raise NotCheckable("no same-sign neuron")
    i1 = _at_t1(run, p)
    a = proof(run, "h")["A"].values[:, same, 0]
    at = proof(run, "g")["A"].values[:, same, 0]
    rel0 = np.abs(p.c_mu * a[0] - at[0]) / (p.c_mu * a[0] + at[0])
    rel1 = np.abs(p.c_mu * a[i1] - at[i1]) / (p.c_mu * a[i1] + at[i1])
    ok = rel1 < rel0
    ratio = float(np.median(at[i1] / a[i1]))
    return Outcome(f"relative gap shrinks for {ok.mean():.1%} of same-sign neurons by step {int(run.steps[i1])}; "
                   f"median A~/A there {_fmt(ratio)} (C_mu = {_fmt(p.c_mu)})", bool(ok.all()),
                   {"fraction": float(ok.mean()), "median_ratio_t1": ratio, "c_mu": p.c_mu})
