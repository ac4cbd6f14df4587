"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import dyn

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    for modality in ("single", "multi"):  # the analysis example reads these runs
        dyn.train(dyn.load_preset("huang2024-tiny", modality=modality), f"runs/{modality}.zarr")
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "runs" / "mine.zarr").is_dir()
    assert {"verdict", "claim"} <= set(namespace["table"].columns)
