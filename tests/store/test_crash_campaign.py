"""A small crash campaign (benchmarks/crash_campaign.py): SIGKILL `dyn run` at random moments, with and without a
live reader; every killed store opens with plain xarray and dyn.open and resumes bitwise equal."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "crash_campaign.py"


def test_small_crash_campaign(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("crash_campaign", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "crash_campaign", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    result = module.campaign(4, seed=1, root=tmp_path / "crash", configs=["tiny single", "tiny multi"],
                             echo=lambda line: None)
    problems = [(t.config, t.problem, t.bad_reads[:3]) for t in result["trials"] if t.problem or t.bad_reads]
    assert result["ok"], problems
    assert result["live_runs"] == 2


def test_small_replacement_campaign(tmp_path, monkeypatch):
    """Issue 24: SIGKILL replacements (a grid-zarr export, a CSV export) and a store's creation at random moments:
    the output is whole after the kill, the rerun succeeds and leaves no debris, a user's file beside is untouched;
    what an earlier dyn left (planted before the rerun) is removed, a user's look-alikes of those names are kept.
    (The user-data part of the campaign is covered by tests/store/test_user_data.py, the sweep and report debris
    by tests/store/test_earlier_debris.py.)"""
    spec = importlib.util.spec_from_file_location("crash_campaign", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "crash_campaign", module)
    spec.loader.exec_module(module)
    result = module.replacements(3, seed=1, root=tmp_path / "rep", commands=["export grid-zarr", "run-create",
                                                                             "export csv"],
                                 with_user_data=False, echo=lambda line: None)
    problems = [(t.command, t.problem, t.debris) for t in result["trials"] if t.problem or t.debris]
    assert result["ok"], problems
    assert result["unreadable"] == result["debris"] == result["failed_reruns"] == result["lookalikes_lost"] == 0
    assert result["planted"] == 4 and result["lookalikes"] == 3 * 7  # csv: 3 earlier names, grid-zarr: 1
