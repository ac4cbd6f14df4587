"""Progress bars: one rule (dyn.progress) for when they show, and every long command following it.

The CLI tests run the console script in a subprocess with standard error to a pipe (not a terminal), as in a log
or CI: no bar unless --progress or DYN_PROGRESS=1; tqdm's bar text ("100%|") shows when one is drawn.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types

import pytest

import dyn
from dyn import progress as P
from dyn.cli import main
from dyn.errors import ConfigError

BAR = "100%|"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("progress") / "r.zarr"
    dyn.train(dyn.load_preset("huang2024-tiny", steps=20), path)
    return path


def _dyn(*args, env=None):
    """The console script in a subprocess, standard error a pipe; DYN_PROGRESS as given (unset by default)."""
    exe = os.path.join(os.path.dirname(sys.executable), "dyn")
    full = {k: v for k, v in os.environ.items() if k != "DYN_PROGRESS"}
    full.update(env or {})
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, env=full)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("DYN_PROGRESS", raising=False)


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fake_ipython(monkeypatch, shell_class: str) -> None:
    """An IPython module whose get_ipython() returns an instance of a class named ``shell_class``."""
    shell = type(shell_class, (), {})()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


# -- the rule ----------------------------------------------------------------------------------------------------
def test_forced_values_win_over_everything(monkeypatch):
    monkeypatch.setenv("DYN_PROGRESS", "0")
    assert P.progress_enabled(True) is True
    monkeypatch.setenv("DYN_PROGRESS", "1")
    assert P.progress_enabled(False) is False


def test_auto_follows_the_terminal(monkeypatch, no_env):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert P.progress_enabled(None) is False  # a pipe or a log: no bar
    monkeypatch.setattr(sys, "stderr", _TTY())
    assert P.progress_enabled(None) is True
    monkeypatch.setattr(sys, "stderr", None)  # pythonw, daemons
    assert P.progress_enabled(None) is False


@pytest.mark.parametrize("value, tty, expected", [("1", False, True), ("yes", False, True), ("0", True, False),
                                                  ("off", True, False), ("", False, False), ("", True, True)])
def test_environment_overrides_auto(monkeypatch, value, tty, expected):
    monkeypatch.setenv("DYN_PROGRESS", value)
    monkeypatch.setattr(sys, "stderr", _TTY() if tty else io.StringIO())
    assert P.progress_enabled(None) is expected


def test_notebook_detection(monkeypatch, no_env):
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a kernel's stderr is no terminal
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not P.in_notebook() and P.progress_enabled(None) is False
    _fake_ipython(monkeypatch, "TerminalInteractiveShell")  # plain IPython in a terminal is not a notebook
    assert not P.in_notebook() and P.progress_enabled(None) is False
    _fake_ipython(monkeypatch, "ZMQInteractiveShell")  # Jupyter
    assert P.in_notebook() and P.progress_enabled(None) is True
    monkeypatch.setenv("DYN_PROGRESS", "0")
    assert P.progress_enabled(None) is False


def test_notebook_without_ipywidgets_falls_back_to_text(monkeypatch, capsys, no_env):
    from tqdm import tqdm
    from tqdm.notebook import tqdm_notebook  # imported with the real IPython: a fake one would stay in its module

    _fake_ipython(monkeypatch, "ZMQInteractiveShell")
    monkeypatch.setattr(P, "_has_widgets", lambda: False)
    with P.progress_bar(2, desc="runs") as bar:
        bar.update(2)

    assert isinstance(bar, tqdm) and not isinstance(bar, tqdm_notebook)
    err = capsys.readouterr().err
    assert "runs:" in err and "0/2" in err and "IProgress" not in err  # a text bar, no widget error


def test_one_bar_per_call_in_a_notebook(monkeypatch, capsys, no_env):
    """Issue 23: figure1 in a notebook printed a bar per run under its own (341 stderr outputs in 01-figure1)."""
    _fake_ipython(monkeypatch, "ZMQInteractiveShell")
    monkeypatch.setattr(P, "_has_widgets", lambda: False)
    with P.progress_bar(2, desc="outer") as outer:
        inner = P.progress_bar(5, desc="inner")
        inner.update(5)
        inner.close()
        outer.update(2)
    assert isinstance(inner, P._NoBar) and not isinstance(outer, P._NoBar)
    again = P.progress_bar(1, desc="next call")  # the outer bar closed: the next call gets its bar
    again.close()
    assert not isinstance(again, P._NoBar) and P._open_in_notebook == 0
    err = capsys.readouterr().err
    assert "outer" in err and "next call" in err and "inner" not in err
    monkeypatch.setattr(P, "in_notebook", lambda: False)  # in a terminal bars stack: the inner one is drawn
    with P.progress_bar(2, desc="outer", progress=True), P.progress_bar(5, desc="inner", progress=True) as inner:
        assert not isinstance(inner, P._NoBar)


def test_notebook_with_ipywidgets_gets_a_widget(monkeypatch, no_env):
    pytest.importorskip("ipywidgets")
    from tqdm.notebook import tqdm_notebook  # imported with the real IPython, before the shell is faked

    _fake_ipython(monkeypatch, "ZMQInteractiveShell")

    bar = P.progress_bar(2)
    bar.close()
    assert isinstance(bar, tqdm_notebook)


def test_bar_off_does_nothing_and_on_writes_to_stderr(capsys):
    with P.progress_bar(3, desc="work", progress=False) as bar:
        bar.update(3)
        bar.set_postfix_str("x")
    assert bar.n == 3 and capsys.readouterr().err == ""
    with P.progress_bar(3, desc="work", progress=True, leave=True) as bar:
        bar.update(3)
    err = capsys.readouterr().err
    assert "work" in err and BAR in err and "3/3" in err


# -- the CLI, as a user runs it (standard error not a terminal) ---------------------------------------------------
@pytest.mark.parametrize("flags, env, shown", [
    ([], {}, False),                                   # not a TTY, no flag: no bar
    (["--progress"], {}, True),
    (["--progress"], {"DYN_PROGRESS": "0"}, True),     # the flag beats the environment
    ([], {"DYN_PROGRESS": "1"}, True),
    (["--no-progress"], {"DYN_PROGRESS": "1"}, False),
])
def test_export_bar_follows_the_flag_and_environment(store, tmp_path, flags, env, shown):
    res = _dyn("export", str(store), "--out", str(tmp_path / "c.csv"), "--reduce", "max", *flags, env=env)
    assert res.returncode == 0, res.stderr
    assert (BAR in res.stderr) is shown and ("export csv" in res.stderr) is shown
    assert "dyn export: wrote" in res.stdout and "%|" not in res.stdout  # bars never go to stdout


def test_analyze_bar_counts_its_work(store, tmp_path):
    res = _dyn("analyze", str(store), "--out", str(tmp_path / "rep"), "--progress")
    assert res.returncode == 0, res.stderr
    # one run: its comparison, its tables and figures, the HTML page
    assert "analyze" in res.stderr and "3/3" in res.stderr and BAR in res.stderr
    assert "== r" in res.stdout and "%|" not in res.stdout
    res = _dyn("analyze", str(store), "--out", str(tmp_path / "rep2"))
    assert res.returncode == 0 and "%|" not in res.stderr and "== r" in res.stdout


def test_run_bar_and_quiet(tmp_path):
    res = _dyn("run", "--preset", "huang2024-tiny", "--steps", "20", "--out", str(tmp_path / "a.zarr"), "--progress")
    assert res.returncode == 0 and "single-modal" in res.stderr and "%|" in res.stderr  # the trainer's step bar
    res = _dyn("run", "--preset", "huang2024-tiny", "--steps", "20", "--out", str(tmp_path / "b.zarr"), "--quiet",
               env={"DYN_PROGRESS": "1"})
    assert res.returncode == 0 and "%|" not in res.stderr  # --quiet is --no-progress


def test_quiet_and_progress_together_are_refused(tmp_path, capsys):
    assert main(["run", "--preset", "huang2024-tiny", "--out", str(tmp_path / "r.zarr"), "--quiet", "--progress"]) == 2
    err = capsys.readouterr().err
    assert "--quiet and --progress" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.zarr").exists()


@pytest.mark.parametrize("flags, expected", [(["--progress"], True), (["--no-progress"], False), (["--quiet"], False),
                                             ([], False)])
def test_sweep_hands_the_choice_to_sweep(monkeypatch, tmp_path, capsys, no_env, flags, expected):
    """The CLI resolves the flag (not a TTY under pytest: auto is off) and passes it to sweep()'s `progress`."""
    import dyn.experiments.sweep as sweep_module

    seen = {}

    def fake(grid, out, *, progress=None, **kwargs):
        seen["progress"] = progress
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(sweep_module, "sweep", fake)
    grid = os.path.join(os.path.dirname(__file__), "data", "tiny-grid.toml")
    assert main(["sweep", "--grid", grid, "--out", str(tmp_path / "s"), "--sequential", *flags]) == 2
    assert seen == {"progress": expected}


def test_every_long_call_defaults_to_auto():
    """progress=None (auto) is the default of every public long call (not False, which hid bars in notebooks)."""
    import inspect

    from dyn.experiments.reproduce import reproduce
    from dyn.experiments.sweep import sweep
    from dyn.experiments.huang2024 import figure1, table1
    from dyn.experiments.huang2025_label_noise import figure2, figure3, optimizers
    from dyn.viz.export import export, export_grid
    from dyn.viz.report import write_report

    for function in (reproduce, figure1, table1, figure2, figure3, optimizers, write_report, export, export_grid,
                     sweep):
        parameter = inspect.signature(function).parameters.get("progress")
        assert parameter is not None and parameter.default is None, function.__name__
