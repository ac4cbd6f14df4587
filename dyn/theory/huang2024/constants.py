"""The constants of Huang et al. 2024 with their sources, and dyn's named readings of what the paper leaves open.

Numbering follows ``shared/theory/huang2024.md`` (§ of the reconstruction, lemma/equation of the paper). Constants
marked READING are dyn's choices where the paper writes Õ/Ω̃/Θ or "a constant"; each is used in one place.
"""

from __future__ import annotations

import math

# -- probability and the reading of Õ / Ω̃ ---------------------------------------------------------------------------
#: Failure probability δ of the high-probability lemmas (B.2–B.5). READING: the theorems hold with probability
#: 1 − 1/d; the worked examples of the reconstruction use δ = 0.01, which is the more lenient for d ≥ 100.
DELTA = 0.01

# -- Assumption 4.1 (§6), read with constant 1 and the log factors the proofs attach to each term ----------------------
#: 4.1(1) d ≥ Ω̃(n²): the proofs use d > n² log(6n²/δ) (§6).
DIM_N2_LOG = "log(6 n^2/delta)"
#: 4.1(3) σ₀ ≤ 1/(2 √log(8mn/δ) σ_ξ √d) and σ₀ ≤ 1/(2 √log(8m/δ) ‖μ‖) (§6, Lemma B.4).
INIT_FACTOR = 2.0
#: 4.1(2) η ≤ nmτ/(12 σ_ξ² d) (App. C.2); READING: the same constant on the signal term mτ/‖μ‖².
ETA_FACTOR = 1.0 / 12.0
#: 4.1(6) in the proofs: single-modal n·SNR² ≤ 1.8 (Lemma 5.2), multi-modal n·SNR² ≥ 1.7 (Lemma 5.4).
N_SNR2_SINGLE_MAX = 1.8
N_SNR2_MULTI_MIN = 1.7
#: 4.1(7) ‖μ̃‖ = C_μ ‖μ‖ with C_μ ≥ 2.66.
C_MU_MIN = 2.66
#: DERIVED from the proof of Lemma 5.4: 2.21/(C_μ n SNR²) + 0.01 ≤ 0.5, i.e. C_μ n SNR² ≥ 4.51.
C_MU_N_SNR2_MIN = 4.51

# -- constants of the proofs (sufficient conditions; reported, not used to gate claims) ----------------------------------
#: n ≥ 2500 log(4/δ) (Lemma C.4, single-modal); n ≥ 1 280 000 log(4/δ) (Lemma D.8, multi-modal).
N_MIN_SINGLE = 2500
N_MIN_MULTI = 1_280_000
#: d > 10000 log(6n²/δ) (§6).
D_MIN_CONST = 10_000
#: Lemma B.2: d ≥ (400 n/(σ₀σ_ξ)) √(log(6n/δ) / (−π log(1 − δ²/(4m²)))).
ANTI_CONCENTRATION = 400
#: Lemma C.5/C.11: C_ξ > 200; READING: σ_ε ≤ σ_ξ / C_ξ.
C_XI = 200
#: Lemma D.8 chooses C_ℓ = 1.01; the proofs need M ≥ 100 C_ℓ − 1 negatives (App. C.2).
C_ELL = 1.01
NEGATIVES_FACTOR = 100

# -- stage 1 (§8.2) -------------------------------------------------------------------------------------------------------
#: Single-modal: A_r(t) ≤ (1 + 0.52 η‖μ‖²/(mτ))^t A_r(0) (Lemma C.4).
SIGNAL_RATE_SINGLE = 0.52
#: Single-modal: Ψ_{r,i}(t) ≥ (1 + 0.96 ησ²d/(nmτ))^t Ψ_{r,i}(0) (Lemma C.11), under Ψ ≥ 101 C_ℓ B_{r,−}/(M + 1).
NOISE_RATE_SINGLE = 0.96
NOISE_PREMISE_FACTOR = 101
#: Multi-modal: A_r(t) ≥ (1 + 0.48 C_μ η‖μ‖²/(mτ))^t (A_r(0) + Ã_r(0)/C_μ) − 1 (Lemma D.4).
SIGNAL_RATE_MULTI = 0.48
#: Multi-modal: Ψ_{r,i}(t) ≤ (1 + 1.06 ησ²d/(nmτ))^t (Ψ_{r,i}(0) + Ψ̃_{r,i}(0)) on I₊ ∩ Ĩ₊ (Lemma D.8).
NOISE_RATE_MULTI = 1.06
#: Numerator of both T₁ formulas (Lemmas 5.2 / 5.4); the proofs also use 12 and 30 (typo list §12.5).
T1_NUMERATOR = 20.0
#: READING of the stage-1 band of Lemma C.2, [1/(C(1+M)), C/(1+M)]: the proofs' C_ℓ = 1.01 is left by the
#: initial similarities of any run; C = 2 marks where similarities stop being small against τ.
BAND_C = 2.0

# -- scales at T₁ (§7) ------------------------------------------------------------------------------------------------------
#: The dominant coefficient's average over the lemma's neurons reaches 3 within T₁: (1/m) Σ_{r∈U₊} Ψ_{r,i}
#: (single-modal, proof of Lemma 5.2) and (1/m) Σ_{r∈U₊∩Ũ₊} A_r (multi-modal, proof of Lemma 5.4).
DOMINANT_AVERAGE = 3.0
#: Single-modal minority bound max_r A_r(T₁) ≤ 20 √(2 log(8m/δ)) SNR (Lemma 5.2).
MINORITY_SIGNAL_FACTOR = 20.0
#: Multi-modal minority bound max Ψ(T₁) ≤ √(24 log(8mn/δ)) √(σ₀σ_ξ√d/‖μ‖) (Lemma 5.4).
MINORITY_NOISE_FACTOR = 24.0

# -- stage 2 (§8.3) ---------------------------------------------------------------------------------------------------------
#: |γ|, |ρ| ≤ log(3 M T*) (Prop. C.13).
LOG_BOUND_FACTOR = 3.0
#: W* = W(0) + 2τ log(2M/ε) (Σ_i ξ_i/‖ξ_i‖² single-modal, θ_r μ/‖μ‖² multi-modal) (App. C.3 / D.3).
W_STAR_FACTOR = 2.0
#: Averaged-loss bound + k ε, k = 1 single-modal (Lemma C.18), 2 multi-modal (Lemma D.14/D.15).
AVERAGED_LOSS_EPS = {"single": 1.0, "multi": 2.0}
#: Single-modal: max_r |γ_r(t)| ≤ 3 β, β = |max_r γ_r(T₁)|, for t ∈ [T₁, T] (§8.3).
SCALE_GAP_SINGLE = 3.0

# -- downstream (Theorems 4.2 / 4.3 item 2) -----------------------------------------------------------------------------------
#: READING of Θ(1) and o(1) test error at a finite size: single-modal error ≥ 0.2, multi-modal error ≤ 0.1; an
#: error whose confidence interval reaches into the gap between them decides neither.
ERROR_CONSTANT = 0.2
ERROR_SMALL = 0.1

# -- what dyn needs to call something observed ---------------------------------------------------------------------------------
#: Confidence level of every interval a verdict uses.
LEVEL = 0.95
#: Largest normalised Gram condition for which float32 recordings determine γ/ρ to about 1e-3 relative.
MAX_BASIS_CONDITION = 1e4
#: A coefficient counts as moved when it exceeds this many times the solve's float32 error bound.
MOVED_FACTOR = 100.0


def log_factor(n: int, m: int, delta: float = DELTA) -> dict[str, float]:
    """The log factors of the lemmas: ``L2 = log(6n²/δ)``, ``L1 = log(6n/δ)``, ``Lm = log(8m/δ)``,
    ``Lmn = log(8mn/δ)``, ``L4 = log(4/δ)``.

    Examples
    --------
    >>> round(log_factor(100, 50)["L2"], 2)
    15.61
    """
    return {"L2": math.log(6 * n * n / delta), "L1": math.log(6 * n / delta), "Lm": math.log(8 * m / delta),
            "Lmn": math.log(8 * m * n / delta), "L4": math.log(4 / delta)}
