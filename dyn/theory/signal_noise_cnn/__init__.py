"""What every theorem on the signal–noise CNN family shares: reading a run (:mod:`.quantities`), the per-run claims
that depend on no unverified constant (:mod:`.claims`), and :class:`CNNTheory`, the base of the family's theories
(``dyn.theory.kou2023``, ``dyn.theory.cao2022``), which chooses its runs by config (the activation's power, the
label noise), not by paper.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

from ...setups.signal_noise_cnn.config import SETUP_NAME
from ..base import WINNERS, Claim, NotCheckable, Outcome, Theory
from . import claims as C
from .quantities import CNNRecording

__all__ = ["CNNTheory", "CNNRecording", "FAMILY_CLAIMS"]

#: (name, stage, statement, predicted, check) of the claims every member shares (benign-overfitting.md §5, 1–5).
FAMILY_CLAIMS: list[tuple[str, str, str, str, Callable[[CNNRecording], Outcome]]] = [
    ("identity.signal_update", "identity",
     "gamma_jr(t+1) - gamma_jr(t) = (eta s/n) sum_i w_i sigma'(y~_i <w_jr, mu> + b_jr) y~_i |mu|^2 with "
     "w_i = -l'(eps_i y_i f_i) eps_i y_i and s the network's factor (exact GD identity, §3; flipped samples push "
     "gamma down)", "equal at every step within the float error bound",
     functools.partial(C.identity_outcome, which="gamma")),
    ("identity.noise_update", "identity",
     "rho_jri(t+1) - rho_jri(t) = (eta s/n) j w_i sigma'(<w_jr, xi_i> + b_jr) |xi_i|^2 (exact GD identity, §3)",
     "equal at every step within the float error bound", functools.partial(C.identity_outcome, which="rho")),
    ("identity.bias_update", "identity",
     "b_jr(t+1) - b_jr(t) = (eta s/n) j sum_i w_i [sigma'(signal patch) + sigma'(noise patch)] (code network's "
     "bias)", "equal at every step within the float error bound", functools.partial(C.identity_outcome, which="bias")),
    ("invariant.signs", "invariant",
     "rho_jri >= 0 when j = y_i and <= 0 when j = -y_i at every step (§3: the sign of every update is j y_i)",
     "no violation beyond the float error", C.signs),
    ("overfit.train", "overfitting",
     f"GD fits the training data, flipped labels included: training error 0 and loss < {C.OVERFIT_LOSS} at the end "
     "(both regimes)", "training error 0, loss below the threshold", C.overfitting),
    ("overfit.flipped_by_noise", "overfitting",
     "every flipped sample is fitted by noise: the noise term of y_i f(x_i) is positive and exceeds the (negative) "
     "signal term", "all flipped samples", C.flipped_fitted_by_noise),
    ("test.bayes_floor", "test error",
     "test error against the flipped test labels never below the Bayes error p (beyond sampling error)",
     "test error >= p - 3 SE", C.bayes_floor),
]


class CNNTheory(Theory):
    """Base of the family's theories: shared claims, regime, sweep results; subclasses add their own claims
    (:meth:`own_claims`) and say which configs they judge (:meth:`judges_config`)."""

    setups = (SETUP_NAME,)
    definitions = {
        "gamma, rho": "exact coefficients of w_jr(t) = w_jr(0) + j gamma_jr mu/|mu|^2 + sum_i rho_jri xi_i/|xi_i|^2",
        "rho bar": "rho on the sample's own bank (j = y_i); its largest value is 'max rho' here",
        "p": "label-flip probability of the data (flip_rate); the Bayes test error against flipped labels",
        "excess test error": "test error against the flipped test labels minus the share of flipped test labels "
                             "(the Bayes classifier's error on this test set; p in expectation)",
    }

    def judges_config(self, config: dict[str, Any]) -> bool:
        """Whether this theory is the one for runs with ``config`` (subclasses decide by q, p, ...)."""
        return True

    def judges(self, run: Any) -> bool:
        cfg = run.attrs.get("config")
        return run.attrs.get("setup") in self.setups and isinstance(cfg, dict) and self.judges_config(cfg)

    def applies_to(self, run: Any) -> str | None:
        cfg = run.attrs.get("config")
        if run.attrs.get("setup") not in self.setups or not isinstance(cfg, dict):
            return f"it was not trained by dyn's {SETUP_NAME} setup (setup={run.attrs.get('setup')!r})"
        missing = [s for s in ("pos", "neg") if s not in run.sites]
        if missing:
            return f"the run lacks the filter-bank site(s) {', '.join(missing)}"
        return None

    def own_claims(self, rec: Callable[[], CNNRecording], config: dict[str, Any]) -> list[Claim]:
        return []

    def claims(self, run: Any) -> list[Claim]:
        recording = functools.cache(lambda: CNNRecording.from_run(run))
        cfg = dict(run.config)
        conditions = [Claim(name, "assumption", f"the theorem's setting: {name} (structural; the theorems' "
                            "constants are unknown here, so their quantitative conditions are not checked)",
                            name, _condition(name, met, cfg)) for name, met in self.hypotheses(run).items()]
        theorem = tuple(self.hypotheses(run))  # the theorem's statements; the identities and signs are exact for any run
        out = [Claim(name, stage, statement, predicted, _lazy(check, recording),
                     hypotheses=theorem if stage in ("overfitting", "test error") else ())
               for name, stage, statement, predicted, check in FAMILY_CLAIMS]
        return conditions + out + self.own_claims(recording, cfg)

    def regime(self, run: Any) -> dict[str, Any]:
        rec = CNNRecording.from_run(run)
        cfg = rec.config
        g, r = float(rec.signal_max()[-1]), float(rec.noise_max()[-1])
        out: dict[str, Any] = {"q": rec.net.q, "network": cfg.get("network", "theory"),
                               "flip_rate": float(cfg.get("flip_rate", 0.0)),
                               "snr": cfg["mu_norm"] / (cfg["sigma_p"] * math.sqrt(cfg["d"])),
                               "max_gamma": g, "max_rho": r, "observed_winner": C.winner(g, r, rec)}
        for name in ("loss", "train_error", "test_error", "test_error_clean", "population_error"):
            v = rec.scalars.get(name)
            if v is not None and np.isfinite(v).any():
                out[f"final_{name}"] = float(v[np.isfinite(v)][-1])
        labels = run.tree["labels"].attrs if "labels" in run.tree.children else {}
        out["bayes_test_error"] = float(labels.get("test_flip_fraction", out["flip_rate"]))
        if "final_test_error" in out:
            out["excess_test_error"] = out["final_test_error"] - out["bayes_test_error"]
        return out

    def results(self, run: Any) -> dict[str, Any]:
        """Per-run result columns of a sweep: the final test error against the flipped labels with its binomial
        standard error, the clean test error, the excess over the Bayes error of this test set (its share of
        flipped labels, ≈ p), the final loss and training error, the race's
        winner (one of :data:`dyn.theory.WINNERS`), max γ, max ρ̄ and their ratio, ``signal_won`` (1 / 0 / 0.5 for a
        tie / NaN when nothing moved). Every column is filled (NaN where the run has no test set)."""
        reg = self.regime(run)
        cfg = run.config
        n_test = int(cfg.get("n_test", 0) or 0)
        err = float(reg.get("final_test_error", math.nan))
        clean = float(reg.get("final_test_error_clean", err))  # without flips the two are one
        winner = reg["observed_winner"]
        g, r = float(reg["max_gamma"]), float(reg["max_rho"])
        return {
            "winner": winner if winner in WINNERS else "undetermined",
            "signal_won": {"signal learning": 1.0, "noise memorization": 0.0, "tie": 0.5}.get(winner, math.nan),
            "max_gamma": g,
            "max_rho": r,
            "ratio": g / r if r > 0 else math.inf,
            "test_error": err,
            "test_error_se": math.sqrt(max(err * (1 - err), 1e-12) / n_test) if n_test and math.isfinite(err)
            else math.nan,
            "test_error_clean": clean,
            "excess_test_error": err - reg["bayes_test_error"],
            "bayes_test_error": reg["bayes_test_error"],
            "final_loss": float(reg.get("final_loss", math.nan)),
            "train_error": float(reg.get("final_train_error", math.nan)),
        }


def _condition(name: str, met: bool | None, cfg: dict[str, Any]) -> Callable[[Any], Outcome]:
    keys = ("q", "network", "orthogonal_noise", "flip_rate")
    observed = ", ".join(f"{k} = {cfg.get(k)!r}" for k in keys if k in cfg)

    def check(run: Any) -> Outcome:
        return Outcome(observed, met)

    return check


def _lazy(check: Callable[[CNNRecording], Outcome], recording: Callable[[], CNNRecording]) -> Callable[[Any], Outcome]:
    def run_check(run: Any) -> Outcome:
        return check(recording())

    return run_check
