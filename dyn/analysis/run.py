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

from .coefficients import coefficients
from ..errors import StoreError
from ..store import open_run, reading, run_status
from ..store.reader import is_url, local_path

__all__ = ["Run"]


class Run:
    """Read access to one run store, with exact coefficients computed once per site.

    Derived quantities that theories compute from the run (fits, bootstraps) can be kept in :attr:`cache`, keyed
    by whatever they depend on; the run itself is read-only.

    Parameters
    ----------
    source : path, URL or xarray.DataTree
        A run store path, an fsspec URL read-only (``s3://…``, ``zip://run.zarr::runs.zip``; see
        :func:`dyn.open`), or an already opened tree (``dyn.open(path)``).
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
        self.path: Path | str | None  # a local store's folder, a URL (str), or None for a tree in memory
        if isinstance(source, xr.DataTree):
            self.tree = source
            where = source.encoding.get("source")  # set by xarray when the tree was read from a store
            self.path = (where if is_url(where) else Path(where)) if where else None
        elif is_url(source):
            self.path = str(source)  # a URL stays a string: a Path would fold its "//"
            self.tree = open_run(self.path, chunks=chunks)
        else:
            self.path = local_path(source)
            self.tree = open_run(self.path, chunks=chunks)
        self.attrs: dict[str, Any] = dict(self.tree.attrs)
        if isinstance(self.path, Path) and self.attrs.get("status") == "running" and self.path.is_dir():
            self.attrs["status"] = run_status(self.path, self.attrs)  # "stale" when its writer is gone
        self._coeffs: dict[str, xr.Dataset] = {}
        self.cache: dict[Any, Any] = {}

    @classmethod
    def coerce(cls, run: "str | os.PathLike | xr.DataTree | Run") -> "Run":
        """``run`` itself if it is a :class:`Run`, else the run at that path or of that tree."""
        if isinstance(run, cls):
            return run
        if not isinstance(run, (str, os.PathLike, xr.DataTree)):
            raise StoreError(f"expected a run (a store path, dyn.open(path) or dyn.Run), got {type(run).__name__}")
        return cls(run)

    @property
    def setup(self) -> str | None:
        """The setup (paper experiment) that produced the run, or None for a user's own loop."""
        value = self.attrs.get("setup")
        return str(value) if value else None

    @property
    def name(self) -> str:
        if isinstance(self.path, str):  # a URL: the last part of its path (zip://run.zarr::runs.zip → run)
            return self.path.split("::", 1)[0].rstrip("/").rsplit("/", 1)[-1].removesuffix(".zarr")
        if self.path is not None:
            return self.path.name.removesuffix(".zarr")
        return str(self.attrs.get("preset") or self.setup or "run")

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
