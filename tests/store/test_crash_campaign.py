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
