"""Issue 22.4: the report of a run no theory judges is complete — the last logged loss (not "–"), every logged
scalar as a figure, the summary with its column definitions, "projection (coverage …)" wherever γ/ρ are not exact
(titles included), and the per-sample views."""

from __future__ import annotations

import re

import numpy as np
import torch

import dyn
from dyn.record import probes
from dyn.viz.report import write_report
from tests.digits import cnn, digits


def test_theory_free_report_is_complete(tmp_path):
    x, y = digits(120)
    model = cnn()
    sites = probes.sites_for(model, ["1", "4"], x, y)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    with dyn.Recorder(tmp_path / "mine.zarr", sites, optimizer=opt) as rec:
        for t in range(12):
            per = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
            loss = per.mean()
            loss.backward(); opt.step(); opt.zero_grad()
            acc = (model(x).argmax(1) == y).float().mean()
            rec.log(loss=loss, accuracy=acc)
            rec.log_per_sample(loss=per)
            losses.append(float(loss.detach()))
    out = write_report([tmp_path / "mine.zarr"], tmp_path / "rep", echo=lambda line: None, progress=False)
    md = (out / "report.md").read_text()
    last = dyn.open(tmp_path / "mine.zarr")["loss"].values
    assert np.isnan(last[-1])  # log_at="previous": the final step has no loss; the report shows the last logged one
    assert f"final loss {losses[-1]:.4g}" in md and "final accuracy" in md
    assert "Columns: **site**" in md and "noise_vs_random" in md
    assert "γ and ρ: projection (coverage" in md and "cannot separate signal from noise" in md
    assert "**More than chance?** site l1: signal learning" in md and "x" in md
    assert "**Which samples are memorized**" in md and "| rank | sample | label | patch_image" in md
    for stem in ("mine-scalars", "mine-l1-top-samples", "mine-l1-memorized", "mine-l4-top-samples",
                 "mine-l1-coefficients"):
        assert (out / f"{stem}.png").stat().st_size > 1000, stem
    page = (out / "report.html").read_text()
    cell = re.search(r"final loss</th><td[^>]*>([^<]*)<", page).group(1)
    assert cell != "–" and abs(float(cell) - losses[-1]) < 1e-3 * abs(losses[-1])
    assert "Theory-free summary" in page and "samples-table" in page and "fig-0-scalar-accuracy" in page
    assert "projection (coverage" in page and "More than chance? site l4" in page
