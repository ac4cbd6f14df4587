"""Huang, Han et al. 2025, "How Does Label Noise Gradient Descent Improve Generalization in the Low SNR Regime?",
as claims checkable on runs of the ``huang2025-label-noise`` setup (:mod:`dyn.setups.huang2025_label_noise`).

- :mod:`.constants`: the paper's constants with their theorem/lemma numbers, and our named readings of the words it
  leaves unquantified;
- :mod:`.quantities`: γ, ρ̄, ρ̲, ι, margins, loss derivatives and the predicted increments of updates (4)–(6),
  from a recorded run (:class:`~.quantities.Recording`);
- :mod:`.claims`: one small function per claim (:data:`~.claims.CLAIMS`).

Examples
--------
>>> import tempfile, os
>>> from dyn.setups.huang2025_label_noise import load_preset, train
>>> path = os.path.join(tempfile.mkdtemp(), "ln.zarr")
>>> _ = train(load_preset("huang2025-tiny", steps=40), path)
>>> verdicts = {v.claim: v.verdict for v in LabelNoiseTheory().check(dyn.Run(path))}
>>> verdicts["identity.noise_update"], verdicts["invariant.gd_signs"]
('holds', 'not checkable')
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from ...analysis.phases import MIN_EFFECT
from ...analysis.summary import TIE_RTOL, winner
from ...setups.huang2025_label_noise.config import SETUP_NAME
from ..base import Claim, NotCheckable, Theory, Transition, WINNERS, register
from . import constants
from .claims import CLAIMS, ClaimSpec, assumptions, ratios, stage1_end_gd, stage1_end_ln
from .quantities import Params, Recording

__all__ = ["LabelNoiseTheory", "CLAIMS", "ClaimSpec", "Params", "Recording", "SETUP_NAME", "assumptions", "constants"]

@register
class LabelNoiseTheory(Theory):
    """Theorems 3.2 (standard GD overfits) and 3.3 (label-noise GD generalizes), their lemmas, the exact update
    identities, and the Figure-2 reports, for one recorded run of either algorithm."""

    name = "huang2025-label-noise"
    setups = (SETUP_NAME,)
    description = "Huang, Han et al. 2025 (NeurIPS): label-noise GD vs standard GD, squared-ReLU CNN, low SNR"

    def applies_to(self, run: Any) -> str | None:
        cfg = run.attrs.get("config")
        if run.attrs.get("setup") != SETUP_NAME or not isinstance(cfg, dict):
            return f"it was not trained by dyn's {SETUP_NAME} setup (setup={run.attrs.get('setup')!r})"
        optimizer = cfg.get("optimizer", "gd")
        if optimizer != "gd":
            return (f"it was trained with optimizer {optimizer!r}; the theorems and the update identities describe "
                    "plain GD (optimizer 'gd')")
        family = {"q": 2.0, "network": "theory", "flip_rate": 0.0, "orthogonal_noise": True}
        changed = [f"{k}={cfg[k]!r}" for k, v in family.items() if k in cfg and cfg[k] != v]
        if changed:
            return (f"it changes the paper's network or data ({', '.join(changed)}); the theorems describe q = 2, the "
                    "theory network, noise orthogonal to mu and clean training labels")
        missing = [s for s in ("pos", "neg") if s not in run.sites]
        if missing:
            return f"the run lacks the filter-bank site(s) {', '.join(missing)}"
        return None

    def claims(self, run: Any) -> list[Claim]:
        params = Params.from_config(run.config)
        recording = functools.cache(lambda: Recording.from_run(run))
        return [Claim(spec.name, spec.stage, spec.statement, spec.predicted_text(params),
                      functools.partial(_evaluate, spec, recording)) for spec in CLAIMS]

    def regime(self, run: Any) -> dict[str, Any]:
        """Who wins the stage-1 race, the Figure-2 ratios and the final errors of this run."""
        rec = Recording.from_run(run)
        p = rec.params
        pred = p.race_prediction()
        out: dict[str, Any] = {
            "algorithm": p.algorithm,
            "n_snr2": p.n_snr2,
            "predicted_winner": ("noise memorization" if pred.get("noise_first") else "signal learning")
            if pred["applicable"] else "not applicable",
            "max_gamma_end": float(rec.signal_max()[-1]),
            "max_rho_bar_end": float(rec.noise_max()[-1]),
            **ratios(rec),
            "assumptions_met": [k for k, (ok, _, _) in assumptions(p).items() if ok],
            "assumptions_failed": [k for k, (ok, _, _) in assumptions(p).items() if ok is False],
        }
        g_end, r_end = out["max_gamma_end"], out["max_rho_bar_end"]
        if np.isfinite(g_end) and np.isfinite(r_end):
            # gamma and rho_bar start at 0; each is judged moved against its initial scale sigma0|mu| / sigma0 sigma_p sqrt d
            out["observed_winner"] = winner(max(g_end, 0.0), max(r_end, 0.0), signal_scale=p.s_mu, noise_scale=p.s_xi)
            if out["observed_winner"] == "did not move":
                out["note"] = (f"neither max gamma {g_end:.4g} nor max rho_bar {r_end:.4g} grew by "
                               f"{MIN_EFFECT - 1:g} x its initial scale ({p.s_mu:.4g}, {p.s_xi:.4g}): no quantity changed by x{MIN_EFFECT:g}")
            elif out["observed_winner"] == "tie":
                out["note"] = f"max gamma {g_end:.4g} and max rho_bar {r_end:.4g} differ by less than {TIE_RTOL:.0%}"
        else:
            out["observed_winner"] = None
            out["note"] = f"the coefficients are not finite at the end (max gamma {g_end}, max rho_bar {r_end})"
        for name in ("loss", "loss_noisy_expected", "test_error", "population_error"):
            values = rec.scalars.get(name)
            if values is not None:
                finite = values[np.isfinite(values)]
                out[f"final_{name}"] = float(finite[-1]) if finite.size else None
        try:
            out["T1"] = (stage1_end_gd if p.algorithm == "gd" else stage1_end_ln)(rec)["T1"]
        except NotCheckable as exc:  # a regime summary never fails on a short run
            out["T1"] = f"undefined: {exc}"
        return out


    def results(self, run: Any) -> dict[str, Any]:
        """Who won, max γ and max ρ̄ at the end and their ratio, the final test error with its binomial standard
        error (clean test labels; NaN when ``n_test = 0``), the final training loss.

        Examples
        --------
        >>> import tempfile, os
        >>> from dyn.setups.huang2025_label_noise import load_preset, train
        >>> path = os.path.join(tempfile.mkdtemp(), "ln.zarr")
        >>> _ = train(load_preset("huang2025-tiny", steps=20), path)
        >>> row = LabelNoiseTheory().results(dyn.Run(path))
        >>> sorted(k for k, v in row.items() if v is None)
        []
        >>> 0 <= row["test_error"] <= 1, row["winner"] in dyn.theory.WINNERS
        (True, True)
        """
        reg = self.regime(run)
        g, r = reg["max_gamma_end"], reg["max_rho_bar_end"]
        winner = reg.get("observed_winner")
        winner = winner if winner in WINNERS else "undetermined"
        err = reg.get("final_test_error")
        n_test = int(run.config.get("n_test", 0) or 0)
        err = float(err) if err is not None else math.nan
        loss = reg.get("final_loss")
        return {
            "winner": winner,
            "predicted": str(reg.get("predicted_winner")),
            "at_step": int(run.steps[-1]),
            "max_gamma": float(g),
            "max_rho": float(r),
            "ratio": float(g / r) if r > 0 else math.inf,
            "signal_won": {"signal learning": 1.0, "noise memorization": 0.0, "tie": 0.5}.get(winner, math.nan),
            "test_error": err,
            "test_error_se": math.sqrt(max(err * (1 - err), 0.0) / n_test) if n_test and math.isfinite(err) else math.nan,
            "final_loss": float(loss) if loss is not None else math.nan,
        }

    def transitions(self) -> list[Transition]:
        """Standard GD overfits harmfully at low n·SNR² (Theorem 3.2) and generalizes far above it; label-noise GD
        generalizes in the low-SNR regime (Theorem 3.3), so its transition, if any, lies lower."""
        variable = {"n": 1, "mu_norm": 2, "sigma_p": -2, "d": -1}  # n·SNR², SNR = ‖μ‖/(σ_p √d)
        wrong = {"mu_norm": 2, "sigma_p": -2, "d": -1}  # SNR² alone: the sample size would not matter
        common = dict(outcome="test_error", variable=variable, variable_label="n SNR^2", wrong_variable=wrong,
                      wrong_label="SNR^2 (n ignored)", increasing=False, low=0.0, outcome_se="test_error_se")
        return [
            Transition("transition.gd", "Standard GD: the clean test error is >= 0.24 where n SNR^2 is small "
                       "(Theorem 3.2, harmful overfitting) and near 0 where it is large (benign side: the usual "
                       "reading of this model, cf. Cao et al. 2022 at q = 2; not a theorem of this paper)",
                       high_min=constants.GD_TEST_ERROR_FLOOR, where={"algorithm": "gd"}, **common),
            Transition("transition.label_noise", "Label-noise GD: the clean test error is small even at low n SNR^2 "
                       "(Theorem 3.3); where it changes, it changes along n SNR^2 (no value stated on the high side)",
                       where={"algorithm": "label_noise"}, effect=0.1, **common),
        ]


def _evaluate(spec: ClaimSpec, recording: Any, run: Any) -> Any:
    return spec.evaluate(recording())

