"""The interactive HTML report in a real headless Chromium: no console errors, figures drawn, tables = CSV.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them; the browser is never downloaded).
Skipped only where they are absent and ``CI`` is not set; in CI a missing browser is a failure.
"""

from __future__ import annotations

import pandas as pd
import pytest

import dyn
from dyn.viz.report import write_report
from tests.browser import browser, load as _load, skip_without_browser  # noqa: F401 (browser: a fixture)

skip_without_browser()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    runs = []
    for modality in ("single", "multi"):
        path = folder / f"{modality}.zarr"
        dyn.train(dyn.load_preset("huang2024-tiny", modality=modality, steps=40), path)
        runs.append(path)
    out = write_report(runs, folder / "report", echo=lambda *a: None)
    return out


def test_report_loads_without_errors_and_draws_every_figure(report, browser):
    page = report / "report.html"
    text = page.read_text()
    assert "<script src" not in text and "<link " not in text  # nothing fetched: opens offline
    assert _load(browser, page) == []
    n = browser.execute_script("return document.querySelectorAll('.plotly-graph-div').length")
    assert n == 2 + 2 * 1 + 2 * 2  # loss, signal vs noise; single run: h (γ, ρ); multi run: h and g (γ, ρ)
    ids = browser.execute_script("return Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => d.id)")
    gd = next(i for i in ids if i.startswith("fig-1-1-"))  # the second site (g) of the second run is drawn
    traces = browser.execute_script(f"return document.getElementById('{gd}').data.map(t => t.name)")
    assert sum(t.startswith("neuron ") for t in traces) == 8 and "max over neurons" in traces  # per-neuron traces


def test_log_linear_toggle_switches_the_axis(report, browser):
    assert _load(browser, report / "report.html") == []
    get = "return document.getElementById('fig-loss').layout.yaxis.type"
    assert browser.execute_script(get) == "log"
    browser.find_element("id", "fig-loss-toggle").click()
    assert browser.execute_script(get) == "linear"
    browser.find_element("id", "fig-loss-toggle").click()
    assert browser.execute_script(get) == "log"


def test_tables_hold_the_numbers_of_the_csv(report, browser):
    assert _load(browser, report / "report.html") == []
    for name in ("single", "multi"):
        csv = pd.read_csv(report / f"{name}-verdicts.csv", keep_default_na=False)
        rows = browser.execute_script(
            "return Array.from(document.querySelectorAll(`table.claim-table[data-run='" + name + "'] tr`)).slice(1)"
            ".map(tr => Array.from(tr.cells).map(td => td.textContent))")
        assert len(rows) == len(csv)
        for row, expected in zip(rows, csv.itertuples(index=False)):
            assert row[:6] == [str(expected.claim), str(expected.stage), str(expected.statement),
                               str(expected.predicted), str(expected.observed), str(expected.verdict)]
    summary = browser.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('#summary tr')).slice(1)"
        ".map(tr => [tr.cells[0].textContent, Array.from(tr.cells).slice(1).map(td => td.textContent)]))")
    assert summary["recorded steps"] == ["41", "41"]
    # the same digest as report.md (issue 21 item 10: the HTML counted conditions as claims, 13 violated vs 5)
    markdown = (report / "report.md").read_text()
    for i, name in enumerate(("single", "multi")):
        line = next(x for x in markdown.split(f"## {name}\n", 1)[1].splitlines() if x.startswith("**Summary.**"))
        for label in ("tests of the theorem (hypotheses met)", "predictions outside its assumptions", "assumptions"):
            assert f"{label}: {summary[label][i]}" in line


def test_a_broken_report_is_caught(report, browser, tmp_path):
    text = (report / "report.html").read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("<script>", "<script>throw new Error('deliberately broken');", 1))
    problems = _load(browser, broken, timeout=10.0)  # nothing will draw: do not wait the full bound
    assert any("deliberately broken" in p for p in problems) and any("figures drawn: 0" in p for p in problems)


def test_axes_use_1e_ticks_and_each_run_site_pair_its_own_colour(report, browser):
    """Issue 23: Plotly's SI prefixes printed "100μ" on γ axes (μ is the signal vector there), and multi/h and
    multi/g were drawn in one colour."""
    assert _load(browser, report / "report.html") == []
    ticks = browser.execute_script(
        "return Array.from(document.querySelectorAll('.plotly-graph-div .ytick text, .plotly-graph-div .xtick text'))"
        ".map(t => t.textContent)")
    assert ticks and not [t for t in ticks if "μ" in t or "m" == t[-1:]], ticks
    small = browser.execute_script("return Array.from(document.querySelectorAll('#fig-0-0-gamma .ytick text'))"
                                   ".map(t => t.textContent)")
    assert any("e-" in t or t in ("0.1", "0.01") for t in small), small
    colours = browser.execute_script(
        "return Object.fromEntries(document.getElementById('fig-versus').data.map(t => [t.name, t.line.color]))")
    gamma = {name.split(":")[0]: c for name, c in colours.items() if name.endswith("max |γ|")}
    assert set(gamma) == {"single / h", "multi / h", "multi / g"} and len(set(gamma.values())) == 3, gamma
    summary = browser.execute_script(
        "return Array.from(document.querySelectorAll('#summary tr th:first-child')).map(th => th.textContent)")
    regime = [s for s in summary if s.startswith("regime:")]
    assert "regime: assumptions not met" in regime and not [s for s in regime if "_" in s], regime
    cells = browser.execute_script("return Array.from(document.querySelectorAll('#summary td')).map(td => td.textContent)")
    assert not [c for c in cells if c.startswith("[") or "'" in c], cells
    sites = browser.execute_script("return document.getElementById('sites').textContent")
    assert "site g" in sites and "encoder of the second modality" in sites, sites
