"""The package's layers: what each layer may import (docs/DEVELOPING.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "medlight"
EVERYTHING = {
    *("data", "nets", "tasks", "runs", "studies", "cli", "losses", "metrics", "ops", "contracts", "planning"),
    "lightning",
}

# layer -> what it must not import: medlight packages (the name after ``medlight.``) and ``lightning``
FORBIDDEN = {
    "ops": EVERYTHING - {"ops"},  # pure maths: nothing of medlight but errors and keys
    "nets": {"data", "tasks", "runs", "studies", "cli", "planning", "lightning"},
    "losses": {"data", "tasks", "runs", "studies", "cli", "planning", "lightning"},
    "metrics": {"data", "nets", "tasks", "runs", "studies", "cli", "planning"},
    "data": {"nets", "tasks", "studies", "cli", "planning"},
    "runs": {"data", "nets", "tasks", "studies", "cli", "planning"},
    "tasks": {"data", "studies", "cli", "planning"},
    # planning reads data, builds nets, times ops and writes through runs; it trains nothing through a task
    "planning": {"tasks", "studies", "cli", "lightning"},
}


def imported_layers(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, layer) of every import of ``medlight.*`` or Lightning in a file, function-level ones too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] in ("lightning", "pytorch_lightning"):
                out.append((node.lineno, module, "lightning"))
            elif parts[0] == "medlight" and len(parts) > 1:
                out.append((node.lineno, module, parts[1]))
    return out


def violations(layer: str, files: list[Path]) -> list[str]:
    return [
        f"{path.name}:{line} imports {module}"
        for path in files
        for line, module, target in imported_layers(path)
        if target in FORBIDDEN[layer]
    ]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no package medlight/{layer}"
    assert violations(layer, files) == []


def test_planted_violations_are_found(tmp_path: Path) -> None:
    net = tmp_path / "net.py"
    net.write_text("import torch\n\n\ndef build():\n    from medlight.data.splits import Splits\n    return Splits\n")
    assert violations("nets", [net]) == ["net.py:5 imports medlight.data.splits"]
    op = tmp_path / "op.py"
    op.write_text("import lightning.pytorch\nfrom medlight.keys import Key\nfrom medlight.errors import ConfigError\n")
    assert violations("ops", [op]) == ["op.py:1 imports lightning.pytorch"]  # errors and keys are allowed
    task = tmp_path / "task.py"
    task.write_text("from medlight.contracts import SegmentationData\nimport medlight.data.segmentation\n")
    assert violations("tasks", [task]) == ["task.py:2 imports medlight.data.segmentation"]
