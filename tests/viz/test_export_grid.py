"""Gridded exports (NetCDF, zarr): the recording and exact coefficients on their grid, compressed, with provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import dyn
from dyn.analysis.run import Run
from dyn.cli import main
from dyn.errors import ConfigError, StoreError
from dyn.viz.export import export_grid


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grid")
    out = {}
    for modality in ("single", "multi"):
        out[modality] = folder / f"{modality}.zarr"
        dyn.train(dyn.load_preset("huang2024-tiny", modality=modality, steps=30), out[modality])
    return out


@pytest.mark.parametrize("fmt, suffix, engine", [("grid-netcdf", ".nc", "netcdf4"), ("grid-zarr", ".zarr", "zarr")])
def test_grid_export_matches_the_store(runs, tmp_path, fmt, suffix, engine):
    for modality, path in runs.items():
        out = export_grid(path, tmp_path / f"{modality}{suffix}", format=fmt)
        tree = xr.open_datatree(out, engine=engine)
        run = Run(path)
        assert sorted(tree.children) == sorted(run.sites)
        for site in run.sites:
            node = tree[site]
            assert node["rho"].dims == ("step", "neuron", "sample") and node["gamma"].dims == ("step", "neuron", "signal")
            np.testing.assert_array_equal(node["noise_inner"].values, run.site(site)["noise_inner"].values)
            np.testing.assert_allclose(node["rho"].values, run.coefficients(site)["rho"].values, rtol=1e-6, atol=1e-6)
            assert node["rho"].attrs["units"] == "1" and "noise memorization" in node["rho"].attrs["long_name"]
            if engine == "netcdf4":
                assert node["rho"].encoding.get("zlib") and node["rho"].encoding.get("shuffle")
        if modality == "single":
            assert "noise_aug_inner" in tree["h"].data_vars  # every probe set, not only the two main ones
        attrs = tree.attrs
        assert attrs["Conventions"] == "CF-1.10" and attrs["source_status"] == "complete"
        assert attrs["source_store"] == str(path.resolve()) and json.loads(attrs["config"])["steps"] == 30
        assert "dyn" in json.loads(attrs["exported_with"]) and "missing" not in tree["h"]["rho"].attrs
        assert tree["step"].attrs["long_name"].startswith("optimizer step")
        tree.close()


def test_grid_export_by_suffix_and_refuses_to_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "curves.zarr"
    assert main(["export", str(runs["multi"]), "--out", str(out)]) == 0
    assert xr.open_datatree(out, engine="zarr")["g"]["gamma"].sizes["step"] == 31
    with pytest.raises(StoreError, match="already exists"):
        export_grid(runs["multi"], out, format="grid-zarr")
    with pytest.raises(ConfigError, match="is an input of this command"):  # never an input, even with overwrite
        export_grid(runs["multi"], runs["multi"], format="grid-zarr", overwrite=True)
    assert main(["export", str(runs["multi"]), "--out", str(out), "--format", "grid-zarr", "--overwrite"]) == 0


def test_long_form_has_typed_probe_columns_every_probe_set_and_parquet_provenance(runs, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    from dyn.viz.export import export, tidy

    frame = tidy(runs["single"])
    assert "noise_aug_inner" in set(frame["quantity"])
    assert str(frame["signal"].dtype) == "string" and str(frame["sample"].dtype) == "Int64"
    signal_rows = frame["quantity"].isin(["signal_inner", "gamma"])
    assert frame.loc[signal_rows, "sample"].isna().all() and frame.loc[~signal_rows, "signal"].isna().all()
    assert (frame.loc[~signal_rows, "sample"].astype(str) == frame.loc[~signal_rows, "probe"]).all()
    out = export(runs["single"], tmp_path / "c.parquet")
    meta = json.loads(pq.read_schema(out).metadata[b"dyn"])
    assert meta["source_status"] == "complete" and json.loads(meta["config"])["steps"] == 30
    back = pd.read_parquet(out)
    assert str(back["sample"].dtype) == "Int64" and len(back) == len(frame)


@pytest.mark.parametrize("argv", [["--format", "netcdf"], []])
def test_netcdf_is_the_grid_and_holds_the_long_tables_numbers(runs, tmp_path, argv):
    """`--format netcdf` and the `.nc` suffix (the long table along `row` before) write the gridded NetCDF; every
    value of the long table (the brute-force reference: one row per step, neuron, probe) is in it."""
    from dyn.viz.export import tidy

    out = tmp_path / "curves.nc"
    assert main(["export", str(runs["single"]), "--out", str(out), *argv]) == 0
    tree = xr.open_datatree(out, engine="netcdf4")
    assert "row" not in tree.dims and tree["h"]["rho"].dims == ("step", "neuron", "sample")
    frame = tidy(runs["single"])
    for quantity, probe_dim in (("rho", "sample"), ("noise_aug_inner", "sample"), ("gamma", "signal")):
        part = frame[(frame.site == "h") & (frame.quantity == quantity)]
        node = tree["h"][quantity]
        probes = [str(p) for p in node[probe_dim].values]
        expected = part.pivot_table(index=["step", "neuron"], columns="probe", values="value")[probes]
        got = node.values.reshape(-1, len(probes))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-6, atol=1e-6)  # stored as float32
    tree.close()


def test_netcdf_refuses_reduced_or_selected_tables_naming_parquet(runs, tmp_path, capsys):
    from dyn.viz.export import export

    out = tmp_path / "curves.nc"
    assert main(["export", str(runs["single"]), "--out", str(out), "--reduce", "max"]) == 2
    err = capsys.readouterr().err
    assert "parquet" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    with pytest.raises(ConfigError, match="'parquet'"):
        export(runs["single"], out, format="grid-zarr", quantities=("gamma",))
    assert export(runs["single"], tmp_path / "c.csv", reduce="max").exists()  # the long table takes them
