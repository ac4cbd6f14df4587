from __future__ import annotations

import os
import subprocess
import sys

import pytest

import dyn
from dyn.cli import main


def _dyn(*args, cwd=None):
    """Run the console script in a subprocess, as a user would."""
    exe = os.path.join(os.path.dirname(sys.executable), "dyn")
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_run_end_to_end(tmp_path):
    out = tmp_path / "single.zarr"
    res = _dyn("run", "--preset", "huang2024-tiny", "--out", str(out), "--steps", "7", "--seed", "3",
               "--set", "tau=0.2", "--set", "m=5", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "complete: 7 steps" in res.stdout and str(out) in res.stdout and "KiB" in res.stdout
    tree = dyn.open(out)
    cfg = tree.attrs["config"]
    assert (cfg["steps"], cfg["seed"], cfg["tau"], cfg["m"]) == (7, 3, 0.2, 5)
    assert tree.attrs["preset"] == "huang2024-tiny"
    assert tree["h"]["noise_inner"].sizes == {"step": 8, "neuron": 5, "sample": 20}


def test_run_multi_and_overwrite(tmp_path):
    out = tmp_path / "multi.zarr"
    assert main(["run", "--preset", "huang2024-tiny", "--modality", "multi", "--out", str(out), "--quiet"]) == 0
    assert dyn.open(out).attrs["sites"] == ["h", "g"]
    assert main(["run", "--preset", "huang2024-tiny", "--out", str(out), "--steps", "2", "--quiet"]) == 2
    assert dyn.open(out).attrs["sites"] == ["h", "g"]  # untouched
    assert main(["run", "--preset", "huang2024-tiny", "--out", str(out), "--steps", "2", "--quiet", "--overwrite"]) == 0
    assert dyn.open(out).attrs["sites"] == ["h"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--preset", "huang2024-tiny", "--set", "sigma_xi=-1"], "sigma_xi must be a finite number >= 0"),
        (["--preset", "huang2024-tiny", "--steps", "0"], "steps must be a positive integer"),
        (["--preset", "huang2024-tiny", "--set", "n=-4"], "n must be a positive integer"),
        (["--preset", "huang2024-tiny", "--set", "widht=3"], "unknown config key 'widht'"),
        (["--preset", "huang2024-tiny", "--set", "tau=fast"], "tau must be of type float"),
        (["--preset", "huang2024-tiny", "--set", "tau"], "--set expects key=value"),
        (["--preset", "huang2024-tiny", "--modality", "tri"], "modality must be one of single, multi, got 'tri'"),
        (["--preset", "huang2024-tiny", "--steps", "x"], "invalid int value: 'x'"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = tmp_path / "r.zarr"
    res = _dyn("run", "--out", str(out), "--quiet", *args)
    assert res.returncode == 2
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not out.exists()


def test_existing_output_exit_2(tmp_path):
    out = tmp_path / "r.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = _dyn("run", "--preset", "huang2024-tiny", "--out", str(out), "--quiet")
    assert res.returncode == 2 and "already exists" in res.stderr
    assert (out / "keep.txt").read_text() == "x"


def test_divergence_exit_1_and_store_marked(tmp_path):
    out = tmp_path / "d.zarr"
    res = _dyn("run", "--preset", "huang2024-tiny", "--out", str(out), "--set", "eta=1e9", "--quiet")
    assert res.returncode == 1
    assert "diverged" in res.stderr and "Traceback" not in res.stderr
    assert dyn.open(out).attrs["status"] == "diverged"


def test_help_and_presets():
    for args in (["--help"], ["run", "--help"], ["presets", "--help"]):
        res = _dyn(*args)
        assert res.returncode == 0 and "usage: dyn" in res.stdout
    res = _dyn("presets")
    assert res.returncode == 0 and "huang2024-figure1" in res.stdout and "Figure 1" in res.stdout


def _hints():
    """Every `dyn run ...` a claim's "not checkable" reason tells the user to train with, by theory."""
    import re
    from pathlib import Path

    root = Path(dyn.__file__).parent / "theory"
    out = []
    for theory, preset in (("huang2024", "huang2024-tiny"), ("huang2025_label_noise", "huang2025-tiny")):
        for source in (root / theory).glob("*.py"):
            out += [(preset, hint) for hint in re.findall(r"`dyn run ([^`]*)`", source.read_text())]
    return sorted(set(out))


@pytest.mark.parametrize("preset, hint", _hints())
def test_every_how_to_make_me_checkable_hint_works_from_the_cli(tmp_path, preset, hint):
    """Regression (issue 21 item 8): theorem.downstream said "train with evaluate_every", and
    `--set evaluate_every=10` was refused as an unknown key. Each hint is run as written, on the theory's tiny preset."""
    import shlex
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "dyn.cli", "run", "--preset", preset, "--steps", "20", "--out",
           str(tmp_path / "r.zarr"), "--no-progress", *shlex.split(hint)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_evaluate_every_makes_the_downstream_claim_checkable(tmp_path):
    from dyn.cli import main

    assert main(["run", "--preset", "huang2024-tiny", "--steps", "20", "--evaluate-every", "10", "--out",
                 str(tmp_path / "r.zarr"), "--no-progress"]) == 0
    row = dyn.compare(tmp_path / "r.zarr").set_index("claim").loc["theorem.downstream"]
    assert "no probe accuracy" not in row["reason"]
    assert main(["run", "--preset", "huang2025-tiny", "--steps", "5", "--evaluate-every", "10", "--out",
                 str(tmp_path / "l.zarr")]) == 2  # that setup evaluates through its config (test_every)
    assert not (tmp_path / "l.zarr").exists()
