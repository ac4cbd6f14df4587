"""The theory interface: a theorem is a set of named claims, each checked against a recorded run.

A :class:`Theory` turns a run's config into :class:`Claim` objects. Each claim states what the theorem predicts and
checks it on a :class:`dyn.run.Run`, returning a :class:`Verdict` with the numbers behind it: ``holds``,
``violated`` or ``not checkable`` (assumption violated, run too short, quantity not recorded...). A check never
passes silently: anything that prevents it from deciding yields ``not checkable`` with the reason.

Adding a theorem is one new module that subclasses :class:`Theory` and decorates it with :func:`register`; the
recorder, the store and the CLI are untouched. Packages outside dyn can register theories through the entry-point
group ``dyn.theories``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

from ..errors import ConfigError, DynError

__all__ = ["VERDICTS", "Verdict", "Claim", "Theory", "NotCheckable", "register", "get_theory", "available_theories"]

VERDICTS = ("holds", "violated", "not checkable")


class NotCheckable(DynError):
    """Raised inside a check when the run cannot test the claim; the message becomes the verdict's reason."""


@dataclass
class Verdict:
    """The outcome of checking one claim on one run."""

    claim: str
    stage: str
    statement: str
    predicted: str
    observed: str
    verdict: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


@dataclass
class Outcome:
    """What a check function returns: observed text, whether it holds, and the numbers behind it."""

    observed: str
    holds: bool
    numbers: dict[str, Any] = field(default_factory=dict)
    predicted: str | None = None  # when the prediction depends on the run itself


@dataclass
class Claim:
    """One named, checkable statement of a theorem.

    Attributes
    ----------
    name : dotted identifier, e.g. ``"stage1.signal_bound"``.
    stage : ``"assumption"``, ``"regime"``, ``"stage 1"``, ``"T1"``, ``"stage 2"`` or ``"invariant"``.
    statement : the claim in words, with its source (lemma/equation).
    predicted : the prediction for this run's config, in words and numbers.
    check : ``run -> Outcome``; raises :class:`NotCheckable` when the run cannot decide.
    """

    name: str
    stage: str
    statement: str
    predicted: str
    check: Callable[[Any], Outcome]

    def evaluate(self, run: Any) -> Verdict:
        try:
            out = self.check(run)
        except NotCheckable as exc:
            return Verdict(self.name, self.stage, self.statement, self.predicted, str(exc), "not checkable")
        except DynError as exc:  # e.g. no phase change found, store lacks a variable
            return Verdict(self.name, self.stage, self.statement, self.predicted, str(exc), "not checkable")
        numbers = {k: _plain(v) for k, v in out.numbers.items()}
        return Verdict(self.name, self.stage, self.statement, out.predicted or self.predicted, out.observed,
                       "holds" if out.holds else "violated", numbers)


def _plain(v: Any) -> Any:
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


class Theory(ABC):
    """A theorem about training dynamics, as claims checkable on a recorded run."""

    #: registry name, e.g. ``"huang2024"``
    name: str = ""
    #: one line for listings
    description: str = ""

    @abstractmethod
    def applies_to(self, run: Any) -> str | None:
        """None if the theory can be compared with ``run``; else a one-line reason why not."""

    @abstractmethod
    def claims(self, run: Any) -> list[Claim]:
        """The claims for this run's config, in reading order."""

    def regime(self, run: Any) -> dict[str, Any]:
        """A summary of who wins (signal learning vs noise memorization) and what the theory predicted."""
        return {}

    def overlays(self, run: Any, site: str, quantity: str) -> dict[str, Any]:
        """What a plot of ``quantity`` (e.g. ``"A"``, ``"Psi"``) should overlay: ``{"lines": [(label, steps, values)],
        "markers": [(label, step)]}``. Default: nothing."""
        return {"lines": [], "markers": []}

    def check(self, run: Any) -> list[Verdict]:
        reason = self.applies_to(run)
        if reason:
            raise ConfigError(f"theory {self.name!r} does not apply to this run: {reason}")
        return [claim.evaluate(run) for claim in self.claims(run)]


_REGISTRY: dict[str, type[Theory]] = {}


def register(cls: type[Theory]) -> type[Theory]:
    """Class decorator that makes a theory available by its ``name``."""
    if not cls.name:
        raise ValueError("a registered theory needs a name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    for ep in entry_points(group="dyn.theories"):
        if ep.name not in _REGISTRY:
            register(ep.load())


def available_theories() -> dict[str, str]:
    """Registered theory names with their descriptions."""
    _load_entry_points()
    return {name: cls.description for name, cls in sorted(_REGISTRY.items())}


def get_theory(name: str | Theory) -> Theory:
    """A theory instance by registry name (or the instance itself)."""
    if isinstance(name, Theory):
        return name
    _load_entry_points()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown theory {name!r} (available: {', '.join(sorted(_REGISTRY)) or 'none'})")
    return _REGISTRY[name]()
