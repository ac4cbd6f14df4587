"""The exception types dyn raises.

Every error dyn raises on bad input is a :class:`DynError` whose message is one line naming the field,
path or value at fault; the CLI prints that line and exits with status 2. A :class:`WriteError` (the disk
refused a write: full, quota, I/O error) exits with status 3: the input was fine, the machine was not.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

__all__ = ["DynError", "ConfigError", "StoreError", "WriteError", "DivergenceError", "PhaseError", "NotCheckable",
           "option", "speaking_cli"]

_CLI = contextvars.ContextVar("dyn_speaking_cli", default=False)


@contextlib.contextmanager
def speaking_cli() -> Iterator[None]:
    """Inside this block, :func:`option` names options as the command line spells them (the ``dyn`` CLI)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def option(python: str, cli: str) -> str:
    """An option named in a message, as the caller writes it: ``python`` (a keyword argument) from Python,
    ``cli`` (a flag) from the ``dyn`` command line.

    Examples
    --------
    >>> option("overwrite=True", "--overwrite")
    'overwrite=True'
    >>> with speaking_cli():
    ...     option("overwrite=True", "--overwrite")
    '--overwrite'
    """
    return cli if _CLI.get() else python


class DynError(Exception):
    """Base class of every error dyn raises on purpose; its message is a single line."""


class ConfigError(DynError, ValueError):
    """A configuration, preset, ``--set`` override, probe or other input is invalid."""


class StoreError(DynError):
    """A path is not a readable dyn store, is from a newer schema, or cannot be written."""


class WriteError(StoreError):
    """The operating system refused a write (disk full, quota exceeded, I/O error); everything written and
    committed before it is intact, and an interrupted run can be resumed once there is room."""


class DivergenceError(DynError, FloatingPointError):
    """Training produced a non-finite logged value (loss NaN/inf); the store keeps every step before it.

    Attributes
    ----------
    step : int
        The first recorded step whose logged value was not finite.
    """

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class PhaseError(DynError):
    """A curve shows no phase change (or is too short or not positive) where one was asked for."""


class NotCheckable(DynError):
    """Raised inside a claim's check when the run cannot decide it; the message becomes the verdict's reason."""
