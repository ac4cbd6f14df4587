"""Run configuration: the validated settings of one training run, presets, and ``key=value`` overrides.

A :class:`Config` holds every number a run depends on, including those the paper leaves open (τ, σ₀, the number
of negatives M, the seed). It is stored as JSON in every run's root attributes, so a run can always be re-created
from its store.

Presets are TOML files in ``data/presets/`` (shipped inside the package as ``dyn/presets``)::

    description = "one line shown by `dyn presets`"
    [config]
    d = 2000
    ...
    [notes]            # why each unstated number was chosen; stored with the run
    tau = "..."
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

__all__ = ["Config", "load_preset", "list_presets", "parse_overrides"]

_MODALITIES = ("single", "multi")
_OPTIMIZERS = ("gd", "sgd")
_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Config:
    """Settings of one run of the Huang et al. 2024 synthetic experiment.

    Vectors the paper writes as ``μ = 5e₁`` are given by a norm and an axis (0-based): ``mu_norm=5, mu_axis=0``.

    Parameters
    ----------
    modality : {"single", "multi"}
        Single-modal contrastive learning with augmentation (eq. 6) or multi-modal (eq. 9).
    d : int
        Patch dimension (both modalities, as in the paper's analysis).
    n, n_test : int
        Training and OOD test set sizes.
    m : int
        Neurons per encoder (the embedding dimension).
    steps : int
        Optimizer steps (full-batch GD: one step per epoch).
    eta : float
        Learning rate η.
    tau : float
        InfoNCE temperature τ (not stated in the paper).
    sigma0 : float
        Initialisation scale σ₀: ``w_r(0) ~ N(0, σ₀² I)`` (not stated in the paper).
    sigma_xi : float
        Noise scale σ_ξ of both modalities.
    sigma_eps : float
        Augmentation noise σ_ε (single-modal positive view ``[yμ, ξ+ε]``).
    mu_norm, mu_axis : float, int
        Modality-1 signal ``μ = mu_norm · e_{mu_axis}``.
    mu_tilde_norm, mu_tilde_axis : float, int
        Modality-2 signal ``μ̃``.
    nu_norm, nu_axis : float, int
        OOD test signal ``ν``.
    negatives : int or "all"
        Number of opposite-label negatives M per anchor; ``"all"`` uses every opposite-label sample.
    redraw_eps : bool
        Redraw the augmentation noise ε at every step (default: drawn once per sample).
    optimizer : {"gd", "sgd"}
        Full-batch gradient descent (the paper) or minibatch SGD over anchors.
    batch_size : int
        Anchors per SGD step (ignored by GD).
    seed : int
        Seeds data, initialisation, negative sampling and minibatches.
    dtype : {"float32", "float64"}
        Floating-point precision of training.
    device : str
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    record_every : int
        Record every k-th step (step 0 and the last step are always recorded).

    Examples
    --------
    >>> cfg = Config()  # the paper's Figure-1 sizes
    >>> round(cfg.snr, 4), round(cfg.n * cfg.snr**2, 3)
    (0.1118, 1.25)
    >>> cfg.replace(modality="multi").modality
    'multi'
    """

    modality: str = "single"
    d: int = 2000
    n: int = 100
    n_test: int = 200
    m: int = 50
    steps: int = 200
    eta: float = 0.01
    tau: float = 0.1
    sigma0: float = 0.01
    sigma_xi: float = 1.0
    sigma_eps: float = 0.1
    mu_norm: float = 5.0
    mu_axis: int = 0
    mu_tilde_norm: float = 15.0
    mu_tilde_axis: int = 1
    nu_norm: float = 2.0
    nu_axis: int = 0
    negatives: int | str = "all"
    redraw_eps: bool = False
    optimizer: str = "gd"
    batch_size: int = 0
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    record_every: int = 1
    notes: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "notes":
                _check_type(f.name, getattr(self, f.name), f.type)
        for name in ("d", "n", "m", "steps", "record_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n < 2:
            raise ConfigError(f"n must be at least 2 (anchors need a negative), got {self.n}")
        if self.n_test < 0:
            raise ConfigError(f"n_test must be >= 0, got {self.n_test}")
        for name in ("eta", "tau"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive finite number, got {v}")
        for name in ("sigma0", "sigma_xi", "sigma_eps", "mu_norm", "mu_tilde_norm", "nu_norm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
        for name in ("mu_axis", "mu_tilde_axis", "nu_axis"):
            v = getattr(self, name)
            if not 0 <= v < self.d:
                raise ConfigError(f"{name} must lie in [0, d={self.d}), got {v}")
        if self.modality not in _MODALITIES:
            raise ConfigError(f"modality must be one of {', '.join(_MODALITIES)}, got {self.modality!r}")
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(_OPTIMIZERS)}, got {self.optimizer!r}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        if isinstance(self.negatives, str):
            if self.negatives != "all":
                raise ConfigError(f"negatives must be a positive integer or 'all', got {self.negatives!r}")
        elif self.negatives <= 0:
            raise ConfigError(f"negatives must be a positive integer or 'all', got {self.negatives}")
        if self.optimizer == "sgd" and not 0 < self.batch_size <= self.n:
            raise ConfigError(f"batch_size must lie in [1, n={self.n}] for optimizer='sgd', got {self.batch_size}")
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be >= 0, got {self.batch_size}")
        object.__setattr__(self, "notes", dict(self.notes))

    # Derived quantities the theory is written in.
    @property
    def snr(self) -> float:
        """SNR = ‖μ‖ / (σ_ξ √d) (Assumption 4.1)."""
        return self.mu_norm / (self.sigma_xi * math.sqrt(self.d)) if self.sigma_xi > 0 else math.inf

    @property
    def c_mu(self) -> float:
        """C_μ = ‖μ̃‖ / ‖μ‖ (Assumption 4.1(7))."""
        return self.mu_tilde_norm / self.mu_norm if self.mu_norm > 0 else math.inf

    def replace(self, **changes: Any) -> "Config":
        """Return a validated copy with ``changes`` applied."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(_unknown_key_message(sorted(unknown)[0]))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (``notes`` included)."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Config":
        """Build a config from a mapping, rejecting unknown keys by name."""
        names = {f.name for f in fields(cls)}
        for key in data:
            if key not in names:
                raise ConfigError(_unknown_key_message(key))
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _check_type(name: str, value: Any, annotation: str) -> None:
    kinds = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "int | str": (int, str)}
    expected = kinds[annotation]
    ok = isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)
    if not ok:
        raise ConfigError(f"{name} must be of type {annotation}, got {type(value).__name__} {value!r}")


def _unknown_key_message(key: str) -> str:
    names = [f.name for f in fields(Config) if f.name != "notes"]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown config key {key!r}{hint}"


def _preset_dir() -> Path:
    return Path(str(resources.files("dyn") / "presets"))


def list_presets() -> dict[str, str]:
    """Names of the shipped presets with their one-line descriptions.

    Examples
    --------
    >>> "huang2024-figure1" in list_presets()
    True
    """
    out = {}
    for path in sorted(_preset_dir().glob("*.toml")):
        try:
            doc = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError:
            continue
        if "config" in doc:
            out[path.stem] = str(doc.get("description", "")).strip().splitlines()[0] if doc.get("description") else ""
    return out


def load_preset(name: str, **overrides: Any) -> Config:
    """Load a preset by name (or a path to a TOML file) and apply overrides.

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
    path = Path(name)
    if not (path.suffix == ".toml" and path.is_file()):
        path = _preset_dir() / f"{name}.toml"
        if not path.is_file():
            known = list(list_presets())
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            raise ConfigError(f"unknown preset {name!r}{hint}")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset {path}: invalid TOML: {exc}") from None
    if not isinstance(doc.get("config"), dict):
        raise ConfigError(f"preset {path}: missing [config] table")
    data = dict(doc["config"])
    notes = {str(k): str(v) for k, v in doc.get("notes", {}).items()}
    data.update(overrides)
    data.setdefault("notes", notes)
    return Config.from_dict(data)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as TOML (``3``, ``0.1``, ``true``, ``"all"``) or bare strings.

    Examples
    --------
    >>> parse_overrides(["tau=0.5", "negatives=all", "redraw_eps=true"])
    {'tau': 0.5, 'negatives': 'all', 'redraw_eps': True}
    """
    names = {f.name for f in fields(Config)} - {"notes"}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if key not in names:
            raise ConfigError(_unknown_key_message(key))
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
