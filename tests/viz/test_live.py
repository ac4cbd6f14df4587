"""The live view follows a real ``dyn run`` while it trains: terminal snapshots, the loopback page and its JSON."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dyn
from dyn.store import read_attrs
from dyn.viz.live import Follower, format_text, render_html

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 180.0  # generous bound on every wait; the tiny run lands steps within seconds


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _dyn(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dyn.cli", *args], env=_env(), cwd=ROOT, text=True, **kw)


def _wait_for(what: str, predicate, timeout: float = DEADLINE, every: float = 0.3):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def _once_step(store: Path) -> int | None:
    out = subprocess.run([sys.executable, "-m", "dyn.cli", "watch", str(store), "--once", "--wait"], env=_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    m = re.search(r"\bstep (\d+)/", out.stdout)
    return int(m.group(1)) if m else None


def test_watch_follows_a_running_dyn_run(tmp_path):
    store = tmp_path / "live.zarr"
    run = _dyn("run", "--preset", "huang2024-tiny", "--steps", "1000000", "--checkpoint-every", "10", "--quiet",
               "--out", str(store), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher = None
    try:
        # the terminal view, twice: the step count grows while the run trains
        first = _wait_for("a first recorded step", lambda: _once_step(store))
        second = _wait_for("the step count to grow", lambda: (s := _once_step(store)) is not None and s > first and s)
        assert second > first

        # the page on loopback, refreshed from its JSON endpoint
        watcher = _dyn("watch", str(store), "--serve", "0", "--interval", "0.5", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(watcher.stdout.readline, "")), daemon=True)
        reader.start()
        url = _wait_for("the page URL", lambda: next((m.group(0) for l in lines
                                                      if (m := re.search(r"http://127\.0\.0\.1:\d+/", l))), None))
        page = _get(url).decode()
        assert "data.json" in page and "<script>" in page and "http://" not in page and "https://" not in page

        def snap():
            runs = json.loads(_get(url + "data.json"))["runs"]
            return runs[0] if runs and runs[0]["step"] is not None else None

        a = _wait_for("a snapshot with steps", snap)
        b = _wait_for("a later snapshot", lambda: (s := snap()) and s["step"] > a["step"] and s)
        assert b["step"] > a["step"] and b["status"] == "running"
        assert b["sites"]["h"]["kind"] == "exact" and b["sites"]["h"]["rho_max"] is not None
        assert b["total_steps"] == 1000000 and b["steps_per_s"] and b["steps_per_s"] > 0 and b["eta_s"] > 0
        assert len(b["history"]["step"]) == len(b["history"]["loss"]) == len(b["history"]["h.noise_max"])
        assert b["regime"] and b["regime"]["observed_winner"] in ("signal learning", "noise memorization")
        assert not b["note"] or "retrying" in b["note"]
    finally:
        _stop(run)
        if watcher is not None:
            _stop(watcher)
    assert run.returncode == 130, run.stderr.read()
    assert watcher.returncode == 0
    assert read_attrs(store)["status"] == "interrupted"


def test_follower_waits_for_a_missing_store_then_reads_it(tmp_path):
    path = tmp_path / "later.zarr"
    follower = Follower(path)
    snap = follower.poll()
    assert snap["status"] == "not started" and snap["step"] is None and "waiting" in snap["note"]
    dyn.train(dyn.Config(d=60, n=8, m=4, steps=6), path)
    snap = follower.poll()
    assert snap["status"] == "complete" and snap["step"] == 6 and snap["steps_recorded"] == 7
    assert snap["sites"]["h"]["kind"] == "exact" and snap["regime"]["at_step"] is not None
    assert "step 6/6" in format_text(snap) and "<svg" in render_html([snap])
    json.dumps(snap, allow_nan=False)  # the endpoint's payload is strict JSON


def test_aligned_prefix_ignores_unset_and_unequal_steps():
    def ds(steps):
        return xr.Dataset(coords={"step": np.asarray(steps)})

    assert Follower._aligned([ds([0, 1, 2, -1]), ds([0, 1, 2, 3, 4])]) == 3   # root lags behind the site
    assert Follower._aligned([ds([0, 1, 2, 0, 0])]) == 3                     # preallocated, not yet written
    assert Follower._aligned([ds([0, 1]), ds([])]) == 0


def test_notebook_helper_updates_one_output(tmp_path, monkeypatch):
    import IPython.display

    path = tmp_path / "nb.zarr"
    dyn.train(dyn.Config(d=60, n=8, m=4, steps=4), path)
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj.data)

    monkeypatch.setattr(IPython.display, "display", lambda obj, display_id=None: Handle())
    from dyn.viz.live import watch_notebook

    snaps = watch_notebook(path, interval=0.01)
    assert snaps[0]["status"] == "complete" and len(shown) == 1  # a finished run: one update, then it returns
    assert "<svg" in shown[0] and "step 4/4" in shown[0]


def test_follower_sees_every_committed_step_while_the_run_writes(tmp_path):
    """The live view reads the commit record (the root's consolidated metadata), not the arrays' own zarr.json
    files, which the writer brings up to date only at checkpoints and at close (regression: it showed 0 steps)."""
    import torch

    torch.manual_seed(0)
    path = tmp_path / "run.zarr"
    w = torch.nn.Parameter(torch.randn(3, 5))
    site = dyn.Site(w, signals={"mu": torch.ones(5)}, noise=torch.randn(4, 5))
    rec = dyn.Recorder(path, sites={"h": site}, chunk_bytes=4 * 3 * 5 * 4)  # 4 steps per chunk
    rec.open()
    try:
        for _ in range(40):
            with torch.no_grad():
                w.add_(0.01)
            rec.step()
        rec.flush()
        deadline = time.monotonic() + 60
        while read_attrs(path).get("n_recorded", 0) < 41 and time.monotonic() < deadline:
            time.sleep(0.05)  # the writer thread commits in the background
        committed = xr.open_datatree(path, engine="zarr")["h"].sizes["step"]
        assert committed == 41
        snap = Follower(path).poll()
        assert snap["steps_recorded"] == committed and snap["step"] == 40
    finally:
        rec.close()


def test_watch_names_a_damaged_store_and_exits_1(tmp_path, capsys):
    """Regression (issue 24 item 12): a deleted chunk showed dashes, a regime verdict and exit 0."""
    import os

    from dyn.cli import main

    path = tmp_path / "run.zarr"
    dyn.train(dyn.Config(d=30, n=6, n_test=4, m=3, steps=3), path)
    assert main(["watch", str(path), "--once"]) == 0
    chunk = next(p for p in (path / "h" / "noise_inner").rglob("*") if p.is_file() and p.name != "zarr.json")
    os.remove(chunk)
    capsys.readouterr()
    assert main(["watch", str(path), "--once"]) == 1
    out = capsys.readouterr().out
    assert "[damaged]" in out and "noise_inner is missing its chunk" in out and "regime" not in out


@pytest.mark.parametrize("flag,value", [("--quantile", "nan"), ("--quantile", "2"), ("--interval", "-1"),
                                        ("--interval", "nan")])
def test_watch_refuses_unusable_interval_and_quantile(tmp_path, capsys, flag, value):
    """Regression (issue 24 item 9): these were a traceback or 'waiting for the store' forever."""
    from dyn.cli import main

    path = tmp_path / "run.zarr"
    dyn.train(dyn.Config(d=30, n=6, n_test=4, m=3, steps=2), path)
    capsys.readouterr()
    assert main(["watch", str(path), "--once", flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1
