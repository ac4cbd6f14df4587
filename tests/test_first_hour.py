"""Issue 23, "the first hour of a new user": dead ends and misleading words met by following the README.

Each test is named after what a user saw; each fails on the dyn before the fix."""

from __future__ import annotations

import io
import json
import shutil
import socket
from pathlib import Path
from unittest import mock

import pytest

import dyn
from dyn.cli import main
from dyn.store import StoreWriter, read_attrs, run_status, writer_alive
from dyn.viz.live import Follower, format_text, watch


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """``dyn run`` stopped by Ctrl-C at step 10 of 12 (checkpoints every 3 steps): its stderr and its store."""
    from dyn.setups.huang2024.train import Huang2024Setup

    path = tmp_path_factory.mktemp("interrupted") / "run.zarr"
    original, calls = Huang2024Setup.loss, {"n": 0}

    def loss(self, anchors=None):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt
        return original(self, anchors)

    err = io.StringIO()
    with mock.patch.object(Huang2024Setup, "loss", loss), mock.patch("sys.stderr", err):
        code = main(["run", "--preset", "huang2024-tiny", "--steps", "12", "--checkpoint-every", "3", "--quiet",
                     "--out", str(path)])
    return code, err.getvalue(), path


def _copy(store: Path, tmp: Path, status: str | None = None) -> Path:
    out = tmp / store.name
    shutil.copytree(store, out)
    if status is not None:  # what a writer killed (or stopped by a full disk) leaves: still marked running
        meta = json.loads((out / "zarr.json").read_text())
        meta["attributes"]["status"] = status
        (out / "zarr.json").write_text(json.dumps(meta))
    return out


# -- 1. a store whose writer is gone --------------------------------------------------------------------------
def test_running_store_without_writer_reads_as_stale_everywhere(interrupted, tmp_path, capsys):
    store = _copy(interrupted[2], tmp_path, status="running")
    assert not writer_alive(store) and run_status(store) == "stale"
    snap = Follower(store).poll()
    assert snap["status"] == "stale" and snap["resume"] == f"dyn run --resume {store}"
    assert "no process is writing it" in format_text(snap)
    out = io.StringIO()
    assert watch([store], interval=0.01, out=out, max_polls=50) == 0
    assert out.getvalue().count("[stale]") == 1  # stopped following after one poll, not 50
    assert dyn.Run(store).attrs["status"] == "stale"
    status = {c.name: c for c in dyn.verify(store)}["status"]
    assert status.ok and status.detail.startswith("stale") and "dyn run --resume" in status.detail
    from dyn.viz.report import write_report

    write_report([store], tmp_path / "rep", progress=False)
    assert "status stale" in (tmp_path / "rep" / "report.md").read_text()


def test_running_store_with_live_writer_is_still_running(interrupted, tmp_path):
    store = _copy(interrupted[2], tmp_path, status="running")
    writer = StoreWriter(store, append=True)  # holds the writer lock, as a training process does
    try:
        assert writer_alive(store) and run_status(store) == "running"
        assert Follower(store).poll()["status"] == "running"
        out = io.StringIO()
        watch([store], interval=0.01, out=out, max_polls=3)
        assert "[running]" in out.getvalue() and "[stale]" not in out.getvalue()
        detail = {c.name: c for c in dyn.verify(store)}["status"].detail
        assert detail.startswith("running: being written")
    finally:
        writer.release()
    assert run_status(store) == "stale"
    assert read_attrs(store)["status"] == "running"  # reading never writes


def test_reader_probe_does_not_turn_a_starting_writer_away(tmp_path):
    """The probe holds a shared lock for an instant; a writer starting meanwhile retries instead of failing."""
    import fcntl
    import os
    import threading

    path = tmp_path / "r.zarr"
    path.mkdir()
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # a probe that happens to hold the lock when the writer starts
    threading.Timer(0.02, os.close, (fd,)).start()
    writer = StoreWriter(path, overwrite=True)
    fd2 = writer._lock(path)
    os.close(fd2)


# -- 2, 3. dyn watch: a typo, a busy port ---------------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--once"]])
def test_watch_a_missing_path_exits_2_at_once(tmp_path, capsys, extra):
    assert main(["watch", str(tmp_path / "singel.zarr"), *extra]) == 2
    err = capsys.readouterr().err
    assert "singel.zarr does not exist" in err and "--wait" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "singel.zarr").exists()


def test_watch_a_folder_that_is_not_a_store_exits_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["watch", str(tmp_path), "--once"]) == 2
    assert "is not a dyn store" in capsys.readouterr().err


def test_watch_wait_waits_for_a_missing_store(tmp_path):
    out = io.StringIO()
    assert watch([tmp_path / "later.zarr"], interval=0.01, wait=True, out=out, max_polls=2) == 0
    assert "[not started]" in out.getvalue()
    # --once with --wait keeps polling until the store exists (here: until max_polls)
    out = io.StringIO()
    assert watch([tmp_path / "later.zarr"], interval=0.01, wait=True, once=True, out=out, max_polls=3) == 0


def test_watch_serve_on_a_busy_port_names_it_and_exits_2(interrupted, capsys):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        assert main(["watch", str(interrupted[2]), "--once", "--serve", str(port)]) == 2
    finally:
        busy.close()
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err and "--serve 0" in err
    assert len(err.strip().splitlines()) == 1


def test_watch_serve_port_out_of_range_exits_2(interrupted, capsys):
    assert main(["watch", str(interrupted[2]), "--once", "--serve", "70000"]) == 2
    assert "port must be 0 to 65535, got 70000" in capsys.readouterr().err


# -- 4, 5. an interrupted run: verify and the Ctrl-C message ----------------------------------------------------
def test_verify_an_interrupted_resumable_store_is_sound(interrupted, capsys):
    store = interrupted[2]
    assert read_attrs(store)["status"] == "interrupted"
    assert main(["verify", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"is sound; interrupted at step 9; resumable from step 9 with `dyn run --resume {store}`" in out
    assert "FAIL" not in out


def test_ctrl_c_in_dyn_run_prints_the_resume_command(interrupted, tmp_path):
    code, err, store = interrupted
    assert code == 130
    assert err.strip() == f"dyn run: interrupted at step 9 (checkpointed); continue with: dyn run --resume {store}"
    copy = _copy(store, tmp_path)
    assert main(["run", "--resume", str(copy), "--quiet"]) == 0  # the command printed works
    assert read_attrs(copy)["status"] == "complete"


# -- 6, 7, 8. output files ------------------------------------------------------------------------------------
@pytest.fixture
def umask_022():
    import os

    before = os.umask(0o022)
    yield
    os.umask(before)


def test_report_and_export_respect_the_umask(interrupted, tmp_path, umask_022):
    """Colleagues on a shared cluster can read what dyn writes: the umask decides, not mkdtemp's 0700/0600."""
    from dyn.viz.report import write_report

    store = interrupted[2]
    write_report([store], tmp_path / "rep", progress=False)
    assert (tmp_path / "rep").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "rep" / "report.md").stat().st_mode & 0o777 == 0o644
    dyn.export(store, tmp_path / "c.csv", progress=False)
    assert (tmp_path / "c.csv").stat().st_mode & 0o777 == 0o644
    import os

    os.umask(0o077)  # a private umask is respected too
    dyn.export(store, tmp_path / "p.csv", progress=False)
    assert (tmp_path / "p.csv").stat().st_mode & 0o777 == 0o600


def test_export_of_a_zarr_folder_prints_its_size(interrupted, tmp_path, capsys):
    out = tmp_path / "grid.zarr"
    assert main(["export", str(interrupted[2]), "--out", str(out)]) == 0
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    assert size > 2**20
    printed = capsys.readouterr().out
    assert f"({size / 2**20:.1f} MiB)" in printed and "0.0 MiB" not in printed
    assert main(["export", str(interrupted[2]), "--out", str(tmp_path / "c.csv"), "--reduce", "max"]) == 0
    small = (tmp_path / "c.csv").stat().st_size
    assert small < 2**20 and f"({small / 1024:.1f} KiB)" in capsys.readouterr().out


def test_an_existing_user_file_is_not_met_with_a_useless_overwrite_hint(interrupted, tmp_path, capsys):
    (tmp_path / "mydata").mkdir()
    notes = tmp_path / "mydata" / "notes.txt"
    notes.write_text("mine")
    assert main(["export", str(interrupted[2]), "--format", "csv", "--out", str(notes)]) == 2
    err = capsys.readouterr().err
    assert "choose a new path" in err and "--overwrite" not in err
    assert notes.read_text() == "mine"


def test_messages_name_flags_from_the_cli_and_keywords_from_python(interrupted, tmp_path, capsys):
    out = tmp_path / "c.csv"
    dyn.export(interrupted[2], out, progress=False)
    with pytest.raises(dyn.errors.StoreError, match=r"use overwrite=True to replace it\)$"):
        dyn.export(interrupted[2], out, progress=False)
    assert main(["export", str(interrupted[2]), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("(use --overwrite to replace it)")
    with pytest.raises(dyn.errors.ConfigError, match="give format= one of"):
        dyn.export(interrupted[2], tmp_path / "c.xlsx")
    assert main(["export", str(interrupted[2]), "--out", str(tmp_path / "c.xlsx")]) == 2
    assert "give --format one of" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["grid.zarr", "table.csv"])
def test_analysing_a_dyn_export_says_what_it_is(interrupted, tmp_path, capsys, name):
    out = tmp_path / name
    dyn.export(interrupted[2], out, progress=False)
    assert main(["analyze", str(out), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "is a dyn export of a run" in err and "xr.open_datatree" in err and "written by another program" not in err


# -- 9, 10. discoverability and words -------------------------------------------------------------------------
def test_presets_show_lists_fields_with_types_values_and_meanings(capsys):
    assert main(["presets", "--show", "huang2024-figure1"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert lines["eta"].split()[1:4] == ["float", "0.01", "Learning"] and "Learning rate η" in lines["eta"]
    assert lines["modality"].split()[1:3] == ["str", "'single'"]
    assert "Torch device, e.g. \"cpu\" or \"cuda\"" in lines["device"]  # "e.g." does not end the sentence
    assert "notes" not in lines and "--set KEY=VALUE" in out
    assert main(["presets", "--show", "huang2024-figur"]) == 2
    assert "did you mean 'huang2024-figure1'" in capsys.readouterr().err


def test_set_with_an_unknown_key_answers_with_the_valid_keys(tmp_path, capsys):
    assert main(["run", "--preset", "huang2024-tiny", "--set", "lr=0.1", "--out", str(tmp_path / "r.zarr")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'lr' for setup huang2024 (did you mean 'eta', the learning rate η?" in err
    assert "valid keys: modality, d, n," in err and "record_every" in err and "dyn presets --show" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r.zarr").exists()
    assert main(["run", "--preset", "huang2024-tiny", "--set", "zzz=1", "--out", str(tmp_path / "r.zarr")]) == 2
    assert "(valid keys: modality" in capsys.readouterr().err  # no guess when nothing is close


def test_one_hot_labels_are_named_as_such():
    import torch

    one_hot = torch.nn.functional.one_hot(torch.arange(50) % 2, 2)
    x = torch.randn(50, 8)
    with pytest.raises(dyn.errors.ConfigError, match=r"labels must be class indices.*shape \(50, 2\), one-hot"):
        dyn.Site(torch.nn.Parameter(torch.randn(3, 8)), signals={"mu": torch.ones(8)}, noise=x, labels=one_hot)
    from dyn.record.probes import class_means

    with pytest.raises(dyn.errors.ConfigError, match="pass labels.argmax"):
        class_means(x, one_hot)
    assert set(class_means(x, one_hot.argmax(1))) == {"class0", "class1"}


def test_the_regime_condition_reads_as_a_condition(interrupted):
    from dyn.viz.live import Follower

    snap = Follower(interrupted[2]).poll()
    condition = snap["regime"]["condition"]
    assert condition == "needs n SNR^2 <= 1.8; here n SNR^2 = 0.256 (met)"
    assert "(>=" not in format_text(snap) and "(<=" not in format_text(snap)


# -- 12, 13, 16. figures ----------------------------------------------------------------------------------------
def test_figure1_probes_is_two_accuracy_panels_on_one_range_with_chance_lines():
    import numpy as np
    import pandas as pd

    from dyn.experiments.huang2024 import _panels

    rows = [dict(step=s, metric=m, value=0.5 + 0.4 * s / 100 * (mod == "multi"), modality=mod, seed=seed)
            for m in ("probe_acc", "probe_acc_transfer") for mod in ("single", "multi") for seed in (0, 1)
            for s in range(0, 101, 10)]
    fig = _panels(pd.DataFrame(rows), ["probe_acc", "probe_acc_transfer"], "t")
    assert len(fig.axes) == 2  # no empty axes below
    for ax in fig.axes:
        assert ax.get_ylabel() == "accuracy" and ax.get_ylim() == (0.0, 1.02)
        assert any(np.allclose(line.get_ydata(), 0.5) for line in ax.get_lines()), "no chance line"
    assert "probe_acc" not in fig.axes[1].get_title()


def test_heatmap_colour_bar_label_fits_and_ticks_do_not_crowd_zero(interrupted):
    from dyn.viz.plot import plot_heatmap

    fig = plot_heatmap(interrupted[2], quantity="gamma")  # one site: the shortest colour bar
    fig.canvas.draw()
    bar = fig.axes[-1]
    label = bar.yaxis.label
    box, page = label.get_window_extent(), fig.bbox
    assert page.y0 <= box.y0 and box.y1 <= page.y1, "colour-bar label clipped"
    ticks = [t for t in bar.get_yticks() if bar.get_ylim()[0] <= t <= bar.get_ylim()[1]]
    vmax = max(abs(t) for t in ticks)
    near_zero = [t for t in ticks if 0 < abs(t) < vmax * 3e-3 * 3]
    assert 0.0 in ticks and not near_zero, ticks


def test_plot_coefficients_keeps_its_log_default_on_a_users_run(tmp_path):
    """A user's loop: γ and ρ are 0 at step 0, which used to switch the axis to linear without a word."""
    import torch

    from dyn.record.probes import class_means
    from dyn.viz.plot import plot_coefficients

    x, y = torch.randn(40, 30), torch.arange(40) % 2
    model = torch.nn.Sequential(torch.nn.Linear(30, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    site = dyn.Site(model[0].weight, signals=class_means(x, y), noise=x, labels=y)
    with dyn.Recorder(tmp_path / "mine.zarr", sites={"w": site}, optimizer=opt):
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    fig = plot_coefficients(tmp_path / "mine.zarr")
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "log"]
    assert plot_coefficients(tmp_path / "mine.zarr", logy=False).axes[0].get_yscale() == "linear"


def test_stage1_upper_and_lower_bounds_are_drawn_in_different_styles(interrupted):
    from dyn.viz.plot import plot_coefficients

    fig = plot_coefficients(interrupted[2])
    bounds = {line.get_label().split(" (")[0]: (str(line.get_linestyle()), line._unscaled_dash_pattern, line.get_color())
              for ax in fig.axes for line in ax.get_lines() if "bound" in line.get_label()}
    assert set(bounds) == {"stage-1 upper bound", "stage-1 lower bound"}
    upper, lower = bounds.values()
    assert upper[1] != lower[1] and upper[2] != lower[2]


def test_phase_diagram_legend_lists_only_boundaries_inside_the_grid():
    import pandas as pd

    from dyn.experiments.huang2024 import phase_diagram

    def draw(n_snr2):
        rows = [dict(status="complete", modality=mod, n_snr2=n, c_mu=c, probe_acc=0.8, seed=s,
                     winner="signal learning" if mod == "multi" else "noise memorization")
                for mod in ("multi", "single") for n in n_snr2 for c in ((3.0, 4.0) if mod == "multi" else (0.0,))
                for s in (0, 1)]
        fig = phase_diagram(pd.DataFrame(rows))
        legends = [[t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else [] for ax in fig.axes[:3]]
        notes = [t.get_text() for ax in fig.axes[:3] for t in ax.texts if "outside" in t.get_text()]
        return legends, notes

    legends, notes = draw((4.0, 6.0, 8.0))  # both boundaries (C_mu n SNR^2 = 4.51, n SNR^2 = 1.8) miss the grid
    assert not any("4.51" in t for leg in legends for t in leg) and not any("1.8" in t for t in legends[2])
    assert len(notes) == 3 and "noise memorization predicted" not in legends[2]
    legends, notes = draw((0.5, 1.5, 3.0))  # both inside
    assert any("4.51" in t for t in legends[0]) and any("1.8" in t for t in legends[2]) and not notes


# -- 15. every reproduction says whether it reproduced the paper ------------------------------------------------
def test_figure1_findings_say_differs_for_an_observed_0_72():
    import pandas as pd

    from dyn.setups.base import comparison_lines
    from dyn.experiments.huang2024 import figure1_findings

    summary = pd.DataFrame({"modality": ["single", "multi"] * 3, "metric": ["probe_acc"] * 2 + ["gamma_max"] * 2
                            + ["rho_max"] * 2, "mean": [0.72, 0.97, 0.5, 0.2, 1.0, 3.0], "std": [0.02] * 6})
    lines = comparison_lines(figure1_findings(summary))
    single = next(line for line in lines if "OOD accuracy, single-modal" in line)
    assert "stays ≈ 0.5 (chance)" in single and "0.72 ± 0.02" in single and "differs (why not known" in single
    assert "reproduced" in next(line for line in lines if "OOD accuracy, multi-modal" in line)
    signal = next(line for line in lines if "signal learning" in line)
    noise = next(line for line in lines if "noise memorization" in line)
    assert signal.endswith("differs (why not known)") and noise.endswith("differs (why not known)")
    summary["mean"] = [0.55, 0.97, 0.1, 0.9, 3.0, 1.0]
    assert all(row[3] for row in figure1_findings(summary))
    # with the head fitted on h(x_train) at chance, the difference has a known reason, in its own row
    summary = pd.concat([summary, pd.DataFrame({"modality": ["single"], "metric": ["probe_acc_transfer"],
                                                "mean": [0.495], "std": [0.02]})], ignore_index=True)
    summary.loc[0, "mean"] = 0.69
    rows = {row[0]: row for row in figure1_findings(summary)}
    assert rows["OOD accuracy, single-modal"][3] is False
    assert "head fitted on h(x_train) gives 0.495" in rows["OOD accuracy, single-modal"][4]
    assert rows["OOD accuracy, single-modal, head fitted on h(x_train)"][3] is True


def test_every_reproduction_command_prints_paper_vs_dyn():
    """Each registered reproduction's printed text is built with the paper-vs-dyn table (or says it has none)."""
    import inspect

    from dyn.experiments.reproduce import available_experiments

    for name, (_, _, command) in available_experiments().items():
        source = inspect.getsource(command)
        assert "comparison_lines(" in source or "paper vs dyn: none" in source, name


def test_table1_and_label_noise_findings_can_differ():
    import pandas as pd

    from dyn.experiments.huang2024 import table1_findings
    from dyn.experiments.huang2025_label_noise import figure2_findings, figure3_findings

    table = pd.DataFrame({"modality": ["single", "multi"], "train_acc_mean": [90.0, 89.0], "train_acc_std": [1.0, 1.0],
                          "test_acc_mean": [60.0, 85.0], "test_acc_std": [2.0, 2.0], "paper_train": [88.43, 87.77],
                          "paper_test": [12.68, 82.13]})
    verdicts = {row[0]: (row[3], row[4]) for row in table1_findings(table)}
    assert verdicts["test accuracy, single-modal (%)"][0] is False and "8x8 digits" in verdicts[
        "test accuracy, single-modal (%)"][1]
    assert verdicts["test accuracy, multi-modal (%)"][0] is True
    rows = [("gd", "loss", 0.3), ("gd", "ratio", 0.5), ("gd", "test_acc", 0.9), ("label_noise", "ratio", 0.8),
            ("label_noise", "test_acc", 0.8), ("label_noise", "loss_noisy", 0.05)]
    summary = pd.DataFrame([dict(algorithm=a, metric=m, mean=v, std=0.0) for a, m, v in rows])
    assert [row[3] for row in figure2_findings(summary)] == [False] * 5
    grid = pd.DataFrame([dict(algorithm=a, n=10, snr=0.1, mean=1.0) for a in ("gd", "label_noise")])
    assert [row[3] for row in figure3_findings(grid)] == [False, False]


def test_label_noise_reproductions_are_marked_as_reproductions(monkeypatch, tmp_path):
    """Noticed while fixing the output modes: figure2 and optimizers marked their folders as reports, so the CLI's
    `dyn reproduce ... --overwrite` (which claims a reproduction folder) refused its own earlier output."""
    import dyn.experiments.huang2025_label_noise as E

    kinds = []

    class Stop(Exception):
        pass

    def staged(out, **options):
        kinds.append(options.get("kind", "report"))
        raise Stop

    monkeypatch.setattr(E, "staged_folder", staged)
    for make in (E.figure2, E.optimizers):
        with pytest.raises(Stop):
            make(tmp_path / "out", seeds=1, small=True, progress=False)
    assert kinds == ["reproduction", "reproduction"]
