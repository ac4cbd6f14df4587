"""Issue 22 (done when): the HTML report of a user's own CNN — digits, ``probes.sites_for`` defaults, no theory
judges it — shows the summary with its column definitions, every logged scalar, γ/ρ as "projection (coverage …)",
the per-sample views and the controls, checked from the DOM a headless Chromium renders (not from the file text).

Each ``check_*`` raises AssertionError naming what is missing; the doctored pages below show that each one fails
when its section is empty or broken, and a run without a per-sample log or a shuffled-label control shows that
section's stated absence, which the strict checks refuse.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from numpy.testing import assert_allclose

import dyn
from dyn.record import probes
from dyn.viz.report import write_report
from tests.browser import browser, load, skip_without_browser  # noqa: F401 (browser: a fixture)
from tests.digits import cnn, digits

skip_without_browser()

SITES = ("l1", "l4")  # the conv layer (its 3×3 patches) and the linear head, as probes.sites_for names them
STEPS = 10


def _record(path: Path, x: torch.Tensor, labels: torch.Tensor, *, per_sample: bool) -> list[float]:
    """Full-batch SGD on the small CNN with the default sites; returns the logged losses."""
    model = cnn()
    sites = probes.sites_for(model, ["1", "4"], x, labels)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    losses = []
    with dyn.Recorder(path, sites, optimizer=opt, overwrite=True) as rec:
        for _ in range(STEPS):
            per = torch.nn.functional.cross_entropy(model(x), labels, reduction="none")
            loss = per.mean()
            loss.backward(); opt.step(); opt.zero_grad()
            rec.log(loss=loss, accuracy=(model(x).argmax(1) == labels).float().mean())
            if per_sample:
                rec.log_per_sample(loss=per)
            losses.append(float(loss.detach()))
    return losses


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The user's run with a shuffled-label control, and the same run without a per-sample log or control."""
    folder = tmp_path_factory.mktemp("theory-free")
    x, y = digits(120)
    losses = _record(folder / "mine.zarr", x, y, per_sample=True)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    _record(folder / "shuffled.zarr", x, shuffled, per_sample=True)
    _record(folder / "bare.zarr", x, y, per_sample=False)
    quiet = dict(echo=lambda line: None, progress=False)
    full = write_report([folder / "mine.zarr"], folder / "full", shuffled=folder / "shuffled.zarr", **quiet)
    bare = write_report([folder / "bare.zarr"], folder / "bare", **quiet)
    return {"full": full / "report.html", "bare": bare / "report.html", "losses": losses, "folder": folder}


def _js(driver, script: str, *args):
    return driver.execute_script(script, *args)


# -- the checks, each on the rendered DOM -------------------------------------------------------------------------
def check_summary(driver, key: str = "0") -> None:
    """dyn.summary's table has one filled row per site, and every column is defined below it."""
    head = _js(driver, f"return Array.from(document.querySelectorAll('#summary-{key} table.summary-table thead th'))"
                       ".map(th => th.textContent)")
    rows = _js(driver, f"return Array.from(document.querySelectorAll('#summary-{key} table.summary-table tbody tr'))"
                       ".map(tr => Array.from(tr.cells).map(td => td.textContent.trim()))")
    assert head and [r[0] for r in rows] == list(SITES), f"summary table: columns {head}, rows {rows}"
    assert all(len(r) == len(head) and all(r) for r in rows), f"summary table has empty cells: {rows}"
    assert {"method", "coverage_min", "noise_vs_random", "winner"} <= set(head), head
    defined = _js(driver, f"return Array.from(document.querySelectorAll('#columns-{key} dt')).map(dt => dt.textContent)")
    names = {part.strip() for term in defined for part in term.split("/")}
    missing = [c for c in head if c not in names]
    assert not missing, f"summary columns without a definition: {missing}"
    dd = _js(driver, f"return Array.from(document.querySelectorAll('#columns-{key} dd')).map(d => d.textContent)")
    assert len(dd) == len(defined) and all(d.strip() for d in dd), "a column definition is empty"


def check_scalars(driver, logged: dict[str, float], key: str = "0") -> None:
    """A drawn figure per logged scalar whose last point is the last logged value; "final loss" in the run table
    and the last-logged line are that value."""
    for name, last in logged.items():
        fig = f"fig-{key}-scalar-{name}"
        y = _js(driver, f"var gd = document.getElementById('{fig}');"
                        "return gd && gd._fullData ? Array.from(gd._fullData[0].y) : null")
        assert y, f"no drawn figure for the logged scalar {name!r}"
        assert_allclose(y[-1], last, rtol=1e-6, err_msg=f"{name}: last point of its figure")
        title = _js(driver, f"return document.querySelector('#{fig} .gtitle')?.textContent || ''")
        assert f"last logged {last:.4g}" in title, f"{name}: title {title!r}"
    final = _js(driver, "return Array.from(document.querySelectorAll('#summary tr'))"
                        ".filter(tr => tr.cells[0].textContent === 'final loss').map(tr => tr.cells[1].textContent)")
    assert final and final[0] != "–", f"final loss cell: {final}"
    assert_allclose(float(final[0]), logged["loss"], rtol=1e-3, err_msg="final loss in the run table")
    line = _js(driver, f"return document.getElementById('last-logged-{key}')?.textContent || ''")
    for name, last in logged.items():
        assert f"final {name} {last:.4g}" in line, f"last logged values: {line!r}"


def check_projection_titles(driver, key: str = "0") -> None:
    """Every γ/ρ figure of a site whose decomposition is not exact says "projection (coverage …)" in its title."""
    for j, site in enumerate(SITES):
        text = _js(driver, f"return document.querySelector('#site-{key}-{site} .decomposition')?.textContent || ''")
        assert text.startswith("γ and ρ: projection (coverage"), f"site {site}: {text!r}"
        for quantity in ("gamma", "rho"):
            title = _js(driver, f"return document.querySelector('#fig-{key}-{j}-{quantity} .gtitle')?.textContent")
            assert title and f"site {site}" in title and "projection (coverage " in title, f"{quantity}: {title!r}"


def check_samples(driver, site: str, *, logged: list[str], rows: int = 10, key: str = "0") -> None:
    """The per-sample section: ``rows`` filled table rows (ranks 1.., with the columns logged per sample), the
    stated per-sample log, the top-k figure and the "memorized first" curve, both drawn."""
    sel = f"#site-{key}-{site}"
    head = _js(driver, f"return Array.from(document.querySelectorAll('{sel} table.samples-table thead th'))"
                       ".map(th => th.textContent)")
    body = _js(driver, f"return Array.from(document.querySelectorAll('{sel} table.samples-table tbody tr'))"
                       ".map(tr => Array.from(tr.cells).map(td => td.textContent.trim()))")
    assert len(body) == rows, f"site {site}: {len(body)} sample rows, expected {rows}"
    assert [r[0] for r in body] == [str(i) for i in range(1, rows + 1)], f"site {site}: ranks {[r[0] for r in body]}"
    assert all(len(r) == len(head) and all(r) for r in body), f"site {site}: empty cells"
    assert {"sample", "rho_max", "onset", "memorized"} <= set(head), head
    note = _js(driver, f"return document.querySelector('{sel} .per-sample')?.textContent || ''")
    if logged:
        assert set(logged) <= set(head), f"site {site}: per-sample columns {logged} missing from {head}"
        assert note.startswith("Logged per sample") and all(n in note for n in logged), note
    else:
        assert note.startswith("No per-sample values were logged"), f"site {site}: {note!r}"
    for cls in ("top-samples", "memorized-first"):
        size = _js(driver, f"var im = document.querySelector('{sel} img.{cls}');"
                           "return im ? [im.complete, im.naturalWidth, im.getBoundingClientRect().height] : null")
        assert size and size[0] and size[1] > 0 and size[2] > 0, f"site {site}: figure {cls} not drawn ({size})"
    curves = _js(driver, f"return document.querySelector('{sel} img.memorized-first').alt")
    assert "memorized first" in curves


_MARGIN = r"x[0-9.e+-]+"


def check_controls(driver, site: str, *, shuffled: bool, key: str = "0") -> None:
    """The controls' statement names both quantities with a verdict and a margin per control (the shuffled-label
    run's when given)."""
    text = _js(driver, f"return document.querySelector('#site-{key}-{site} .controls')?.textContent || ''")
    verdict = r"(clearly above|above|not above) chance"
    signal = rf"signal learning {verdict} \({_MARGIN} random signal" + (rf", {_MARGIN} shuffled labels" if shuffled
                                                                         else "") + r"\)"
    noise = rf"noise memorization {verdict} \({_MARGIN} random directions" + (rf", {_MARGIN} shuffled labels"
                                                                              if shuffled else "") + r"\)"
    assert re.search(rf"More than chance\? site {site}: {signal}; {noise}", text), f"site {site}: {text!r}"


def check_rendered(driver) -> None:
    """Every <img> decoded with a size and every Plotly figure's SVG laid out with a size."""
    images = _js(driver, "return Array.from(document.images).map(im => [im.className, im.complete, im.naturalWidth,"
                         " im.getBoundingClientRect().width])")
    bad = [im for im in images if not (im[1] and im[2] > 0 and im[3] > 0)]
    assert images and not bad, f"images not drawn: {bad}"
    svgs = _js(driver, "return Array.from(document.querySelectorAll('.plotly-graph-div svg.main-svg'))"
                       ".map(s => {var r = s.getBoundingClientRect(); return [s.closest('.plotly-graph-div').id,"
                       " r.width, r.height]})")
    bad = [s for s in svgs if not (s[1] > 0 and s[2] > 0)]
    assert svgs and not bad, f"figures without a size: {bad}"


def check_report(driver, page: Path, losses: list[float]) -> None:
    """Every check on the full report (the user's run, per-sample log, shuffled-label control)."""
    problems = load(driver, page)  # console errors, Plotly figures not drawn or blank
    assert not problems, problems
    check_rendered(driver)
    check_summary(driver)
    last_accuracy = float(_js(driver, "return Array.from(document.getElementById('fig-0-scalar-accuracy')"
                                      "._fullData[0].y).slice(-1)[0]"))
    check_scalars(driver, {"loss": losses[-1], "accuracy": last_accuracy})
    check_projection_titles(driver)
    for site in SITES:
        check_samples(driver, site, logged=["loss"])
        check_controls(driver, site, shuffled=True)


# -- the report as built, and as doctored ------------------------------------------------------------------------
def test_the_theory_free_report_shows_every_section(reports, browser):
    check_report(browser, reports["full"], reports["losses"])
    claims = _js(browser, "return document.getElementById('claims').tagName + ': ' + "
                          "document.getElementById('claims').textContent")
    assert claims.startswith("P: No registered theory judges these runs"), claims  # no empty claims table
    logs = browser.get_log("browser")  # after every check ran
    assert not [e for e in logs if e["level"] in ("SEVERE", "ERROR")], logs
    markdown = (reports["full"].parent / "report.md").read_text()  # report.md states the same control
    assert re.search(rf"site l1: signal learning .*\({_MARGIN} random signal, {_MARGIN} shuffled labels\)", markdown)


def test_a_run_without_per_sample_log_or_control_says_so(reports, browser):
    """The sections' stated absence, not an empty box; the strict checks refuse it."""
    assert load(browser, reports["bare"]) == []
    check_rendered(browser)
    for site in SITES:
        check_samples(browser, site, logged=[])  # the rows are there; the per-sample log's absence is stated
        check_controls(browser, site, shuffled=False)
        with pytest.raises(AssertionError, match="per-sample columns"):
            check_samples(browser, site, logged=["loss"])
        with pytest.raises(AssertionError, match=f"site {site}"):
            check_controls(browser, site, shuffled=True)


def _doctor(page: Path, out: Path, pattern: str, replacement: str) -> Path:
    text = page.read_text(encoding="utf-8")
    doctored, n = re.subn(pattern, replacement, text, count=1, flags=re.S)
    assert n == 1, f"pattern {pattern!r} not in the report"
    out.write_text(doctored, encoding="utf-8")
    return out


# each: what is removed or broken in the built page, and the check that must then fail (with its message)
DOCTORED = {
    "empty samples table": (r'(<section class="site-section" id="site-0-l4".*?<tbody>).*?(</tbody>)', r"\1\2",
                            lambda d, losses: check_samples(d, "l4", logged=["loss"]), "0 sample rows"),
    "top-k figure missing": (r'(id="site-0-l1".*?)<img class="top-samples"[^>]*>', r"\1",
                             lambda d, losses: check_samples(d, "l1", logged=["loss"]), "top-samples not drawn"),
    "broken image": (r'(<img class="memorized-first"[^>]*src=")[^"]*', r"\1data:image/png;base64,AAAA",
                     lambda d, losses: check_rendered(d), "images not drawn"),
    "controls without margins": (r'(id="site-0-l1".*?<p class="controls">)[^<]*', r"\1More than chance? ",
                                 lambda d, losses: check_controls(d, "l1", shuffled=True), "site l1"),
    "scalar figure missing": (r'<div class="fig"><button class="toggle" id="fig-0-scalar-accuracy-toggle".*?'
                              r'</div></div>', "",
                              lambda d, losses: check_scalars(d, {"loss": losses[-1], "accuracy": 0.5}),
                              "logged scalar 'accuracy'"),
    "undefined summary column": (r'<dt>noise_vs_random</dt><dd>[^<]*</dd>', "",
                                 lambda d, losses: check_summary(d), "without a definition"),
    "exact-looking titles": (r'(mine, site l4: noise memorization \\u03c1) \(projection \(coverage [^)]*\)\)', r"\1",
                             lambda d, losses: check_projection_titles(d), "rho"),
}


@pytest.mark.parametrize("case", list(DOCTORED))
def test_each_check_fails_on_a_doctored_report(reports, browser, case, tmp_path):
    pattern, replacement, check, message = DOCTORED[case]
    page = _doctor(reports["full"], tmp_path / "doctored.html", pattern, replacement)
    load(browser, page, timeout=20.0)
    with pytest.raises(AssertionError, match=re.escape(message)):
        check(browser, reports["losses"])


def test_a_figure_drawn_blank_is_caught(reports, browser, tmp_path):
    """The blank-figure rule of :func:`tests.browser.load` (white where a figure should be) still fires after it
    stopped calling a drawn single-curve figure blank."""
    page = _doctor(reports["full"], tmp_path / "blank.html", r"</style>",
                   "</style><style>.plotly-graph-div .main-svg{visibility:hidden}</style>")
    problems = load(browser, page, timeout=20.0)
    assert any(p.endswith("is blank") for p in problems), problems


def test_cli_analyze_takes_the_shuffled_control(reports, tmp_path, capsys):
    """`dyn analyze RUN --shuffled CONTROL`: the control's margins reach the report; without it they are absent;
    a wrong number of controls, or a control for a sweep folder, is one line (exit 2) and writes nothing."""
    from dyn.cli import main

    folder = reports["folder"]
    mine, control = str(folder / "mine.zarr"), str(folder / "shuffled.zarr")
    out = tmp_path / "rep"
    assert main(["analyze", mine, "--shuffled", control, "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert re.search(r"x[0-9.]+ shuffled labels", (out / "report.md").read_text())
    plain = tmp_path / "plain"
    assert main(["analyze", mine, "--out", str(plain), "--no-progress"]) == 0
    capsys.readouterr()
    assert "shuffled labels" not in (plain / "report.md").read_text()
    for argv, message in (([mine, str(folder / "bare.zarr"), "--shuffled", control, control, control],
                           "--shuffled takes one control store for every run or one per run (2), got 3"),
                          ([str(folder), "--shuffled", control], "--shuffled is a control of single runs")):
        bad = tmp_path / "bad"
        assert main(["analyze", *argv, "--out", str(bad), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and not bad.exists()
