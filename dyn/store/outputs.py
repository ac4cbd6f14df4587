"""Writing result folders safely: built under a temporary name, moved into place only when complete.

Used by every command that writes a folder of results (``analyze``, ``reproduce``), so a failure or bad input
never leaves a half-written folder and never touches an existing one it was not told to replace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import ConfigError, StoreError

__all__ = ["staged_folder", "save_figure"]


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out``, on error it is removed.

    Raises
    ------
    ConfigError
        ``out`` exists, is not empty, and ``overwrite`` is false.
    StoreError
        ``out`` is a file, or its parent folder does not exist or cannot be written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} already exists and is not empty (use --overwrite to replace it)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise StoreError(f"cannot write {out}: folder {parent} is not writable")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_figure(fig, folder: str | os.PathLike, stem: str, *, dpi: int = 120) -> None:
    """Save ``fig`` as ``stem.png`` and ``stem.svg`` in ``folder``."""
    for ext in ("png", "svg"):
        fig.savefig(Path(folder) / f"{stem}.{ext}", dpi=dpi)
