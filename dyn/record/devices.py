"""Devices: the torch device a run asks for, checked against this machine when training starts."""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """A torch device that exists on this machine, or a one-line ConfigError naming the problem.

    Checked when training starts, not when a config is read, so runs recorded on a GPU can be analysed anywhere.
    """
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {name!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1', 'mps')") from None
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available() and (dev.index is None or dev.index < torch.cuda.device_count()),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
    }.get(dev.type, True)
    if not available:
        raise ConfigError(f"device {name!r} is not available on this machine (set device=cpu)")
    return dev
