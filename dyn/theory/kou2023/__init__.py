"""Kou, Chen, Chen, Gu, "Benign Overfitting in Two-layer ReLU Convolutional Neural Networks" (ICML 2023), as
claims on runs of the signal–noise CNN family with ReLU (q = 1) and label-flipping noise p ≥ 0.

Per run: the family's exact identities, sign constraints, overfitting (flipped samples included, fitted by noise),
the Bayes floor, and the q = 1 coefficient ratio γ/ρ̄ against n·SNR². Across runs (a sweep): the benign/harmful
transition at n‖μ‖⁴ ≍ σ_p⁴ d (:meth:`KouTheory.transitions`). Constants of the theorems are unknown here
(MEMORY in ``shared/theory/benign-overfitting.md``): no verdict depends on one.

Examples
--------
>>> import tempfile, os
>>> from dyn.setups.signal_noise_cnn import CNNConfig, train
>>> path = os.path.join(tempfile.mkdtemp(), "kou.zarr")
>>> _ = train(CNNConfig(q=1, d=200, n=10, n_test=200, m=5, steps=30, eta=0.5, flip_rate=0.2, mu_norm=3.0), path)
>>> run = dyn.Run(path)
>>> dyn.theory.theory_for(run).name
'kou2023'
>>> {v.claim: v.verdict for v in KouTheory().check(run)}["identity.noise_update"]
'holds'
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..base import Claim, NotCheckable, Outcome, Transition, register
from ..signal_noise_cnn import CNNTheory
from ..signal_noise_cnn.claims import MIN_GROWTH
from ..signal_noise_cnn.quantities import CNNRecording

__all__ = ["KouTheory", "RATIO_BAND", "HARMFUL_EXCESS", "ratio_tracks_n_snr2"]

#: "γ/ρ̄ tracks n·SNR² within a constant band" read as: over the second half of training the ratio
#: (γ/ρ̄)/(n·SNR²) varies by at most this factor (one decade; the lemma's constants are unknown).
RATIO_BAND = 10.0
#: "Test error ≥ p + C₄" on the harmful side, with C₄ unknown (MEMORY): read as an excess of at least 0.1 over p
#: (a quarter of the way from p = 0.1 to chance); the benign side is excess 0 within sampling error.
HARMFUL_EXCESS = 0.1


def ratio_tracks_n_snr2(rec: CNNRecording) -> Outcome:
    """Mean γ over neurons / mean ρ̄ over clean samples' own-bank neurons, divided by n·SNR², over the second half
    of the recorded steps: its range must stay within ``RATIO_BAND``."""
    cfg = rec.config
    n_snr2 = rec.n * cfg["mu_norm"] ** 2 / (cfg["sigma_p"] ** 2 * cfg["d"])
    clean = ~rec.flipped
    if not clean.any():
        raise NotCheckable("every training label is flipped")
    own = rec.own()[:, clean]  # (2, n_clean)
    gamma = rec.gamma.mean(axis=(1, 2))
    rho = np.where(own[None, :, None, :], rec.rho[..., clean], np.nan)
    rho_bar = np.nanmean(rho, axis=(1, 2, 3))
    floor = MIN_GROWTH * rec.coefficient_error()
    half = np.arange(len(rec.steps)) >= len(rec.steps) // 2
    ok = half & (gamma > floor) & (rho_bar > floor)
    if ok.sum() < 3:
        raise NotCheckable(f"gamma and rho bar moved beyond {MIN_GROWTH}x their error on fewer than 3 of the "
                           f"second half's recorded steps")
    r = gamma[ok] / rho_bar[ok] / n_snr2
    band = float(r.max() / r.min())
    return Outcome(f"(gamma/rho bar)/(n SNR^2) from {r.min():.3g} to {r.max():.3g} over {int(ok.sum())} steps "
                   f"(band x{band:.3g}; n SNR^2 = {n_snr2:.3g})", band <= RATIO_BAND,
                   {"ratio_min": float(r.min()), "ratio_max": float(r.max()), "ratio_median": float(np.median(r)),
                    "band": band, "n_snr2": n_snr2, "steps": int(ok.sum())})


@register
class KouTheory(CNNTheory):
    """Kou et al. 2023: ReLU CNN with label-flipping noise; benign iff n‖μ‖⁴ ≳ σ_p⁴ d (test error → p)."""

    name = "kou2023"
    description = "Kou, Chen, Chen, Gu 2023 (ICML): benign vs harmful overfitting, ReLU CNN, label-flipping noise"

    def judges_config(self, config: dict[str, Any]) -> bool:
        return float(config.get("q", 0)) == 1.0

    def hypotheses(self, run: Any) -> dict[str, bool | None]:
        cfg = run.config
        return {"ReLU (q = 1)": float(cfg.get("q", 0)) == 1.0,
                "theory network": cfg.get("network", "theory") == "theory",
                "noise orthogonal to mu": bool(cfg.get("orthogonal_noise", True)),
                "p < 1/2": float(cfg.get("flip_rate", 0.0)) < 0.5}

    def own_claims(self, rec: Callable[[], CNNRecording], config: dict[str, Any]) -> list[Claim]:
        n_snr2 = config["n"] * config["mu_norm"] ** 2 / (config["sigma_p"] ** 2 * config["d"])
        return [Claim("q1.ratio", "coefficients",
                      "q = 1: sum_r gamma_jr tracks n SNR^2 * sum_r rho bar_jri (the coefficient lemmas, MEMORY): "
                      f"(gamma/rho bar)/(n SNR^2) stays within a x{RATIO_BAND:g} band over the second half",
                      f"band <= x{RATIO_BAND:g} (n SNR^2 = {n_snr2:.3g})",
                      lambda run: ratio_tracks_n_snr2(rec()),
                      hypotheses=("ReLU (q = 1)", "theory network", "noise orthogonal to mu"))]

    def transitions(self) -> list[Transition]:
        """Benign iff n‖μ‖⁴ ≳ σ_p⁴ d: the excess test error over p is ≈ 0 above the boundary and ≥ a constant
        below it; the transition is sharper for larger n (the exp(−n‖μ‖⁴/(C σ_p⁴ d)) tail)."""
        return [Transition(
            "transition.benign",
            "Kou et al. 2023 (Theorems 4.1/4.2, MEMORY): test error <= p + exp(-n|mu|^4/(C2 sigma_p^4 d)) when "
            "n|mu|^4 >= C1 sigma_p^4 d, >= p + C4 when n|mu|^4 <= C3 sigma_p^4 d",
            outcome="excess_test_error", variable={"n": 1, "mu_norm": 4, "d": -1, "sigma_p": -4},
            variable_label="n|mu|^4/(sigma_p^4 d)", wrong_variable={"n": 1, "mu_norm": 2, "d": -1, "sigma_p": -2},
            wrong_label="n SNR^2", increasing=False, low=0.0, high_min=HARMFUL_EXCESS, sharpness_axis="n",
            outcome_se="test_error_se")]

    def regime(self, run: Any) -> dict[str, Any]:
        out = super().regime(run)
        cfg = run.config
        out["n_mu4_over_sigma4_d"] = cfg["n"] * cfg["mu_norm"] ** 4 / (cfg["sigma_p"] ** 4 * cfg["d"])
        return out
