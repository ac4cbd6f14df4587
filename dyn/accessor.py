"""``.dyn`` accessors on xarray objects, for notebooks.

On a run tree (``tree = dyn.open(path)``): ``tree.dyn.compare()``, ``tree.dyn.coefficients("h")``,
``tree.dyn.regime()``. On a site dataset (``ds = tree["h"].to_dataset()``): ``ds.dyn.coefficients()``,
``ds.dyn.proof_quantities()``, ``ds.dyn.reconstruction_residual()``; ``ds.dyn.compare()`` on a dataset that
carries the run's root attributes (e.g. ``xr.open_zarr(path)``) is answered from its ``source`` path.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import xarray as xr

from .errors import StoreError

__all__ = ["DatasetAccessor", "DataTreeAccessor"]


@xr.register_dataset_accessor("dyn")
class DatasetAccessor:
    """``ds.dyn``: analysis of one site group."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def coefficients(self) -> xr.Dataset:
        """Exact γ and ρ (:func:`dyn.coefficients.coefficients`)."""
        from .coefficients import coefficients

        return coefficients(self._ds)

    def proof_quantities(self) -> xr.Dataset:
        """A, Ψ and the sign sets (:func:`dyn.coefficients.proof_quantities`)."""
        from .coefficients import proof_quantities

        return proof_quantities(self._ds)

    def reconstruction_residual(self) -> dict[str, float]:
        """How well the exact coefficients rebuild the stored final weights."""
        from .coefficients import reconstruction_residual

        return reconstruction_residual(self._ds)

    def compare(self, theory: str = "huang2024") -> pd.DataFrame:
        """Claim-by-claim comparison of the run this dataset was read from."""
        from .compare import compare

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
            from .run import Run

            self._run = Run(self._tree)
        return self._run

    def coefficients(self, site: str = "h") -> xr.Dataset:
        return self.run.coefficients(site)

    def compare(self, theory: str = "huang2024") -> pd.DataFrame:
        from .compare import compare

        return compare(self.run, theory)

    def regime(self, theory: str = "huang2024") -> dict[str, Any]:
        from .compare import regime

        return regime(self.run, theory)
