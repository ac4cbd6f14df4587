"""The theory interface: a theorem is a set of named claims, each checked against a recorded run.

A :class:`Theory` turns a run's config into :class:`Claim` objects. Each claim states what the theorem predicts and
checks it on a :class:`dyn.run.Run`, returning a :class:`Verdict` with the numbers behind it: ``holds``,
``violated`` or ``not checkable`` (assumption violated, run too short, quantity not recorded...). A check never
passes silently: anything that prevents it from deciding yields ``not checkable`` with the reason.

Adding a theorem is one new sub-package of :mod:`dyn.theory` (found and imported on first use) or a module of
your own, whose :class:`Theory` subclass is decorated with :func:`register`; the recorder, the store and the CLI
are untouched. Packages outside dyn can register theories through the entry-point group ``dyn.theories``. A theory
names the setups whose runs it judges (:attr:`Theory.setups`), so :func:`theory_for` picks it from a run.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ConfigError, DynError, NotCheckable
from ..plugins import load_plugins

__all__ = ["VERDICTS", "Verdict", "Claim", "Theory", "NotCheckable", "Outcome", "register", "get_theory",
           "available_theories", "theory_for"]

VERDICTS = ("holds", "violated", "not checkable")


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
            raise ConfigError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


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
    #: setups (the ``setup`` attribute of a run store) whose runs this theory judges
    setups: tuple[str, ...] = ()
    #: quantities a coefficient plot shows by default (from :meth:`quantities` or the generic ones)
    plot_quantities: tuple[str, ...] = ()

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

    def quantities(self, run: Any, site: str) -> Any:
        """Extra per-step quantities the theory is written in, as an :class:`xarray.Dataset` with dims
        ``(step, neuron, <probe dim>)`` (e.g. a proof's "total signal"), for plots. Default: none."""
        import xarray as xr

        return xr.Dataset()

    def check(self, run: Any) -> list[Verdict]:
        reason = self.applies_to(run)
        if reason:
            raise ConfigError(f"theory {self.name!r} does not apply to this run: {reason}")
        return [claim.evaluate(run) for claim in self.claims(run)]


_REGISTRY: dict[str, type[Theory]] = {}


def register(cls: type[Theory]) -> type[Theory]:
    """Class decorator that makes a theory available by its ``name``."""
    if not cls.name:
        raise ConfigError(f"theory class {cls.__name__} needs a name to be registered")
    _REGISTRY[cls.name] = cls
    return cls


def _load_plugins() -> None:
    load_plugins(__package__, "dyn.theories", _REGISTRY, register)


def available_theories() -> dict[str, str]:
    """Registered theory names with their descriptions."""
    _load_plugins()
    return {name: cls.description for name, cls in sorted(_REGISTRY.items())}


def get_theory(name: str | Theory) -> Theory:
    """A theory instance by registry name (or the instance itself)."""
    if isinstance(name, Theory):
        return name
    _load_plugins()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown theory {name!r} (available: {', '.join(sorted(_REGISTRY)) or 'none'})")
    return _REGISTRY[name]()


def theory_for(run: Any) -> Theory:
    """The registered theory that judges runs of ``run``'s setup.

    Raises
    ------
    ConfigError
        No registered theory covers the run's setup (or the run records none, e.g. a user's own loop).
    """
    _load_plugins()
    setup = run.attrs.get("setup")
    matches = [cls for cls in _REGISTRY.values() if setup and setup in cls.setups]
    if not matches:
        raise ConfigError(f"no registered theory judges runs of setup {setup!r} "
                          f"(available: {', '.join(sorted(_REGISTRY)) or 'none'}); pass a theory by name")
    return matches[0]()
