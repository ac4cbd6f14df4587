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
    Transition,
    Verdict,
    WINNERS,
    available_theories,
    get_theory,
    register,
    summarize,
    theory_for,
)
from .compare import compare, numbers_table, regime
from .sweeps import open_sweep, result_row, sweep_table
from .transitions import check_transitions, fit_transitions

__all__ = ["CONDITION_STAGES", "VERDICTS", "WINNERS", "Claim", "NotCheckable", "Outcome", "Theory", "Transition",
           "Verdict", "available_theories", "check_transitions", "compare", "fit_transitions", "get_theory",
           "numbers_table", "open_sweep", "regime", "register", "result_row", "summarize", "sweep_table",
           "theory_for"]
