"""A recorded run as analysis code sees it: the validated store plus cached derived quantities.

Theories check their claims against a :class:`Run`; nothing here knows about any particular theorem.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .coefficients import coefficients, proof_quantities
from .errors import StoreError
from .store import open_run, reading

__all__ = ["Run"]


class Run:
    """Read access to one run store, with exact coefficients computed once per site.

    Parameters
    ----------
    source : path or xarray.DataTree
        A run store path or an already opened tree (``dyn.open(path)``).
    chunks : dict or None
        Passed to xarray when opening a path: ``{}`` keeps the recording on disk (dask), ``None`` loads it.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.zarr")
    >>> _ = dyn.train(dyn.Config(d=60, n=8, m=4, steps=5), path)
    >>> run = Run(path)
    >>> run.sites, run.config["n"], run.coefficients("h")["gamma"].dims
    (['h'], 8, ('step', 'neuron', 'signal'))
    """

    def __init__(self, source: str | os.PathLike | xr.DataTree, *, chunks: dict | None = None):
        if isinstance(source, xr.DataTree):
            self.tree = source
            where = source.encoding.get("source")  # set by xarray when the tree was read from a store
            self.path = Path(where) if where else None
        else:
            self.path = Path(source)
            self.tree = open_run(self.path, chunks=chunks)
        self.attrs: dict[str, Any] = dict(self.tree.attrs)
        self._coeffs: dict[str, xr.Dataset] = {}
        self._proof: dict[str, xr.Dataset] = {}

    @property
    def name(self) -> str:
        if self.path is not None:
            return self.path.name.removesuffix(".zarr")
        return str(self.attrs.get("modality", "run"))

    @property
    def config(self) -> dict[str, Any]:
        cfg = self.attrs.get("config")
        if not isinstance(cfg, dict):
            raise StoreError("run has no config attribute (recorded without config=...)")
        return cfg

    @property
    def sites(self) -> list[str]:
        return list(self.attrs.get("sites", list(self.tree.children)))

    @cached_property
    def steps(self) -> np.ndarray:
        with reading(self.path, "step"):
            return np.asarray(self.tree["step"].values)

    def site(self, name: str) -> xr.Dataset:
        if name not in self.tree.children:
            raise StoreError(f"run has no site {name!r} (sites: {', '.join(self.sites)})")
        return self.tree[name].to_dataset()

    def scalar(self, name: str) -> np.ndarray | None:
        """A logged per-step scalar (e.g. ``loss``), or None if it was not logged."""
        if name not in self.tree.ds.data_vars:
            return None
        with reading(self.path, name):
            return np.asarray(self.tree[name].values, dtype=np.float64)

    def coefficients(self, site: str) -> xr.Dataset:
        """Exact γ/ρ of a site (:func:`dyn.coefficients.coefficients`), computed once and kept in memory."""
        if site not in self._coeffs:
            with reading(self.path, f"site {site!r}"):
                self._coeffs[site] = coefficients(self.site(site)).compute()
        return self._coeffs[site]

    def proof(self, site: str) -> xr.Dataset:
        """A, Ψ and the sign sets of a site (:func:`dyn.coefficients.proof_quantities`)."""
        if site not in self._proof:
            coeffs = self.coefficients(site)
            with reading(self.path, f"site {site!r}"):
                self._proof[site] = proof_quantities(self.site(site), coeffs).compute()
        return self._proof[site]

    def mean_negatives(self) -> float:
        """Average number of negatives M per anchor, from the config and the stored labels."""
        neg = self.config.get("negatives", "all")
        if isinstance(neg, int):
            return float(neg)
        labels = np.asarray(self.site(self.sites[0])["label"].values)
        return float(np.mean([(labels != y).sum() for y in labels]))
