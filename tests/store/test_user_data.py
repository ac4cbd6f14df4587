"""A user's data inside and beside dyn's run stores is never deleted or rewritten (issue 24, items 1, 3, 4).

dyn lists the nodes it writes (root attribute ``dyn_nodes``, checkpoint slots' ``arrays``): everything else in a
store is the user's, even zarr groups and arrays that look like dyn's own files. Each test failed before the fix.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from dyn.errors import StoreError
from dyn.store import outputs
from dyn.store.outputs import foreign_in_store
from dyn.store.writer import StoreWriter

COORDS = {"neuron": np.arange(2), "sample": np.arange(3), "signal": np.array(["mu"])}
VARS = {"noise_inner": ("neuron", "sample"), "signal_inner": ("neuron", "signal")}


def _inner(a, b):
    return {"h": {"noise_inner": np.arange((b - a) * 6, dtype=np.float32).reshape(b - a, 2, 3),
                  "signal_inner": np.ones((b - a, 2, 1), np.float32)}}


def _interrupted(path, steps=8):
    """A store killed after a checkpoint at ``steps`` (no close)."""
    w = StoreWriter(path)
    w.create({"sites": ["h"]}, chunk_steps=4)
    w.add_site("h", coords=COORDS, step_vars=VARS, static={})
    w.append(np.arange(steps), _inner(0, steps), {"loss": np.zeros(steps)})
    w.write_checkpoint(steps, {"w": (("a",), np.arange(3.0))})
    w.release()


def _complete(path):
    _interrupted(path)
    w = StoreWriter(path, append=True)
    w.reopen(8)
    w.close("complete")


def _user_group(path, group, **data):
    data = data or {"n": ("k", np.arange(5.0))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: consolidated metadata is not in the v3 spec
        xr.Dataset(data).to_zarr(path, mode="a", group=group)


def _files(path, under):
    return sorted(str(p.relative_to(path)) for p in (path / under).rglob("*") if p.is_file())


@pytest.mark.parametrize("group", ["mine", "h/mine", "_checkpoint/mine"])
def test_overwrite_refuses_a_store_holding_a_users_zarr_group_and_keeps_it(tmp_path, group):
    path = tmp_path / "A.zarr"
    _interrupted(path)  # keeps its _checkpoint group
    _user_group(path, group)
    before = _files(path, group)
    assert before and all(f.startswith(group) for f in foreign_in_store(path))
    with pytest.raises(StoreError, match="which dyn did not write"):
        StoreWriter(path, overwrite=True).create({"sites": ["h"]}, chunk_steps=4)
    assert _files(path, group) == before
    np.testing.assert_array_equal(xr.open_zarr(path, group=group, consolidated=False)["n"].values, np.arange(5.0))


def test_the_store_lists_its_nodes_and_a_users_group_is_not_among_them(tmp_path):
    path = tmp_path / "A.zarr"
    _complete(path)
    _user_group(path, "mine")
    assert "mine" not in outputs.own_nodes(path) and {"h", "h/noise_inner", "step", "loss"} <= outputs.own_nodes(path)
    assert foreign_in_store(path) == ["mine/n/c/0", "mine/n/zarr.json", "mine/zarr.json"]


def test_resume_keeps_users_files_in_the_checkpoint_folders(tmp_path):
    path = tmp_path / "A.zarr"
    _interrupted(path)
    notes = [path / "_checkpoint" / "note.txt", path / "_checkpoint" / "slot_0" / "note.txt"]
    (path / "_checkpoint" / "slot_1").mkdir()
    notes.append(path / "_checkpoint" / "slot_1" / "note.txt")
    for note in notes:
        note.write_text("mine\n")
    _user_group(path / "_checkpoint", "slot_1/mine")  # a user's zarr group inside a slot
    w = StoreWriter(path, append=True)
    w.reopen(8)
    for step in (12, 16, 20):  # both slots rewritten
        w.append(np.arange(step - 4, step), _inner(step - 4, step), {"loss": np.zeros(4)})
        w.write_checkpoint(step, {"w": (("a",), np.arange(3.0) + step)})
    assert w.checkpoint()[1].keys() == {"w"}  # the user's group in the slot is not part of the state
    w.close("complete")
    assert all(note.read_text() == "mine\n" for note in notes)
    assert _files(path, "_checkpoint/slot_1/mine") == ["_checkpoint/slot_1/mine/n/c/0", "_checkpoint/slot_1/mine/n/zarr.json",
                                                       "_checkpoint/slot_1/mine/zarr.json"]
    assert not (path / "_checkpoint" / "slot_0" / "w").exists()  # dyn's own checkpoint files went


def test_resume_never_touches_a_users_array_with_a_step_dimension(tmp_path):
    path = tmp_path / "A.zarr"
    _interrupted(path)
    _user_group(path, "mine", my_metric=("step", np.arange(7.0)))
    w = StoreWriter(path, append=True)
    w.reopen(8)
    w.append(np.arange(8, 12), _inner(8, 12), {"loss": np.zeros(4)})
    w.write_checkpoint(12, {"w": (("a",), np.arange(3.0))})
    w.close("complete")
    mine = xr.open_zarr(path, group="mine", consolidated=False)["my_metric"]
    assert mine.shape == (7,)
    np.testing.assert_array_equal(mine.values, np.arange(7.0))
    h = xr.open_zarr(path, group="h", consolidated=False)
    np.testing.assert_array_equal(h["noise_inner"].values, _inner(0, 12)["h"]["noise_inner"] % 48)
    assert "mine" not in outputs.own_nodes(path) and "mine/my_metric" not in outputs.own_nodes(path)


def test_an_uncommitted_node_of_a_killed_writer_is_dyns(tmp_path):
    """Nodes are listed before their first file: a store killed while adding a site can still be overwritten."""
    path = tmp_path / "A.zarr"
    w = StoreWriter(path)
    w.create({"sites": ["h"]}, chunk_steps=4)
    w._commit = lambda **kw: None  # killed before the commit that shows the site
    w.add_site("h", coords=COORDS, step_vars=VARS, static={})
    w.release()
    assert (path / "h" / "noise_inner" / "zarr.json").is_file() and foreign_in_store(path) == []
    w = StoreWriter(path, overwrite=True)
    w.create({"sites": ["h"]}, chunk_steps=4)
    w.close("complete")
    assert not (path / "h").exists()


def test_a_kill_right_after_an_overwrites_final_commit_leaves_nothing_of_the_old_store(tmp_path, monkeypatch):
    """Item 6: the old store's files are swept before the final commit; only the checkpoint can remain, which
    verify reports and `--resume` (remove_leftovers) removes."""
    import dyn.store.writer as writer
    from dyn.analysis.verify import verify

    path = tmp_path / "A.zarr"
    old = StoreWriter(path)
    old.create({"sites": ["h"]}, chunk_steps=4)
    old.add_site("h", coords=COORDS, step_vars=VARS, static={})
    old.append(np.arange(20), _inner(0, 20), {"loss": np.zeros(20), "old_metric": np.zeros(20)})
    old.close("complete")
    w = StoreWriter(path, overwrite=True)
    w.create({"sites": ["h"]}, chunk_steps=4)
    w.add_site("h", coords=COORDS, step_vars=VARS, static={})
    w.append(np.arange(8), _inner(0, 8), {"loss": np.zeros(8)})
    w.write_checkpoint(8, {"w": (("a",), np.arange(3.0))})

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "remove_own", killed)  # killed right after the commit that says "complete"
    with pytest.raises(KeyboardInterrupt):
        w.close("complete")
    monkeypatch.undo()
    assert not (path / "old_metric").exists() and not (path / ".dyn-sweep.json").exists()
    assert (path / "h" / "noise_inner" / "c.1.0.0").is_file()
    assert not (path / "h" / "noise_inner" / "c.4.0.0").exists()  # chunks beyond the new store's 8 steps
    assert writer.leftovers(path) and {c.name: c.ok for c in verify(path)}["leftovers"] is False
    n = len(writer.leftovers(path))
    again = StoreWriter(path, append=True)
    assert again.remove_leftovers() == n > 0
    again.release()
    assert writer.leftovers(path) == [] and not (path / "_checkpoint").exists()
    assert all(c.ok for c in verify(path))
