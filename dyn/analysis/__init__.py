"""Analysis of recorded runs: :class:`Run`, exact coefficients, phases, store verification.

Reads stores through :mod:`dyn.store`; never imports torch and knows no paper.
"""

from __future__ import annotations

from .coefficients import coefficients, reconstruction_residual, recording_error, weights_at
from .phases import fit_stage1, stage2_growth, t1_from_band
from .run import Run
from .verify import Check, verify

__all__ = ["Check", "Run", "coefficients", "fit_stage1", "reconstruction_residual", "recording_error", "stage2_growth",
           "t1_from_band", "verify", "weights_at"]
