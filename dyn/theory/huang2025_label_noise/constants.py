"""The constants of Huang, Han et al. 2025, each with the theorem, lemma or proof it comes from.

Numbering follows the paper (arXiv 2510.17526) as reconstructed in ``shared/theory/huang2025-label-noise.md``
(cited below as "notes §k"). The second block holds this module's readings of words the paper leaves
unquantified ("near zero", "significantly", "Θ(1)"); each is ours, named, and reported with every verdict that uses it.
"""

from __future__ import annotations

import math

# -- the paper's constants -----------------------------------------------------------------------------------------

#: Prop. 4.1: every |γ|, |ρ| ≤ α = 4 log T*.
ALPHA_LOG_FACTOR = 4.0
#: Prop. 4.1: β + 16 √(log(4n²/δ)/d) n α ≤ 2α (β = 2 max |⟨w(0), μ⟩|, |⟨w(0), ξ_i⟩|).
PROP41_CROSS_TALK = 16.0

#: Lemma 4.2 proof: T₁ for standard GD = 4 nm log(1/s_ξ)/(η σ_p² d) = 4 log(1/s_ξ)/λ_n (the lemma headers drop the 4).
T1_GD_FACTOR = 4.0
#: Lemma 4.2(i), Lemma D.4: noise memorization max_r ρ̄_{y_i,r,i}(T₁) ≥ 1 for every i.
NOISE_LEVEL_T1 = 1.0
#: Lemma D.4: max_{j,r} ρ_{j,r,i}(t) ≥ exp(η C₁ σ_p² d t/(2nm)) s_ξ/4 − 0.6 β̄ for t ≤ T₁.
D4_RATE_DIVISOR = 2.0
D4_INIT_FRACTION = 0.25
D4_BETA_FRACTION = 0.6
#: Lemma D.2 (as printed): max_{j,r} |ρ̲_{j,r,i}(t)| ≤ (3 η σ_p² d t/(nm)) √log(8mn/δ) s_ξ.
D2_FACTOR = 3.0
D2_LOG_NUMERATOR = 8.0
#: Lemma D.1: γ + |⟨w(0), μ⟩| grows at most by 1 + 2η‖μ‖²/m per step (the same one-step argument bounds both
#: algorithms at every step: the signal envelope).
D1_RATE_FACTOR = 2.0
#: Lemma 4.2(iii) proof: D.1 at T₁ under the printed low-SNR condition gives a factor ≤ e^8, so
#: max γ ≤ e^8 √(2 log(8m/δ)) s_μ (Lemma B.2's bound on |⟨w(0), μ⟩|).
SIGNAL_T1_GROWTH = math.exp(8.0)
#: Lemma B.2: |⟨w(0), μ⟩| ≤ √(2 log(8m/δ)) σ₀‖μ‖, |⟨w(0), ξ_i⟩| ≤ 2 √(log(8mn/δ)) σ₀σ_p√d,
#: max_r j⟨w_{j,r}(0), μ⟩ ≥ σ₀‖μ‖/2, max_r ⟨w_{j,r}(0), ξ_i⟩ ≥ σ₀σ_p√d/4.
B2_SIGNAL_LOG_NUMERATOR = 8.0
B2_NOISE_FACTOR = 2.0
B2_SIGNAL_LOWER = 0.5
B2_NOISE_LOWER = 0.25
#: Lemma B.1: σ_p²d/2 ≤ ‖ξ_i‖² ≤ 3σ_p²d/2 and |⟨ξ_i, ξ_i'⟩| ≤ 2σ_p² √(d log(4n²/δ)).
B1_NORM_BAND = (0.5, 1.5)
B1_CROSS_FACTOR = 2.0
#: Theorem 3.2: standard GD reaches L_S ≤ ε with population 0-1 error L_D ≥ 0.24.
GD_TEST_ERROR_FLOOR = 0.24

#: Lemma 4.4 proof: T₁ for label-noise GD = 4 nm log(20/s_ξ)/(η C₀ σ_p² d).
T1_LN_FACTOR = 4.0
T1_LN_LOG_NUMERATOR = 20.0
#: Lemma 4.4(i) as stated (its proof gives NOISE_LEVEL_T1 = 1).
NOISE_LEVEL_T1_LN_STATED = 0.1
#: Lemma E.1: B_j(t) ≥ exp(C₀ η‖μ‖² t/(8m)) σ₀‖μ‖/2 for t ≤ T₁, if p < C₀/6.
E1_RATE_DIVISOR = 8.0
E1_INIT_FRACTION = 0.5
E1_P_DIVISOR = 6.0
#: Lemma 4.5 / E.4: T₂ = T₁ + 4m(1 + e^{c₂}) log(6/s_μ)/(η‖μ‖²).
T2_LN_FACTOR = 4.0
T2_LN_LOG_NUMERATOR = 6.0
#: Lemma E.4 proof: (3/2) p ≤ 1/(2(1 + e^{c₂})) keeps the clean samples' loss derivatives large in stage 2.
E4_P_FACTOR = 1.5
#: Lemma 4.5(ii) as printed: γ ≤ 0.1 on [T₁, T₂] (conflicts with (iv) and T₂; notes §11.1).
SIGNAL_CAP_PRINTED = 0.1
#: Lemma 4.5(iii), appendix form: ι_i/2 ≤ y_i f_i ≤ 2 ι_i on [T₁, T₂].
IOTA_OUTPUT_BAND = (0.5, 2.0)
#: Lemma 4.5(iv) as printed: the signal grows at least at rate η‖μ‖²/(16m) per step on [T₁, T₂].
SIGNAL_RATE_DIVISOR_PRINTED = 16.0
#: RECON (notes §7.5): the rate the proof's condition gives is η‖μ‖²/(4m(1 + e^{c₂})), and the signal reaches
#: max_r j⟨w_{j,r}(T₂), μ⟩ ≥ 3.
SIGNAL_RATE_DIVISOR_RECON = 4.0
SIGNAL_LEVEL_T2_RECON = 3.0

# -- readings of words the paper leaves unquantified (ours) ---------------------------------------------------------

def delta(d: int) -> float:
    """The failure probability δ = 1/d of the lemmas' log factors (they hold with probability 1 − 1/d; notes §10.9)."""
    return 1.0 / d


#: Theorem 3.2 "for any ε": checked at every evaluated step after T₁ whose clean loss is ≤ this (covering all smaller ε).
GD_OVERFIT_LOSS_EPS = 0.1
#: Figure 2 "near-zero" training loss of standard GD: below this at the last step.
GD_LOSS_NEAR_ZERO = 0.01
#: Figure 2 "noise memorization significantly exceeds signal learning": max ρ̄ / max γ at least this at the end.
GD_RATIO_SIGNIFICANT = 10.0
#: Figure 2 "oscillates around 0.5": the mean loss over the second half of the run within this band.
LN_LOSS_AROUND_HALF = (0.4, 0.6)
#: "bounded", "oscillates within a constant range": the coefficient b of the least-squares fit a + b log t of the
#: curve over the stage-2 window is at most this. Under standard GD the logistic loss's implicit bias makes margins
#: (and ι ≈ y f) grow like log t, b ≈ 1 (measured 1.15-1.5 on the Figure-2 and tiny GD runs); a bounded curve has b ≈ 0.
BOUNDED_LOG_COEFFICIENT = 0.5
#: Theorem 3.3 "L_S = Θ(1)": the clean loss stays above this fraction of ℓ(z*), the clean loss at the
#: label-noise equilibrium margin z* = log((1 − p)/p) (notes §7.6).
LOSS_ORDER_ONE_FRACTION = 0.5
#: H3 "slightly below z*": the median stage-2 margin lies in [0.5 z*, z*].
EQUILIBRIUM_MARGIN_BAND = (0.5, 1.0)
#: Fewest recorded steps a stage-2 window needs before a trend is judged.
MIN_WINDOW_STEPS = 10
#: Standard errors by which a test-error comparison must clear its threshold.
ERROR_SE_MULTIPLIER = 2.0
#: Safety factor on the first-order float error bounds of the exact identities.
IDENTITY_SAFETY = 4.0
#: Figure 2's configuration (§8.1), for the empirical claims' hypothesis "this is the paper's experiment".
FIGURE2 = {"n": 200, "d": 2000, "m": 20, "eta": 0.5, "mu_norm": 2.0, "sigma_p": 0.5, "p": 0.1}
