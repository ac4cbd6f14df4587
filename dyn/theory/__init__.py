"""Theorems as checkable claims: the :class:`Theory` interface, its registry, and :func:`compare`.

One sub-package per theorem (e.g. ``dyn.theory.huang2024``), found and registered on first use.
"""

from __future__ import annotations

from .base import (
    CONDITION_STAGES,
    VERDICTS,
    Claim,
    NotCheckable,
    Outcome,
    Theory,
    Verdict,
    available_theories,
    get_theory,
    register,
    summarize,
    theory_for,
)
from .compare import compare, numbers_table, regime

__all__ = ["CONDITION_STAGES", "VERDICTS", "Claim", "NotCheckable", "Outcome", "Theory", "Verdict",
           "available_theories", "compare", "get_theory", "numbers_table", "regime", "register", "summarize",
           "theory_for"]
