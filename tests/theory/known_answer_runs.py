"""The known-answer panel's runs: recorded runs whose truth is known (see test_known_answers.py)."""

from __future__ import annotations

import dyn
from dyn.setups.huang2024.config import with_c_mu, with_n_snr2


def tiny(modality: str = "single", n_snr2: float | None = None, c_mu: float | None = None, **changes):
    """``huang2024-tiny`` (d=200, n=20, m=8, 60 steps; n SNR^2 = 0.256, C_mu = 3) with the regime axes moved."""
    cfg = dyn.load_preset("huang2024-tiny", modality=modality)
    if n_snr2 is not None:
        cfg = with_n_snr2(cfg, n_snr2)
    if c_mu is not None:
        cfg = with_c_mu(cfg, c_mu)
    return cfg.replace(**changes)


#: name -> (config, evaluate_every)
PANEL = {
    "untrained": (tiny(eta=1e-9), None),
    "one-step": (tiny(steps=1), None),
    "single-below": (tiny(), 20),
    "single-above": (tiny(n_snr2=8.0), 20),
    "multi-above": (tiny("multi", n_snr2=2.0, c_mu=4.0), 20),
    "multi-below": (tiny("multi", n_snr2=1.0, c_mu=1.5), 20),
    "theorem-single": (dyn.load_preset("huang2024-theorem", steps=140), 140),
    "theorem-multi": (dyn.load_preset("huang2024-theorem", modality="multi", steps=80), 80),
}
