"""The package's layering: each folder imports only the layers below it, and only a paper's own sub-packages know
that paper. Checked on the source (every import statement, including those inside functions)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "dyn"

# layer -> layers it may import (besides itself, dyn.errors, dyn.plugins and dyn.progress, which everything may import)
ALLOWED = {
    "store": set(),
    "record": {"store"},
    "setups": {"store", "record"},
    "analysis": {"store"},
    "theory": {"store", "analysis"},
    "viz": {"store", "analysis", "theory"},
    "experiments": {"store", "record", "setups", "analysis", "theory", "viz"},
    "cli": {"store", "record", "setups", "analysis", "theory", "viz", "experiments"},
}
NO_TORCH = {"store", "analysis", "theory", "viz"}
#: Setup families shared by several papers (a paper is presets plus a theory on a family): their sub-packages of
#: dyn.setups and dyn.theory are generic code that any paper's modules may use and that names no paper.
FAMILIES = ("signal_noise_cnn",)
PAPER_WORDS = ("huang", "modality", "mu_tilde", "n_snr2", "c_mu", "psi", "proof")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dyn" or len(parts) == 1:
        return None
    if parts[1] in ("cli",):
        return "cli"
    return parts[1] if parts[1] in ALLOWED else None


def _paper(module: str) -> str | None:
    """The paper a module belongs to (``dyn.setups.<paper>...``, ``dyn.theory.<paper>...`` or its reproductions,
    ``dyn.experiments.<paper>``), else None."""
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in ("setups", "theory", "experiments") and parts[2] not in FAMILIES \
            and ((PKG / "setups" / parts[2]).is_dir() or (PKG / "theory" / parts[2]).is_dir()):
        return parts[2]
    return None


def _imports(path: Path) -> list[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append(target)
            out += [f"{target}.{a.name}" for a in node.names if not node.module or node.level]
    return out


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_respect_the_layers(path):
    module = _module_name(path)
    layer = _layer(module)
    if layer is None:
        return  # dyn/__init__ (the public facade), dyn.errors
    paper = _paper(module)
    for target in _imports(path):
        if target == "torch" or target.startswith("torch."):
            assert layer not in NO_TORCH, f"{module} imports torch; the {layer} layer must not"
        if target == "zarr" or target.startswith("zarr."):
            assert layer == "store", f"{module} imports zarr; only dyn.store touches zarr"
        if not target.startswith("dyn.") or target.startswith(("dyn.errors", "dyn.plugins", "dyn.progress")):
            continue
        other = _layer(target)
        if other is None or other == layer:
            continue
        own_config = layer == "theory" and other == "setups" and target.startswith(
            tuple(f"dyn.setups.{name}.config" for name in (paper, *FAMILIES) if name)
        )  # a theorem reads its own setup's config, or its family's (no torch there)
        assert other in ALLOWED[layer] or own_config, f"{module} ({layer}) imports {target} ({other})"
        other_paper = _paper(target)
        if other_paper is not None:
            assert other_paper == paper, f"{module} imports {target}: only {other_paper}'s own modules may"


@pytest.mark.parametrize("path", sorted(PKG.glob("setups/*/config.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_setup_configs_that_theories_read_import_no_torch(path):
    assert not [t for t in _imports(path) if t == "torch" or t.startswith("torch.")]
    assert not [t for t in _imports(path) if t.startswith("dyn.") and _layer(t) not in (None, "setups")]


def _code_words(path: Path) -> set[str]:
    """Identifiers, attribute names and non-docstring string constants of a module (comments are dropped)."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.arg):
            words.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            words.add(node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.add(node.value)
    return words


GENERIC = [p for p in MODULES if _layer(_module_name(p)) not in (None, "cli") and _paper(_module_name(p)) is None]


def _names(word: str, bad: str) -> bool:
    """Whether ``word`` names the paper word ``bad``: a short word (psi) only as a whole token, so that
    "epsilon" does not count as naming psi; longer ones (huang, n_snr2) anywhere."""
    if len(bad) <= 3:
        return bad in re.split(r"[^a-z0-9]+", word.lower())
    return bad in word.lower()


@pytest.mark.parametrize("path", GENERIC, ids=lambda p: str(p.relative_to(PKG)))
def test_generic_layers_name_no_paper(path):
    """Outside a paper's sub-packages no code names a paper, its quantities or its constants."""
    words = _code_words(path)
    hits = sorted(w for w in words for bad in PAPER_WORDS if _names(w, bad))
    assert not hits, f"{path.relative_to(PKG)} names paper-specific things: {hits}"
    text = path.read_text()
    for constant in ("4.51", "1.8)", "= 1.8"):
        assert constant not in text, f"{path.relative_to(PKG)} holds the paper's threshold {constant}"


def test_reproductions_live_above_the_theory_they_use():
    """No setup package holds a reproduction (they import theory, viz and sweeps: layers above setups)."""
    assert not sorted(PKG.glob("setups/*/experiments.py"))
    assert _layer("dyn.experiments.huang2024") == "experiments" and _paper("dyn.experiments.huang2024") == "huang2024"
    assert _paper("dyn.experiments.sweep") is None and _paper("dyn.theory.signal_noise_cnn") is None


def test_the_checker_catches_violations(tmp_path):
    """The checks above can fail: an upward import and a paper name are found in a synthetic module."""
    bad = PKG / "store" / "_layer_probe_tmp.py"
    bad.write_text("from ..analysis.run import Run\nX = 'huang2024'\nmax_psi = 1\nepsilon = 2\n")
    try:
        with pytest.raises(AssertionError, match="imports dyn.analysis"):
            test_imports_respect_the_layers(bad)
        with pytest.raises(AssertionError, match=r"paper-specific things: \['huang2024', 'max_psi'\]"):
            test_generic_layers_name_no_paper(bad)
    finally:
        bad.unlink()
