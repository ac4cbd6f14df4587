"""dyn analyze / dyn export end to end, plots, and their bad inputs."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import dyn
from dyn.cli import main
from dyn.viz.export import tidy


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for modality in ("single", "multi"):
        dyn.train(dyn.load_preset("huang2024-tiny", modality=modality), root / f"{modality}.zarr")
    return root


def test_analyze_writes_report_tables_and_figures(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["analyze", str(runs / "single.zarr"), str(runs / "multi.zarr"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== single" in printed and "== multi" in printed
    # the runs side by side first, then the two-level summary of each run
    assert printed.index("runs side by side") < printed.index("== single")
    assert "tests of the theorem (hypotheses met):" in printed and "predictions outside its assumptions:" in printed
    assert "statement:" in printed and "NOT MET" in printed
    report = (out / "report.md").read_text()
    for name in ("single-coefficients", "multi-heatmap-gamma", "signal-vs-noise"):
        assert (out / f"{name}.png").stat().st_size > 1000 and (out / f"{name}.svg").exists()
        assert f"({name}.png)" in report
    assert report.index("## The runs side by side") < report.index("## single")
    overview = report.split("## The runs side by side")[1].split("\n\n")[1].splitlines()
    assert len(overview) > 10 and {len(re.split(r"(?<!\\)\|", line)) for line in overview} == {5}  # escaped cells
    for symbol in ("**A**", "**Psi**", "**beta**", "**I+(0)**", "**W***"):
        assert report.count(symbol) == 1  # defined once
    table = pd.read_csv(out / "single-verdicts.csv")
    assert set(table["verdict"]) <= {"holds", "violated", "not checkable"}
    assert {"statement", "hypotheses_met", "unmet", "reason"} <= set(table.columns)
    # every claim's statement and its full observation are in the report (the old one cut cells at 60 characters)
    flat = " ".join(printed.split())  # the terminal wraps long cells; it never cuts them
    for row in table.itertuples():
        assert row.statement.replace("|", "\\|") in report
        if isinstance(row.observed, str):
            assert row.observed.replace("|", "\\|") in report and " ".join(row.observed.split()) in flat
    numbers = pd.read_csv(out / "single-numbers.csv")
    assert list(numbers.columns) == ["claim", "quantity", "value", "text"] and len(numbers) > 10


def test_analyze_a_multi_modal_run_at_a_huge_learning_rate(tmp_path):
    """Regression (issue 9, defect 4): eta = 1 multi-modal crashed analyze."""
    path = tmp_path / "hot.zarr"
    dyn.train(dyn.load_preset("huang2024-tiny", modality="multi", eta=1.0, steps=30), path)
    assert main(["analyze", str(path), "--out", str(tmp_path / "rep")]) == 0
    assert "hot" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.parametrize("fmt, suffix", [("csv", "csv"), ("parquet", "parquet")])
@pytest.mark.parametrize("reduce", ["none", "max"])
def test_export_round_trip(runs, tmp_path, fmt, suffix, reduce):
    out = tmp_path / f"curves.{suffix}"
    assert main(["export", str(runs / "multi.zarr"), "--format", fmt, "--out", str(out), "--reduce", reduce]) == 0
    expected = tidy(runs / "multi.zarr", reduce=reduce)
    if fmt == "csv":
        got = pd.read_csv(out, dtype={"probe": str}, keep_default_na=False, na_values={"neuron": [""]})
    else:
        got = pd.read_parquet(out)
    assert len(got) == len(expected)
    assert set(got["quantity"]) == {"signal_inner", "noise_inner", "gamma", "rho"}
    np.testing.assert_allclose(got["value"].to_numpy(float), expected["value"].to_numpy(float), rtol=1e-12)
    assert got["step"].astype(int).tolist() == expected["step"].tolist()
    assert got["probe"].astype(str).tolist() == expected["probe"].tolist()
    n_rows_full = 61 * 8 * (1 + 20) * 2 * 2  # steps x neurons x (signals + samples) x (inner, coeff) x sites
    assert len(expected) == (n_rows_full if reduce == "none" else 61 * 2 * 2 * 2)


def test_tidy_matches_store_values(runs):
    frame = tidy(runs / "single.zarr")
    tree = dyn.open(runs / "single.zarr")
    row = frame[(frame.quantity == "noise_inner") & (frame.step == 7) & (frame.neuron == 3) & (frame.probe == "5")]
    assert row["value"].item() == pytest.approx(float(tree["h"]["noise_inner"].sel(step=7, neuron=3, sample=5)))


def test_plots_return_figures(runs):
    run = dyn.Run(runs / "single.zarr")
    figs = [dyn.plot_coefficients(run), dyn.plot_coefficients(run, quantities=("gamma", "rho"), logy=False, reduce="mean"),
            dyn.plot_signal_vs_noise({"single": run, "multi": runs / "multi.zarr"}, coefficients_kind="proxy"),
            dyn.plot_heatmap(run, quantity="Psi")]
    assert all(isinstance(f, Figure) for f in figs)
    with pytest.raises(dyn.ConfigError, match="unknown quantity"):
        dyn.plot_heatmap(run, quantity="delta")


def _one_line_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_analyze_and_export_bad_input(runs, tmp_path, capsys):
    good = str(runs / "single.zarr")
    _one_line_exit_2(capsys, ["analyze", good, "--out", str(tmp_path / "a"), "--theory", "nope"], "unknown theory 'nope'")
    _one_line_exit_2(capsys, ["analyze", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "a")], "does not exist")
    # a store from a newer schema
    newer = tmp_path / "newer.zarr"
    import shutil

    shutil.copytree(runs / "single.zarr", newer)
    meta = json.loads((newer / "zarr.json").read_text())
    meta["attributes"]["dyn_schema_version"] = 99
    meta["consolidated_metadata"] = None
    (newer / "zarr.json").write_text(json.dumps(meta))
    _one_line_exit_2(capsys, ["analyze", str(newer), "--out", str(tmp_path / "a")], "newer than this dyn supports")
    # a store with a missing site group
    broken = tmp_path / "broken.zarr"
    shutil.copytree(runs / "single.zarr", broken)
    shutil.rmtree(broken / "h")
    meta = json.loads((broken / "zarr.json").read_text())
    meta["consolidated_metadata"] = None
    (broken / "zarr.json").write_text(json.dumps(meta))
    _one_line_exit_2(capsys, ["export", str(broken), "--out", str(tmp_path / "x.csv")], "missing site group 'h'")
    # output folder that cannot be written (its parent is a file)
    (tmp_path / "file").write_text("x")
    _one_line_exit_2(capsys, ["analyze", good, "--out", str(tmp_path / "file" / "rep")], "is a file, not a folder")
    _one_line_exit_2(capsys, ["export", good, "--out", str(tmp_path / "file" / "c.csv")], "is a file, not a folder")
    # unknown format from the suffix; existing outputs are left untouched
    _one_line_exit_2(capsys, ["export", good, "--out", str(tmp_path / "c.xlsx")], "cannot tell the format")
    (tmp_path / "keep.csv").write_text("mine")
    _one_line_exit_2(capsys, ["export", good, "--out", str(tmp_path / "keep.csv")], "already exists")
    assert (tmp_path / "keep.csv").read_text() == "mine"
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "notes.md").write_text("mine")
    _one_line_exit_2(capsys, ["analyze", good, "--out", str(tmp_path / "rep")], "not empty")
    assert (tmp_path / "rep" / "notes.md").read_text() == "mine"
    assert not list(tmp_path.glob(".*partial*")) and not list(tmp_path.glob(".rep.*"))
    with pytest.raises(SystemExit) as exc:
        main(["export", good, "--format", "xlsx", "--out", str(tmp_path / "c.x")])
    assert exc.value.code == 2


def test_terminal_markdown_and_html_show_one_digest(runs, tmp_path, capsys):
    """Regression (issue 21 item 10): report.html counted the assumption rows as claims ("13 violated") where
    report.md said 5, showed "False" for the unmet hypotheses and opened with the store and config."""
    import html as html_lib

    from dyn.viz.report import digest

    out = tmp_path / "report"
    assert main(["analyze", str(runs / "single.zarr"), str(runs / "multi.zarr"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    markdown = (out / "report.md").read_text()
    page = html_lib.unescape((out / "report.html").read_text())
    for name in ("single", "multi"):
        counts = digest(dyn.compare(runs / f"{name}.zarr"))
        for label, text in counts.items():
            assert f"{label}: {text}" in printed and f"{label}: {text}" in markdown
            assert f"<th>{label}</th>" in page and f">{text}<" in page
        section = markdown.split(f"## {name}\n", 1)[1]
        assert section.index("**Summary.**") < section.index("Config:")
    assert "claims violated" not in page and 'class="hypotheses_met">False<' not in page
    assert 'class="hypotheses_met">not met: assumption.' in page
    summary = page.split('<table id="summary">', 1)[1].split("</table>", 1)[0]
    assert summary.index("tests of the theorem") < summary.index("<th>store</th>") < summary.index("config: ")
