"""The :class:`Huang2024` theory: its claims (:mod:`.claims`), hypotheses (:mod:`.params`), regime summary, the
headline a report puts runs side by side on, and plot overlays."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import NotCheckable
from ..base import Claim, Theory, Transition, register
from .claims import claims_for, observed_winner
from . import constants as C
from .params import ASSUMPTIONS, TEST_SIGNAL, Params, conditions, hypotheses_status
from .quantities import coefficient_maxima, index_at, noise_curve, proof, signal_curve, stage1_end

__all__ = ["Huang2024"]


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def _fmt(x: float) -> str:
    return f"{x:.4g}"


@register
class Huang2024(Theory):
    """Single-modal (Theorem 4.2) and multi-modal (Theorem 4.3) contrastive learning, Huang et al. 2024.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.load_preset("huang2024-tiny", steps=5), path)
    >>> verdicts = {v.claim: v for v in Huang2024().check(dyn.Run(path))}
    >>> verdicts["regime.winner"].verdict, verdicts["regime.winner"].reason
    ('not checkable', 'run too short: ends at step 5, before T1 = 9.061 (formula)')
    >>> v = verdicts["invariant.noise_exact_zero"]
    >>> v.verdict, v.hypotheses_met, v.unmet[:2]
    ('violated', False, ('assumption.high_dimension', 'assumption.learning_rate'))
    """

    name = "huang2024"
    setups = ("huang2024",)
    plot_quantities = ("A", "Psi")
    description = "Huang et al. 2024 (NeurIPS): single- vs multi-modal contrastive learning, signal vs noise"
    definitions = {
        "sites h, g": "the recorded weight matrices: h the encoder of the first modality (the only one of a "
                      "single-modal run), g the encoder of the second modality (multi-modal runs)",
        "gamma, rho": "exact signal learning and noise memorization: w_r(t) = w_r(0) + gamma_r mu/|mu|^2 "
                      "+ sum_i rho_ri xi_i/|xi_i|^2 (eq. 11)",
        "A": "total signal A_r = |gamma_r + <w_r(0), mu>| with the sign of <w_r(0), mu> (~ |<w_r(t), mu>|)",
        "Psi": "total noise Psi_ri = rho_ri + <w_r(0), xi_i> (~ <w_r(t), xi_i>)",
        "I+(0)": "the pairs (r, i) with <w_r(0), xi_i> > 0 (noise the neuron sees at initialisation); "
                 "U+(0): neurons with <w_r(0), mu> > 0",
        "beta": "max_r |gamma_r(T1)|, the signal scale at the end of stage 1 (single-modal stage 2)",
        "T1": "end of stage 1: the formula of Lemma 5.2 / 5.4 (predicted) and the step the loss derivatives "
              "leave the stage-1 band (observed)",
        "W*": "the stage-2 reference point W(0) + 2 tau log(2M/eps) (sum_i xi_i/|xi_i|^2 single-modal; "
              "theta_r mu/|mu|^2 multi-modal), eps the smallest loss after T1",
        "M": "negatives per anchor (all opposite-label samples)",
        "SNR": "|mu|/(sigma_xi sqrt d); C_mu = |mu~|/|mu|",
    }

    def applies_to(self, run: Any) -> str | None:
        cfg = run.attrs.get("config")
        if run.attrs.get("setup") != "huang2024" or not isinstance(cfg, dict):
            return f"it was not trained by dyn's huang2024 setup (setup={run.attrs.get('setup')!r})"
        if cfg.get("modality") == "multi" and "g" not in run.sites:
            return "multi-modal run without the modality-2 site 'g'"
        return None

    def claims(self, run: Any) -> list[Claim]:
        return claims_for(Params.from_run(run))

    def hypotheses(self, run: Any) -> dict[str, bool | None]:
        return dict(hypotheses_status(Params.from_run(run)))

    def quantities(self, run: Any, site: str) -> Any:
        """A (total signal) and Ψ (total noise, on the pairs active at initialisation, I₊(0)) of ``site``."""
        pq = proof(run, site)
        out = pq[["A", "Psi"]].copy()
        out["Psi"] = pq["Psi"].where(pq["I_plus0"])
        out["A"].attrs["long_name"] = "total signal A = |gamma + <w(0), mu>|"
        out["Psi"].attrs["long_name"] = "total noise Psi = rho + <w(0), xi> on I+(0)"
        return out

    def regime(self, run: Any) -> dict[str, Any]:
        """Who leads at the formula's T₁ (or the last step, when the run ends first) and what was predicted."""
        p = Params.from_run(run)
        met = {c.name: c.met for c in conditions(p) if c.name in ASSUMPTIONS}
        if p.multi:
            predicted = "signal learning"
            condition = (f"needs n SNR^2 >= {C.N_SNR2_MULTI_MIN} and C_mu >= {C.C_MU_MIN}; "
                         f"here n SNR^2 = {_fmt(p.n_snr2)} ({_met(p.n_snr2 >= C.N_SNR2_MULTI_MIN)}), "
                         f"C_mu = {_fmt(p.c_mu)} ({_met(p.c_mu >= C.C_MU_MIN)})")
        else:
            predicted = "noise memorization"
            condition = (f"needs n SNR^2 <= {C.N_SNR2_SINGLE_MAX}; here n SNR^2 = {_fmt(p.n_snr2)} "
                         f"({_met(p.n_snr2 <= C.N_SNR2_SINGLE_MAX)})")
        try:
            g, r = coefficient_maxima(run)
        except NotCheckable as exc:
            return {"modality": p.modality, "condition": condition, "predicted_winner": predicted,
                    "observed_winner": None, "note": str(exc), "assumptions_met": not [k for k, v in met.items() if v is False],
                    "agrees": None}
        i = index_at(run, p.T1)
        reached = i is not None
        i = len(run.steps) - 1 if i is None else i
        unmet = [k for k, v in met.items() if v is False]
        out = {"modality": p.modality, "condition": condition, "predicted_winner": predicted, "at_step": int(run.steps[i]),
               "reached_T1": reached, "T1": p.T1, "max_gamma": float(g[i]), "max_rho": float(r[i]),
               "ratio_gamma_over_rho": float(g[i] / r[i]) if r[i] > 0 else math.inf,
               "assumptions_met": not unmet, "assumptions_unmet": unmet}
        observed, note = observed_winner(float(g[i]), float(r[i]), p)
        out.update(observed_winner=observed, agrees=(predicted == observed) if reached and observed in (
            "signal learning", "noise memorization") else None)
        if note:
            out["note"] = note
        return out

    def results(self, run: Any) -> dict[str, Any]:
        """The default columns (:meth:`dyn.theory.Theory.results`: winner at T₁, max γ and max ρ there, ...) and
        the final OOD probe accuracy (NaN when the run logged none)."""
        out = super().results(run)
        acc = run.scalar("probe_acc")
        finite = acc[np.isfinite(acc)] if acc is not None else np.array([])
        out["probe_acc"] = float(finite[-1]) if finite.size else math.nan
        for key in ("max_gamma", "max_rho", "ratio", "at_step"):
            out[key] = math.nan if out[key] is None else out[key]
        return out

    def transitions(self) -> list[Transition]:
        """Multi-modal: signal learning wins at T₁ once C_μ·n·SNR² passes a threshold (Lemma 5.4, derived
        C_μ n SNR² >= 4.51); single-modal: noise memorization wins for n·SNR² <= 1.8 (Lemma 5.2).

        C_μ·n·SNR² = n ‖μ‖ ‖μ̃‖ / (σ_ξ² d) is a monomial of config fields (C_μ = ‖μ̃‖/‖μ‖), so the grid's derived
        axes n_snr2 and c_mu enter through ``mu_norm`` and ``mu_tilde_norm``."""
        n_snr2 = {"n": 1, "mu_norm": 2, "sigma_xi": -2, "d": -1}
        return [
            Transition("transition.multi", "Multi-modal contrastive learning: the signal leads at T1 (signal "
                       "learning wins) iff C_mu n SNR^2 is large; sufficient: C_mu n SNR^2 >= 4.51 (Huang et al. "
                       "2024, Theorem 4.3 / Lemma 5.4, constant derived)", "signal_won",
                       {"n": 1, "mu_norm": 1, "mu_tilde_norm": 1, "sigma_xi": -2, "d": -1},
                       variable_label="C_mu n SNR^2", wrong_variable=n_snr2, wrong_label="n SNR^2 (C_mu ignored)",
                       increasing=True, low=0.0, high_min=1.0, where={"modality": "multi"},
                       threshold=C.C_MU_N_SNR2_MIN),
            Transition("transition.single", "Single-modal contrastive learning: noise memorization wins at T1 for "
                       "n SNR^2 <= 1.8 (Huang et al. 2024, Theorem 4.2 / Lemma 5.2); nothing is stated above it",
                       "signal_won", n_snr2, variable_label="n SNR^2", increasing=True, low=0.0, high_min=None,
                       where={"modality": "single"}, threshold=C.N_SNR2_SINGLE_MAX, effect=0.5),
        ]

    def headline(self, run: Any) -> dict[str, Any]:
        """Modality, n·SNR², C_μ, Assumption 4.1, the leader at T₁, the coefficients at the end, the probe."""
        p = Params.from_run(run)
        reg = self.regime(run)
        if reg.get("observed_winner") is None:
            return {"modality": p.modality, "n SNR^2": round(p.n_snr2, 4), "note": reg.get("note", "")}
        g, r = coefficient_maxima(run)
        out: dict[str, Any] = {
            "modality": p.modality,
            "n SNR^2": round(p.n_snr2, 4),
            "C_mu": round(p.c_mu, 4) if p.multi else "n/a",
            "Assumption 4.1": "met" if reg["assumptions_met"] else
            "not met: " + ", ".join(u.removeprefix("assumption.") for u in reg["assumptions_unmet"]),
            "test signal (§3.3)": "met" if hypotheses_status(p)[TEST_SIGNAL] else "not met (nu parallel to mu)",
            "T1 (formula)": round(p.T1, 1) if math.isfinite(p.T1) else "inf",
            "leader at T1": (reg["observed_winner"] if reg["reached_T1"] else "run ends before T1")
                            + f" (predicted: {reg['predicted_winner']})",
            "max|gamma| / max rho at T1": f"{_fmt(reg['max_gamma'])} / {_fmt(reg['max_rho'])}",
            "max|gamma| / max rho at the end": f"{_fmt(float(g[-1]))} / {_fmt(float(r[-1]))}",
        }
        end = stage1_end(run)
        out["stage 1 ends (band)"] = ("not logged" if not end.band_recorded else "at step 0" if not end.in_band_at_start
                                      else "not left" if end.band_exit is None else f"step {_fmt(end.band_exit)}")
        for key, label in (("probe_acc", "OOD probe accuracy (h(x_test) held-out folds)"),
                           ("probe_acc_transfer", "OOD probe accuracy (head fitted on h(x_train))")):
            acc = run.scalar(key)
            if acc is not None and np.isfinite(acc).any():
                out[label] = round(float(acc[np.flatnonzero(np.isfinite(acc))[-1]]), 4)
        loss = run.scalar("loss")
        if loss is not None:
            out["final loss"] = float(f"{loss[-1]:.4g}")
        return out

    def overlays(self, run: Any, site: str, quantity: str) -> dict[str, Any]:
        """The rigorous stage-1 rate bounds from the recorded maximum at step 0, and the T₁ markers."""
        p = Params.from_run(run)
        markers = [("T1 (formula)", p.T1)] if p.T1 <= run.steps[-1] else []
        end = stage1_end(run)
        if end.band_exit is not None:
            markers.append(("stage 1 ends (band)", end.band_exit))
        rates = {"A": p.signal_rate_bound, "Psi": p.noise_rate_bound}
        lines = []
        if quantity in rates and site == "h":
            start = signal_curve(run)[0] if quantity == "A" else noise_curve(run)[0]
            stop = min(p.T1, float(run.steps[-1]))
            t = run.steps[run.steps <= stop]
            kind = {("A", False): "upper", ("Psi", False): "lower", ("A", True): "lower", ("Psi", True): "upper"}
            lines.append((f"stage-1 {kind[(quantity, p.multi)]} bound (log-slope {_fmt(rates[quantity])})", t,
                          start * np.exp(rates[quantity] * t)))
        return {"lines": lines, "markers": markers}
