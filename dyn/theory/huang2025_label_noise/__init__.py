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
from typing import Any

import numpy as np

from ...analysis.phases import MIN_EFFECT
from ...analysis.summary import TIE_RTOL, winner
from ...setups.huang2025_label_noise.config import SETUP_NAME
from ..base import Claim, NotCheckable, Theory, register
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


def _evaluate(spec: ClaimSpec, recording: Any, run: Any) -> Any:
    return spec.evaluate(recording())

