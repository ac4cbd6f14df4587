"""The ``dyn`` command line.

Exit status: 0 success; 1 a run that diverged or a check that failed; 2 bad input (a one-line message, no
traceback, nothing already written touched); 130 interrupted by Ctrl-C (the store is flushed and marked).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__
from .errors import DivergenceError, DynError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _cmd_presets(args: argparse.Namespace) -> int:
    from .config import list_presets

    presets = list_presets()
    width = max(map(len, presets), default=0)
    for name, description in presets.items():
        print(f"{name:<{width}}  {description}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import load_preset, parse_overrides
    from .train import train

    overrides = parse_overrides(args.set or [])
    for key in ("modality", "seed", "steps"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    config = load_preset(args.preset, **overrides)
    summary = train(config, args.out, overwrite=args.overwrite, progress=not args.quiet,
                    attrs={"preset": args.preset})
    print(f"dyn run: {summary}")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dyn", description="Record and analyse feature-learning dynamics (signal learning vs "
                                                "noise memorization) of neural-network training.")
    parser.add_argument("--version", action="version", version=f"dyn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("presets", help="list the shipped presets", description="List the shipped presets.")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser(
        "run",
        help="train a preset and record every step into a zarr store",
        description="Train a preset (e.g. huang2024-figure1) and record every neuron's inner products with the "
                    "signal vectors and noise patches at every step into a zarr store.",
        epilog="example: dyn run --preset huang2024-figure1 --modality multi --out runs/multi.zarr",
    )
    p.add_argument("--preset", required=True, help="preset name (see `dyn presets`) or path to a preset TOML file")
    p.add_argument("--out", required=True, help="path of the new run store (a directory, e.g. runs/single.zarr)")
    p.add_argument("--modality", choices=["single", "multi"], help="override the preset's modality")
    p.add_argument("--seed", type=int, help="override the seed")
    p.add_argument("--steps", type=int, help="override the number of optimizer steps")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config field, e.g. --set tau=0.2 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dyn`` console script; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except DivergenceError as exc:
        print(f"dyn {args.command}: diverged: {exc}", file=sys.stderr)
        return 1
    except DynError as exc:
        print(f"dyn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dyn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
