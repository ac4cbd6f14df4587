"""The theory interface: a theorem is a set of named claims, each checked against a recorded run.

A :class:`Theory` turns a run's config into :class:`Claim` objects. Each claim states what the theorem predicts and
checks it on a :class:`dyn.Run`, returning a :class:`Verdict` with the numbers behind it: ``holds``, ``violated`` or
``not checkable`` (run too short, quantity not recorded, a bound that cannot fail on this run...). A check never
passes silently: anything that prevents it from deciding yields ``not checkable`` with the reason; a damaged store
is an error, not a verdict.

The answer has two levels. Each claim names the hypotheses it is proven under (:attr:`Claim.hypotheses`, their
status from :meth:`Theory.hypotheses`): a verdict on a claim whose hypotheses hold is a test of the theorem; one
whose hypotheses fail is the theorem's prediction outside its assumptions (still checked, still shown).
Assumption rows (stage ``"assumption"``) are conditions, not claims; :func:`summarize` counts them apart.

Adding a theorem is one new sub-package of :mod:`dyn.theory` (found and imported on first use) or a module of
your own, whose :class:`Theory` subclass is decorated with :func:`register`; the recorder, the store and the CLI
are untouched. Packages outside dyn can register theories through the entry-point group ``dyn.theories``. A theory
names the setups whose runs it judges (:attr:`Theory.setups`), so :func:`theory_for` picks it from a run.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..errors import ConfigError, NotCheckable, PhaseError
from ..plugins import load_plugins

__all__ = ["VERDICTS", "CONDITION_STAGES", "Verdict", "Claim", "Theory", "NotCheckable", "Outcome", "Transition",
           "register", "get_theory", "available_theories", "theory_for", "summarize", "WINNERS"]

VERDICTS = ("holds", "violated", "not checkable")
#: Stages whose rows are conditions, not claims: ``"assumption"`` (the theorem's hypotheses) and ``"condition"``
#: (other sufficient conditions a theory reports, e.g. explicit constants of its derivations). They are not counted as
#: claims in :func:`summarize` and have no ``hypotheses_met`` of their own.
CONDITION_STAGES = ("assumption", "condition")


@dataclass
class Verdict:
    """The outcome of checking one claim on one run.

    Attributes
    ----------
    claim, stage, statement, predicted, observed : str
        As in :class:`Claim`; ``observed`` is what the run showed (also when it could not decide).
    verdict : {"holds", "violated", "not checkable"}
    numbers : dict
        The numbers behind the verdict.
    hypotheses_met : bool or None
        For a claim: whether every hypothesis it is proven under holds for this run (True when it names none).
        None for a condition row (an assumption itself).
    unmet : tuple of str
        The hypotheses that do not hold, by name.
    reason : str
        Why the claim is not checkable (including "vacuous: ..."), or a note on the verdict.
    """

    claim: str
    stage: str
    statement: str
    predicted: str
    observed: str
    verdict: str
    numbers: dict[str, Any] = field(default_factory=dict)
    hypotheses_met: bool | None = None
    unmet: tuple[str, ...] = ()
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ConfigError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        self.unmet = tuple(self.unmet)

    @property
    def is_condition(self) -> bool:
        """True for an assumption row (not a claim)."""
        return self.stage in CONDITION_STAGES


@dataclass
class Outcome:
    """What a check function returns: observed text, whether it holds, and the numbers behind it.

    Attributes
    ----------
    observed : str
        What the run showed, in words and numbers.
    holds : bool or None
        The verdict; None when the run cannot decide although something was observed (give ``reason``), e.g. a
        bound that cannot fail on this run ("vacuous: ...") or a confidence interval that straddles the prediction.
    numbers : dict
    predicted : str, optional
        The prediction, when it depends on the run itself.
    reason : str
        Why ``holds`` is None, or a note on the verdict.
    unmet : tuple of str
        Hypotheses of the claim found not to hold on the run itself (beside those :meth:`Theory.hypotheses` reports
        from the config).
    """

    observed: str
    holds: bool | None
    numbers: dict[str, Any] = field(default_factory=dict)
    predicted: str | None = None
    reason: str = ""
    unmet: tuple[str, ...] = ()


#: Errors that mean "the run cannot decide this claim"; anything else a check raises (a corrupt store, a bug)
#: propagates.
UNDECIDABLE = (NotCheckable, PhaseError)

#: The outcomes of a run's ``winner`` result column: who leads, a tie, a run whose coefficients did not move, and a
#: run whose regime summary could not name one (e.g. the coefficients could not be solved for).
WINNERS = ("signal learning", "noise memorization", "tie", "did not move", "undetermined")


@dataclass(frozen=True)
class Transition:
    """A theorem's statement about a FAMILY of runs: the outcome changes across a boundary of a scaling variable.

    Checked on a sweep by :func:`dyn.theory.check_transitions` (stage ``"across runs"``).

    Attributes
    ----------
    name : claim-name prefix, e.g. ``"transition.benign"``; the verdicts are ``<name>.location``, ``.collapse``,
        ``.low_side``, ``.high_side``, ``.sharpness``.
    statement : in words, with its source.
    outcome : a result column (see :meth:`Theory.results`) holding a float per run.
    variable : the scaling variable as a monomial of config fields, field -> exponent (e.g.
        ``{"n": 1, "mu_norm": 4, "d": -1, "sigma_p": -4}``).
    variable_label : how the variable is written, e.g. ``"n‖μ‖⁴/(σ_p⁴ d)"``.
    wrong_variable, wrong_label : a variable the collapse is compared against (None: no collapse verdict).
    increasing : True: the outcome is high where the variable is large; False: high where it is small.
    low : the outcome predicted far on the low-outcome side (e.g. an excess test error of 0).
    high_min : the outcome is at least this far on the high side (None: the sides are not judged).
    sharpness_axis : a config field along which the transition narrows, or None (no sharpness verdict).
    where : config field -> value: the runs the statement is about (e.g. one algorithm); empty: every run.
    threshold : the variable's value on the boundary when the theorem gives one (drawn as the theory's line; None:
        the line is drawn with the theory's exponents through the fitted boundary).
    outcome_se : a result column holding each run's sampling error of the outcome (e.g. the binomial standard error
        of a test error), used by the side verdicts beside the spread across runs; None: the spread alone.
    effect : the smallest change of the outcome across the grid that counts as a transition (a smaller one: the grid
        does not span it); None: half the predicted gap ``high_min − low``, or any change when ``high_min`` is None.

    Examples
    --------
    >>> t = Transition("transition.demo", "demo", "test_error", {"n": 1, "mu_norm": 2}, high_min=0.2)
    >>> t.exponents(["mu_norm", "n", "d"])
    [2.0, 1.0, 0.0]
    """

    name: str
    statement: str
    outcome: str
    variable: Mapping[str, float]
    variable_label: str = ""
    wrong_variable: Mapping[str, float] | None = None
    wrong_label: str = ""
    increasing: bool = False
    low: float = 0.0
    high_min: float | None = None
    sharpness_axis: str | None = None
    where: Mapping[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    outcome_se: str | None = None
    effect: float | None = None

    def __post_init__(self) -> None:
        if not self.variable or not all(isinstance(v, (int, float)) for v in self.variable.values()):
            raise ConfigError(f"transition {self.name!r}: variable must map config fields to numeric exponents")
        if self.threshold is not None and not self.threshold > 0:
            raise ConfigError(f"transition {self.name!r}: threshold must be positive, got {self.threshold!r}")

    def exponents(self, fields: Sequence[str], wrong: bool = False) -> list[float]:
        """The exponents of ``fields`` in the variable (or the wrong variable), 0 for fields it does not name."""
        variable = self.wrong_variable if wrong else self.variable
        return [float((variable or {}).get(f, 0.0)) for f in fields]


@dataclass
class Claim:
    """One named, checkable statement of a theorem.

    Attributes
    ----------
    name : dotted identifier, e.g. ``"stage1.signal_bound"``.
    stage : ``"assumption"``, ``"condition"``, ``"regime"``, ``"stage 1"``, ``"T1"``, ``"stage 2"``,
        ``"invariant"``, ...; the first two are conditions, not claims (:data:`CONDITION_STAGES`).
    statement : the claim in words, with its source (lemma/equation).
    predicted : the prediction for this run's config, in words and numbers.
    check : ``run -> Outcome``; raises :class:`NotCheckable` when the run cannot decide.
    hypotheses : names of the theory's hypotheses (keys of :meth:`Theory.hypotheses`) the claim is proven under.

    Examples
    --------
    >>> c = Claim("demo", "stage 1", "two exceeds one", "2 > 1", lambda run: Outcome("2 > 1", True))
    >>> c.evaluate(None).verdict
    'holds'
    >>> def undecided(run):
    ...     raise NotCheckable("run too short")
    >>> v = Claim("demo", "stage 1", "s", "p", undecided).evaluate(None)
    >>> v.verdict, v.reason
    ('not checkable', 'run too short')
    """

    name: str
    stage: str
    statement: str
    predicted: str
    check: Callable[[Any], Outcome]
    hypotheses: tuple[str, ...] = ()

    @property
    def is_condition(self) -> bool:
        return self.stage in CONDITION_STAGES

    def evaluate(self, run: Any, hypotheses: Mapping[str, bool | None] | None = None) -> Verdict:
        """Run the check; ``hypotheses`` (name → met) gives the status of the names in :attr:`hypotheses`.

        :class:`NotCheckable` and :class:`PhaseError` become "not checkable" with their message as the reason;
        any other error (a corrupt store: :class:`StoreError`) propagates.
        """
        status = dict(hypotheses or {})
        unmet = [h for h in self.hypotheses if status.get(h) is False]
        try:
            out = self.check(run)
        except UNDECIDABLE as exc:
            return Verdict(self.name, self.stage, self.statement, self.predicted, "", "not checkable",
                           hypotheses_met=None if self.is_condition else not unmet, unmet=tuple(unmet),
                           reason=str(exc))
        numbers = {k: _plain(v) for k, v in out.numbers.items()}
        # theories that report failed hypotheses in their numbers (``hypotheses_failed``) are read the same way
        unmet += [h for h in [*out.unmet, *numbers.get("hypotheses_failed", ())] if h not in unmet]
        verdict = "not checkable" if out.holds is None else ("holds" if out.holds else "violated")
        return Verdict(self.name, self.stage, self.statement, out.predicted or self.predicted, out.observed,
                       verdict, numbers, hypotheses_met=None if self.is_condition else not unmet,
                       unmet=tuple(unmet), reason=out.reason)


def _plain(v: Any) -> Any:
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return [_plain(x) for x in v.tolist()]
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def summarize(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The two-level answer: claims whose hypotheses hold (tests of the theorem) apart from claims checked outside
    the theorem's assumptions, and the conditions apart from both.

    Returns
    -------
    dict
        ``tests`` and ``outside``: verdict → count over claims (conditions excluded); ``conditions`` (stage
        ``"assumption"``) and ``other conditions`` (stage ``"condition"``): ``met``, ``not met``, ``unknown``
        counts and ``unmet`` (names of those that fail).

    Examples
    --------
    >>> vs = [Verdict("a", "assumption", "", "", "", "violated"), Verdict("b", "stage 1", "", "", "", "holds",
    ...       hypotheses_met=False, unmet=("a",)), Verdict("c", "T1", "", "", "", "holds", hypotheses_met=True)]
    >>> s = summarize(vs)
    >>> s["tests"]["holds"], s["outside"]["holds"], s["conditions"]["unmet"]
    (1, 1, ['a'])
    """
    def empty() -> dict[str, Any]:
        return {"met": 0, "not met": 0, "unknown": 0, "unmet": []}

    out: dict[str, Any] = {"tests": dict.fromkeys(VERDICTS, 0), "outside": dict.fromkeys(VERDICTS, 0),
                           "conditions": empty(), "other conditions": empty()}
    for v in verdicts:
        if v.is_condition:
            bucket = out["conditions" if v.stage == "assumption" else "other conditions"]
            bucket[{"holds": "met", "violated": "not met"}.get(v.verdict, "unknown")] += 1
            if v.verdict == "violated":
                bucket["unmet"].append(v.claim)
        else:
            out["tests" if v.hypotheses_met is not False else "outside"][v.verdict] += 1
    return out


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
    #: symbol → definition, shown once at the top of a report (e.g. ``{"A": "total signal ..."}``)
    definitions: dict[str, str] = {}

    def judges(self, run: Any) -> bool:
        """Whether this theory is *the* one for ``run`` (what :func:`theory_for` picks): by default, runs of one
        of :attr:`setups`; a theory on a family of setups also looks at the config (e.g. the activation)."""
        return run.attrs.get("setup") in self.setups

    @abstractmethod
    def applies_to(self, run: Any) -> str | None:
        """None if the theory can be compared with ``run``; else a one-line reason why not."""

    @abstractmethod
    def claims(self, run: Any) -> list[Claim]:
        """The claims for this run's config, in reading order."""

    def hypotheses(self, run: Any) -> dict[str, bool | None]:
        """Status of every named hypothesis the claims may cite: True (met), False (not met) or None (cannot be
        told). Default: none."""
        return {}

    def regime(self, run: Any) -> dict[str, Any]:
        """A summary of who wins (signal learning vs noise memorization) and what the theory predicted."""
        return {}

    def results(self, run: Any) -> dict[str, float | str | None]:
        """The per-run result columns a sweep stores for ``run`` (column -> value).

        Default: from :meth:`regime`: ``winner`` (one of :data:`WINNERS`), ``predicted``, ``at_step``,
        ``max_gamma``, ``max_rho``, ``ratio`` (max γ / max ρ), ``signal_won`` (1 signal learning, 0 noise
        memorization, 0.5 a tie; NaN where no run leads: the float outcome a transition on the winner fits) and
        ``final_loss``. A theory overrides it to add its own columns (test error, probe accuracy); every column it
        defines must be filled for every run it judges.
        """
        reg = self.regime(run)
        winner = reg.get("observed_winner")
        winner = winner if winner in WINNERS else "undetermined"
        loss = run.scalar("loss")
        finite = [float(x) for x in (loss if loss is not None else ()) if math.isfinite(float(x))]
        return {
            "winner": winner,
            "predicted": str(reg.get("predicted_winner") or "none"),
            "at_step": reg.get("at_step", run.steps[-1] if len(run.steps) else None),
            "max_gamma": reg.get("max_gamma"),
            "max_rho": reg.get("max_rho"),
            "ratio": reg.get("ratio_gamma_over_rho"),
            "signal_won": {"signal learning": 1.0, "noise memorization": 0.0, "tie": 0.5}.get(winner, math.nan),
            "final_loss": finite[-1] if finite else math.nan,
        }

    def transitions(self) -> list[Transition]:
        """The theorem's statements about families of runs (checked on sweeps). Default: none."""
        return []

    def headline(self, run: Any) -> dict[str, Any]:
        """The few numbers that put runs side by side at the top of a report (label → value). Default: the
        :meth:`regime` summary's plain values."""
        return {k: v for k, v in self.regime(run).items() if isinstance(v, (str, int, float, bool)) or v is None}

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
        """Every claim's :class:`Verdict` on ``run``, with its hypotheses' status."""
        reason = self.applies_to(run)
        if reason:
            raise ConfigError(f"theory {self.name!r} does not apply to this run: {reason}")
        status = self.hypotheses(run)
        return [claim.evaluate(run, status) for claim in self.claims(run)]


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
    matches = [theory for cls in _REGISTRY.values() if setup and (theory := cls()).judges(run)]
    if not matches:
        raise ConfigError(f"no registered theory judges runs of setup {setup!r} with this config "
                          f"(available: {', '.join(sorted(_REGISTRY)) or 'none'}); pass a theory by name")
    return matches[0]
