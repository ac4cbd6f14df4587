"""``.dyn`` accessors on xarray objects, for notebooks.

On a run tree (``tree = dyn.open(path)``): ``tree.dyn.compare()``, ``tree.dyn.coefficients("h")``,
``tree.dyn.regime()``. On a site dataset (``ds = tree["h"].to_dataset()``): ``ds.dyn.coefficients()``,
``ds.dyn.reconstruction_residual()``; ``ds.dyn.compare()`` on a dataset that carries the run's root attributes
(e.g. ``xr.open_zarr(path)``) is answered from its ``source`` path. The theory defaults to the one registered for
the run's setup.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import xarray as xr

from ..errors import StoreError

__all__ = ["DatasetAccessor", "DataTreeAccessor"]


@xr.register_dataset_accessor("dyn")
class DatasetAccessor:
    """``ds.dyn``: analysis of one site group."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def coefficients(self) -> xr.Dataset:
        """Exact γ and ρ (:func:`dyn.coefficients.coefficients`)."""
        from ..analysis.coefficients import coefficients

        return coefficients(self._ds)

    def reconstruction_residual(self) -> dict[str, float]:
        """How well the exact coefficients rebuild the stored final weights."""
        from ..analysis.coefficients import reconstruction_residual

        return reconstruction_residual(self._ds)

    def compare(self, theory: str | None = None) -> pd.DataFrame:
        """Claim-by-claim comparison of the run this dataset was read from."""
        from ..theory.compare import compare

        source = self._ds.encoding.get("source")
        if source is None or "dyn_schema_version" not in self._ds.attrs:
            raise StoreError("compare needs the whole run: use dyn.open(path).dyn.compare() or dyn.compare(path)")
        return compare(source, theory)


@xr.register_datatree_accessor("dyn")
class DataTreeAccessor:
    """``tree.dyn``: analysis of a whole run."""

    def __init__(self, tree: xr.DataTree):
        self._tree = tree
        self._run = None

    @property
    def run(self):
        """The tree as a :class:`dyn.run.Run` (exact coefficients cached)."""
        if self._run is None:
            from ..analysis.run import Run

            self._run = Run(self._tree)
        return self._run

    def coefficients(self, site: str | None = None) -> xr.Dataset:
        """Exact γ and ρ of ``site`` (default: the run's first site)."""
        return self.run.coefficients(self.run.sites[0] if site is None else site)

    def compare(self, theory: str | None = None) -> pd.DataFrame:
        """Claim-by-claim comparison with ``theory`` (default: the run's setup's)."""
        from ..theory.compare import compare

        return compare(self.run, theory)

    def regime(self, theory: str | None = None) -> dict[str, Any]:
        """Who wins, signal learning or noise memorization, and what the theory predicted."""
        from ..theory.compare import regime

        return regime(self.run, theory)
