"""A site: one weight matrix whose rows are neurons, and the probe vectors recorded against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import ConfigError
from ..store.schema import RESERVED_DIMS

__all__ = ["Site"]


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot convert to a tensor ({exc})") from None


@dataclass
class Site:
    """A weight matrix (rows are neurons) and the probe vectors whose inner products with it are recorded.

    Parameters
    ----------
    weight : torch.Tensor, shape (neurons, features)
        The live parameter (e.g. ``nn.Linear.weight`` or an encoder's filter matrix). Read, never modified.
    signals : mapping of name to (features,) tensor
        The signal vectors μ_k; recorded as ``signal_inner(step, neuron, signal)``.
    noise : (samples, features) tensor
        The training samples' noise patches ξ_i; recorded as ``noise_inner(step, neuron, sample)``.
    labels : (samples,) array-like, optional
        Labels of the samples, stored as ``label(sample)``.
    extra : mapping of name to (samples, features) tensor or ``(dim, tensor)``, optional
        More probe sets, recorded as ``<name>_inner(step, neuron, dim)``; ``dim`` defaults to ``"sample"``
        (rows must then match ``noise``). Extra probes are not part of the γ/ρ basis.
    store_probes : bool
        Store the probe vectors (needed to reconstruct weights; the Gram matrix is always stored).
    store_weights : bool
        Store the initial and final weights (``weight_init``, ``weight_final``).

    Examples
    --------
    >>> lin = torch.nn.Linear(5, 3, bias=False)
    >>> site = Site(lin.weight, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5), labels=[1, -1, 1, -1])
    >>> site.n_probes
    5
    """

    weight: torch.Tensor
    signals: Mapping[str, Any]
    noise: Any
    labels: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    store_probes: bool = True
    store_weights: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.weight, torch.Tensor) or self.weight.dim() != 2:
            shape = tuple(self.weight.shape) if isinstance(self.weight, torch.Tensor) else type(self.weight).__name__
            raise ConfigError(f"site weight must be a 2-D tensor (neurons, features), got {shape}")
        d = self.weight.shape[1]
        if not self.signals:
            raise ConfigError("site needs at least one signal vector")
        sig = {}
        for name, vec in self.signals.items():
            t = _as_tensor(f"signal {name!r}", vec)
            if t.dim() != 1 or t.shape[0] != d:
                raise ConfigError(f"signal {name!r} has shape {tuple(t.shape)}, expected ({d},) to match the weight")
            sig[str(name)] = t
        noise = _as_tensor("noise", self.noise)
        if noise.dim() != 2 or noise.shape[1] != d or noise.shape[0] == 0:
            raise ConfigError(f"noise has shape {tuple(noise.shape)}, expected (samples, {d}) to match the weight")
        extra: dict[str, tuple[str, torch.Tensor]] = {}
        for name, spec in self.extra.items():
            dim, vecs = spec if isinstance(spec, tuple) else ("sample", spec)
            t = _as_tensor(f"extra probe {name!r}", vecs)
            if t.dim() != 2 or t.shape[1] != d:
                raise ConfigError(f"extra probe {name!r} has shape {tuple(t.shape)}, expected (rows, {d})")
            if dim == "sample" and t.shape[0] != noise.shape[0]:
                raise ConfigError(f"extra probe {name!r} has {t.shape[0]} rows, expected {noise.shape[0]} (one per sample)")
            if name in ("signal", "noise") or dim in RESERVED_DIMS:
                raise ConfigError(f"extra probe {name!r} on dim {dim!r}: name or dimension is reserved")
            extra[str(name)] = (str(dim), t)
        if self.labels is not None:
            labels = _as_tensor("labels", self.labels).reshape(-1)
            if labels.shape[0] != noise.shape[0]:
                raise ConfigError(f"labels has {labels.shape[0]} entries, expected {noise.shape[0]} (one per sample)")
            self.labels = labels
        for name, t in [*(("signal " + repr(k), v) for k, v in sig.items()), ("noise", noise),
                        *(("extra probe " + repr(k), v) for k, (_, v) in extra.items())]:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ConfigError(f"{name} contains NaN or inf")
        self.signals, self.noise, self.extra = sig, noise, extra

    @property
    def n_probes(self) -> int:
        return len(self.signals) + self.noise.shape[0] + sum(t.shape[0] for _, t in self.extra.values())

    def probe_matrix(self) -> torch.Tensor:
        """All probes as columns, ``(features, probes)``, on the weight's device and dtype, in recording order."""
        mat = torch.cat([torch.stack(list(self.signals.values())), self.noise, *(t for _, t in self.extra.values())])
        return mat.to(device=self.weight.device, dtype=self.weight.dtype).T.contiguous()

    def layout(self) -> dict[str, tuple[str, slice]]:
        """Recorded variable name → (its probe dimension, its column range in the probe matrix)."""
        k, n = len(self.signals), self.noise.shape[0]
        out = {"signal_inner": ("signal", slice(0, k)), "noise_inner": ("sample", slice(k, k + n))}
        start = k + n
        for name, (dim, t) in self.extra.items():
            out[f"{name}_inner"] = (dim, slice(start, start + t.shape[0]))
            start += t.shape[0]
        return out
