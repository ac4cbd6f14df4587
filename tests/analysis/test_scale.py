"""Issue 22.1: a site whose probes outnumber its fan-in (n + K ≫ d) is stored and solved in O((n + K)·d) memory
(no (n + K)² Gram matrix anywhere), and its coefficients equal a float64 least-squares solve from saved weights."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import dyn
from dyn.analysis.coefficients import coefficients, decomposition_operator
from dyn.record import probes
from tests.analysis.test_projection import _brute
from tests.digits import cnn, digits, train_recorded

ROOT = Path(__file__).resolve().parents[2]

PEAK = r"""
import json, sys, tracemalloc
import numpy as np, torch
import dyn
from dyn.analysis.coefficients import coefficients
n, d, path = int(sys.argv[1]), 9, sys.argv[2]
g = torch.Generator().manual_seed(0)
w = torch.nn.Parameter(torch.randn(4, d, generator=g))
noise = torch.randn(n, d, generator=g)
site = dyn.Site(w, signals={"mu": torch.randn(d, generator=g)}, noise=noise, store_weights=False)
tracemalloc.start()
with dyn.Recorder(path, sites={"h": site}) as rec:
    for _ in range(3):
        with torch.no_grad():
            w.add_(0.01 * torch.randn(4, d, generator=g))
        rec.step()
record_peak = tracemalloc.get_traced_memory()[1]
ds = dyn.open(path)["h"].to_dataset().load()
tracemalloc.reset_peak()
base = tracemalloc.get_traced_memory()[0]
c = coefficients(ds)
rho = c["rho"].values
analysis_peak = tracemalloc.get_traced_memory()[1] - base
print(json.dumps({"record": record_peak, "analysis": analysis_peak, "gram": "gram" in ds,
                  "method": c.attrs["method"], "rank": c.attrs["rank"]}))
"""


def _peaks(n: int, tmp_path) -> dict:
    out = subprocess.run([sys.executable, "-c", PEAK, str(n), str(tmp_path / f"p{n}.zarr")], capture_output=True,
                         text=True, timeout=600, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory_is_linear_in_the_probe_count(tmp_path):
    """4x the probes, about 4x the peak of recording and of the solve (a Gram matrix would be 16x: 2 GiB at 16,001
    probes); the absolute peak stays within a few copies of the (steps, neuron, probe) float64 result."""
    small, large = _peaks(4000, tmp_path), _peaks(16000, tmp_path)
    for p in (small, large):
        assert not p["gram"] and p["method"] == "projection" and p["rank"] == 9
    for key in ("record", "analysis"):
        assert large[key] / small[key] < 6, (key, small, large)
    gram_bytes = 16001 ** 2 * 8
    assert large["analysis"] < gram_bytes / 20 and large["record"] < gram_bytes / 20, large
    # the result itself is 4 steps x 4 neurons x 16,001 probes x 8 bytes = 2 MB; the solve needs a few of those
    assert large["analysis"] < 30 * 4 * 4 * 16001 * 8, large


def test_conv_site_matches_float64_least_squares_from_saved_weights(tmp_path):
    """A conv layer's 3,840 patches of 9 pixels: no Gram in the store, the QR solve equals np.linalg.lstsq."""
    x, y = digits(60)
    model = cnn()
    conv = model[1]
    site = probes.site_for(conv, x.reshape(-1, 1, 8, 8), y, per_image=None, baseline=False)
    assert site.n_probes == 10 + 60 * 64  # 10 class means, every patch of 60 images
    weights = train_recorded(tmp_path / "c.zarr", model, {"conv": site}, x, y, steps=6)["conv"]
    ds = dyn.open(tmp_path / "c.zarr")["conv"].to_dataset()
    assert "gram" not in ds and "basis" not in ds.dims and ds.attrs["basis_store"] == "vectors"
    op = decomposition_operator(ds)
    assert op.u.shape == (ds.sizes["signal"] + ds.sizes["sample"], 9) and op.nbytes < 2 * op.u.nbytes + 1e5
    c = coefficients(ds)
    coef, cover = _brute(ds, weights)
    got = np.concatenate([c["gamma"].values, c["rho"].values], axis=2)
    np.testing.assert_allclose(got, coef, atol=1e-3 * np.abs(coef).max())
    np.testing.assert_allclose(c["span_coverage"].values[1:], cover[1:], atol=1e-4)
    # 3,840 patches span all 9 pixel directions: the class means are inside the noise span, γ is one split
    assert not c.attrs["separable"] and all(s == 0 for s in c.attrs["signal_separation"])
    assert np.isinf(c.attrs["solve_error_bound"])


def test_old_stores_with_a_gram_matrix_still_solve(tmp_path):
    """A store written before the Gram matrix was dropped (gram and vectors, n + K > d) reads the same."""
    x, y = digits(30)
    model = cnn()
    site = probes.site_for(model[1], x.reshape(-1, 1, 8, 8), y, per_image=2, baseline=False)
    train_recorded(tmp_path / "o.zarr", model, {"conv": site}, x, y, steps=3, snapshots=False)
    ds = dyn.open(tmp_path / "o.zarr")["conv"].to_dataset()
    basis = np.concatenate([ds["signal_vectors"].values, ds["noise_vectors"].values]).astype(np.float64)
    old = ds.assign(gram=(("basis", "basis_dual"), basis @ basis.T))
    new_c, old_c = coefficients(ds), coefficients(old.drop_vars(["signal_vectors", "noise_vectors"]))
    np.testing.assert_allclose(old_c["rho"].values, new_c["rho"].values, atol=1e-6 * float(abs(new_c["rho"]).max()))
