"""Comparing two run stores variable by variable: a batched run against the same run trained alone, shared by the
batch trainers' tests."""

from __future__ import annotations

import numpy as np
import xarray as xr

#: Root attributes that differ between two recordings of the same run: when each was made, and the batch size.
RUN_TIMES = ("created", "closed", "batched")


def max_store_difference(a_path, b_path, *, root_attrs_except: tuple[str, ...] | None = RUN_TIMES) -> float:
    """Largest relative difference (to the largest magnitude of ``b``'s variable) over every float variable of every
    group of two run stores.

    Asserts that the stores have the same groups, variables, dims, shapes and variable and group attributes; the
    same non-float values; NaN and ±inf at the same places; and, unless ``root_attrs_except`` is None, the same root
    attributes apart from those named.
    """
    a, b = xr.open_datatree(a_path, engine="zarr"), xr.open_datatree(b_path, engine="zarr")
    assert sorted(a.children) == sorted(b.children)
    if root_attrs_except is not None:
        skip = set(root_attrs_except)
        assert {k: v for k, v in a.attrs.items() if k not in skip} == {k: v for k, v in b.attrs.items() if k not in skip}
    worst = 0.0
    for node in ["/", *(f"/{g}" for g in a.children)]:
        if node != "/":
            assert a[node].attrs == b[node].attrs, node
        da, db = a[node].to_dataset(), b[node].to_dataset()
        assert sorted(da.variables) == sorted(db.variables), node
        for name in da.variables:
            x, y = da[name], db[name]
            assert x.dims == y.dims and x.shape == y.shape and x.attrs == y.attrs, (node, name)
            xv, yv = np.asarray(x.values), np.asarray(y.values)
            if xv.dtype.kind == "f":
                finite = np.isfinite(xv)
                assert np.array_equal(finite, np.isfinite(yv)), (node, name)
                np.testing.assert_array_equal(xv[~finite], yv[~finite], err_msg=f"{node}{name}")  # NaN, ±inf
                if finite.any():
                    scale = max(float(np.abs(yv[finite]).max()), 1e-6)
                    worst = max(worst, float(np.abs(xv[finite] - yv[finite]).max()) / scale)
            else:
                np.testing.assert_array_equal(xv, yv, err_msg=f"{node}{name}")
    return worst
