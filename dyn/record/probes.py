"""Probe helpers: turn a data set (and a model) into the probes of a :class:`~dyn.record.Site`.

- :func:`class_means` — one signal vector per class, the mean of its samples.
- :func:`residual_noise` — each sample minus its class mean (what is left after the signal).
- :func:`random_baseline` — random directions with the same count and norms as the noise probes: a max over many
  random directions also grows, and without this baseline it reads as "noise memorization".
- :func:`conv_patches` — the input patches a ``Conv1d``/``Conv2d`` filter sees (``unfold``), with their image and
  position, so the conv weight itself is a site (each filter a neuron).
- :func:`layer_inputs` — the inputs of named layers from one forward pass, for layers deeper than the first.
  These probes are **frozen**: taken once at the start of training, while the layers below keep learning.
- :func:`site_for` / :func:`sites_for` — all of the above in one call per layer.
- :func:`sites_from_store` — the same sites again from a store's saved probes, to resume recording.

Every helper is plain torch and returns tensors on the inputs' device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, StoreError
from ..store import read_attrs, read_static
from .site import Site, class_indices

__all__ = ["DEFAULT_MAX_PATCHES", "auto_per_image", "Patches", "class_means", "residual_noise", "random_baseline", "conv_patches", "layer_inputs",
           "site_for", "sites_for", "sites_from_store"]

_CONV = (torch.nn.Conv1d, torch.nn.Conv2d)


def _labels(x: torch.Tensor, y: Any) -> torch.Tensor:
    return class_indices(torch.as_tensor(y, device=x.device), x.shape[0])


def class_means(x: torch.Tensor, y: Any, *, prefix: str = "class") -> dict[str, torch.Tensor]:
    """One signal vector per class: the mean of the flattened samples with that label.

    Parameters
    ----------
    x : (samples, ...) tensor
    y : (samples,) labels
    prefix : str
        Names are ``f"{prefix}{label}"``.

    Examples
    --------
    >>> x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    >>> class_means(x, [0, 0, 1])
    {'class0': tensor([2., 0.]), 'class1': tensor([0., 2.])}
    """
    flat = x.reshape(x.shape[0], -1)
    y = _labels(flat, y)
    return {f"{prefix}{int(c) if not c.is_floating_point() else float(c)}": flat[y == c].mean(0)
            for c in torch.unique(y)}


def residual_noise(x: torch.Tensor, y: Any) -> torch.Tensor:
    """Each flattened sample minus the mean of its class, ``(samples, features)``.

    Within a class the residuals sum to zero, so signals and residuals together are linearly dependent: their
    coefficients are a projection (:func:`dyn.coefficients`), never an exact solve.

    Examples
    --------
    >>> x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    >>> residual_noise(x, [0, 0, 1])
    tensor([[-1.,  0.],
            [ 1.,  0.],
            [ 0.,  0.]])
    """
    flat = x.reshape(x.shape[0], -1)
    y = _labels(flat, y)
    classes, index = torch.unique(y, return_inverse=True)
    means = torch.zeros(len(classes), flat.shape[1], dtype=flat.dtype, device=flat.device).index_add_(0, index, flat)
    means /= torch.bincount(index, minlength=len(classes)).to(flat.dtype)[:, None]
    return flat - means[index]


def random_baseline(noise: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Random Gaussian directions with the same count and row norms as ``noise``, ``(rows, features)``.

    Record them as an extra probe set (``extra={"random": random_baseline(noise)}``): a weight that memorizes
    nothing still grows its largest inner product with many random directions, and this is that baseline.

    Examples
    --------
    >>> noise = torch.randn(5, 10)
    >>> base = random_baseline(noise, seed=1)
    >>> base.shape, torch.allclose(base.norm(dim=1), noise.norm(dim=1))
    (torch.Size([5, 10]), True)
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(noise.shape, generator=g, dtype=torch.float64).to(device=noise.device, dtype=noise.dtype)
    return z * (noise.norm(dim=1, keepdim=True) / z.norm(dim=1, keepdim=True).clamp_min(1e-30))


@dataclass(frozen=True)
class Patches:
    """Input patches of a convolution, one row per (image, output position).

    Attributes
    ----------
    vectors : (patches, channels·prod(kernel)) tensor, in the order of ``conv.weight.flatten(1)``.
    image : (patches,) index of the source image.
    position : (patches, spatial dims) output position (row, col for ``Conv2d``; index for ``Conv1d``).
    """

    vectors: torch.Tensor
    image: torch.Tensor
    position: torch.Tensor

    def coords(self) -> dict[str, tuple[str, torch.Tensor]]:
        """``Site(coords=...)`` entries that store each patch's image and position along ``sample``."""
        names = ("patch_row", "patch_col") if self.position.shape[1] == 2 else ("patch_pos",)
        return {"patch_image": ("sample", self.image),
                **{name: ("sample", self.position[:, i]) for i, name in enumerate(names)}}


def conv_patches(conv: torch.nn.Module, x: torch.Tensor, *, per_image: int | None = None, seed: int = 0) -> Patches:
    """The patches of ``x`` that the filters of ``conv`` are applied to (``torch.nn.functional.unfold``).

    ``⟨filter_r, patch⟩`` is the pre-activation (minus bias) of filter ``r`` at that position, so the conv weight
    ``(filters, channels, *kernel)`` is a site whose neurons are the filters and whose probes are these patches.

    Parameters
    ----------
    conv : torch.nn.Conv1d or torch.nn.Conv2d
        Its kernel size, stride, padding (numbers, zeros padding) and dilation are used; ``groups`` must be 1.
    x : (images, channels, *spatial) tensor
        The layer's inputs.
    per_image : int, optional
        Keep this many positions per image, drawn without replacement (all positions by default).
    seed : int
        Seed of that draw.

    Examples
    --------
    >>> conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    >>> x = torch.randn(2, 1, 5, 5)
    >>> p = conv_patches(conv, x)
    >>> p.vectors.shape, p.position[:3].tolist()
    (torch.Size([50, 9]), [[0, 0], [0, 1], [0, 2]])
    >>> out = torch.nn.functional.conv2d(x, conv.weight)  # no padding, no bias: compare an inner position
    >>> i = 6  # image 0, row 1, col 1
    >>> torch.allclose(conv.weight.flatten(1) @ p.vectors[i], out[0, :, 0, 0], atol=1e-6)
    True
    """
    if not isinstance(conv, _CONV):
        raise ConfigError(f"conv_patches needs a torch.nn.Conv1d or Conv2d, got {type(conv).__name__}")
    if conv.groups != 1 or isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        raise ConfigError("conv_patches supports groups=1 and numeric zero padding")
    one_d = isinstance(conv, torch.nn.Conv1d)
    if x.dim() != (3 if one_d else 4) or x.shape[1] != conv.in_channels:
        raise ConfigError(f"inputs of shape {tuple(x.shape)} do not fit {type(conv).__name__}({conv.in_channels}, ...)")
    x4 = x.unsqueeze(2) if one_d else x
    pad = lambda v: (1, v[0]) if one_d else v  # noqa: E731  Conv1d as a height-1 Conv2d
    kernel, stride, dilation = pad(conv.kernel_size), pad(conv.stride), pad(conv.dilation)
    padding = (0, conv.padding[0]) if one_d else conv.padding
    cols = torch.nn.functional.unfold(x4.detach(), kernel, dilation=dilation, padding=padding, stride=stride)
    n, feat, positions = cols.shape
    out_h = (x4.shape[2] + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = positions // out_h
    image = torch.arange(n, device=x.device).repeat_interleave(positions)
    flat_pos = torch.arange(positions, device=x.device).repeat(n)
    position = flat_pos[:, None] if one_d else torch.stack([flat_pos // out_w, flat_pos % out_w], 1)
    vectors = cols.transpose(1, 2).reshape(n * positions, feat)
    if per_image is not None:
        if not 0 < per_image <= positions:
            raise ConfigError(f"per_image must be in 1..{positions}, got {per_image}")
        g = torch.Generator(device="cpu").manual_seed(seed)
        keep = torch.stack([torch.randperm(positions, generator=g)[:per_image].sort().values for _ in range(n)])
        idx = (keep + torch.arange(n)[:, None] * positions).reshape(-1).to(x.device)
        vectors, image, position = vectors[idx], image[idx], position[idx]
    return Patches(vectors=vectors.contiguous(), image=image, position=position)


def layer_inputs(model: torch.nn.Module, names: Sequence[str], x: Any) -> dict[str, torch.Tensor]:
    """The inputs of the named sub-modules when ``model(x)`` runs once (eval mode), detached copies.

    ``x`` may be a mapping of keyword arguments (``model(**x)``, e.g. a Hugging Face batch).

    Used as probes of a deeper layer these are **frozen**: the activations at the weights of this moment (call it
    before training), not the moving activations of later steps.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> acts = layer_inputs(model, ["2"], torch.randn(5, 4))
    >>> acts["2"].shape, bool((acts["2"] >= 0).all())
    (torch.Size([5, 3]), True)
    """
    return _layer_inputs(model, names, x)[0]


def _layer_inputs(model: torch.nn.Module, names: Sequence[str], x: Any) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
    """Inputs of the named modules, and whether each was computed from trainable parameters (then it is frozen)."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ConfigError(f"model has no module {missing[0]!r} (some names: {', '.join(list(modules)[1:8])})")
    seen: dict[str, torch.Tensor] = {}
    moving: dict[str, bool] = {}

    def grab(name: str, args: tuple) -> None:
        if name not in seen:
            seen[name] = args[0].detach().clone()
            moving[name] = bool(args[0].requires_grad)

    hooks = [modules[n].register_forward_pre_hook(lambda mod, args, n=n: grab(n, args)) for n in names]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():  # only to see which inputs depend on trainable parameters; no backward
            model(**x) if isinstance(x, Mapping) else model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    not_run = [n for n in names if n not in seen]
    if not_run:
        raise ConfigError(f"module {not_run[0]!r} did not run in the forward pass")
    return seen, moving


#: Conv sites built by :func:`site_for` keep about this many patches by default (``per_image="auto"``): enough for
#: per-sample views (over 10,000), small enough that 500 recorded steps of 16 filters and their analysis fit a
#: laptop (about 0.7 GB of store and 3 GB of analysis peak; :mod:`dyn.record.budget`).
DEFAULT_MAX_PATCHES = 10_000


def auto_per_image(images: int, positions: int, max_patches: int = DEFAULT_MAX_PATCHES) -> int:
    """Patch positions per image so that ``images × per_image`` just reaches ``max_patches`` (all if fewer).

    Examples
    --------
    >>> auto_per_image(1797, 64), auto_per_image(100, 64)
    (6, 64)
    """
    return int(min(positions, max(1, -(-max_patches // max(images, 1)))))


def site_for(layer: torch.nn.Module, x: torch.Tensor, y: Any, *, noise: str = "residual", baseline: bool = True,
             per_image: int | str | None = "auto", max_samples: int | None = None, seed: int = 0,
             frozen: bool = False, **site_kwargs: Any) -> Site:
    """A :class:`Site` on ``layer.weight`` with class-mean signals, noise probes and a random baseline.

    Parameters
    ----------
    layer : torch.nn.Linear, Conv1d or Conv2d
    x : tensor
        The layer's inputs (the data for a first layer; :func:`layer_inputs` for a deeper one). For a ``Linear``
        layer applied to sequences, ``(samples, tokens, features)``, every token is a probe with its sample's label.
    y : (samples,) labels of ``x``.
    noise : {"residual", "raw"}
        Noise probes: each input minus its class mean (default), or the inputs themselves.
    baseline : bool
        Also record ``random_inner``: random directions with the noise probes' count and norms, and
        ``random_signal_inner``: random directions with the signals' count and norms (the random-signal control of
        :func:`dyn.analysis.controls.controls`).
    per_image : int, "auto" or None
        Conv layers: patch positions kept per image, a seeded random subset. ``"auto"`` (default) keeps all of
        them when that is at most :data:`DEFAULT_MAX_PATCHES` patches, else :func:`auto_per_image` per image (the
        site's attribute ``probes`` says so); ``None`` keeps every position.
    max_samples : int, optional
        Keep this many samples (a seeded random subset) before building probes.
    seed : int
        Seed of the subsets and of the baseline.
    frozen : bool
        Say in the store (site attribute ``probes``) that the inputs are a deeper layer's activations taken once.
    **site_kwargs
        Passed to :class:`Site` (``track_change`` defaults to True here).

    Examples
    --------
    >>> conv = torch.nn.Conv2d(1, 4, 3)
    >>> site = site_for(conv, torch.randn(6, 1, 5, 5), [0, 1] * 3, per_image=2)
    >>> site.weight.shape, site.noise.shape, sorted(site.signals), sorted(site.coords)
    (torch.Size([4, 9]), torch.Size([12, 9]), ['class0', 'class1'], ['patch_col', 'patch_image', 'patch_row'])
    """
    if noise not in ("residual", "raw"):
        raise ConfigError(f"noise must be 'residual' or 'raw', got {noise!r}")
    if not isinstance(layer, (torch.nn.Linear, *_CONV)):
        raise ConfigError(f"site_for supports Linear, Conv1d and Conv2d layers, got {type(layer).__name__}")
    y = _labels(x, y)
    if max_samples is not None and max_samples < x.shape[0]:
        g = torch.Generator(device="cpu").manual_seed(seed)
        idx = torch.randperm(x.shape[0], generator=g)[:max_samples].sort().values.to(x.device)
        x, y = x[idx], y[idx]
    coords: dict[str, Any] = {}
    if per_image is not None and not isinstance(per_image, int) and per_image != "auto":
        raise ConfigError(f"per_image must be a positive integer, 'auto' or None, got {per_image!r}")
    if isinstance(layer, _CONV):
        if per_image == "auto":
            positions = conv_patches(layer, x[:1]).vectors.shape[0]
            per_image = auto_per_image(x.shape[0], positions) if x.shape[0] * positions > DEFAULT_MAX_PATCHES else None
            if per_image is not None:
                site_kwargs["attrs"] = {"patches": f"{per_image} of {positions} positions per image (per_image='auto')",
                                        **site_kwargs.get("attrs", {})}
        patches = conv_patches(layer, x, per_image=per_image, seed=seed)
        vectors, labels = patches.vectors, y[patches.image]
        coords = patches.coords()
    elif x.dim() > 2 and x.shape[-1] == layer.in_features:
        tokens = x.shape[1:-1].numel()
        vectors, labels = x.reshape(-1, x.shape[-1]).detach(), y.repeat_interleave(tokens)
    else:
        vectors, labels = x.reshape(x.shape[0], -1).detach(), y
    vectors = vectors.to(layer.weight.dtype)
    probes = residual_noise(vectors, labels) if noise == "residual" else vectors
    signals = class_means(vectors, labels)
    extra: dict[str, Any] = {}
    if baseline:
        extra["random"] = random_baseline(probes, seed=seed)
        # the random-signal control: random directions with the signals' norms (dyn.analysis.controls)
        extra["random_signal"] = ("random_signal", random_baseline(torch.stack(list(signals.values())), seed=seed + 1))
    attrs = {"probes": f"signals: class means; noise: {'inputs minus their class mean' if noise == 'residual' else 'inputs'}"
                       + ("; random_inner: random directions with the noise probes' norms; random_signal_inner: "
                          "random directions with the signals' norms" if baseline else "")
                       + ("; frozen: a deeper layer's inputs taken once before training" if frozen else "")}
    site_kwargs.setdefault("track_change", True)
    return Site(layer.weight, signals=signals, noise=probes, labels=labels, extra=extra,
                coords={**coords, **site_kwargs.pop("coords", {})}, attrs={**attrs, **site_kwargs.pop("attrs", {})},
                **site_kwargs)


def sites_for(model: torch.nn.Module, layers: Sequence[str] | Mapping[str, str], x: torch.Tensor, y: Any,
              **kwargs: Any) -> dict[str, Site]:
    """Sites for several named layers at once; deeper layers get their inputs from one forward pass (frozen).

    Parameters
    ----------
    model : torch.nn.Module
    layers : module names (``dict(model.named_modules())`` keys), or a mapping site name → module name
        Site names default to the module names with dots replaced by underscores.
    x, y : the model's inputs and their labels.
    **kwargs
        Passed to :func:`site_for`.

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> sites = sites_for(model, ["0", "2"], torch.randn(10, 4), torch.arange(10) % 3)
    >>> {k: tuple(s.weight.shape) for k, s in sites.items()}, sites["l2"].attrs["probes"].endswith("before training")
    ({'l0': (8, 4), 'l2': (3, 8)}, True)
    """
    names = dict(layers) if isinstance(layers, Mapping) else {_site_name(n): n for n in layers}
    inputs, frozen = _layer_inputs(model, list(names.values()), x)
    modules = dict(model.named_modules())
    return {site: site_for(modules[mod], inputs[mod], y, frozen=frozen[mod], attrs={"module": mod}, **kwargs)
            for site, mod in names.items()}


def _site_name(module: str) -> str:
    name = module.replace(".", "_")
    return name if name.isidentifier() else f"l{name}"



def sites_from_store(path: str | os.PathLike, model: torch.nn.Module, layers: Mapping[str, str] | None = None,
                     ) -> dict[str, Site]:
    """Rebuild the sites of a store from its saved probes, on the live parameters of ``model`` (to resume).

    Frozen probes of deeper layers were taken at the start of the run; rebuilding them from the current model
    would change them, so a resumed recording reads them back from the store instead.

    Parameters
    ----------
    path : the run store (recorded with ``store_probes=True``).
    model : the model whose weights the sites watch.
    layers : site name → module name; by default the store's ``module`` attribute of each site.

    Raises
    ------
    StoreError
        The store does not hold a site's probes or module name.
    """
    attrs = read_attrs(path)
    modules = dict(model.named_modules())
    out = {}
    for name in attrs["sites"]:
        group = _site_attrs(path, name)
        module = (layers or {}).get(name) or group.get("module")
        if module not in modules:
            raise StoreError(f"site {name!r}: module {module!r} is not in the model")
        try:
            signals = read_static(path, name, "signal_vectors")
            noise = read_static(path, name, "noise_vectors")
        except StoreError:
            raise StoreError(f"site {name!r} of {path} stores no probe vectors: cannot rebuild it") from None
        names = [str(v) for v in read_static(path, name, "signal")]
        extra = {}
        for var, dim in group.get("extra_dims", {}).items():
            extra[var] = (dim, torch.as_tensor(read_static(path, name, f"{var}_vectors")))
        labels = _optional(path, name, "label")
        coords = {c: (dim, _optional(path, name, c)) for c, dim in group.get("coord_dims", {}).items()}
        weight = modules[module].weight
        keep = {k: group[k] for k in ("probes", "weight_shape", "module") if k in group}
        out[name] = Site(weight, signals={k: torch.as_tensor(v) for k, v in zip(names, signals)},
                         noise=torch.as_tensor(noise), labels=labels, extra=extra, coords=coords,
                         track_change=bool(group.get("track_change", False)), attrs=keep)
    return out


def _site_attrs(path: Any, site: str) -> dict[str, Any]:
    meta = Path(path) / site / "zarr.json"
    try:
        return dict(json.loads(meta.read_text()).get("attributes") or {})
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read the attributes of site {site!r} in {path}: {exc}") from None


def _optional(path: Any, site: str, name: str) -> np.ndarray | None:
    try:
        return read_static(path, site, name)
    except StoreError:
        return None
