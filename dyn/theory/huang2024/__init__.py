"""Huang et al. 2024 (NeurIPS), "On the Comparison between Multi-modal and Single-modal Contrastive Learning".

- :mod:`.constants`: the paper's constants with their lemma numbers, and dyn's named readings of Õ/Θ;
- :mod:`.params`: the numbers the theorem is written in, from the run's typed config, and Assumption 4.1 term by term;
- :mod:`.quantities`: A, Ψ, U₊, I₊, M, the end of stage 1 — computed once per run;
- :mod:`.claims`: one small function per claim (:data:`~.claims.CLAIMS`);
- :mod:`.theory`: the registered :class:`Huang2024` theory.

The reconstruction it follows is ``shared/theory/huang2024.md``. Importing this package registers the theory.
"""

from __future__ import annotations

from .claims import CLAIMS, ClaimSpec
from .params import ASSUMPTIONS, Params, conditions
from .quantities import mean_negatives, proof, proof_quantities, stage1_end
from .theory import Huang2024

__all__ = ["ASSUMPTIONS", "CLAIMS", "ClaimSpec", "Huang2024", "Params", "conditions", "mean_negatives", "proof",
           "proof_quantities", "stage1_end"]
