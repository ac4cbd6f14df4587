"""Progress bars for dyn's long calls, with one rule for when they show.

``progress=None`` (the default of every long call) means *auto*: a bar is shown in a Jupyter notebook and when
standard error is a terminal, and not otherwise (logs, CI, pipes). ``True`` forces it (e.g. into a log file),
``False`` hides it. The environment variable ``DYN_PROGRESS`` (``0``/``1``) overrides the auto choice, for users
who want bars everywhere or nowhere without passing an argument. Bars go to standard error.

In a notebook each call shows one bar: a bar asked for while another dyn bar is open there (a trainer's steps
inside ``figure1``'s runs) is not drawn, since widgets cannot stack bars in place the way a terminal does; the outer
bar's postfix names what runs. With ``ipywidgets`` installed (``pip install "dyn[notebook]"``) the bar is a widget,
without it a text bar on standard error.

Nothing here imports torch; tqdm is imported only when a bar is shown.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

__all__ = ["progress_enabled", "progress_bar", "in_notebook", "progress_write"]


#: dyn bars open now in a notebook (one bar per call: inner ones are not drawn there)
_open_in_notebook = 0
_lock = threading.Lock()


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (an IPython ZMQ shell)."""
    shell_mod = sys.modules.get("IPython")
    if shell_mod is None:
        return False
    try:
        shell = shell_mod.get_ipython()
    except Exception:  # pragma: no cover - IPython half-imported
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_enabled(progress: bool | None = None) -> bool:
    """Resolve a ``progress`` argument: True/False as given; None → ``DYN_PROGRESS`` if set, else on in notebooks
    and terminals (standard error is a TTY), off otherwise.

    Examples
    --------
    >>> progress_enabled(False), progress_enabled(True)
    (False, True)
    """
    if progress is not None:
        return bool(progress)
    env = os.environ.get("DYN_PROGRESS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    if in_notebook():
        return True
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _NoBar:
    """Stands in for a tqdm bar when progress is off: every method does nothing."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    def write(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(total: int | None = None, *, desc: str = "", unit: str = "it", progress: bool | None = None,
                 leave: bool = False, initial: int = 0) -> Any:
    """A tqdm bar (notebook widget in Jupyter, text on standard error elsewhere) when :func:`progress_enabled`,
    else an object with the same methods that does nothing.

    Examples
    --------
    >>> with progress_bar(3, desc="runs", progress=False) as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    >>> bar.n
    3
    """
    notebook = in_notebook()
    if not progress_enabled(progress) or (notebook and _open_in_notebook > 0):
        bar = _NoBar()
        bar.n = initial
        return bar
    bar = None
    if notebook and _has_widgets():
        try:
            from tqdm.notebook import tqdm

            bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, initial=initial)
        except ImportError:  # ipywidgets present but unusable (e.g. no front end): fall back to text
            pass
    if bar is None:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, initial=initial, file=sys.stderr,
                   dynamic_ncols=True)
    if notebook:
        _count_while_open(bar)
    return bar


def _count_while_open(bar: Any) -> None:
    """Count ``bar`` among the notebook's open bars until it is closed (by ``with``, ``close()`` or collection)."""
    global _open_in_notebook
    with _lock:
        _open_in_notebook += 1
    close = bar.close

    def counted_close() -> None:
        global _open_in_notebook
        if not getattr(bar, "_dyn_counted_closed", False):
            bar._dyn_counted_closed = True
            with _lock:
                _open_in_notebook -= 1
        close()

    bar.close = counted_close


def _has_widgets() -> bool:
    """Whether ipywidgets is installed. Checked before tqdm.notebook is tried: without it that bar fails only once
    built, and its half-made object then prints an error from its destructor."""
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


def progress_write(text: str, *, file: Any = None) -> None:
    """Print a line without breaking a text bar on the terminal (through ``tqdm.write``, which clears the bars,
    prints, and redraws them); ``file`` defaults to standard output.

    Examples
    --------
    >>> progress_write("run 1 of 3 done")
    run 1 of 3 done
    """
    from tqdm import tqdm

    tqdm.write(text, file=file if file is not None else sys.stdout)
