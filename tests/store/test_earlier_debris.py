"""What earlier dyn versions left beside and inside their outputs is removed by a rerun (issue 24, items 7 and the
sweep part of 2; the lead's closing note): before the flock-held ``.<name>.<32 hex>.partial`` names, reports and
reproductions were staged in ``tempfile.mkdtemp(prefix=".<name>.")`` folders, exports in
``tempfile.mkstemp(prefix=".<name>.", suffix=".partial")`` files (at first ``.<name>.partial``), and a sweep wrote
its tables to ``.results.{parquet,csv}.partial``. Only those exact names and types are debris, only once unchanged
for ``EARLIER_DEBRIS_AGE`` (those writers held no lock), never a link; a user's look-alike stays.

The states a kill leaves are built by hand (a kill is instantaneous: what matters is which files exist);
benchmarks/crash_campaign.py plants them beside real outputs and reruns the real commands."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from dyn.cli import main
from dyn.errors import StoreError
from dyn.store import outputs
from dyn.store.writer import StoreWriter
from dyn.viz.export import export

COORDS = {"neuron": np.arange(2), "sample": np.arange(3), "signal": np.array(["mu"])}
VARS = {"noise_inner": ("neuron", "sample"), "signal_inner": ("neuron", "signal")}
LONG_AGO = outputs.EARLIER_DEBRIS_AGE + 60  # seconds


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "run.zarr"
    w = StoreWriter(path)
    w.create({"sites": ["h"]}, chunk_steps=4)
    w.add_site("h", coords={**COORDS, "basis": np.arange(4), "basis_dual": np.arange(4)}, step_vars=VARS,
               static={"gram": (("basis", "basis_dual"), np.eye(4))})
    rng = np.random.default_rng(0)
    inner = {"noise_inner": rng.normal(size=(6, 2, 3)).astype(np.float32),
             "signal_inner": rng.normal(size=(6, 2, 1)).astype(np.float32)}
    w.append(np.arange(6), {"h": inner}, {"loss": np.zeros(6)})
    w.close("complete")
    return path


def _age(path, seconds=LONG_AGO):
    """Make ``path`` (and everything below it) look unchanged for ``seconds``."""
    import time

    when = time.time() - seconds
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(p, (when, when), follow_symlinks=False)


def _plant(folder, name, *, is_dir=False, content=b"x" * 100, age=True):
    path = folder / name
    if is_dir:
        path.mkdir()
        (path / "report.html").write_bytes(content)
    else:
        path.write_bytes(content)
    if age:
        _age(path)
    return path


def _hidden(folder, prefix):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(prefix))


# what earlier versions' writers made (tempfile's 8 characters are of [a-z0-9_])
EARLIER_REPORT = [".rep.k3j_a9zq", ".rep.x71bq0m2", f".rep.{'ab12' * 8}.old"]
# a user's: wrong length, no digit or '_' (a word), capitals, other suffixes, a file where mkdtemp made a folder
USER_REPORT = [".rep.notes", ".rep.previous", ".rep.notebook", ".rep.K3J_A9ZQ", ".rep.k3j_a9zq9", ".rep.k3j_a9z",
               ".rep.k3j_a9zq.bak", ".rep.backup", "rep.k3j_a9zq", ".rep.k3j-a9zq"]


def test_a_rerun_removes_an_earlier_reports_staging_folders_and_keeps_a_users(tmp_path):
    out = tmp_path / "rep"
    with outputs.staged_folder(out) as tmp:
        (tmp / "a.txt").write_text("old")
    for name in EARLIER_REPORT:
        _plant(tmp_path, name, is_dir=True)
    for name in USER_REPORT:
        _plant(tmp_path, name, is_dir=True)
    _plant(tmp_path, ".rep.q1w2e3r4")  # a file: mkdtemp made folders
    link = tmp_path / ".rep.z9y8x7w6"  # a link: never
    link.symlink_to(tmp_path / ".rep.notes", target_is_directory=True)
    os.utime(link, (0, 0), follow_symlinks=False)
    with outputs.staged_folder(out, overwrite=True) as tmp:  # the rerun (what dyn analyze does)
        (tmp / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new"
    users = [name for name in USER_REPORT if name.startswith(".rep.")]
    assert _hidden(tmp_path, ".rep.") == sorted([*users, ".rep.q1w2e3r4", ".rep.z9y8x7w6"])
    assert all((tmp_path / name / "report.html").is_file() for name in USER_REPORT)


def test_an_earlier_reports_staging_folder_changed_within_the_hour_is_kept(tmp_path):
    """Earlier writers held no flock: a staging folder something in which changed lately may be in use."""
    out = tmp_path / "rep"
    fresh = _plant(tmp_path, ".rep.k3j_a9zq", is_dir=True, age=False)
    inside = _plant(tmp_path, ".rep.x71bq0m2", is_dir=True)
    (inside / "figure.png").write_bytes(b"new")  # a file added just now: the folder is being written
    assert outputs.recover_output(out, "report") == []
    assert fresh.is_dir() and inside.is_dir()
    assert outputs.recover_output(out) == []  # kind unknown: only the current names


def test_an_earlier_reports_replacement_killed_between_its_renames_is_finished(tmp_path):
    """The earlier writer moved the old report aside (.<name>.<hex>.old), then renamed its complete mkdtemp folder
    in; killed in between, the rerun renames the complete new one in rather than putting the old one back."""
    out = tmp_path / "rep"
    with outputs.staged_folder(out) as tmp:
        (tmp / "a.txt").write_text("new")
    new = tmp_path / ".rep.k3j_a9zq"
    out.rename(new)  # complete: it holds its marker
    old = _plant(tmp_path, f".rep.{'0' * 32}.old", is_dir=True)
    _age(new)
    with pytest.raises(StoreError, match="already exists"):  # finished first, then refused as existing
        outputs.claim_output(out, kind="report")
    assert (out / "a.txt").read_text() == "new" and not old.exists() and _hidden(tmp_path, ".rep.") == []


EARLIER_EXPORT = ["{n}.k3j_a9zq.partial", "{n}.abcdefgh.partial", "{n}.12345678.partial", "{n}.partial"]
USER_EXPORT = ["{n}.backup", "{n}.k3j_a9zq", "{n}.k3j_a9zq.partial.bak", "{n}.k3j_a9zq9.partial", "{n}.part",
               "{n}.K3J_A9ZQ.partial", "{n}.k3j-a9zq.partial"]


@pytest.mark.parametrize("name", ["x.csv", "x.parquet", "x.nc"])
def test_a_rerun_removes_an_earlier_exports_temporary_files_and_keeps_a_users(store, tmp_path, name):
    out = tmp_path / name
    export(store, out)
    for pattern in EARLIER_EXPORT + USER_EXPORT:
        _plant(tmp_path, "." + pattern.format(n=name))
    held = _plant(tmp_path, "." + f"{name}.h0ld_1ng.partial")
    fd = os.open(held, os.O_RDONLY)
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)  # a live process holds it: not debris, whatever its age
    try:
        export(store, out, overwrite=True)  # the rerun
    finally:
        os.close(fd)
    users = sorted("." + p.format(n=name) for p in USER_EXPORT)
    assert _hidden(tmp_path, f".{name}.") == sorted([*users, f".{name}{outputs.MARKER}", held.name])
    assert all((tmp_path / u).read_bytes() == b"x" * 100 for u in users)
    assert main(["export", str(store), "--out", str(out), "--overwrite"]) == 0  # no longer held: the CLI's rerun
    assert not held.exists() and all((tmp_path / u).read_bytes() == b"x" * 100 for u in users)


def test_an_earlier_grid_zarr_exports_staging_folder_is_removed(store, tmp_path):
    out = tmp_path / "x.zarr"
    export(store, out)
    _plant(tmp_path, ".x.zarr.partial", is_dir=True)
    _plant(tmp_path, ".x.zarr.k3j_a9zq", is_dir=True)  # the report writer's name, not an export's: kept
    export(store, out, overwrite=True)
    assert _hidden(tmp_path, ".x.zarr.") == [".x.zarr.k3j_a9zq"]


def test_an_earlier_export_killed_between_its_sidecar_and_its_rename_is_finished(store, tmp_path):
    """The earlier writer wrote the sidecar (the new file's SHA-256), then renamed its mkstemp file in. Killed in
    between on a first export, the rerun renames the file the sidecar names in; an existing file is never replaced
    (it may be a user's): the temporary file is removed and the export stays refused as changed."""
    out = tmp_path / "x.csv"
    export(store, out)
    data = out.read_bytes()
    partial = tmp_path / ".x.csv.k3j_a9zq.partial"
    out.rename(partial)
    other = _plant(tmp_path, ".x.csv.abcd1234.partial", content=b"not the one")
    _age(partial)
    with pytest.raises(StoreError, match="already exists"):
        outputs.claim_output(out, kind="export")
    assert out.read_bytes() == data and not partial.exists() and not other.exists()
    export(store, out, overwrite=True)  # and it is dyn's, unchanged: --overwrite replaces it
    out.write_bytes(b"a user's file\n")  # the same kill, but out is there (and not the file the sidecar names)
    _plant(tmp_path, ".x.csv.k3j_a9zq.partial", content=data)
    with pytest.raises(StoreError, match="changed since dyn wrote it"):
        outputs.claim_output(out, kind="export", overwrite=True)
    assert out.read_bytes() == b"a user's file\n" and _hidden(tmp_path, ".x.csv.") == [f".x.csv{outputs.MARKER}"]


def test_earlier_names_of_one_kind_are_not_removed_for_another(tmp_path):
    """A sweep or run store never had mkdtemp/mkstemp staging: nothing of those names beside one is debris."""
    for kind, name in (("sweep", "s"), ("run", "r.zarr")):
        out = tmp_path / name
        planted = [_plant(tmp_path, f".{name}.k3j_a9zq", is_dir=True), _plant(tmp_path, f".{name}.k3j_a9zq.partial"),
                   _plant(tmp_path, f".{name}.partial")]
        assert outputs.recover_output(out, kind) == []
        assert all(p.exists() for p in planted)


# -- inside a sweep folder (item 2) ------------------------------------------------------------------------------

GRID = 'preset = "huang2024-tiny"\n[fixed]\nsteps = 10\n[axes]\nn_snr2 = [0.5]\nmodality = ["single"]\n'


@pytest.fixture
def swept(tmp_path):
    grid = tmp_path / "g.toml"
    grid.write_text(GRID)
    out = tmp_path / "s"
    argv = ["sweep", "--grid", str(grid), "--out", str(out), "--sequential", "--quiet"]
    assert main(argv) == 0
    return argv, out


SWEEP_DEBRIS = [".results.parquet.partial", ".results.csv.partial", *(f".{n}.{'0' * 32}.partial" for n in (
    "results.csv", "results.parquet", "sweep.json", "phase-diagram.png", "phase-diagram.svg", "dyn-output.json"))]
SWEEP_USER = [".results.mine.partial", ".results.csv.partial.bak", ".results.csv", ".results.json.partial",
              f".notes.txt.{'0' * 32}.partial", ".results.csv.k3j_a9zq.partial"]


def test_a_plain_rerun_of_a_sweep_removes_its_temporary_tables_and_keeps_a_users(swept):
    argv, out = swept
    for name in SWEEP_DEBRIS + SWEEP_USER:
        _plant(out, name)
    (out / ".results.csv.partial.d").mkdir()  # a folder: never a sweep's temporary file
    (out / f".results.csv.{'1' * 32}.partial").symlink_to(out / "results.csv")  # a link: never
    assert main(argv) == 0  # the rerun: nothing to train, the tables are rewritten
    left = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert left == sorted([*SWEEP_USER, ".results.csv.partial.d", f".results.csv.{'1' * 32}.partial",
                           outputs.MARKER])
    assert all((out / u).read_bytes() == b"x" * 100 for u in SWEEP_USER)


def test_a_sweeps_temporary_file_a_live_writer_holds_or_an_earlier_ones_fresh_file_is_kept(swept):
    argv, out = swept
    held = _plant(out, f".results.csv.{'2' * 32}.partial")
    fresh = _plant(out, ".results.csv.partial", age=False)  # an earlier dyn might be writing it now
    fd = os.open(held, os.O_RDONLY)
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert main(argv) == 0
        assert held.exists() and fresh.exists()
    finally:
        os.close(fd)
    assert main(argv) == 0
    assert not held.exists() and fresh.exists()


def test_write_recorded_holds_its_temporary_file_while_it_exists(tmp_path):
    seen = []

    def write(tmp):
        tmp.write_text("a,b\n")
        seen.append(outputs._held(tmp))
        seen.append(outputs.recover_sweep(tmp_path))

    outputs.write_recorded(tmp_path, "results.csv", write)
    assert seen == [True, []] and (tmp_path / "results.csv").read_text() == "a,b\n"


def test_sweep_overwrite_refuses_a_users_look_alike_of_a_temporary_table(swept, capsys):
    """Was: any ``.results.*.partial`` counted as the sweep's, so --overwrite deleted a user's with the folder."""
    argv, out = swept
    mine = _plant(out, ".results.mine.partial")
    assert main([*argv, "--overwrite"]) == 2
    assert ".results.mine.partial" in capsys.readouterr().err and mine.read_bytes() == b"x" * 100
    mine.unlink()
    _plant(out, f".dyn-output.json.{'0' * 32}.partial")  # the marker's temporary file is the sweep's
    assert main([*argv, "--overwrite"]) == 0


def test_a_sweep_overwrite_killed_while_deleting_the_old_one_is_not_put_back(swept, monkeypatch):
    """A kill while the old sweep (moved aside) was being deleted left no sweep folder, so the rerun put the half
    deleted one back and then refused it ("not a dyn sweep folder"); the new folder now exists before the old one
    is deleted, so the rerun removes the rest of the old one."""
    import dyn.experiments.sweep as sweep_module

    argv, out = swept
    real = shutil.rmtree

    def killed(path, *args, **kwargs):
        if str(path).endswith(".old"):
            (path / "sweep.json").unlink()  # half deleted, then the kill
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(sweep_module.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        sweep_module.sweep(sweep_module.load_grid(argv[2]), out, overwrite=True, sequential=True, progress=False)
    monkeypatch.setattr(sweep_module.shutil, "rmtree", real)
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads((out / "sweep.json").read_text())["preset"] == "huang2024-tiny"
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")) == []


def test_an_earlier_dyns_metadata_temp_file_inside_a_store_is_dyns(tmp_path):
    """dyn before the commit record replaced metadata through ``zarr.json.partial``: a kill could leave one at the
    root or in a group. It is dyn's (an overwrite removes it with the store); a look-alike is the user's."""
    from dyn.store import StoreWriter
    from dyn.store.outputs import foreign_in_store

    path = tmp_path / "old.zarr"
    w = StoreWriter(path)
    w.create({"sites": ["h"]}, 4)
    w.add_site("h", coords={"neuron": np.arange(2), "sample": np.arange(3), "signal": np.array(["mu"])},
               step_vars={"noise_inner": ("neuron", "sample")}, static={})
    w.append(np.arange(2), {"h": {"noise_inner": np.zeros((2, 2, 3), np.float32)}}, {"loss": np.zeros(2)})
    w.close("complete")
    for where in (path, path / "h"):
        (where / "zarr.json.partial").write_text("{}")
    assert foreign_in_store(path) == []
    (path / "h" / "zarr.json.partial.bak").write_text("mine")
    assert foreign_in_store(path) == ["h/zarr.json.partial.bak"]
    (path / "h" / "zarr.json.partial.bak").unlink()
    again = StoreWriter(path, overwrite=True)
    again.create({"sites": []}, 4)
    again.close("complete")
    assert not list(path.rglob("zarr.json.partial"))
