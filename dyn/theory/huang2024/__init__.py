"""Huang et al. 2024 (NeurIPS), "On the Comparison between Multi-modal and Single-modal Contrastive Learning".

The theorem as checkable claims (:mod:`.claims`) and the proofs' quantities A, Ψ, U₊, I₊ (:mod:`.quantities`);
the reconstruction it follows is ``shared/theory/huang2024.md``. Importing this package registers the theory.
"""

from __future__ import annotations

from .claims import Huang2024
from .quantities import mean_negatives, proof, proof_quantities

__all__ = ["Huang2024", "mean_negatives", "proof", "proof_quantities"]
