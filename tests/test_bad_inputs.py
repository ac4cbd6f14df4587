"""The catalog of bad inputs: each gives one line naming the problem, the documented exit status, no traceback,
and leaves everything already written exactly as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import zarr
from hypothesis import HealthCheck, given, settings, strategies as st

import dyn
from dyn.cli import main


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "good.zarr"
    dyn.train(dyn.load_preset("huang2024-tiny", steps=12), path)
    return path


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped (KeyboardInterrupt) at step 9 of 12 with checkpoints every 3 steps: resumable at step 9."""
    from dyn.setups.huang2024.train import Huang2024Setup

    path = tmp_path_factory.mktemp("interrupted") / "interrupted.zarr"
    original, calls = Huang2024Setup.loss, {"n": 0}

    def loss(self, anchors=None):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt
        return original(self, anchors)

    with mock.patch.object(Huang2024Setup, "loss", loss), pytest.raises(KeyboardInterrupt):
        dyn.train(dyn.load_preset("huang2024-tiny", steps=12), path, checkpoint_every=3)
    assert _attrs(path)["checkpoint_step"] == 9
    return path


def _attrs(store: Path) -> dict:
    return json.loads((store / "zarr.json").read_text())["attributes"]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _set_attrs(store: Path, **attrs) -> None:
    """Edit root attributes as a reader sees them (the consolidated metadata stays)."""
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"].update(attrs)
    (store / "zarr.json").write_text(json.dumps(meta))


def _unconsolidate(store: Path, **attrs) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    meta["consolidated_metadata"] = None
    meta["attributes"].update(attrs)
    (store / "zarr.json").write_text(json.dumps(meta))


def _chunks(store: Path, array: str) -> list[Path]:
    return [p for p in sorted((store / array).glob("c.*")) if p.is_file()]


def _truncate_chunk(store: Path) -> None:
    chunk = _chunks(store, "h/noise_inner")[-1]
    chunk.write_bytes(chunk.read_bytes()[:10])


def _edit_dtype(array: str, dtype: str):
    """Change an array's data type in its metadata (its own zarr.json and the consolidated copy readers use)."""
    def edit(tmp: Path, store: Path) -> None:
        meta_path = store / array / "zarr.json"
        meta = json.loads(meta_path.read_text())
        meta["data_type"] = dtype
        meta_path.write_text(json.dumps(meta))
        root = json.loads((store / "zarr.json").read_text())
        root["consolidated_metadata"]["metadata"][array]["data_type"] = dtype
        (store / "zarr.json").write_text(json.dumps(root))
    return edit


def _pickle_codec(store: Path) -> None:
    meta_path = store / "h" / "noise_inner" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["codecs"].append({"name": "numcodecs.pickle", "configuration": {}})
    meta_path.write_text(json.dumps(meta))
    _unconsolidate(store)


def _preset_file(text: str):
    def make(tmp: Path, store: Path) -> None:
        (tmp / "p.toml").write_text(text)
    return make


def _unflushed(tmp: Path, store: Path) -> None:
    """Replace the store by one whose process died before its first write (created, nothing recorded)."""
    shutil.rmtree(store)
    rec = dyn.Recorder(store, sites={"h": _site()}).open()
    rec._queue.put(None)
    rec._thread.join()
    rec._writer.release()


def _user_files_beside_zarr_json(tmp: Path, store: Path) -> None:
    (tmp / "p").mkdir()
    (tmp / "p" / "zarr.json").write_text('{"zarr_format":3,"node_type":"group","attributes":{}}')
    (tmp / "p" / "thesis.tex").write_text("x")


def _runs_folder(tmp: Path, store: Path) -> None:
    shutil.copytree(store, tmp / "runs" / "a.zarr")


def _link(tmp: Path, store: Path) -> None:
    (tmp / "elsewhere").mkdir()
    (tmp / "link").symlink_to(tmp / "elsewhere")


def _report_mark(tmp: Path, store: Path) -> None:
    (tmp / "rep").mkdir()
    (tmp / "rep" / ".dyn-output.json").write_text('{"dyn_output": "report", "files": {}, "stores": []}')


def _grid_inside(tmp: Path, store: Path) -> None:
    (tmp / "s").mkdir()
    (tmp / "s" / "g.toml").write_text('preset = "huang2024-tiny"\n[axes]\nseed = [0]\n')


def _in_checkpoint(interrupted: Path, change):
    """Replace the store by a copy of the interrupted run (checkpoint at step 9), then ``change`` it."""
    def make(tmp: Path, store: Path) -> None:
        shutil.rmtree(store)
        shutil.copytree(interrupted, store)
        change(store / "_checkpoint" / _attrs(store)["checkpoint_slot"])
    return make


def _zero_noise_config(tmp: Path, store: Path) -> None:
    """A run recorded by an older dyn that accepted sigma_xi=0 (now rejected)."""
    _set_attrs(store, config={**_attrs(store)["config"], "sigma_xi": 0.0})


RUN = ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr"]

# (id, prepare(tmp, good_copy), argv with {store}/{tmp}, expected message, exit status)
CLI_CASES = [
    ("unknown preset", None, ["run", "--preset", "nope", "--out", "{tmp}/o.zarr"], "unknown preset 'nope'", 2),
    ("unknown --set key", None, [*RUN, "--set", "widht=3"], "unknown config key 'widht'", 2),
    ("unparsable --set value", None, [*RUN, "--set", "tau=fast"], "tau must be of type float, got str 'fast'", 2),
    ("--set without =", None, [*RUN, "--set", "tau"], "--set expects key=value, got 'tau'", 2),
    ("zero steps", None, [*RUN, "--steps", "0"], "steps must be a positive integer, got 0", 2),
    ("negative n", None, [*RUN, "--set", "n=-4"], "n must be a positive integer, got -4", 2),
    ("negative sigma", None, [*RUN, "--set", "sigma_xi=-1"], "sigma_xi must be a finite number >= 0, got -1", 2),
    ("NaN in data scale", None, [*RUN, "--set", "sigma_xi=nan"], "--set sigma_xi: cannot use value 'nan'", 2),
    ("zero noise scale", None, [*RUN, "--set", "sigma_xi=0"], "sigma_xi must be > 0", 2),
    ("zero signal", None, [*RUN, "--set", "mu_norm=0"], "mu_norm must be > 0", 2),
    ("seed 2**63", None, [*RUN, "--set", "seed=9223372036854775808"], "seed must lie in [0, 2**63)", 2),
    ("seed 2**64 - 1", None, [*RUN, "--seed", "18446744073709551615"], "seed must lie in [0, 2**63)", 2),
    ("seed 1e20", None, [*RUN, "--seed", "100000000000000000000"], "seed must lie in [0, 2**63)", 2),
    ("seed 1e20 as a float", None, [*RUN, "--set", "seed=1e20"], "seed must be of type int, got float", 2),
    ("d too large to allocate", None, [*RUN, "--set", "d=1000000000000000"], "this run needs at least", 2),
    ("m too large to allocate", None, [*RUN, "--set", "m=10000000000000"], "this run needs at least", 2),
    ("device meta", None, [*RUN, "--set", "device=meta"], "device 'meta' holds no data", 2),
    ("too many negatives", None, [*RUN, "--set", "negatives=15"], "negatives=15 exceeds the smallest opposite-label class", 2),
    ("device not available", None, [*RUN, "--set", "device=cuda:7"], "device 'cuda:7' is not available on this machine", 2),
    ("device not a device", None, [*RUN, "--set", "device=gpu"], "device 'gpu' is not a torch device", 2),
    ("bad modality value", None, [*RUN, "--set", "modality=tri"], "modality must be one of single, multi, got 'tri'", 2),
    ("bad --modality choice", None, [*RUN, "--modality", "tri"], "modality must be one of single, multi, got 'tri'", 2),
    ("preset without setup", _preset_file("[config]\nd=30\n"), ["run", "--preset", "{tmp}/p.toml", "--out", "{tmp}/o.zarr"],
     "missing `setup = \"<name>\"` (known setups: huang2024", 2),
    ("preset of an unknown setup", _preset_file("setup='nope'\n[config]\nd=30\n"),
     ["run", "--preset", "{tmp}/p.toml", "--out", "{tmp}/o.zarr"], "unknown setup 'nope' (known: huang2024", 2),
    ("--set twice", None, [*RUN, "--set", "tau=0.2", "--set", "tau=0.3"], "--set tau is given twice", 2),
    ("--steps and --set steps", None, [*RUN, "--steps", "3", "--set", "steps=4"], "--steps and --set steps=... both given", 2),
    ("non-integer --steps", None, [*RUN, "--steps", "x"], "argument --steps: invalid int value: 'x'", 2),
    ("missing --out", None, ["run", "--preset", "huang2024-tiny"], "dyn run needs --preset and --out", 2),
    ("output exists", None, ["run", "--preset", "huang2024-tiny", "--out", "{store}"], "already exists and is not empty (use --overwrite to replace it)", 2),
    ("overwrite a non-dyn folder", lambda t, s: (t / "mine").mkdir() or (t / "mine" / "a.txt").write_text("x"),
     ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/mine", "--overwrite"], "is not a dyn store; refusing to overwrite it", 2),
    ("overwrite a zarr group holding user files", _user_files_beside_zarr_json,
     ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/p", "--overwrite"], "is not a dyn store; refusing to overwrite it", 2),
    ("overwrite a dyn store holding user files", lambda t, s: (s / "thesis.tex").write_text("x"),
     ["run", "--preset", "huang2024-tiny", "--out", "{store}", "--overwrite"], "holds thesis.tex, which dyn did not write", 2),
    ("run into a symlink", _link, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/link", "--overwrite"],
     "is a symbolic link; dyn writes only to real paths", 2),
    ("invalid preset TOML", _preset_file("[config\nd=3"), ["run", "--preset", "{tmp}/p.toml", "--out", "{tmp}/o.zarr"],
     "invalid TOML", 2),
    ("preset without [config]", _preset_file("description='x'\n"), ["run", "--preset", "{tmp}/p.toml", "--out", "{tmp}/o.zarr"],
     "missing [config] table", 2),
    ("preset with unknown key", _preset_file("setup='huang2024'\n[config]\nwidth=3\n"), ["run", "--preset", "{tmp}/p.toml", "--out", "{tmp}/o.zarr"],
     "unknown config key 'width'", 2),
    ("preset with wrong type", _preset_file("setup='huang2024'\n[config]\nd='big'\n"), ["run", "--preset", "{tmp}/p.toml", "--out", "{tmp}/o.zarr"],
     "d must be of type int, got str 'big'", 2),
    ("resume a complete run", None, ["run", "--resume", "{store}"], "is already complete; nothing to resume", 2),
    ("resume with options", None, ["run", "--resume", "{store}", "--seed", "3"], "drop --seed", 2),
    ("resume with --overwrite", None, ["run", "--resume", "{store}", "--overwrite"], "drop --overwrite", 2),
    ("resume a non-store", None, ["run", "--resume", "{tmp}"], "is not a dyn store (no zarr.json", 2),
    ("resume, dangling checkpoint pointer", lambda t, s: _set_attrs(s, status="interrupted", checkpoint_step=7),
     ["run", "--resume", "{store}"], "the checkpoint of step 7 is missing", 2),
    ("resume, checkpoint array deleted", lambda t, s: None, ["run", "--resume", "{store}"],
     "the checkpoint of step 9 is damaged: its array _checkpoint/slot_0/weight_h is missing", 2),  # the slot lists it
    ("resume, checkpoint chunk deleted", lambda t, s: None, ["run", "--resume", "{store}"],
     "the checkpoint of step 9 is damaged: weight_h is missing its chunk c.0.0", 2),
    ("resume, checkpoint RNG state garbled", lambda t, s: None, ["run", "--resume", "{store}"],
     "the checkpoint of step 9 cannot be restored", 2),
    ("unknown theory", None, ["analyze", "{store}", "--out", "{tmp}/rep", "--theory", "kou2099"], "unknown theory 'kou2099'", 2),
    ("newer schema", lambda t, s: _set_attrs(s, dyn_schema_version=99), ["analyze", "{store}", "--out", "{tmp}/rep"],
     "uses dyn store schema 99, newer than this dyn supports (2); upgrade dyn", 2),
    ("metadata deleted", lambda t, s: (s / "zarr.json").unlink(), ["analyze", "{store}", "--out", "{tmp}/rep"],
     "is not a dyn store (no zarr.json; not a zarr v3 store)", 2),
    ("store from another program", lambda t, s: zarr.open_group(str(t / "other.zarr"), mode="w").create_array("x", shape=(2,), dtype="f4"),
     ["export", "{tmp}/other.zarr", "--out", "{tmp}/c.csv"], "no dyn_schema_version attribute; written by another program?", 2),
    ("missing site group", lambda t, s: shutil.rmtree(s / "h") or _unconsolidate(s), ["export", "{store}", "--out", "{tmp}/c.csv"],
     "missing site group 'h'", 2),
    ("truncated chunk file", lambda t, s: _truncate_chunk(s), ["export", "{store}", "--out", "{tmp}/c.csv"],
     "h/noise_inner chunk c.0.0.0 has a checksum (CRC-32C) that does not match its bytes", 2),  # crc32c names it
    ("truncated chunk, verify", lambda t, s: _truncate_chunk(s), ["verify", "{store}"], "is NOT sound", 1),
    ("data chunk deleted, export", lambda t, s: _chunks(s, "h/noise_inner")[0].unlink(),
     ["export", "{store}", "--out", "{tmp}/c.csv"], "h/noise_inner is missing its chunk c.0.0.0 (steps 0..12 by index)", 2),
    ("data chunk deleted, analyze", lambda t, s: _chunks(s, "loss")[0].unlink(),
     ["analyze", "{store}", "--out", "{tmp}/rep"], "loss is missing its chunk c.0", 2),
    ("data chunk deleted, verify", lambda t, s: _chunks(s, "h/signal_inner")[0].unlink(), ["verify", "{store}"],
     "h/signal_inner is missing its chunk", 1),
    ("static chunk deleted, export", lambda t, s: _chunks(s, "h/gram")[0].unlink(),
     ["export", "{store}", "--out", "{tmp}/c.csv"], "h/gram is missing its chunk", 2),
    ("dtype edited, export", _edit_dtype("h/gram", "float32"), ["export", "{store}", "--out", "{tmp}/c.csv"],
     "h/gram has data type float32, expected float64", 2),
    ("dtype edited, verify", _edit_dtype("h/noise_inner", "float64"), ["verify", "{store}"],
     "h/noise_inner has data type float64, expected float32", 1),
    ("weight dtype edited, verify", _edit_dtype("h/weight_init", "float64"), ["verify", "{store}"],
     "(its metadata does not match its data)", 1),
    ("killed before its first write, analyze", _unflushed, ["analyze", "{store}", "--out", "{tmp}/rep"],
     "holds no recorded step yet", 2),
    ("killed before its first write, export", _unflushed, ["export", "{store}", "--out", "{tmp}/c.csv"],
     "holds no recorded step yet", 2),
    ("analyze a run with a config now rejected", _zero_noise_config, ["analyze", "{store}", "--out", "{tmp}/rep"],
     "was recorded with a config dyn rejects: sigma_xi must be > 0", 2),
    ("pickle codec refused", lambda t, s: _pickle_codec(s), ["verify", "{store}"],
     "uses codec 'numcodecs.pickle', which dyn does not read", 2),
    ("export format by suffix", None, ["export", "{store}", "--out", "{tmp}/c.xlsx"], "cannot tell the format from 'c.xlsx'", 2),
    ("export format flag", None, ["export", "{store}", "--format", "xlsx", "--out", "{tmp}/c"], "invalid choice: 'xlsx'", 2),
    ("export output exists", lambda t, s: (t / "c.csv").write_text("mine"), ["export", "{store}", "--out", "{tmp}/c.csv"],
     "already exists (not written by dyn; dyn will not replace it): choose a new path", 2),
    ("export --overwrite a file dyn did not write", lambda t, s: (t / "c.csv").write_text("mine"),
     ["export", "{store}", "--out", "{tmp}/c.csv", "--overwrite"], "is not a dyn export file; refusing to overwrite it", 2),
    ("export over the input's metadata", None, ["export", "{store}", "--format", "csv", "--out", "{store}/zarr.json", "--overwrite"],
     "lies inside the input", 2),
    ("export into a symlink", lambda t, s: (t / "c.csv").symlink_to(t / "target.csv"),
     ["export", "{store}", "--out", "{tmp}/c.csv", "--overwrite"], "is a symbolic link", 2),
    ("export below a file", lambda t, s: (t / "f").write_text("x"), ["export", "{store}", "--out", "{tmp}/f/c.csv"],
     "is a file, not a folder", 2),
    ("analyze output not empty", lambda t, s: (t / "rep").mkdir() or (t / "rep" / "n.md").write_text("mine"),
     ["analyze", "{store}", "--out", "{tmp}/rep"],
     "already exists and is not empty (not written by dyn; dyn will not replace it): choose a new path", 2),
    ("analyze --overwrite a folder dyn did not write", lambda t, s: (t / "rep").mkdir() or (t / "rep" / "n.md").write_text("mine"),
     ["analyze", "{store}", "--out", "{tmp}/rep", "--overwrite"], "is not a dyn report folder; refusing to overwrite it", 2),
    ("analyze --out is the input", None, ["analyze", "{store}", "--out", "{store}", "--overwrite"],
     "is an input of this command", 2),
    ("analyze --out holds the input", _runs_folder, ["analyze", "{tmp}/runs/a.zarr", "--out", "{tmp}/runs", "--overwrite"],
     "holds the input", 2),
    ("analyze --out inside the input", None, ["analyze", "{store}", "--out", "{store}/report"], "lies inside the input", 2),
    ("analyze into a symlink", _link, ["analyze", "{store}", "--out", "{tmp}/link", "--overwrite"], "is a symbolic link", 2),
    ("analyze output below a file", lambda t, s: (t / "f").write_text("x"), ["analyze", "{store}", "--out", "{tmp}/f/rep"],
     "is a file, not a folder", 2),
    ("reproduce over a report folder", _report_mark, ["reproduce", "figure1", "--small", "--out", "{tmp}/rep", "--overwrite"],
     "is a dyn report folder, not a reproduction folder; refusing to overwrite it", 2),
    ("reproduce over a run store", None, ["reproduce", "figure1", "--small", "--out", "{store}", "--overwrite"],
     "is a dyn store, not a reproduction folder", 2),
    ("sweep --out holds its grid", _grid_inside, ["sweep", "--grid", "{tmp}/s/g.toml", "--out", "{tmp}/s", "--overwrite"],
     "holds the input", 2),
    ("sweep over a run store", None, ["sweep", "--grid", "phase-diagram", "--out", "{store}", "--overwrite"],
     "is a dyn store, not a sweep folder", 2),
    ("sweep with batch 0", None, ["sweep", "--grid", "phase-diagram", "--out", "{tmp}/sw", "--batch", "0"],
     "--batch must be a positive integer, got '0'", 2),
    ("verify a plain folder", None, ["verify", "{tmp}"], "is not a dyn store", 2),
]


def _prepare_checkpoint_cases(interrupted):
    """The checkpoint cases need the interrupted run: bind their preparation to it."""
    def garble(ckpt: Path) -> None:
        arr = zarr.open_array(str(ckpt / "rng_sgd"), mode="r+")
        arr[...] = np.full(arr.shape, 7, dtype=arr.dtype)

    changes = {
        "resume, checkpoint array deleted": lambda ckpt: shutil.rmtree(ckpt / "weight_h"),
        "resume, checkpoint chunk deleted": lambda ckpt: _chunks(ckpt, "weight_h")[0].unlink(),
        "resume, checkpoint RNG state garbled": garble,
    }
    return {name: _in_checkpoint(interrupted, change) for name, change in changes.items()}


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, good, interrupted, tmp_path, capsys):
    name, prepare, argv, message, status = case
    store = tmp_path / "store.zarr"
    shutil.copytree(good, store)
    prepare = _prepare_checkpoint_cases(interrupted).get(name, prepare)
    if prepare is not None:
        prepare(tmp_path, store)
    before = _snapshot(tmp_path)
    argv = [a.format(store=store, tmp=tmp_path) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    out = captured.err if status == 2 else captured.out + captured.err
    assert code == status, out
    assert message in out
    if status == 2:
        assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert _snapshot(tmp_path) == before, "a bad input changed files"


API_CASES = [
    ("probe dimension", lambda t: dyn.Site(torch.ones(3, 4), signals={"mu": torch.ones(5)}, noise=torch.ones(2, 4)),
     dyn.ConfigError, "signal 'mu' has shape (5,), expected (4,) to match the weight"),
    ("NaN in probes", lambda t: dyn.Site(torch.ones(3, 4), signals={"mu": torch.ones(4)}, noise=torch.full((2, 4), float("nan"))),
     dyn.ConfigError, "noise contains NaN or inf"),
    ("weight not 2-D", lambda t: dyn.Site(torch.ones(4), signals={"mu": torch.ones(4)}, noise=torch.ones(2, 4)),
     dyn.ConfigError, "site weight must be a 2-D tensor"),
    ("sites not a mapping", lambda t: dyn.Recorder(t / "r.zarr", sites=[]), dyn.ConfigError, "sites must be a non-empty mapping"),
    ("bad schedule", lambda t: dyn.Recorder(t / "r.zarr", sites={"h": _site()}, every=0), dyn.ConfigError, "every must be a positive integer"),
    ("bad flush_every", lambda t: dyn.Recorder(t / "r.zarr", sites={"h": _site()}, flush_every=-1), dyn.ConfigError, "flush_every must be a positive integer"),
    ("config NaN", lambda t: dyn.Config(eta=float("nan")), dyn.ConfigError, "eta must be a positive finite number"),
    ("open a file", lambda t: [(t / "f").write_text("x"), dyn.open(t / "f")], dyn.StoreError, "is not a dyn store"),
]


def _site():
    return dyn.Site(torch.nn.Parameter(torch.ones(3, 4)), signals={"mu": torch.ones(4)}, noise=torch.eye(4)[:2])


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(case, tmp_path):
    name, call, exc_type, message = case
    with pytest.raises(exc_type) as err:
        call(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "r.zarr").exists()


def test_log_and_record_misuse(tmp_path):
    with dyn.Recorder(tmp_path / "r.zarr", sites={"h": _site()}) as rec:
        with pytest.raises(dyn.ConfigError, match="log: loss must be a scalar"):
            rec.log(loss=torch.ones(3))
        with pytest.raises(dyn.ConfigError, match="log: loss must be a number or a 0-d tensor, got str"):
            rec.log(loss="low")
        rec.step()
        with pytest.raises(dyn.ConfigError, match="record: step 1 is not after the last recorded step 1"):
            rec.record(1)
    assert dyn.open(tmp_path / "r.zarr")["step"].values.tolist() == [0, 1]


def test_full_disk_keeps_what_was_written(tmp_path, monkeypatch):
    """A store that fails mid-run (ENOSPC): the error surfaces on the training thread, earlier chunks survive."""
    from dyn.store import StoreWriter

    original = StoreWriter.append
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StoreWriter, "append", failing)
    w = torch.nn.Parameter(torch.ones(3, 4))
    site = dyn.Site(w, signals={"mu": torch.ones(4)}, noise=torch.eye(4)[:2])
    with pytest.raises(dyn.StoreError, match="No space left on device"):
        with dyn.Recorder(tmp_path / "r.zarr", sites={"h": site}, chunk_bytes=3 * 4 * 3 * 4) as rec:
            for _ in range(100):
                with torch.no_grad():
                    w.add_(0.01)
                rec.step()
    tree = dyn.open(tmp_path / "r.zarr")
    assert tree.attrs["status"] == "interrupted" and "No space left" in tree.attrs["error"]
    assert tree.sizes["step"] == 2 * rec.chunk_steps
    assert tree["step"].values.tolist() == list(range(2 * rec.chunk_steps))


def test_disk_full_exits_3_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    """ENOSPC in the middle of `dyn run`: its own exit status (3, not 2 = bad input), one line, and a store that
    `dyn run --resume` finishes, identical to an uninterrupted run."""
    from dyn.store import StoreWriter

    args = ["run", "--preset", "huang2024-tiny", "--steps", "30", "--quiet", "--checkpoint-every", "4"]
    assert main([*args, "--out", str(tmp_path / "ref.zarr")]) == 0
    original, calls = StoreWriter.append, {"n": 0}

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(28, "No space left on device")
        return original(self, *a, **k)

    monkeypatch.setattr(StoreWriter, "append", failing)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "run.zarr")]) == 3
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    attrs = _attrs(tmp_path / "run.zarr")
    assert attrs["status"] == "interrupted" and attrs["checkpoint_step"] == 12 and "No space" in attrs["error"]
    monkeypatch.setattr(StoreWriter, "append", original)
    assert main(["run", "--resume", str(tmp_path / "run.zarr"), "--quiet"]) == 0
    done, ref = dyn.open(tmp_path / "run.zarr"), dyn.open(tmp_path / "ref.zarr")
    assert done.attrs["status"] == "complete" and "error" not in done.attrs
    np.testing.assert_array_equal(done["h"]["noise_inner"].values, ref["h"]["noise_inner"].values)
    np.testing.assert_array_equal(done["h"]["weight_final"].values, ref["h"]["weight_final"].values)


def test_ctrl_c_while_the_cli_imports(monkeypatch, capsys):
    """Ctrl-C while the command line is still importing (the theory registry, pandas, torch): one line, 130."""
    import dyn.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(dyn.cli, "_build_parser", interrupted)
    assert main(["presets"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "dyn: interrupted"


def test_ctrl_c_checkpoints_marks_interrupted_exit_130(tmp_path):
    """SIGINT to a running `dyn run`: exit 130, one line, and a checkpoint at the step it stopped at."""
    out = tmp_path / "c.zarr"
    exe = os.path.join(os.path.dirname(sys.executable), "dyn")
    proc = subprocess.Popen([exe, "run", "--preset", "huang2024-tiny", "--steps", "100000", "--out", str(out),
                             "--quiet", "--checkpoint-every", "50"], stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (_attrs_or_empty(out).get("checkpoint_step") or 0) >= 100, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("dyn run: interrupted at step ") and err.strip().endswith(f"dyn run --resume {out}"), err
    tree = dyn.open(out)
    attrs = tree.attrs
    n = tree.sizes["step"]
    assert attrs["status"] == "interrupted" and n > 100 and tree["step"].values.tolist() == list(range(n))
    assert attrs["checkpoint_step"] == n  # the Ctrl-C checkpoint: the run continues exactly where it stopped
    assert np.isfinite(tree["h"]["noise_inner"].values).all()


def _attrs_or_empty(store: Path) -> dict:
    try:
        return _attrs(store)
    except (OSError, ValueError, KeyError):
        return {}


def _wait_for(condition, proc, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds (the process must still be running)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the process ended before the condition held"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_second_writer_refused_across_processes(tmp_path, good):
    store = tmp_path / "live.zarr"
    script = f"""
import torch, dyn, time, sys
w = torch.nn.Parameter(torch.ones(3, 4))
site = dyn.Site(w, signals={{"mu": torch.ones(4)}}, noise=torch.eye(4)[:2])
with dyn.Recorder({str(store)!r}, sites={{"h": site}}) as rec:
    print("open", flush=True)
    time.sleep(30)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        before = _snapshot(store)
        with pytest.raises(dyn.StoreError, match="is being written by another process"):
            dyn.Recorder(store, sites={"h": _site()}, overwrite=True).open()
        assert _snapshot(store) == before
    finally:
        proc.kill()
        proc.wait()


def test_opening_a_crafted_store_cannot_execute_code(tmp_path, good):
    """A store whose array declares a pickle codec with a payload that would create a file when unpickled:
    dyn refuses it from the JSON metadata alone; the payload never runs."""
    import pickle

    store = tmp_path / "evil.zarr"
    shutil.copytree(good, store)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    chunk = [p for p in sorted((store / "h" / "noise_inner").glob("c.*")) if p.is_file()][0]
    chunk.write_bytes(pickle.dumps(Payload()))
    _pickle_codec(store)
    with pytest.raises(dyn.StoreError, match="numcodecs.pickle"):
        dyn.open(store)
    with pytest.raises(dyn.StoreError):
        dyn.compare(store)
    assert main(["verify", str(store)]) == 2
    assert not marker.exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                         lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                         max_leaves=10))
def test_store_reader_rejects_arbitrary_metadata(tmp_path_factory, meta):
    """Whatever zarr.json holds, opening gives a dyn StoreError (or a valid store), never another exception."""
    root = tmp_path_factory.mktemp("fuzz") / "s.zarr"
    root.mkdir()
    (root / "zarr.json").write_text(json.dumps(meta))
    try:
        dyn.open(root)
    except dyn.StoreError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=40, deadline=None)
@given(raw=st.binary(max_size=64))
def test_store_reader_rejects_arbitrary_bytes(tmp_path_factory, raw):
    root = tmp_path_factory.mktemp("fuzzb") / "s.zarr"
    root.mkdir()
    (root / "zarr.json").write_bytes(raw)
    with pytest.raises(dyn.StoreError):
        dyn.open(root)
