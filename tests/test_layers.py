"""The package's layers: every module imports only from its own subpackage and the layers beneath it
(docs/architecture.md), and importing the package loads no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "vaekit"
# Lowest first. A module may import from its own layer and any layer before it.
LAYERS = ["errors", "config", "runtime", "data", "model", "evaluation", "runs", "training", "reporting",
          "studies", "api", "cli"]
EXEMPT = {"__init__", "__main__"}  # the lazy top-level names and `python -m vaekit`


def layer_of(module: str) -> str:
    """'vaekit.training.step' -> 'training'."""
    return module.split(".")[1]


def imports(path: Path) -> list[tuple[int, str]]:
    """The vaekit modules that `path` imports, with their lines (at any depth: lazy imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaekit."):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.module == "vaekit":
            found += [(node.lineno, f"vaekit.{alias.name}") for alias in node.names if alias.name != "__version__"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("vaekit.")]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.stem not in EXEMPT or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_downward(path: Path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    rank = LAYERS.index(own)
    upward = [f"line {line}: {module}" for line, module in imports(path)
              if layer_of(module) in LAYERS and LAYERS.index(layer_of(module)) > rank]
    assert not upward, f"{path.relative_to(PACKAGE)} ({own}) imports from layers above it: {upward}"


def test_every_subpackage_has_its_layer():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages <= set(LAYERS), subpackages - set(LAYERS)
    assert len(subpackages) >= 5


def test_importing_the_package_loads_no_torch():
    code = "import sys, vaekit; assert 'torch' not in sys.modules, 'torch was imported'"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


def test_dir_lists_the_lazy_names_without_importing_them():
    code = ("import sys, vaekit; names = dir(vaekit); "
            "assert {'train', 'TrainedVAE', 'RunConfig', 'VAE', '__version__'} <= set(names), names; "
            "assert 'importlib' not in names and 'torch' not in sys.modules")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
