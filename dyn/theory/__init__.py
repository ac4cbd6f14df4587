"""Theorems as checkable claims. ``get_theory("huang2024")``; add one with a module that uses :func:`register`."""

from __future__ import annotations

from .base import VERDICTS, Claim, NotCheckable, Outcome, Theory, Verdict, available_theories, get_theory, register
from . import huang2024  # noqa: F401  (registers the reference theorem)

__all__ = ["VERDICTS", "Claim", "NotCheckable", "Outcome", "Theory", "Verdict", "available_theories", "get_theory",
           "register"]
