"""Plug-in discovery shared by the setup and theory registries.

dyn's own plug-ins are the sub-packages of a registry's package (importing one registers it); other packages add
theirs through an entry-point group. Nothing else in dyn lists the setups or theorems it knows.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Any, Callable

__all__ = ["load_plugins"]


def load_plugins(package: str, group: str, registry: dict[str, Any], register: Callable[[Any], Any]) -> None:
    """Import every sub-package of ``package`` and register the entry points of ``group`` not yet in ``registry``."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if info.ispkg:
            importlib.import_module(f"{package}.{info.name}")
    for ep in entry_points(group=group):
        if ep.name not in registry:
            register(ep.load())
