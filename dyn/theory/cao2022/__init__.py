"""Cao, Chen, Belkin, Gu, "Benign Overfitting in Two-layer Convolutional Neural Networks" (NeurIPS 2022), as
claims on runs of the signal–noise CNN family with polynomial ReLU σ(z) = max(0, z)^q, q > 2.

Per run: the family's exact identities, sign constraints and overfitting, and the stage-1 race: signal learning
wins when n·SNR^q ≫ 1, noise memorization when n·SNR^q ≪ 1 (checked only ≥ ``RACE_MARGIN``× from 1 either way;
near the boundary the race's constants decide, and they are unknown). Across runs: the transition at
n·SNR^q = const (:meth:`CaoTheory.transitions`). The paper has p = 0; a run with label flips is judged outside
its hypotheses.

Examples
--------
>>> import tempfile, os
>>> from dyn.setups.signal_noise_cnn import CNNConfig, train
>>> path = os.path.join(tempfile.mkdtemp(), "cao.zarr")
>>> _ = train(CNNConfig(q=3, d=100, n=20, n_test=100, m=5, steps=40, eta=1.0, sigma0=0.1, mu_norm=8.0), path)
>>> dyn.theory.theory_for(dyn.Run(path)).name
'cao2022'
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..base import Claim, NotCheckable, Outcome, Transition, register
from ..signal_noise_cnn import CNNTheory
from ..signal_noise_cnn.claims import winner
from ..signal_noise_cnn.quantities import CNNRecording

__all__ = ["CaoTheory", "RACE_MARGIN", "STAGE1_LOSS_DERIVATIVE", "stage1_winner", "stage1_end"]

#: The race is judged only where n·SNR^q is at least this factor from 1 (either way): the constant C of the
#: theorem is unknown, so the boundary's neighbourhood is "not checkable".
RACE_MARGIN = 10.0
#: Stage 1 (every |ℓ'_i| ≈ ½, where the race's growth laws hold) ends at the first recorded step where the mean
#: |ℓ'_i| has fallen below this value.
STAGE1_LOSS_DERIVATIVE = 0.4


def stage1_end(rec: CNNRecording) -> int:
    """Index of the first recorded step at which mean |ℓ'_i| < ``STAGE1_LOSS_DERIVATIVE`` (NotCheckable if none)."""
    f = rec.outputs()
    lp = 1.0 / (1.0 + np.exp(np.clip(rec.y * f, -700, 700)))
    below = np.flatnonzero(lp.mean(axis=1) < STAGE1_LOSS_DERIVATIVE)
    if below.size == 0:
        raise NotCheckable(f"the run ends before stage 1 does (mean |l'| never below {STAGE1_LOSS_DERIVATIVE})")
    if below[0] == 0:
        raise NotCheckable(f"the run starts outside stage 1 (mean |l'| < {STAGE1_LOSS_DERIVATIVE} at initialisation: "
                           f"sigma0 too large for the race)")
    return int(below[0])


def stage1_winner(rec: CNNRecording) -> Outcome:
    """Who leads (max γ vs max ρ̄) at the end of stage 1, against the race's prediction from n·SNR^q."""
    cfg = rec.config
    q = rec.net.q
    x = rec.n * (cfg["mu_norm"] / (cfg["sigma_p"] * math.sqrt(cfg["d"]))) ** q
    if 1.0 / RACE_MARGIN < x < RACE_MARGIN:
        raise NotCheckable(f"n SNR^q = {x:.3g} is within x{RACE_MARGIN:g} of 1: the race's unknown constants decide")
    predicted = "signal learning" if x >= RACE_MARGIN else "noise memorization"
    k = stage1_end(rec)
    g, r = float(rec.signal_max()[k]), float(rec.noise_max()[k])
    observed = winner(g, r, rec)
    if observed in ("tie", "did not move"):
        return Outcome(f"{observed} at step {int(rec.steps[k])} (max gamma {g:.4g}, max rho bar {r:.4g})", None,
                       {"n_snr_q": x, "max_gamma": g, "max_rho": r, "T1": int(rec.steps[k])}, predicted=predicted,
                       reason=f"the race has no winner ({observed})")
    return Outcome(f"{observed} leads at the end of stage 1 (step {int(rec.steps[k])}: max gamma {g:.4g}, "
                   f"max rho bar {r:.4g})", observed == predicted,
                   {"n_snr_q": x, "max_gamma": g, "max_rho": r, "T1": int(rec.steps[k])}, predicted=predicted)


@register
class CaoTheory(CNNTheory):
    """Cao et al. 2022: polynomial-ReLU CNN (q > 2); benign iff n·SNR^q is large."""

    name = "cao2022"
    description = "Cao, Chen, Belkin, Gu 2022 (NeurIPS): benign vs harmful overfitting, polynomial ReLU (q > 2)"

    def judges_config(self, config: dict[str, Any]) -> bool:
        return float(config.get("q", 0)) > 2.0

    def hypotheses(self, run: Any) -> dict[str, bool | None]:
        cfg = run.config
        return {"q > 2": float(cfg.get("q", 0)) > 2.0, "p = 0": float(cfg.get("flip_rate", 0.0)) == 0.0,
                "theory network": cfg.get("network", "theory") == "theory",
                "noise orthogonal to mu": bool(cfg.get("orthogonal_noise", True))}

    def own_claims(self, rec: Callable[[], CNNRecording], config: dict[str, Any]) -> list[Claim]:
        q = float(config["q"])
        x = config["n"] * (config["mu_norm"] / (config["sigma_p"] * math.sqrt(config["d"]))) ** q
        predicted = ("signal learning" if x >= RACE_MARGIN else "noise memorization" if x <= 1 / RACE_MARGIN
                     else f"not judged (within x{RACE_MARGIN:g} of the boundary)")
        return [Claim("race.stage1_winner", "stage 1",
                      "stage 1 (|l'| ~ 1/2): gamma grows like x <- x + c x^(q-1) from sigma0 |mu|, each rho_i like "
                      "y <- y + c' y^(q-1) from sigma0 sigma_p sqrt(d); signal wins iff n SNR^q >> 1 (Cao et al., "
                      "mechanism DERIVED)", f"{predicted} (n SNR^q = {x:.3g})", lambda run: stage1_winner(rec()),
                      hypotheses=("q > 2", "p = 0", "theory network", "noise orthogonal to mu"))]

    #: the activation power the across-runs statements are written for (the shipped grid's q; a transition's
    #: variable is a fixed monomial of config fields)
    TRANSITION_Q = 3.0

    def transitions(self) -> list[Transition]:
        """At q = 3: the stage-1 race (signal wins iff n·SNR³ ≫ 1) and the benign/harmful transition of the test
        error along n·SNR³ (p = 0: benign test error → 0)."""
        q = self.TRANSITION_Q
        variable = {"n": 1, "mu_norm": q, "d": -q / 2, "sigma_p": -q}
        wrong = {"n": 1, "mu_norm": 2, "d": -1, "sigma_p": -2}
        common = dict(variable=variable, variable_label="n SNR^3", wrong_variable=wrong, wrong_label="n SNR^2",
                      where={"q": q})
        return [
            Transition("transition.race", "Cao et al. 2022 (mechanism, DERIVED): signal learning wins the stage-1 "
                       "race iff n SNR^q >> 1 (1 = signal won, 0 = noise won)", outcome="signal_won",
                       increasing=True, low=0.0, high_min=1.0, **common),
            Transition("transition.benign", "Cao et al. 2022 (MEMORY): test loss small when n SNR^q >= C, >= 0.1 "
                       "when n^-1 SNR^-q >= C; read on the test error (0 on the benign side)", outcome="test_error",
                       increasing=False, low=0.0, high_min=0.1, outcome_se="test_error_se", **common),
        ]

    def regime(self, run: Any) -> dict[str, Any]:
        out = super().regime(run)
        cfg = run.config
        out["n_snr_q"] = cfg["n"] * out["snr"] ** float(cfg["q"])
        try:
            rec = CNNRecording.from_run(run)
            k = stage1_end(rec)
            out["T1"] = int(rec.steps[k])
            out["stage1_winner"] = winner(float(rec.signal_max()[k]), float(rec.noise_max()[k]), rec)
        except NotCheckable as exc:
            out["T1"], out["stage1_winner"] = None, f"undefined: {exc}"
        return out
