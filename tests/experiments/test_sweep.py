"""Sweeps: grid validation, resume, failures recorded, and a real Dask cluster losing a worker mid-sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import dyn
from dyn.cli import main
from dyn.experiments.sweep import expand, load_grid, sweep

GRID = Path(__file__).parents[1] / "data" / "tiny-grid.toml"
BIN = Path(sys.executable).parent


def _grid(tmp_path, text):
    path = tmp_path / "g.toml"
    path.write_text(text)
    return path


def test_grid_expansion_and_derived_axes():
    grid = load_grid(GRID)
    specs = expand(grid)
    assert len(specs) == 2 * (1 + 2) * 2  # c_mu does not enter single-modal runs
    for spec in specs:
        cfg = dyn.Config.from_dict(spec["config"])
        assert cfg.n * cfg.snr**2 == pytest.approx(spec["point"]["n_snr2"])
        if cfg.modality == "multi":
            assert cfg.c_mu == pytest.approx(spec["point"]["c_mu"])
        assert cfg.steps == 40
    assert len({s["id"] for s in specs}) == len(specs)


P = 'preset = "huang2024-tiny"\n'


@pytest.mark.parametrize("text, message", [
    (P + "[axes]\nwidth=[1]\n", "unknown axis 'width' (config fields or n_snr2, c_mu)"),
    (P + "[axes]\nseed=[]\n", "axis 'seed' is empty"),
    (P + "[fixed]\nd=3\n", "needs a non-empty [axes] table"),
    (P + "[fixed]\ndepth=3\n[axes]\nseed=[0]\n", "unknown field 'depth' in [fixed]"),
    (P + "[axes]\nn=[-1]\n", "n must be a positive integer"),
    ("[axes]\nseed=[0]\n", "needs `preset"),
    ('preset = "nope"\n[axes]\nseed=[0]\n', "unknown preset 'nope'"),
    ("[axes\n", "invalid TOML"),
])
def test_bad_grids_exit_2(tmp_path, capsys, text, message):
    assert main(["sweep", "--grid", str(_grid(tmp_path, text)), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_unreachable_scheduler_fails_fast(tmp_path, capsys):
    t0 = time.time()
    code = main(["sweep", "--grid", str(GRID), "--out", str(tmp_path / "s"), "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and time.time() - t0 < 30
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err


def test_existing_output_rules(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "mine.txt").write_text("x")
    assert main(["sweep", "--grid", str(GRID), "--out", str(tmp_path / "s")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert main(["sweep", "--grid", str(GRID), "--out", str(tmp_path / "s"), "--overwrite"]) == 2
    assert "is not a dyn sweep folder; refusing to overwrite it" in capsys.readouterr().err
    assert (tmp_path / "s" / "mine.txt").read_text() == "x"


def test_overwrite_replaces_a_sweep_only_while_it_holds_only_its_own_files(tmp_path, capsys):
    grid = load_grid(GRID)
    grid["axes"] = {"seed": [0]}
    out = tmp_path / "s"
    sweep(grid, out, sequential=True)
    (out / "runs" / "notes.txt").write_text("mine")
    with pytest.raises(dyn.StoreError, match="holds runs/notes.txt, which dyn did not write"):
        sweep(grid, out, sequential=True, overwrite=True)
    assert (out / "runs" / "notes.txt").read_text() == "mine"
    (out / "runs" / "notes.txt").unlink()
    first = sweep(grid, out, sequential=True)
    assert first["reused"].all()  # re-running resumes
    again = sweep(grid, out, sequential=True, overwrite=True)
    assert not again["reused"].any()  # overwrite starts afresh


def test_sequential_sweep_resumes_and_records_failures(tmp_path):
    grid = load_grid(GRID)
    grid["axes"]["eta"] = [0.05, 1e9]  # the second learning rate diverges: recorded as failed, others go on
    out = tmp_path / "s"
    first = sweep(grid, out, sequential=True)
    assert len(first) == 24
    failed = first[first["status"] == "failed"]
    assert len(failed) == 12 and failed["error"].str.contains("DivergenceError").all()
    assert (first[first["status"] == "complete"]["reused"] == False).all()  # noqa: E712
    # interrupt simulation: one finished store disappears; re-running retrains only what is missing
    victim = first[first["status"] == "complete"].iloc[0]
    import shutil

    shutil.rmtree(victim["store"])
    again = sweep(grid, out, sequential=True)
    done = again[again["status"] == "complete"].set_index("id")
    assert done.loc[victim["id"], "reused"] == False  # noqa: E712
    assert done.drop(victim["id"])["reused"].all()
    pd.testing.assert_series_equal(done["winner"].sort_index(),
                                   first[first["status"] == "complete"].set_index("id")["winner"].sort_index())
    with pytest.raises(dyn.ConfigError, match="different grid"):
        sweep(load_grid(GRID), out, sequential=True)


def _die_with_parent() -> None:
    """Runs in each child before it starts: on Linux the kernel kills the child when the test process dies, so a
    killed pytest leaves no scheduler or worker behind (the ``finally`` below handles every other ending)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def test_dask_cluster_survives_a_killed_worker(tmp_path):
    """A real scheduler and two workers as separate processes on 127.0.0.1; one worker is killed mid-sweep."""
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    procs = [subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--scheduler-file", str(sched_file), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env,
                              preexec_fn=_die_with_parent)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists():  # the scheduler writes its address once it listens
            assert procs[0].poll() is None and time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.05)
        address = json.loads(sched_file.read_text())["address"]
        workers = [subprocess.Popen([BIN / "dask", "worker", address, "--nworkers", "1", "--nthreads", "1",
                                     "--no-dashboard", "--no-nanny"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env,
                                    preexec_fn=_die_with_parent)
                   for _ in range(2)]
        procs += workers
        grid = load_grid(GRID)
        grid["fixed"]["steps"] = 400  # long enough to kill a worker while runs are in flight
        grid_path = tmp_path / "grid.toml"
        grid_path.write_text(GRID.read_text().replace("steps = 40", "steps = 400"))
        out = tmp_path / "sweep"
        sweep_proc = subprocess.Popen([BIN / "dyn", "sweep", "--grid", str(grid_path), "--out", str(out),
                                       "--scheduler", address], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        procs.append(sweep_proc)
        # kill one worker once the first result is in
        for line in sweep_proc.stdout:
            if line.strip().startswith("[1/"):
                os.killpg(workers[0].pid, signal.SIGKILL)
                break
        rest, err = sweep_proc.communicate(timeout=600)
        assert sweep_proc.returncode in (0, 1), err
        results = pd.read_parquet(out / "results.parquet")
        assert len(results) == 12 and results["id"].is_unique  # nothing lost, nothing twice
        assert set(results["status"]) <= {"complete", "failed"}
        assert (results[results["status"] == "failed"]["error"].str.len() > 0).all()
        assert (results["status"] == "complete").sum() >= 11  # tasks of the dead worker were retried elsewhere
        for store in results[results["status"] == "complete"]["store"]:
            assert dyn.open(store).attrs["status"] == "complete"
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
