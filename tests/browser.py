"""Headless Chromium for the HTML report tests: Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs
them; the browser is never downloaded). Skipped only where they are absent and ``CI`` is not set; in CI a missing
browser is a failure."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_without_browser() -> None:
    """Skip the calling test module where no headless Chromium (or selenium) is installed, outside CI."""
    if not (CHROMIUM and DRIVER) and not IN_CI:
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver; .ci/run does this)",
                    allow_module_level=True)
    if not IN_CI:
        pytest.importorskip("selenium.webdriver")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module, its console log kept (``driver.get_log("browser")``)."""
    assert CHROMIUM and DRIVER, "CI must have chromium and chromium-driver installed (see .ci/run)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def load(driver, path: Path, *, timeout: float = 60.0) -> list[str]:
    """Open ``path`` and return the problems found: console errors, figures not drawn, blank figures."""
    driver.get(path.resolve().as_uri())
    problems = []
    expected = driver.execute_script("return document.querySelectorAll('div.fig .plotly-graph-div').length")
    end = time.monotonic() + timeout
    drawn = 0
    while time.monotonic() < end:
        drawn = driver.execute_script("return document.querySelectorAll('.plotly-graph-div .main-svg').length")
        if expected and drawn >= expected:
            break
        time.sleep(0.25)
    for entry in driver.get_log("browser"):
        if entry["level"] in ("SEVERE", "ERROR"):
            problems.append(f"console: {entry['message']}")
    if not expected or drawn < expected:
        problems.append(f"figures drawn: {drawn} of {expected}")
    else:
        from PIL import Image

        for el in driver.find_elements("css selector", "div.fig .plotly-graph-div")[:3]:
            driver.execute_script("arguments[0].scrollIntoView()", el)
            pixels = np.asarray(Image.open(io.BytesIO(el.screenshot_as_png)).convert("L"), dtype=float)
            # a drawn figure's plot area (#E5ECF6) and ink cover most of it; an undrawn one is white. (Dark pixels
            # alone, < 1%, called a drawn single-curve loss figure blank: 0.9% of it is ink.)
            if (pixels < 245).mean() < 0.05:
                problems.append(f"figure {el.get_attribute('id')} is blank")
    return problems
