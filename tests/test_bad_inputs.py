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


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _unconsolidate(store: Path, **attrs) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    meta["consolidated_metadata"] = None
    meta["attributes"].update(attrs)
    (store / "zarr.json").write_text(json.dumps(meta))


def _truncate_chunk(store: Path) -> None:
    chunk = [p for p in sorted((store / "h" / "noise_inner" / "c").rglob("*")) if p.is_file()][-1]
    chunk.write_bytes(chunk.read_bytes()[:10])


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


# (id, prepare(tmp, good_copy), argv with {store}/{tmp}, expected message, exit status)
CLI_CASES = [
    ("unknown preset", None, ["run", "--preset", "nope", "--out", "{tmp}/o.zarr"], "unknown preset 'nope'", 2),
    ("unknown --set key", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "widht=3"],
     "unknown config key 'widht'", 2),
    ("unparsable --set value", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "tau=fast"],
     "tau must be of type float, got str 'fast'", 2),
    ("--set without =", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "tau"],
     "--set expects key=value, got 'tau'", 2),
    ("zero steps", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--steps", "0"],
     "steps must be a positive integer, got 0", 2),
    ("negative n", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "n=-4"],
     "n must be a positive integer, got -4", 2),
    ("negative sigma", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "sigma_xi=-1"],
     "sigma_xi must be a finite number >= 0, got -1", 2),
    ("NaN in data scale", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "sigma_xi=nan"],
     "--set sigma_xi: cannot use value 'nan'", 2),
    ("too many negatives", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "negatives=15"],
     "negatives=15 exceeds the smallest opposite-label class", 2),
    ("device not available", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "device=cuda:7"],
     "device 'cuda:7' is not available on this machine", 2),
    ("device not a device", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "device=gpu"],
     "device 'gpu' is not a torch device", 2),
    ("bad modality value", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "modality=tri"],
     "modality must be one of single, multi, got 'tri'", 2),
    ("bad --modality choice", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--modality", "tri"],
     "modality must be one of single, multi, got 'tri'", 2),
    ("preset without setup", _preset_file("[config]\nd=30\n"), ["run", "--preset", "{tmp}/p.toml", "--out", "{tmp}/o.zarr"],
     "missing `setup = \"<name>\"` (known setups: huang2024", 2),
    ("preset of an unknown setup", _preset_file("setup='nope'\n[config]\nd=30\n"),
     ["run", "--preset", "{tmp}/p.toml", "--out", "{tmp}/o.zarr"], "unknown setup 'nope' (known: huang2024", 2),
    ("--set twice", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--set", "tau=0.2", "--set", "tau=0.3"],
     "--set tau is given twice", 2),
    ("--steps and --set steps", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--steps", "3", "--set", "steps=4"],
     "--steps and --set steps=... both given", 2),
    ("non-integer --steps", None, ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/o.zarr", "--steps", "x"],
     "argument --steps: invalid int value: 'x'", 2),
    ("missing --out", None, ["run", "--preset", "huang2024-tiny"], "dyn run needs --preset and --out", 2),
    ("output exists", None, ["run", "--preset", "huang2024-tiny", "--out", "{store}"], "already exists (use overwrite=True / --overwrite", 2),
    ("overwrite a non-dyn folder", lambda t, s: (t / "mine").mkdir() or (t / "mine" / "a.txt").write_text("x"),
     ["run", "--preset", "huang2024-tiny", "--out", "{tmp}/mine", "--overwrite"], "is not a dyn store; refusing to overwrite it", 2),
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
    ("resume without checkpoint", lambda t, s: _unconsolidate(s, status="interrupted"), ["run", "--resume", "{store}"],
     "has no checkpoint to resume from", 2),
    ("resume a non-store", None, ["run", "--resume", "{tmp}"], "is not a dyn store (no zarr.json", 2),
    ("unknown theory", None, ["analyze", "{store}", "--out", "{tmp}/rep", "--theory", "kou2099"], "unknown theory 'kou2099'", 2),
    ("newer schema", lambda t, s: _unconsolidate(s, dyn_schema_version=99), ["analyze", "{store}", "--out", "{tmp}/rep"],
     "uses dyn store schema 99, newer than this dyn supports (1); upgrade dyn", 2),
    ("metadata deleted", lambda t, s: (s / "zarr.json").unlink(), ["analyze", "{store}", "--out", "{tmp}/rep"],
     "is not a dyn store (no zarr.json; not a zarr v3 store)", 2),
    ("store from another program", lambda t, s: zarr.open_group(str(t / "other.zarr"), mode="w").create_array("x", shape=(2,), dtype="f4"),
     ["export", "{tmp}/other.zarr", "--out", "{tmp}/c.csv"], "no dyn_schema_version attribute; written by another program?", 2),
    ("missing site group", lambda t, s: shutil.rmtree(s / "h") or _unconsolidate(s), ["export", "{store}", "--out", "{tmp}/c.csv"],
     "missing site group 'h'", 2),
    ("truncated chunk file", lambda t, s: _truncate_chunk(s), ["export", "{store}", "--out", "{tmp}/c.csv"],
     "(corrupt or truncated data?): error during blosc decompression", 2),
    ("truncated chunk, verify", lambda t, s: _truncate_chunk(s), ["verify", "{store}"], "is NOT sound", 1),
    ("pickle codec refused", lambda t, s: _pickle_codec(s), ["verify", "{store}"],
     "uses codec 'numcodecs.pickle', which dyn does not read", 2),
    ("export format by suffix", None, ["export", "{store}", "--out", "{tmp}/c.xlsx"], "cannot tell the format from 'c.xlsx'", 2),
    ("export format flag", None, ["export", "{store}", "--format", "xlsx", "--out", "{tmp}/c"], "invalid choice: 'xlsx'", 2),
    ("export output exists", lambda t, s: (t / "c.csv").write_text("mine"), ["export", "{store}", "--out", "{tmp}/c.csv"],
     "already exists (use overwrite=True / --overwrite", 2),
    ("export folder missing", None, ["export", "{store}", "--out", "{tmp}/nope/c.csv"], "folder", 2),
    ("analyze output not empty", lambda t, s: (t / "rep").mkdir() or (t / "rep" / "n.md").write_text("mine"),
     ["analyze", "{store}", "--out", "{tmp}/rep"], "is not empty (use --overwrite", 2),
    ("analyze output unwritable", lambda t, s: (t / "f").write_text("x"), ["analyze", "{store}", "--out", "{tmp}/f/rep"],
     "not writable", 2),
    ("verify a plain folder", None, ["verify", "{tmp}"], "is not a dyn store", 2),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, good, tmp_path, capsys):
    name, prepare, argv, message, status = case
    store = tmp_path / "store.zarr"
    shutil.copytree(good, store)
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


def test_ctrl_c_flushes_marks_interrupted_exit_130(tmp_path):
    out = tmp_path / "c.zarr"
    exe = os.path.join(os.path.dirname(sys.executable), "dyn")
    proc = subprocess.Popen([exe, "run", "--preset", "huang2024-tiny", "--steps", "100000", "--out", str(out),
                             "--quiet", "--checkpoint-every", "50"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "_checkpoint").exists():
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    tree = dyn.open(out)
    assert tree.attrs["status"] == "interrupted"
    n = tree.sizes["step"]
    assert n > 50 and tree["step"].values.tolist() == list(range(n))
    assert np.isfinite(tree["h"]["noise_inner"].values).all()


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

    chunk = [p for p in sorted((store / "h" / "noise_inner" / "c").rglob("*")) if p.is_file()][0]
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
