"""The setup registry, presets and ``key=value`` overrides, and what a trainer reports.

A *setup* is one paper's experiment: a config class, a trainer that records every step through
:class:`dyn.Recorder`, its presets (TOML files in ``data/presets/<setup>/``, shipped in the setup's package), and
the hooks experiments use (derived sweep axes, a phase diagram). Each sub-package of :mod:`dyn.setups` registers
itself with :func:`register_setup` when imported; packages outside dyn can add setups through the entry-point group
``dyn.setups``. Nothing here imports torch: trainers are loaded on first use.

A preset file::

    setup = "huang2024"          # which setup's config it builds
    description = "one line shown by `dyn presets`"
    [config]
    d = 2000
    [notes]                      # why each number the paper does not state was chosen; stored with the run
    tau = "..."
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import json
import math
import os
import re
import signal
import threading
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, StoreError
from ..plugins import load_plugins

__all__ = ["check_probe_scale", "Setup", "Preset", "RunSummary", "register_setup", "get_setup", "available_setups", "presets",
           "list_presets", "load_preset", "find_grid", "parse_overrides", "config_from_dict", "store_size",
           "comparison_lines", "describe_config", "field_docs", "unseen_curves", "unknown_key_message", "SetupConfig",
           "DEFAULT_CHECKPOINT_SECONDS", "checkpoint_policy", "DeferredInterrupt", "Resumption", "open_for_resume"]


#: The smallest probe scale (a norm or a standard deviation) per data type whose square is a normal number: below it
#: ‖μ‖² underflows (or μ itself is stored as zeros) and the Gram matrix of the probes is singular.
_SMALLEST_SCALE = {"float32": math.sqrt(2.0 ** -126), "float64": math.sqrt(2.0 ** -1022)}


def check_probe_scale(name: str, value: float, dtype: str, what: str) -> None:
    """Refuse (one line) a positive probe scale too small for ``dtype``: the probe would be stored as zeros (or its
    squared norm underflow), a zero probe vector the exact decomposition cannot use.

    Examples
    --------
    >>> check_probe_scale("mu_norm", 1e-10, "float32", "the signal μ")
    >>> check_probe_scale("mu_norm", 1e-50, "float32", "the signal μ")
    Traceback (most recent call last):
    ...
    dyn.errors.ConfigError: mu_norm=1e-50 is too small for float32: the signal μ would be stored as zeros (its squared norm underflows); use mu_norm >= 1.1e-19, or dtype float64
    """
    bound = _SMALLEST_SCALE.get(dtype)
    if bound is not None and 0 < value < bound:
        raise ConfigError(f"{name}={value:g} is too small for {dtype}: {what} would be stored as zeros (its squared "
                          f"norm underflows); use {name} >= {bound:.1e}"
                          + (", or dtype float64" if dtype == "float32" else ""))


@dataclass(frozen=True)
class Setup:
    """One paper's experiment as dyn runs it.

    Attributes
    ----------
    name : registry name, also the ``setup`` attribute of its run stores (e.g. ``"huang2024"``).
    description : one line for listings.
    config : the config class (a frozen dataclass with ``from_dict``/``to_dict``/``replace``).
    package : the setup's package (its ``presets/`` folder holds the preset and grid files).
    trainer : ``"module:function"`` of ``train(config, out, *, overwrite, progress, attrs, checkpoint_every,
        resume, ...) -> RunSummary``, imported on first use (it pulls in torch).
    derived_axes : sweep axes that are not config fields: ``name -> (config, value) -> config``.
    ignored_axes : ``config -> axis names`` that do not enter a run with this config (such points are run once).
    sweep_options : ``config -> extra trainer keyword arguments`` for sweep runs (e.g. evaluate at the end).
    phase_diagram : ``"module:function"`` drawing a sweep's results table, or None.
    experiments : ``"module:NAME"`` of a dict ``name -> (description, command)`` for ``dyn reproduce``; a command
        is ``(out, *, seeds, small, overwrite, progress) -> str`` (the text to print).
    batch_trainer : ``"module:function"`` of ``train_batch(configs, outs, **options) -> list[RunSummary]``, which
        trains runs of one shape together in one process (a batch dimension), recording each into its own store
        as ``trainer`` would; None if the setup has none.
    batch_key : ``config -> key``: runs with equal keys may form one batch; None for a config the batch trainer
        cannot train (then it is trained alone). Imports no torch (sweeps group runs before any trainer loads).
    """

    name: str
    description: str
    config: type
    package: str
    trainer: str
    derived_axes: Mapping[str, Callable[[Any, Any], Any]] = field(default_factory=dict)
    ignored_axes: Callable[[Any], tuple[str, ...]] | None = None
    sweep_options: Callable[[Any], dict[str, Any]] | None = None
    phase_diagram: str | None = None
    experiments: str | None = None
    batch_trainer: str | None = None
    batch_key: Callable[[Any], Hashable | None] | None = None

    def load(self, ref: str) -> Callable[..., Any]:
        """Import a ``"module:function"`` reference of this setup."""
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)

    def train(self, config: Any, out: str | os.PathLike | None, **options: Any) -> "RunSummary":
        """Train and record ``config`` into ``out`` with this setup's trainer."""
        return self.load(self.trainer)(config, out, **options)

    def train_batch(self, configs: Sequence[Any], outs: Sequence[str | os.PathLike | None],
                    **options: Any) -> list["RunSummary"]:
        """Train ``configs`` together (one batch), recording ``configs[b]`` into ``outs[b]``.

        Raises :class:`ConfigError` when the setup has no batch trainer or cannot batch these configs.

        Examples
        --------
        >>> setup = get_setup("huang2024")
        >>> setup.batch_key(setup.config(seed=0)) == setup.batch_key(setup.config(seed=1))
        True
        """
        if self.batch_trainer is None:
            raise ConfigError(f"setup {self.name!r} has no batch trainer; train its runs one by one")
        return self.load(self.batch_trainer)(list(configs), list(outs), **options)

    def preset_dir(self) -> Path:
        return Path(str(resources.files(self.package) / "presets"))


_SETUPS: dict[str, Setup] = {}


def register_setup(setup: Setup) -> Setup:
    """Make ``setup`` available by its name (called by each setup package when imported)."""
    if not setup.name:
        raise ConfigError("a registered setup needs a name")
    _SETUPS[setup.name] = setup
    return setup


def _load_plugins() -> None:
    load_plugins(__package__, "dyn.setups", _SETUPS, register_setup)


def available_setups() -> dict[str, Setup]:
    """Every registered setup by name."""
    _load_plugins()
    return dict(sorted(_SETUPS.items()))


def get_setup(name: str) -> Setup:
    """A registered setup by name; a one-line :class:`ConfigError` names the known ones otherwise."""
    setups = available_setups()
    if name not in setups:
        raise ConfigError(f"unknown setup {name!r} (known: {', '.join(setups) or 'none'})")
    return setups[name]


# -- presets --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """A shipped preset (``kind="preset"``, has a ``[config]`` table) or sweep grid (``kind="grid"``)."""

    name: str
    setup: str
    kind: str
    description: str
    path: Path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None


def presets() -> list[Preset]:
    """Every shipped preset and grid, grouped by setup (in registry order)."""
    out = []
    for setup in available_setups().values():
        folder = setup.preset_dir()
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            try:
                doc = _read_toml(path)
            except ConfigError:
                continue
            description = str(doc.get("description", "")).strip().splitlines()
            kind = "preset" if isinstance(doc.get("config"), dict) else "grid"
            out.append(Preset(path.stem, setup.name, kind, description[0] if description else "", path))
    return out


def list_presets() -> dict[str, str]:
    """Names of the shipped presets with their one-line descriptions.

    Examples
    --------
    >>> "huang2024-figure1" in list_presets()
    True
    """
    return {p.name: p.description for p in presets() if p.kind == "preset"}


def _find(name: str, kind: str) -> Path:
    path = Path(name)
    if path.suffix == ".toml" and path.is_file():
        return path
    known = {p.name: p.path for p in presets() if p.kind == kind}
    if name in known:
        return known[name]
    if path.suffix == ".toml":
        raise ConfigError(f"{kind} file {path} does not exist")
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    raise ConfigError(f"unknown {kind} {name!r}{hint}")


def find_grid(name: str | os.PathLike) -> Path:
    """A sweep grid by shipped name (see ``dyn presets``) or path."""
    return _find(str(name), "grid")


def _setup_of(doc: Mapping[str, Any], path: Path) -> Setup:
    name = doc.get("setup")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: missing `setup = \"<name>\"` (known setups: {', '.join(available_setups())})")
    return get_setup(name)


def load_preset(name: str, **overrides: Any) -> Any:
    """Load a preset by name (or a path to a TOML file) as its setup's config, with overrides applied.

    Parameters
    ----------
    name : str
        A preset name from :func:`list_presets` or the path of a preset TOML file.
    **overrides
        Config fields to change.

    Examples
    --------
    >>> cfg = load_preset("huang2024-figure1", modality="multi")
    >>> (cfg.d, cfg.n, cfg.m, cfg.modality)
    (2000, 100, 50, 'multi')
    """
    path = _find(name, "preset")
    doc = _read_toml(path)
    if not isinstance(doc.get("config"), dict):
        raise ConfigError(f"preset {path}: missing [config] table")
    setup = _setup_of(doc, path)
    data = dict(doc["config"])
    notes = {str(k): str(v) for k, v in doc.get("notes", {}).items()}
    data.update(overrides)
    data.setdefault("notes", notes)
    return config_from_dict(setup.config, data)


def config_from_dict(config_cls: type, data: Mapping[str, Any]) -> Any:
    """Build ``config_cls`` from a mapping, rejecting unknown keys by name (with a did-you-mean)."""
    names = {f.name for f in fields(config_cls)}
    for key in data:
        if key not in names:
            raise ConfigError(unknown_key_message(config_cls, key))
    return config_cls(**data)


def unknown_key_message(config_cls: type, key: str) -> str:
    """Name the unknown key, the key meant (a close spelling, or a common name such as ``lr`` for the learning
    rate, from the config's ``KEY_ALIASES``) and every valid key.

    Examples
    --------
    >>> from dyn.setups.huang2024 import Config
    >>> unknown_key_message(Config, "lr")[:85]
    "unknown config key 'lr' for setup huang2024 (did you mean 'eta', the learning rate η?"
    """
    names = [f.name for f in fields(config_cls) if f.name != "notes"]
    aliases = getattr(config_cls, "KEY_ALIASES", {})
    meant = aliases.get(str(key).lower())
    close = [meant] if meant in names else difflib.get_close_matches(str(key), names, n=1)
    meaning = field_docs(config_cls).get(close[0], "") if close else ""
    hint = (f"did you mean {close[0]!r}" + (f", the {meaning[0].lower()}{meaning[1:]}" if meant and meaning else "")
            + "? " if close else "")
    setup = getattr(config_cls, "setup_name", None)
    show = "; `dyn presets --show PRESET` explains each"
    return (f"unknown config key {key!r}{f' for setup {setup}' if setup else ''} ({hint}valid keys: "
            f"{', '.join(names)}{show})")


#: a sentence ends at a full stop before a capital letter, but not in "e.g." or "eq." / "i.e."
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\beq)\.\s+(?=[A-Z(])")


def field_docs(config_cls: type) -> dict[str, str]:
    """The first sentence of each field's entry in the config class's numpydoc ``Parameters`` section.

    Examples
    --------
    >>> from dyn.setups.huang2024 import Config
    >>> field_docs(Config)["eta"], field_docs(Config)["n_test"]
    ('Learning rate η', 'Training and OOD test set sizes')
    >>> from dyn.setups.huang2025_label_noise import LabelNoiseConfig  # documented by the family's config
    >>> field_docs(LabelNoiseConfig)["q"]
    'Activation power: σ(z) = max(0, z)^q (q ≥ 1; 1 is ReLU)'
    """
    # a config that inherits its fields (a paper's config on a family) documents them in the first base that does
    docs = [inspect.getdoc(c) or "" for c in config_cls.__mro__ if c is not object]
    lines = next((d.splitlines() for d in docs if any(line.strip() == "Parameters" for line in d.splitlines())), [])
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Parameters") + 2
    except StopIteration:
        return {}
    entries: list[tuple[list[str], list[str]]] = []
    for line in lines[start:]:
        if line.strip() and set(line.strip()) == {"-"}:  # the next section's underline
            entries and entries[-1][1] and entries[-1][1].pop()  # that section's title
            break
        if line and not line.startswith(" ") and " : " in line:
            entries.append(([n.strip() for n in line.split(" : ", 1)[0].split(",")], []))
        elif entries and line.strip():
            entries[-1][1].append(line.strip())
    out: dict[str, str] = {}
    for names, text in entries:
        first = _SENTENCE_END.split(" ".join(text), maxsplit=1)[0].rstrip(".")
        sentence = re.sub(r":\w+:`([^`]*)`", r"\1", first).replace("``", "")
        out.update({name: sentence for name in names})
    return out


def describe_config(config: Any) -> list[tuple[str, str, Any, str]]:
    """``(field, type, value, meaning)`` for every field of a setup's config (``dyn presets --show``).

    Examples
    --------
    >>> describe_config(load_preset("huang2024-tiny"))[1]
    ('d', 'int', 200, "Patch dimension (both modalities, as in the paper's analysis)")
    """
    docs = field_docs(type(config))
    return [(f.name, str(f.type), getattr(config, f.name), docs.get(f.name, ""))
            for f in fields(config) if f.name != "notes"]


#: The field annotations a setup's config may use, with the Python types each accepts (bool only where named).
_FIELD_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "int | str": (int, str)}


class SetupConfig:
    """What every setup's config dataclass shares: field type checks, a validated ``replace``, and the
    dict/JSON round trip a run store keeps. A config is a frozen dataclass inheriting from this class, with
    fields annotated by the names in ``_FIELD_TYPES`` and an optional ``notes`` table.

    Examples
    --------
    >>> from dyn.setups.huang2024 import Config
    >>> Config(d=10).replace(n=5).to_dict()["n"]
    5
    """

    def check_field_types(self) -> None:
        """A one-line :class:`ConfigError` for the first field whose value is not of its annotated type."""
        for f in fields(self):
            if f.name == "notes":
                continue
            value, expected = getattr(self, f.name), _FIELD_TYPES[f.type]
            if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
                raise ConfigError(f"{f.name} must be of type {f.type}, got {type(value).__name__} {value!r}")

    def replace(self, **changes: Any) -> Any:
        """A validated copy with ``changes`` applied (unknown keys are a :class:`ConfigError`)."""
        return replace_config(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (``notes`` included)."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Build a config from a mapping (e.g. a store's ``config`` attribute), rejecting unknown keys by name."""
        return config_from_dict(cls, data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def parse_overrides(items: list[str], config_cls: type) -> dict[str, Any]:
    """Parse ``key=value`` strings for ``config_cls``; values are read as TOML (``3``, ``0.1``, ``true``) or bare
    strings. A key given twice is an error (not last-wins).

    Examples
    --------
    >>> from dyn.setups.huang2024 import Config
    >>> parse_overrides(["tau=0.5", "negatives=all", "redraw_eps=true"], Config)
    {'tau': 0.5, 'negatives': 'all', 'redraw_eps': True}
    """
    names = {f.name for f in fields(config_cls)} - {"notes"}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if key not in names:
            raise ConfigError(unknown_key_message(config_cls, key))
        if key in out:
            raise ConfigError(f"--set {key} is given twice")
        if raw == "":
            raise ConfigError(f"--set {key}: empty value")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        if isinstance(value, (dict, list)) or (isinstance(value, float) and not math.isfinite(value)):
            raise ConfigError(f"--set {key}: cannot use value {raw!r}")
        out[key] = value
    return out


# -- what a trainer reports -----------------------------------------------------------------------------------------
@dataclass
class RunSummary:
    """What a setup's ``train`` reports: where the run is and how it ended."""

    path: Path | None
    status: str
    steps: int
    final_loss: float
    seconds: float
    nbytes: int

    def __str__(self) -> str:
        return (
            f"{self.status}: {self.steps} steps, final loss {self.final_loss:.4g}, "
            f"{self.seconds:.1f} s, store {self.path} ({_human(self.nbytes)})"
        )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def store_size(path: str | os.PathLike) -> int:
    """Bytes on disk under ``path``: allocated blocks where the file system reports them (a chunk extended with a
    hole, :mod:`dyn.store.v3`, takes no space for it), else the files' sizes."""
    total = 0
    for f in Path(path).rglob("*"):
        if f.is_file():
            st = f.stat()
            total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total


def comparison_lines(rows: Sequence[tuple[str, str, str, bool | None, str]]) -> list[str]:
    """The "paper vs dyn" table every reproduction prints: one row per finding, ``(what, paper, dyn, reproduced,
    why)``; ``reproduced`` True prints "reproduced", False "differs" with ``why`` (or "why not known"), None
    "not decided" with ``why``.

    Examples
    --------
    >>> print("\\n".join(comparison_lines([("OOD accuracy, multi", "≈ 1.0", "0.98", True, ""),
    ...                                     ("OOD accuracy, single", "≈ 0.5", "0.72", False, "")])))
      paper vs dyn:
      finding               paper  dyn   verdict
      OOD accuracy, multi   ≈ 1.0  0.98  reproduced
      OOD accuracy, single  ≈ 0.5  0.72  differs (why not known)
    """
    def verdict(ok: bool | None, why: str) -> str:
        if ok is None:
            return f"not decided ({why})" if why else "not decided"
        return "reproduced" if ok else f"differs ({why or 'why not known'})"

    table = [("finding", "paper", "dyn", "verdict")] + [(w, p, d, verdict(ok, why)) for w, p, d, ok, why in rows]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    return ["  paper vs dyn:"] + [f"  {w:<{widths[0]}}  {p:<{widths[1]}}  {d:<{widths[2]}}  {v}"
                                   for w, p, d, v in table]


def unseen_curves(ax: Any) -> list[str]:
    """Take every labelled line of the matplotlib axes ``ax`` that has no point inside its current limits out of
    the legend (a boundary beyond the grid is not drawn, so it must not be listed); return their labels so that
    the figure can say where they lie. Call it after the limits are set, before the legend."""
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    hidden = []
    for line in ax.get_lines():
        label = line.get_label()
        if label.startswith("_"):
            continue
        x, y = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)
        if x.size == 2 and y.size == 2 and x[0] == x[1] and line.get_transform() != ax.transData:
            y = np.array([y0, y1])  # axvline: y in axes coordinates
        if not ((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).any():
            line.set_label("_" + label)
            hidden.append(label)
    return hidden


def replace_config(config: Any, **changes: Any) -> Any:
    """A validated copy of a config dataclass with ``changes`` applied (unknown keys named)."""
    unknown = set(changes) - {f.name for f in fields(config)}
    if unknown:
        raise ConfigError(unknown_key_message(type(config), sorted(unknown)[0]))
    return dataclasses.replace(config, **changes)


# -- what every trainer shares: the checkpoint policy, Ctrl-C at a step boundary, resuming under the lock ----------
#: Seconds of training between checkpoints by default: a run killed at any moment loses at most about this much
#: work. A checkpoint costs a few milliseconds (the recorded steps are written anyway; the state is small).
DEFAULT_CHECKPOINT_SECONDS = 10.0


def checkpoint_policy(every: Any, seconds: Any, stored: Mapping[str, Any] | None = None) -> tuple[int | None, float]:
    """The checkpoint policy ``(every N steps or None, every S seconds)`` a trainer uses and stores with its run.

    Values not given come from ``stored`` (a resumed run's root attributes ``checkpoint_every`` and
    ``checkpoint_seconds``), else the default: every :data:`DEFAULT_CHECKPOINT_SECONDS` of training.

    Examples
    --------
    >>> checkpoint_policy(None, None)
    (None, 10.0)
    >>> checkpoint_policy(None, None, {"checkpoint_every": 50, "checkpoint_seconds": 10.0})
    (50, 10.0)
    """
    stored = stored or {}
    every = stored.get("checkpoint_every") if every is None else every
    seconds = stored.get("checkpoint_seconds", DEFAULT_CHECKPOINT_SECONDS) if seconds is None else seconds
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every <= 0):
        raise ConfigError(f"checkpoint_every must be a positive integer (steps), got {every!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf:
        raise ConfigError(f"checkpoint_seconds must be a positive number, got {seconds!r}")
    return every, float(seconds)


class DeferredInterrupt:
    """Ctrl-C inside a training loop sets :attr:`requested` instead of raising mid-step (where weights or RNG
    states could be half updated): the loop checkpoints at the next step boundary and stops. A second Ctrl-C
    raises at once. Active only on the main thread, and only over Python's own SIGINT handler."""

    def __init__(self) -> None:
        self.requested = False
        self._installed = False

    def __enter__(self) -> "DeferredInterrupt":
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class Resumption:
    """A run store opened to be resumed: its writer (holding the store's lock), root attributes and last
    checkpoint ``(step, arrays)`` — None when it has none, and the run restarts from step 0."""

    writer: Any
    attrs: dict[str, Any]
    checkpoint: tuple[int, dict[str, Any]] | None


def open_for_resume(out: str | os.PathLike | None, *, setup: str, config: Any) -> Resumption:
    """Open the unfinished run at ``out`` to continue it with ``config``: the writer lock is taken before anything
    is read (a run still writing the store is refused, never half read), then the store must be an unfinished run
    of ``setup`` recorded with ``config``, and its checkpoint is read whole.

    Raises
    ------
    StoreError
        No store, being written, complete, of another setup, or a damaged checkpoint.
    ConfigError
        ``config`` differs from the stored one.
    """
    from ..store import StoreWriter

    if out is None:
        raise ConfigError("resume needs the store to continue")
    writer = StoreWriter(out, append=True)
    try:
        attrs = writer.attrs
        if attrs.get("status") == "complete":
            removed = writer.remove_leftovers()  # a kill during its close: its checkpoint files
            raise StoreError(f"{out} is already complete; nothing to resume"
                             + (f" (removed {removed} leftover checkpoint files)" if removed else ""))
        stored = attrs.get("config")
        if not isinstance(stored, dict) or attrs.get("setup") != setup:
            raise StoreError(f"{out} is not a run of dyn's {setup} trainer (setup={attrs.get('setup')!r}); "
                             "it cannot be resumed by it")
        if type(config).from_dict(stored) != config:
            raise ConfigError(f"resume: the config differs from the one stored in {out}")
        return Resumption(writer, dict(attrs), writer.checkpoint())
    except BaseException:
        writer.release()
        raise
