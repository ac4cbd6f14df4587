"""A site: one weight matrix whose rows are neurons, and the probe vectors recorded against it.

A convolution's weight ``(filters, channels, *kernel)`` is a site directly: it is read through a view
``(filters, channels·prod(kernel))`` (each filter a neuron) and its probes are input patches in the same order
(:func:`dyn.record.probes.conv_patches`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import ConfigError
from ..store.schema import CHANGE_DIM, CHANGE_VAR, RESERVED_DIMS

__all__ = ["Site", "class_indices"]


def _matrix_view(weight: torch.Tensor) -> torch.Tensor:
    """The live ``(neurons, features)`` view of a 2-D or higher weight; refuses anything that would be a copy."""
    if weight.grad_fn is not None and not weight._is_view():  # a view (conv.weight.view(8, 9)) stays live
        raise ConfigError(f"site weight is computed from a parameter ({type(weight.grad_fn).__name__}), a copy that "
                          "never changes: pass the parameter itself (e.g. model.fc.weight)")
    w = weight.detach()
    if w.dim() == 2:
        return w
    flat = w.flatten(1)
    if flat.untyped_storage().data_ptr() != w.untyped_storage().data_ptr():
        raise ConfigError(f"site weight of shape {tuple(w.shape)} cannot be read as (neurons, features) without a "
                          "copy (channels_last memory format?): make it contiguous first")
    return flat


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot convert to a tensor ({exc})") from None


def class_indices(labels: torch.Tensor, n: int) -> torch.Tensor:
    """``labels`` as one class index per sample (shape ``(n,)``); one-hot rows or class scores are refused by name.

    Examples
    --------
    >>> class_indices(torch.tensor([[0, 1], [1, 0]]), 2)
    Traceback (most recent call last):
    ...
    dyn.errors.ConfigError: labels must be class indices, one per sample (shape (2,)); got shape (2, 2), one-hot ...
    """
    if labels.dim() == 2 and labels.shape[0] == n and labels.shape[1] > 1:
        raise ConfigError(f"labels must be class indices, one per sample (shape ({n},)); got shape "
                          f"{tuple(labels.shape)}, one-hot rows or class scores? pass labels.argmax(1)")
    flat = labels.reshape(-1)
    if flat.shape[0] != n:
        raise ConfigError(f"labels must be class indices, one per sample: got {flat.shape[0]} entries (shape "
                          f"{tuple(labels.shape)}) for {n} samples")
    return flat


@dataclass
class Site:
    """A weight matrix (rows are neurons) and the probe vectors whose inner products with it are recorded.

    Parameters
    ----------
    weight : torch.Tensor, shape (neurons, features) or (filters, channels, *kernel)
        The live parameter (e.g. ``nn.Linear.weight``, ``nn.Conv2d.weight``). Read, never modified; a tensor
        computed from a parameter (``m.weight * 1.0``) is refused, since it is a copy that never changes.
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
        Store the probe vectors (needed to reconstruct weights). The γ/ρ solve needs the Gram matrix of the
        signals and noise probes when they number at most the features, else the signal and noise vectors
        themselves (smaller than the Gram matrix): those are then stored whatever this says.
    store_weights : bool
        Store the initial and final weights (``weight_init``; ``weight_final`` when the run completes).
    track_change : bool
        Also record ``weight_change_sq(step, neuron, stat) = ‖w_r(t) − w_r(0)‖²``, so the share of each neuron's
        change inside the probes' span (:func:`dyn.analysis.coefficients.coefficients`) is known at every step.
    coords : mapping of name to (dim, values), optional
        Extra coordinates stored with the site, e.g. the image and position of each conv patch along ``sample``.
    attrs : mapping, optional
        JSON-serialisable attributes of the site group (e.g. how its probes were made).

    Examples
    --------
    >>> lin = torch.nn.Linear(5, 3, bias=False)
    >>> site = Site(lin.weight, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5), labels=[1, -1, 1, -1])
    >>> site.n_probes
    5
    >>> conv = torch.nn.Conv2d(1, 8, 3)
    >>> Site(conv.weight, signals={"mu": torch.ones(9)}, noise=torch.randn(4, 9)).weight.shape
    torch.Size([8, 9])
    """

    weight: torch.Tensor
    signals: Mapping[str, Any]
    noise: Any
    labels: Any = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    store_probes: bool = True
    store_weights: bool = True
    track_change: bool = False
    coords: Mapping[str, Any] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.weight, torch.Tensor) or self.weight.dim() < 2:
            shape = tuple(self.weight.shape) if isinstance(self.weight, torch.Tensor) else type(self.weight).__name__
            raise ConfigError(f"site weight must be a 2-D tensor (neurons, features) or a conv weight "
                              f"(filters, channels, *kernel), got {shape}")
        if not self.weight.is_floating_point():  # complex and integer weights have no real inner products to record
            raise ConfigError(f"site weight has dtype {str(self.weight.dtype).removeprefix('torch.')}: dyn records real "
                              "floating-point weights (float16, bfloat16, float32, float64)")
        if self.weight.numel() == 0:
            raise ConfigError(f"site weight of shape {tuple(self.weight.shape)} is empty: a site needs at least one "
                              "neuron and one feature")
        self.parameter = self.weight
        self.weight_shape = tuple(self.weight.shape)
        self.weight = _matrix_view(self.weight)
        d = self.weight.shape[1]
        if not self.signals:
            raise ConfigError("site needs at least one signal vector")
        sig = {}
        for name, vec in self.signals.items():
            t = _as_tensor(f"signal {name!r}", vec)
            if t.dim() != 1 or t.shape[0] != d:
                raise ConfigError(f"signal {name!r} has shape {tuple(t.shape)}, expected ({d},) to match the weight")
            if t.is_complex():
                raise ConfigError(f"signal {name!r} is complex: dyn records real inner products")
            if not bool(torch.any(t != 0)):
                # a class mean of blank conv patches is zero; a projection still measures the rest, so warn here and
                # let verify fail a decomposition that comes out undefined
                warnings.warn(f"signal {name!r} is the zero vector (in {str(t.dtype).removeprefix('torch.')}): its "
                              "coefficient gamma = <w - w(0), mu>/|mu|^2 is undefined", stacklevel=2)
            sig[str(name)] = t
        noise = _as_tensor("noise", self.noise)
        if noise.dim() != 2 or noise.shape[1] != d or noise.shape[0] == 0:
            raise ConfigError(f"noise has shape {tuple(noise.shape)}, expected (samples, {d}) to match the weight")
        if noise.is_complex():
            raise ConfigError("noise is complex: dyn records real inner products")
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
            self.labels = class_indices(_as_tensor("labels", self.labels), noise.shape[0])
        for name, t in [*(("signal " + repr(k), v) for k, v in sig.items()), ("noise", noise),
                        *(("extra probe " + repr(k), v) for k, (_, v) in extra.items())]:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ConfigError(f"{name} contains NaN or inf")
        sizes = {"sample": noise.shape[0], **{dim: t.shape[0] for dim, t in extra.values()}}
        coords = {}
        for name, spec in self.coords.items():
            if not isinstance(spec, tuple) or len(spec) != 2:
                raise ConfigError(f"coordinate {name!r} must be (dim, values)")
            dim, values = spec
            values = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
            if dim not in sizes or values.shape != (sizes[dim],):
                raise ConfigError(f"coordinate {name!r} has shape {values.shape} on dim {dim!r}; expected one value "
                                  f"per entry of a probe dimension ({', '.join(f'{k}={v}' for k, v in sizes.items())})")
            if name in sizes or name in RESERVED_DIMS or name.endswith(("_inner", "_vectors")):
                raise ConfigError(f"coordinate {name!r}: name is reserved")
            coords[str(name)] = (str(dim), values)
        self.signals, self.noise, self.extra, self.coords = sig, noise, extra, coords
        # how the site was built, so it can be rebuilt from the store (dyn.record.probes.sites_from_store)
        self.attrs = {**dict(self.attrs), "track_change": bool(self.track_change),
                      "extra_dims": {k: dim for k, (dim, _) in extra.items()},
                      "coord_dims": {k: dim for k, (dim, _) in coords.items()}}
        if len(self.weight_shape) > 2:
            self.attrs.setdefault("weight_shape", list(self.weight_shape))

    @property
    def n_probes(self) -> int:
        return len(self.signals) + self.noise.shape[0] + sum(t.shape[0] for _, t in self.extra.values())

    @property
    def n_columns(self) -> int:
        """Recorded values per neuron and step: the probes, plus one when the change is tracked."""
        return self.n_probes + int(self.track_change)

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
        if self.track_change:
            out[CHANGE_VAR] = (CHANGE_DIM, slice(start, start + 1))
        return out
