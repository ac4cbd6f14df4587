"""The one rule for every command's --out: create parents, replace only what dyn wrote, never an input."""

from __future__ import annotations

import json

import pytest

import dyn
from dyn.cli import main
from dyn.store.outputs import MARKER, claim_output, output_kind, staged_folder


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "run.zarr"
    dyn.train(dyn.load_preset("huang2024-tiny", steps=6), path)
    return path


def test_missing_parents_are_created_by_every_command(tmp_path, store):
    assert main(["run", "--preset", "huang2024-tiny", "--steps", "2", "--quiet", "--out", str(tmp_path / "a/b/r.zarr")]) == 0
    assert main(["export", str(store), "--out", str(tmp_path / "x/y/c.csv")]) == 0
    assert main(["analyze", str(store), "--out", str(tmp_path / "reports/fig1")]) == 0
    assert (tmp_path / "reports/fig1/report.md").is_file() and output_kind(tmp_path / "reports/fig1") == "report"
    assert output_kind(tmp_path / "x/y/c.csv") == "export" and output_kind(tmp_path / "a/b/r.zarr") == "run"


def test_a_report_is_replaced_only_while_it_holds_nothing_but_dyn_files(tmp_path, store):
    rep = tmp_path / "rep"
    assert main(["analyze", str(store), "--out", str(rep)]) == 0
    assert main(["analyze", str(store), "--out", str(rep), "--overwrite"]) == 0  # dyn's own report: replaced
    (rep / "notes.md").write_text("mine")
    assert main(["analyze", str(store), "--out", str(rep), "--overwrite"]) == 2
    assert (rep / "notes.md").read_text() == "mine"
    (rep / "notes.md").unlink()
    (rep / "report.md").write_text("edited by hand")
    assert main(["analyze", str(store), "--out", str(rep), "--overwrite"]) == 2
    assert (rep / "report.md").read_text() == "edited by hand"


def test_an_export_is_replaced_only_while_unchanged(tmp_path, store, capsys):
    out = tmp_path / "c.csv"
    assert main(["export", str(store), "--out", str(out)]) == 0
    assert main(["export", str(store), "--out", str(out)]) == 2  # exists, no --overwrite
    assert main(["export", str(store), "--out", str(out), "--overwrite", "--reduce", "max"]) == 0
    out.write_text(out.read_text() + "my,own,row\n")
    capsys.readouterr()
    assert main(["export", str(store), "--out", str(out), "--overwrite"]) == 2
    assert "c.csv (changed since dyn wrote it), which dyn did not write" in capsys.readouterr().err
    assert out.read_text().endswith("my,own,row\n")


def test_run_overwrite_replaces_a_dyn_store_or_an_empty_folder(tmp_path):
    args = ["run", "--preset", "huang2024-tiny", "--steps", "2", "--quiet", "--out"]
    (tmp_path / "empty").mkdir()
    assert main([*args, str(tmp_path / "empty")]) == 0  # an empty folder holds nothing to lose
    assert main([*args, str(tmp_path / "empty"), "--overwrite"]) == 0
    assert dyn.open(tmp_path / "empty").attrs["status"] == "complete"


def test_a_failed_result_folder_leaves_the_old_one(tmp_path):
    out = tmp_path / "rep"
    with staged_folder(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert json.loads((out / MARKER).read_text())["files"] == {"a.txt": _sha("first")}
    with pytest.raises(RuntimeError), staged_folder(out, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("second")
        raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # nothing left beside it


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def test_inputs_and_links(tmp_path, store):
    with pytest.raises(dyn.ConfigError, match="is an input of this command"):
        claim_output(store, kind="report", inputs=[store], overwrite=True)
    with pytest.raises(dyn.ConfigError, match="holds the input"):
        claim_output(store.parent, kind="report", inputs=[store], overwrite=True)
    with pytest.raises(dyn.ConfigError, match="lies inside the input"):
        claim_output(store / "h" / "report", kind="report", inputs=[store])
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(dyn.StoreError, match="is a symbolic link"):
        claim_output(tmp_path / "link", kind="run", overwrite=True)
    # a link among the parents is fine: only the output itself must be real
    assert claim_output(tmp_path / "link" / "new.zarr", kind="run") == tmp_path / "link" / "new.zarr"


def _foreign_reference(root) -> list[str]:
    """The walk foreign_in_store replaced (os.walk and pathlib), as the brute-force reference."""
    import os
    from pathlib import Path

    from dyn.store.outputs import _zarr_file

    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in dirnames + filenames:
            path = here / name
            rel = path.relative_to(root)
            if path.is_symlink():
                out.append(str(rel))
            elif name in filenames and not _zarr_file(rel):
                out.append(str(rel))
    return sorted(out)


def test_foreign_in_store_matches_the_plain_walk(tmp_path):
    """Zarr's files (metadata, chunks, temporaries) pass; anything else, links included, is named, exactly as
    the os.walk/pathlib reference names it."""
    import os

    from dyn.store.outputs import foreign_in_store

    root = tmp_path / "s.zarr"
    files = ["zarr.json", "h/zarr.json", "h/x/c/0/0", "h/x/c/1/0", "h/x/c/0/0.0123456789abcdef0123456789abcdef.partial",
             "h/notes.txt", "h/x/c/0/a", "c/5", "d/c/1/x/2", "h/x/zarr.json", "top.txt", "deep/a/b/c/d/e"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("x")
    os.symlink(root / "top.txt", root / "h" / "link")
    os.symlink(root / "h", root / "dirlink")
    os.mkfifo(root / "h" / "pipe")
    expected = _foreign_reference(root)
    assert foreign_in_store(root) == expected
    assert "h/notes.txt" in expected and "dirlink" in expected and "h/x/c/0/0" not in expected
    assert foreign_in_store(tmp_path / "missing") == []
