"""``dyn --help`` and the subcommands' parsing import no heavy library (torch, matplotlib, scipy, plotly)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "matplotlib", "scipy", "plotly", "seaborn", "dask.distributed")

PROBE = """
import sys
from dyn.cli import _build_parser
parser = _build_parser()
for argv in (["watch", "x.zarr", "--once"], ["export", "x.zarr", "--out", "y.csv"], ["verify", "x.zarr"]):
    parser.parse_args(argv)
try:
    parser.parse_args(["--help"])
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in %r if m in sys.modules))
""" % (HEAVY,)


def test_help_and_parsing_import_no_heavy_library():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    heavy = out.stdout.rsplit("HEAVY:", 1)[1].strip()
    assert heavy == "", f"imported at parse time: {heavy}"


def test_subcommand_help_still_lists_theories_and_formats(capsys):
    from dyn.cli import main

    for argv, word in ((["analyze", "--help"], "theories:"), (["export", "--help"], "grid-netcdf")):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
        assert word in capsys.readouterr().out
