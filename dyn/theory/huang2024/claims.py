"""Huang et al. 2024, "On the Comparison between Multi-modal and Single-modal Contrastive Learning", as claims.

Every claim cites its source in the paper (lemma / equation, numbering of ``shared/theory/huang2024.md``). Claims
about stage 1 are checked up to the theory's T₁ (the paper's formula), clipped to the recorded steps; claims about
stage 2 from there on. Constants the paper leaves implicit are fixed here: the failure probability δ = 0.01 in the
high-probability bounds, and the tolerance of the heuristic rate claims (a factor of 2).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...analysis.coefficients import weights_at
from ...analysis.phases import fit_stage1, log_slope, stage2_growth, t1_from_band
from ...errors import NotCheckable, PhaseError
from ..base import Claim, Outcome, Theory, register
from .quantities import mean_negatives, proof

__all__ = ["Huang2024"]

DELTA = 0.01  # failure probability used in the paper's high-probability constants
HEURISTIC_FACTOR = 2.0  # heuristic point rates must agree within this factor
REL_TOL = 1e-5  # float32 recording: relative slack for inequality checks at equality


def params(run: Any) -> dict[str, float]:
    """The numbers the theorem is written in, derived from a run's config."""
    c = run.config
    d, n, m = c["d"], c["n"], c["m"]
    eta, tau, s0, sx = c["eta"], c["tau"], c["sigma0"], c["sigma_xi"]
    mu = c["mu_norm"]
    c_mu = c["mu_tilde_norm"] / mu if mu > 0 else math.inf
    snr = mu / (sx * math.sqrt(d))
    cs = eta * mu**2 / (m * tau)  # η‖μ‖²/(mτ)
    cn = eta * sx**2 * d / (n * m * tau)  # ησ²d/(nmτ)
    multi = c["modality"] == "multi"
    if multi:
        t1 = math.log(20 / (s0 * mu)) / math.log(1 + 0.48 * c_mu * cs)
    else:
        t1 = math.log(20 / (s0 * sx * math.sqrt(d))) / math.log(1 + 0.96 * cn)
    return dict(d=d, n=n, m=m, eta=eta, tau=tau, sigma0=s0, sigma_xi=sx, sigma_eps=c["sigma_eps"], mu=mu,
                c_mu=c_mu, snr=snr, nsnr2=n * snr**2, cs=cs, cn=cn, T1=t1, multi=multi,
                M=mean_negatives(run), T_end=float(run.steps[-1]))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _upto(run: Any, t: float) -> np.ndarray:
    """Boolean mask of recorded steps ≤ t."""
    return run.steps <= t + 1e-9


def _index_at(run: Any, t: float) -> int:
    """Index of the last recorded step ≤ t; NotCheckable if t lies beyond the run."""
    if t > run.steps[-1]:
        raise NotCheckable(f"run too short: needs step {_fmt(t)}, last recorded step is {int(run.steps[-1])}")
    return int(np.flatnonzero(_upto(run, t))[-1])


def _bound_outcome(run: Any, ok: np.ndarray, steps: np.ndarray, what: str, **numbers: Any) -> Outcome:
    """Verdict of a lemma-level bound checked at ``steps`` (≤ the formula's T₁): it holds when every entry does.
    The fraction within the empirically detected stage 1 is reported beside it, since the lemma's premise (loss
    derivatives in their stage-1 band) can end before the formula's T₁."""
    ok = ok.reshape(len(steps), -1)
    emp = empirical_t1(run)["t1"]
    numbers = {"fraction": float(ok.mean()), **numbers}
    text = f"{ok.mean():.1%} of {what} satisfy it up to step {int(steps[-1])}"
    if emp is not None:
        early = ok[steps <= emp]
        numbers.update(t1_empirical=emp, fraction_to_empirical_t1=float(early.mean()) if early.size else None)
        if early.size:
            text += f"; {early.mean():.1%} up to the empirical T1 = {_fmt(emp)}"
    return Outcome(text, bool(ok.all()), numbers)


def _same_sign(run: Any) -> np.ndarray:
    """Neurons whose initial signal signs agree in both encoders (U₊∩Ũ₊ or U₋∩Ũ₋)."""
    return proof(run, "h")["U_plus0"].values[:, 0] == proof(run, "g")["U_plus0"].values[:, 0]


def signal_curve(run: Any) -> np.ndarray:
    """max_r A_r(t) of encoder h (single signal)."""
    return proof(run, "h")["A"].values[:, :, 0].max(axis=1)


def noise_curve(run: Any) -> np.ndarray:
    """max over (r, i ∈ I_{r,+}(0)) of Ψ_{r,i}(t) of encoder h."""
    pq = proof(run, "h")
    psi = np.where(pq["I_plus0"].values[None], pq["Psi"].values, -np.inf)
    return psi.reshape(psi.shape[0], -1).max(axis=1)


def coefficient_maxima(run: Any, site: str = "h") -> tuple[np.ndarray, np.ndarray]:
    """max_r |γ_r(t)| and max_{r,i} ρ_{r,i}(t) per step: the quantities the regime is decided on."""
    c = run.coefficients(site)
    return np.abs(c["gamma"].values).max(axis=(1, 2)), c["rho"].values.max(axis=(1, 2))


def empirical_t1(run: Any) -> dict[str, Any]:
    """End of stage 1 from the recorded curves: segmented fits of log max A and log max Ψ, and the ℓ' band."""
    out: dict[str, Any] = {}
    for name, curve in (("signal", signal_curve(run)), ("noise", noise_curve(run))):
        try:
            fit = fit_stage1(run.steps, curve)
            out[name] = fit
        except PhaseError as exc:
            out[name] = str(exc)
    band = [run.scalar(k) for k in ("lp_pos_min", "lp_pos_max", "lp_neg_min", "lp_neg_max")]
    out["band"] = None if any(b is None for b in band) else t1_from_band(run.steps, *band, negatives=mean_negatives(run))
    fits = [f.t1 for f in (out["signal"], out["noise"]) if not isinstance(f, str)]
    out["t1"] = min(fits) if fits else None
    return out


@register
class Huang2024(Theory):
    """Single-modal (Theorem 4.2) and multi-modal (Theorem 4.3) contrastive learning, Huang et al. 2024.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny", steps=20), path)
    >>> verdicts = Huang2024().check(dyn.Run(path))
    >>> {v.verdict for v in verdicts} <= {"holds", "not checkable", "violated"}
    True
    >>> [v.verdict for v in verdicts if v.claim == "invariant.noise_gating"]
    ['holds']
    """

    name = "huang2024"
    setups = ("huang2024",)
    plot_quantities = ("A", "Psi")
    description = "Huang et al. 2024 (NeurIPS): single- vs multi-modal contrastive learning, signal vs noise"

    def applies_to(self, run: Any) -> str | None:
        cfg = run.attrs.get("config")
        if run.attrs.get("setup") != "huang2024" or not isinstance(cfg, dict):
            return f"it was not trained by dyn's huang2024 setup (setup={run.attrs.get('setup')!r})"
        if cfg.get("modality") == "multi" and "g" not in run.sites:
            return "multi-modal run without the modality-2 site 'g'"
        return None

    def quantities(self, run: Any, site: str) -> Any:
        """A (total signal) and Ψ (total noise, on the pairs active at initialisation, I₊(0)) of ``site``."""
        pq = proof(run, site)
        out = pq[["A", "Psi"]].copy()
        out["Psi"] = pq["Psi"].where(pq["I_plus0"])
        out["A"].attrs["long_name"] = "total signal A = |γ + ⟨w(0), μ⟩|"
        out["Psi"].attrs["long_name"] = "total noise Ψ = ρ + ⟨w(0), ξ⟩ on I₊(0)"
        return out

    # -- regime ---------------------------------------------------------------------------------------------------
    def regime(self, run: Any) -> dict[str, Any]:
        p = params(run)
        if p["multi"]:
            met = p["c_mu"] * p["nsnr2"] >= 4.51
            predicted = "signal learning" if met else None
            condition = f"C_mu*n*SNR^2 = {_fmt(p['c_mu'] * p['nsnr2'])} {'>=' if met else '<'} 4.51"
        else:
            met = p["nsnr2"] <= 1.8
            predicted = "noise memorization" if met else None
            condition = f"n*SNR^2 = {_fmt(p['nsnr2'])} {'<=' if met else '>'} 1.8"
        g, r = coefficient_maxima(run)
        i_t1 = _index_at(run, p["T1"]) if p["T1"] <= run.steps[-1] else len(run.steps) - 1
        at = int(run.steps[i_t1])
        observed = "signal learning" if g[i_t1] > r[i_t1] else "noise memorization"
        return {
            "modality": "multi" if p["multi"] else "single",
            "condition": condition,
            "predicted_winner": predicted or "theorem silent (condition not met)",
            "observed_winner": observed,
            "at_step": at,
            "max_gamma": float(g[i_t1]),
            "max_rho": float(r[i_t1]),
            "ratio_gamma_over_rho": float(g[i_t1] / r[i_t1]) if r[i_t1] > 0 else math.inf,
            "agrees": None if predicted is None else predicted == observed,
        }

    def overlays(self, run: Any, site: str, quantity: str) -> dict[str, Any]:
        """Predicted stage-1 growth (heuristic rate, from the recorded maximum at step 0) and the T₁ markers."""
        p = params(run)
        markers = [("T1 (formula)", p["T1"])] if p["T1"] <= run.steps[-1] else []
        t1 = empirical_t1(run)["t1"]
        if t1 is not None:
            markers.append(("T1 (fit)", t1))
        rates = {"A": math.log1p((p["c_mu"] if p["multi"] else 1.0) * p["cs"] / 2), "Psi": math.log1p(p["cn"])}
        lines = []
        if quantity in rates and site == "h":
            start = signal_curve(run)[0] if quantity == "A" else noise_curve(run)[0]
            end = min(p["T1"], float(run.steps[-1]))
            t = run.steps[run.steps <= end]
            lines.append((f"stage-1 prediction (log-slope {_fmt(rates[quantity])})", t, start * np.exp(rates[quantity] * t)))
        return {"lines": lines, "markers": markers}

    # -- claims ---------------------------------------------------------------------------------------------------
    def claims(self, run: Any) -> list[Claim]:
        p = params(run)
        return [*self._assumptions(p), *self._regime_claims(p), *self._stage1(p), *self._t1(p),
                *self._stage2(p), *self._invariants(p)]

    def _assumptions(self, p: dict) -> list[Claim]:
        n, d, m = p["n"], p["d"], p["m"]
        eta_max = n * m * p["tau"] / (12 * p["sigma_xi"] ** 2 * d)
        s0_noise = 1 / (2 * math.sqrt(math.log(8 * m * n / DELTA)) * p["sigma_xi"] * math.sqrt(d))
        s0_signal = 1 / (2 * math.sqrt(math.log(8 * m / DELTA)) * p["mu"]) if p["mu"] > 0 else math.inf
        n_min = 2500 * math.log(4 / DELTA)

        def fixed(observed: str, ok: bool, **numbers: float) -> Any:
            return lambda run: Outcome(observed, ok, numbers)

        out = [
            Claim("assumption.high_dimension", "assumption", "d >= n^2 up to log factors (Assumption 4.1(1))",
                  f"d >= n^2 = {n * n}", fixed(f"d = {d}", d >= n * n, d=d, n_squared=n * n)),
            Claim("assumption.sample_size", "assumption", "n >= 2500 log(4/delta) (Lemma C.4), delta = 0.01",
                  f"n >= {_fmt(n_min)}", fixed(f"n = {n}", n >= n_min, n=n, n_min=n_min)),
            Claim("assumption.learning_rate", "assumption", "eta <= n m tau / (12 sigma_xi^2 d) (App. C.2)",
                  f"eta <= {_fmt(eta_max)}", fixed(f"eta = {_fmt(p['eta'])}", p["eta"] <= eta_max, eta=p["eta"], eta_max=eta_max)),
            Claim("assumption.init_scale", "assumption",
                  "sigma0 <= 1/(2 sqrt(log(8mn/delta)) sigma_xi sqrt(d)) and <= 1/(2 sqrt(log(8m/delta)) |mu|) (Assumption 4.1(3))",
                  f"sigma0 <= {_fmt(min(s0_noise, s0_signal))}",
                  fixed(f"sigma0 = {_fmt(p['sigma0'])}", p["sigma0"] <= min(s0_noise, s0_signal),
                        sigma0=p["sigma0"], bound_noise=s0_noise, bound_signal=s0_signal)),
            Claim("assumption.snr_order", "assumption", "n SNR^2 = Theta(1) (Assumption 4.1(6)); read as 0.1 <= n SNR^2 <= 10",
                  "0.1 <= n SNR^2 <= 10",
                  fixed(f"SNR = {_fmt(p['snr'])}, n SNR^2 = {_fmt(p['nsnr2'])}", 0.1 <= p["nsnr2"] <= 10,
                        snr=p["snr"], n_snr2=p["nsnr2"])),
        ]
        if p["multi"]:
            out.append(Claim("assumption.c_mu", "assumption", "|mu_tilde| = C_mu |mu| with C_mu >= 2.66 (Assumption 4.1(7))",
                             "C_mu >= 2.66", fixed(f"C_mu = {_fmt(p['c_mu'])}", p["c_mu"] >= 2.66, c_mu=p["c_mu"])))
        else:
            eps_max = min(p["sigma_xi"] / 10, p["mu"] / math.sqrt(2 * math.log(6 * n / DELTA)))
            out.append(Claim("assumption.augmentation", "assumption",
                             "sigma_eps <= sigma_xi/C' and <= |mu|/sqrt(2 log(6n/delta)) (Assumption 4.1(5)); C' = 10 chosen",
                             f"sigma_eps <= {_fmt(eps_max)}",
                             fixed(f"sigma_eps = {_fmt(p['sigma_eps'])}", p["sigma_eps"] <= eps_max,
                                   sigma_eps=p["sigma_eps"], bound=eps_max)))
        return out

    def _regime_claims(self, p: dict) -> list[Claim]:
        def winner(run: Any) -> Outcome:
            reg = self.regime(run)
            if reg["agrees"] is None:
                raise NotCheckable(f"theorem silent: {reg['condition']}; observed {reg['observed_winner']} "
                                   f"(max|gamma| {_fmt(reg['max_gamma'])} vs max rho {_fmt(reg['max_rho'])} at step {reg['at_step']})")
            return Outcome(f"{reg['observed_winner']} (max|gamma| {_fmt(reg['max_gamma'])} vs max rho "
                           f"{_fmt(reg['max_rho'])} at step {reg['at_step']})", reg["agrees"], reg)

        if p["multi"]:
            statement = "signal learning wins when C_mu n SNR^2 >= 4.51 (Lemma 5.4: n SNR^2 >= 1.7, C_mu >= 2.66)"
            predicted = "signal learning: max|gamma| > max rho at T1"
        else:
            statement = "noise memorization wins when n SNR^2 <= 1.8 (Lemma 5.2)"
            predicted = "noise memorization: max rho > max|gamma| at T1"
        return [Claim("regime.winner", "regime", statement, predicted, winner)]

    def _stage1(self, p: dict) -> list[Claim]:
        cs, cn, c_mu = p["cs"], p["cn"], p["c_mu"]
        claims = []
        if not p["multi"]:
            def signal_bound(run: Any) -> Outcome:
                mask = _upto(run, p["T1"])
                a = proof(run, "h")["A"].values[mask, :, 0]
                t = run.steps[mask][:, None]
                bound = (1 + 0.52 * cs) ** t * a[0][None]
                ok = a <= bound * (1 + REL_TOL) + 1e-12
                return _bound_outcome(run, ok, run.steps[mask], "(step, neuron)", max_ratio=float(np.max(a / bound)))

            def noise_bound(run: Any) -> Outcome:
                mask = _upto(run, p["T1"])
                pq = proof(run, "h")
                psi = pq["Psi"].values[mask]
                sel = pq["I_plus0"].values
                t = run.steps[mask][:, None, None]
                bound = (1 + 0.96 * cn) ** t * psi[0][None]
                ok = (psi >= bound * (1 - REL_TOL) - 1e-12)[:, sel]
                return _bound_outcome(run, ok, run.steps[mask], "(step, neuron, sample) with i in I+(0)")

            claims += [
                Claim("stage1.signal_bound", "stage 1", "A_r(t) <= (1 + 0.52 eta|mu|^2/(m tau))^t A_r(0) for t <= T1 (Lemma C.4)",
                      f"per-step factor <= {_fmt(1 + 0.52 * cs)}", signal_bound),
                Claim("stage1.noise_bound", "stage 1", "Psi_ri(t) >= (1 + 0.96 eta sigma^2 d/(nm tau))^t Psi_ri(0) for i in I_r+(0), t <= T1 (Lemma C.11)",
                      f"per-step factor >= {_fmt(1 + 0.96 * cn)}", noise_bound),
            ]
            rate_signal, rate_noise = math.log1p(cs / 2), math.log1p(cn)
            ratio_pred = p["nsnr2"] / 2
        else:
            def signal_bound(run: Any) -> Outcome:
                mask = _upto(run, p["T1"])
                same = _same_sign(run)
                if not same.any():
                    raise NotCheckable("no neuron has the same initial signal sign in both encoders")
                a = proof(run, "h")["A"].values[mask, :, 0][:, same]
                at = proof(run, "g")["A"].values[mask, :, 0][:, same]
                t = run.steps[mask][:, None]
                bound = (1 + 0.48 * cs * c_mu) ** t * (a[0] + at[0] / c_mu)[None] - 1
                ok = a >= bound - REL_TOL * np.abs(bound) - 1e-12
                return _bound_outcome(run, ok, run.steps[mask], "(step, same-sign neuron)", neurons=int(same.sum()))

            def noise_bound(run: Any) -> Outcome:
                mask = _upto(run, p["T1"])
                ph, pg = proof(run, "h"), proof(run, "g")
                sel = ph["I_plus0"].values & pg["I_plus0"].values
                psi, psit = ph["Psi"].values[mask], pg["Psi"].values[mask]
                t = run.steps[mask][:, None, None]
                bound = (1 + 1.06 * cn) ** t * (psi[0] + psit[0])[None]
                ok = (psi <= bound * (1 + REL_TOL) + 1e-12)[:, sel]
                return _bound_outcome(run, ok, run.steps[mask], "(step, neuron, sample) in I+ and I~+")

            claims += [
                Claim("stage1.signal_bound", "stage 1",
                      "A_r(t) >= (1 + 0.48 C_mu eta|mu|^2/(m tau))^t (A_r(0) + A~_r(0)/C_mu) - 1 on same-sign neurons, t <= T1 (Lemma D.4)",
                      f"per-step factor >= {_fmt(1 + 0.48 * c_mu * cs)}", signal_bound),
                Claim("stage1.noise_bound", "stage 1",
                      "Psi_ri(t) <= (1 + 1.06 eta sigma^2 d/(nm tau))^t (Psi_ri(0) + Psi~_ri(0)) on I+ and I~+, t <= T1 (Lemma D.8)",
                      f"per-step factor <= {_fmt(1 + 1.06 * cn)}", noise_bound),
            ]
            rate_signal, rate_noise = math.log1p(c_mu * cs / 2), math.log1p(cn)
            ratio_pred = c_mu * p["nsnr2"] / 2

        def stage1_window(run: Any) -> np.ndarray:
            t1 = empirical_t1(run)["t1"]
            if t1 is None:
                raise NotCheckable("no end of stage 1 found in the recorded curves (no phase change)")
            mask = run.steps <= t1
            if mask.sum() < 4:
                raise NotCheckable(f"stage 1 too short to fit a slope (empirical T1 = {_fmt(t1)})")
            return mask

        def rate(curve_fn, predicted: float, label: str):
            def check(run: Any) -> Outcome:
                mask = stage1_window(run)
                slope, ci = log_slope(run.steps[mask], curve_fn(run)[mask])
                ratio = slope / predicted
                ok = 1 / HEURISTIC_FACTOR <= ratio <= HEURISTIC_FACTOR
                return Outcome(f"{label} log-slope {_fmt(slope)} per step (95% CI {_fmt(ci[0])}..{_fmt(ci[1])}), "
                               f"{_fmt(ratio)}x the prediction", ok,
                               {"slope": slope, "ci_low": ci[0], "ci_high": ci[1], "predicted": predicted, "ratio": ratio})
            return check

        def slope_ratio(run: Any) -> Outcome:
            mask = stage1_window(run)
            s_sig, _ = log_slope(run.steps[mask], signal_curve(run)[mask])
            s_noise, _ = log_slope(run.steps[mask], noise_curve(run)[mask])
            if s_noise <= 0:
                raise NotCheckable(f"noise curve does not grow in stage 1 (slope {_fmt(s_noise)})")
            r = s_sig / s_noise
            ok = 1 / HEURISTIC_FACTOR <= r / ratio_pred <= HEURISTIC_FACTOR
            return Outcome(f"signal/noise slope ratio {_fmt(r)}", ok,
                           {"ratio": r, "predicted": ratio_pred, "signal_slope": s_sig, "noise_slope": s_noise})

        sig_text = "C_mu eta|mu|^2/(2 m tau)" if p["multi"] else "eta|mu|^2/(2 m tau)"
        claims += [
            Claim("stage1.signal_rate", "stage 1", f"heuristic: log max_r A_r grows at log(1 + {sig_text}) per step in stage 1 (§8.2, DERIVED)",
                  f"log-slope {_fmt(rate_signal)} (within x{HEURISTIC_FACTOR:g})", rate(signal_curve, rate_signal, "signal")),
            Claim("stage1.noise_rate", "stage 1", "heuristic: log max Psi grows at log(1 + eta sigma^2 d/(n m tau)) per step in stage 1 (§8.2, DERIVED)",
                  f"log-slope {_fmt(rate_noise)} (within x{HEURISTIC_FACTOR:g})", rate(noise_curve, rate_noise, "noise")),
            Claim("stage1.slope_ratio", "stage 1",
                  f"heuristic: signal/noise stage-1 slope ratio ~ {'C_mu ' if p['multi'] else ''}n SNR^2 / 2 (§8.2, DERIVED)",
                  f"{_fmt(ratio_pred)} (within x{HEURISTIC_FACTOR:g})", slope_ratio),
        ]
        return claims

    def _t1(self, p: dict) -> list[Claim]:
        def end_of_stage1(run: Any) -> Outcome:
            emp = empirical_t1(run)
            if emp["t1"] is None:
                raise NotCheckable(f"no phase change found: signal fit: {emp['signal']}; noise fit: {emp['noise']}")
            numbers = {"t1_formula": p["T1"], "t1_empirical": emp["t1"], "t1_band": emp["band"]}
            for k in ("signal", "noise"):
                if not isinstance(emp[k], str):
                    numbers[f"t1_{k}_fit"] = emp[k].t1
            band = "never left" if emp["band"] is None else f"{_fmt(emp['band'])}"
            return Outcome(f"segmented fit T1 = {_fmt(emp['t1'])}; loss-derivative band left at step {band}",
                           emp["t1"] <= p["T1"], numbers)

        if p["multi"]:
            dom_text = "(1/m) sum over same-sign neurons of A_r(T1) >= 3 (proof of Lemma 5.4)"
            s0 = p["sigma0"] * p["sigma_xi"] * math.sqrt(p["d"])
            minority_bound = math.sqrt(24 * math.log(8 * p["m"] * p["n"] / DELTA)) * math.sqrt(s0 / p["mu"])
            min_text = f"max Psi(T1) <= sqrt(24 log(8mn/delta)) sqrt(sigma0 sigma_xi sqrt(d)/|mu|) = {_fmt(minority_bound)} (Lemma 5.4)"

            def dominant(run: Any) -> Outcome:
                i = _index_at(run, p["T1"])
                same = proof(run, "h")["U_plus0"].values[:, 0] & proof(run, "g")["U_plus0"].values[:, 0]
                value = float(proof(run, "h")["A"].values[i, same, 0].sum() / p["m"])
                return Outcome(f"{_fmt(value)} at step {int(run.steps[i])}", value >= 3, {"value": value})

            def minority(run: Any) -> Outcome:
                i = _index_at(run, p["T1"])
                value = float(noise_curve(run)[i])
                return Outcome(f"max Psi = {_fmt(value)} at step {int(run.steps[i])}", value <= minority_bound,
                               {"value": value, "bound": minority_bound})
        else:
            dom_text = "max_{r,i} rho_ri(T1) >= 2 (used in Lemma C.15)"
            minority_bound = 20 * math.sqrt(2 * math.log(8 * p["m"] / DELTA)) * p["snr"]
            min_text = f"max_r A_r(T1) <= 20 sqrt(2 log(8m/delta)) SNR = {_fmt(minority_bound)} (Lemma 5.2)"

            def dominant(run: Any) -> Outcome:
                i = _index_at(run, p["T1"])
                value = float(coefficient_maxima(run)[1][i])
                return Outcome(f"max rho = {_fmt(value)} at step {int(run.steps[i])}", value >= 2, {"value": value})

            def minority(run: Any) -> Outcome:
                i = _index_at(run, p["T1"])
                value = float(signal_curve(run)[i])
                return Outcome(f"max A = {_fmt(value)} at step {int(run.steps[i])}", value <= minority_bound,
                               {"value": value, "bound": minority_bound})

        return [
            Claim("T1.end_of_stage1", "T1", "stage 1 ends by T1 = " + (
                "log(20/(sigma0|mu|))/log(1 + 0.48 C_mu eta|mu|^2/(m tau))" if p["multi"]
                else "log(20/(sigma0 sigma_xi sqrt d))/log(1 + 0.96 eta sigma^2 d/(nm tau))") + " (Lemma 5.2/5.4)",
                  f"T1 = {_fmt(p['T1'])}", end_of_stage1),
            Claim("T1.dominant_scale", "T1", dom_text, "Omega(1) at T1", dominant),
            Claim("T1.minority_scale", "T1", min_text, f"<= {_fmt(minority_bound)}", minority),
        ]

    def _stage2(self, p: dict) -> list[Claim]:
        def log_bound(run: Any) -> Outcome:
            bound = math.log(3 * p["M"] * max(p["T_end"], 1))
            worst = 0.0
            for site in run.sites:
                c = run.coefficients(site)
                worst = max(worst, float(np.abs(c["gamma"].values).max()), float(np.abs(c["rho"].values).max()))
            return Outcome(f"max |gamma|, |rho| = {_fmt(worst)}", worst <= bound, {"max": worst, "bound": bound})

        def averaged_loss(run: Any) -> Outcome:
            # Lemma C.18 / D.15 with the reference point W* of App. C.3 / D.3 and eps = the last recorded loss:
            # mean_{s in [T1, t]} L(s) <= ||W(T1) - W*||_F^2 / (eta (t - T1 + 1)) + k eps, k = 1 (single), 2 (multi).
            loss = run.scalar("loss")
            if loss is None:
                raise NotCheckable("no loss was logged")
            i1 = _index_at(run, p["T1"])
            t, l = run.steps[i1:], loss[i1:]
            if len(t) < 3 or not np.all(np.diff(t) == 1):
                raise NotCheckable("needs every step after T1 recorded")
            eps = float(l[-1])
            scale = 2 * p["tau"] * math.log(2 * p["M"] / eps)
            dist2 = 0.0
            for site in run.sites:
                ds = run.site(site)
                w = weights_at(ds, int(run.steps[i1]), run.coefficients(site))
                w_star = ds["weight_init"].values.astype(np.float64)
                if p["multi"]:
                    mu = ds["signal_vectors"].values[0].astype(np.float64)
                    theta = np.where(ds["signal_inner"].values[0, :, 0] >= 0, 1.0, -1.0)
                    w_star = w_star + scale * theta[:, None] * (mu / (mu @ mu))[None]
                else:
                    xi = ds["noise_vectors"].values.astype(np.float64)
                    w_star = w_star + scale * (xi / np.einsum("id,id->i", xi, xi)[:, None]).sum(0)[None]
                dist2 += float(np.sum((w - w_star) ** 2))
            k = 2 if p["multi"] else 1
            avg = np.cumsum(l) / np.arange(1, len(l) + 1)
            bound = dist2 / (p["eta"] * (t - t[0] + 1)) + k * eps
            ok = avg <= bound * (1 + REL_TOL)
            return Outcome(f"running mean within the bound at {ok.mean():.1%} of steps after T1 "
                           f"(||W(T1) - W*||^2 = {_fmt(dist2)}, eps = {_fmt(eps)})", bool(ok.all()),
                           {"dist2": dist2, "eps": eps, "fraction": float(ok.mean()),
                            "max_ratio": float(np.max(avg / bound))})

        def growth(run: Any) -> Outcome:
            i1 = _index_at(run, p["T1"])
            curve = signal_curve(run) if p["multi"] else noise_curve(run)
            res = stage2_growth(run.steps, curve, float(run.steps[i1]))
            return Outcome(f"{res['kind']} (relative change {_fmt(res['relative_change'])}, R^2 log {res['r2_log']:.3f} "
                           f"vs linear {res['r2_linear']:.3f})", res["kind"] in ("flat", "log-like"), res)

        if p["multi"]:
            bound = p["sigma0"] * p["sigma_xi"] * math.sqrt(p["d"])

            def gap(run: Any) -> Outcome:
                i1 = _index_at(run, p["T1"])
                worst = max(float(np.abs(run.coefficients(s)["rho"].values[i1:]).max()) for s in ("h", "g"))
                return Outcome(f"max |rho|, |rho~| after T1 = {_fmt(worst)}", worst <= bound, {"max": worst, "bound": bound})

            gap_claim = Claim("stage2.scale_gap", "stage 2", "max |rho|, |rho~| <= sigma0 sigma_xi sqrt(d) for t in [T1, T] (§8.3)",
                              f"<= {_fmt(bound)}", gap)
        else:
            def gap(run: Any) -> Outcome:
                i1 = _index_at(run, p["T1"])
                g = run.coefficients("h")["gamma"].values
                beta = float(np.abs(g[i1]).max())
                worst = float(np.abs(g[i1:]).max())
                return Outcome(f"max |gamma| after T1 = {_fmt(worst)} vs 3 beta = {_fmt(3 * beta)}", worst <= 3 * beta,
                               {"max": worst, "beta": beta})

            gap_claim = Claim("stage2.scale_gap", "stage 2", "max_r |gamma_r(t)| <= 3 max_r |gamma_r(T1)| for t in [T1, T] (§8.3)",
                              "<= 3 beta", gap)
        return [
            Claim("stage2.log_bound", "stage 2", "all |gamma|, |rho| <= log(3 M T*) (Prop. C.13)",
                  f"<= {_fmt(math.log(3 * p['M'] * max(p['T_end'], 1)))}", log_bound),
            Claim("stage2.averaged_loss", "stage 2",
                  "running-average loss after T1 <= ||W(T1) - W*||^2/(eta (t - T1 + 1)) + k eps, W* of App. C.3/D.3 (Lemma C.18/D.15)",
                  "O(1/t) bound holds at every step after T1", averaged_loss),
            Claim("stage2.growth", "stage 2", "the dominant coefficient grows at most logarithmically after T1 (§8.3)",
                  "flat or log-like", growth),
            gap_claim,
        ]

    def _invariants(self, p: dict) -> list[Claim]:
        def tol(run: Any, site: str) -> float:
            return 4 * run.coefficients(site).attrs["solve_error_bound"] + 1e-12

        def signal_sign(run: Any) -> Outcome:
            pq = proof(run, "h")
            u0 = pq["U_plus0"].values[:, 0]
            keep = _same_sign(run) if p["multi"] else np.ones_like(u0)
            if not keep.any():
                raise NotCheckable("no neuron has the same initial signal sign in both encoders")
            signs = run.site("h")["signal_inner"].values[:, :, 0]
            same = ((signs > 0) == u0[None])[:, keep]
            g = run.coefficients("h")["gamma"].values[:, :, 0][:, keep]
            dg = np.diff(g, axis=0) * np.where(u0[keep], 1.0, -1.0)[None]
            mono = dg >= -tol(run, "h")
            return Outcome(f"sign kept in {same.mean():.1%} of (step, neuron); gamma monotone in {mono.mean():.1%}",
                           bool(same.all() and mono.all()),
                           {"sign_kept": float(same.mean()), "monotone": float(mono.mean()), "neurons": int(keep.sum())})

        def consecutive(run: Any) -> None:
            if not np.all(np.diff(run.steps) == 1):
                raise NotCheckable("needs every step recorded (record_every = 1)")

        def gating(run: Any) -> Outcome:
            consecutive(run)
            fracs, worst = [], 0.0
            for site in run.sites:
                rho = run.coefficients(site)["rho"].values
                gate = run.site(site)["noise_inner"].values[:-1] <= 0
                moved = np.abs(np.diff(rho, axis=0))[gate]
                bad = moved > tol(run, site)
                fracs.append(bad.mean() if bad.size else 0.0)
                worst = max(worst, float(moved.max()) if moved.size else 0.0)
            return Outcome(f"largest rho change through a closed gate {_fmt(worst)}", worst <= max(tol(run, s) for s in run.sites),
                           {"max_change": worst, "fraction_violating": float(max(fracs))})

        def exact_zero(run: Any) -> Outcome:
            pq = proof(run, "h")
            neg = ~pq["I_plus0"].values
            rho = np.abs(run.coefficients("h")["rho"].values)[:, neg]
            bad = rho > tol(run, "h")
            flipped = pq["I_plus"].values[:, neg]
            return Outcome(f"rho != 0 for {bad[-1].mean():.1%} of pairs in I-(0) by the end; "
                           f"{flipped[-1].mean():.1%} changed sign", not bad.any(),
                           {"fraction_nonzero_end": float(bad[-1].mean()), "fraction_flipped_end": float(flipped[-1].mean()),
                            "max_abs_rho": float(rho.max()) if rho.size else 0.0})

        out = [
            Claim("invariant.signal_sign", "invariant",
                  "U+/-(t) = U+/-(0) and gamma monotone (up on U+, down on U-)" + (" on same-sign neurons (Lemma D.3)" if p["multi"] else " (Lemma C.3)"),
                  "sign kept, gamma monotone, every step", signal_sign),
            Claim("invariant.noise_gating", "invariant",
                  "rho_ri changes only while <w_r, xi_i> > 0 (ReLU gate in eqs. 13/16; exact for GD)",
                  "no change through a closed gate (up to solve error)", gating),
        ]
        if not p["multi"]:
            out.append(Claim("invariant.noise_exact_zero", "invariant", "rho_ri(t) = 0 for all t when i in I_r-(0) (Lemma C.7)",
                             "exactly 0 (up to solve error)", exact_zero))
            return out

        def case(k: int):
            def check(run: Any) -> Outcome:
                ph, pg = proof(run, "h"), proof(run, "g")
                ih, ig = ph["I_plus0"].values, pg["I_plus0"].values
                rho = run.coefficients("h")["rho"].values
                rhot = run.coefficients("g")["rho"].values
                th, tg = tol(run, "h"), tol(run, "g")
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
                frac = ok[:, sel].mean()
                return Outcome(f"{frac:.1%} of (step, pair) satisfy it ({int(sel.sum())} pairs)", bool(ok[:, sel].all()),
                               {"fraction": float(frac), "pairs": int(sel.sum())})
            return check

        def synchronization(run: Any) -> Outcome:
            uh = run.site("h")["signal_inner"].values[:, :, 0] > 0
            ug = run.site("g")["signal_inner"].values[:, :, 0] > 0
            mixed = uh[0] != ug[0]
            if not mixed.any():
                raise NotCheckable("no neuron starts with mixed signs")
            synced = (uh[-1] == ug[-1])[mixed]
            return Outcome(f"{synced.mean():.1%} of {int(mixed.sum())} mixed-sign neurons synchronised by the last step",
                           bool(synced.all()), {"fraction": float(synced.mean()), "mixed": int(mixed.sum())})

        def coupling(run: Any) -> Outcome:
            same = _same_sign(run)
            if not same.any():
                raise NotCheckable("no same-sign neuron")
            i1 = _index_at(run, p["T1"])
            a = proof(run, "h")["A"].values[:, same, 0]
            at = proof(run, "g")["A"].values[:, same, 0]
            gap0 = np.abs(p["c_mu"] * a[0] - at[0])
            gap1 = np.abs(p["c_mu"] * a[i1] - at[i1])
            total0, total1 = p["c_mu"] * a[0] + at[0], p["c_mu"] * a[i1] + at[i1]
            rel0, rel1 = gap0 / total0, gap1 / total1
            ok = rel1 < rel0
            ratio = np.median(at[-1] / a[-1])
            return Outcome(f"relative gap |C_mu A - A~|/(C_mu A + A~) shrinks for {ok.mean():.1%} of same-sign neurons "
                           f"by step {int(run.steps[i1])}; median A~/A at the end {_fmt(float(ratio))}",
                           bool(ok.all()), {"fraction": float(ok.mean()), "median_ratio_end": float(ratio), "c_mu": p["c_mu"]})

        out += [
            Claim("invariant.multi_case1", "invariant", "on I-(0) and I~-(0): rho = rho~ = 0 (Lemma D.8, case 1)",
                  "exactly 0", case(1)),
            Claim("invariant.multi_case2", "invariant", "on I-(0) and I~+(0): rho = 0 and rho~ non-increasing (case 2)",
                  "holds every step", case(2)),
            Claim("invariant.multi_case3", "invariant", "on I+(0) and I~-(0): rho~ = 0 and rho non-increasing (case 3)",
                  "holds every step", case(3)),
            Claim("invariant.synchronization", "invariant", "mixed-sign neurons become same-sign (Lemma D.10)",
                  "all synchronised", synchronization),
            Claim("invariant.coupling_gap", "invariant", "C_mu A - A~ shrinks while C_mu A + A~ grows (eqs. 41-42)",
                  f"relative gap shrinks by T1; A~/A -> C_mu = {_fmt(p['c_mu'])}", coupling),
        ]
        return out
