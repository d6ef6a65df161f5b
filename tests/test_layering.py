"""Imports flow one way: fm <- codec <- audio/vision <- train/cli/apps; fm imports only torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "flowgen"
# package -> flowgen packages it must never import
FORBIDDEN = {
    "fm": {"codec", "audio", "vision", "train", "cli", "toy"},
    "codec": {"audio", "vision", "train", "cli"},
    "audio": {"vision", "train", "cli"},
    "vision": {"audio", "train", "cli"},
}


def _flowgen_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "flowgen" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package):
    for file in (PKG / package).rglob("*.py"):
        bad = _flowgen_imports(file) & FORBIDDEN[package]
        assert not bad, f"{file.relative_to(PKG.parent)} imports flowgen.{sorted(bad)}"


def test_fm_imports_only_torch_at_import_time():
    code = (
        "import sys, flowgen.fm.paths, flowgen.fm.solvers, flowgen.fm.time, flowgen.fm.losses, "
        "flowgen.fm.guidance\n"
        "import importlib, pkgutil, flowgen.fm\n"
        "for m in pkgutil.iter_modules(flowgen.fm.__path__): importlib.import_module('flowgen.fm.' + m.name)\n"
        "heavy = [m for m in ('torchdiffeq', 'ot', 'scipy', 'diffusers', 'torchaudio', 'gradio', 'accelerate') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", (
        f"flowgen.fm imported heavy modules at import time: {out.stdout}"
    )
