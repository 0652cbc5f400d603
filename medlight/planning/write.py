"""Writing a plan: stackable config fragments, ``plan.md`` (every choice and its reason) and ``plan.json``."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import yaml

from medlight.planning.rules import Choice
from medlight.runs.layout import write_text

FRAGMENTS = ("data.yaml", "model.yaml", "trainer.yaml")


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated values out instead of YAML anchors and aliases (the fragments are read by people)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_plan(
    folder: Path,
    data: dict[str, Any],
    model: dict[str, Any],
    trainer: dict[str, Any],
    choices: list[Choice],
    facts: dict[str, Any],
    budget_minutes: float,
    accelerator: str,
) -> Path:
    """Write the plan folder; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    header = f"# written by `medlight plan` for a {budget_minutes:g}-minute {accelerator} budget; see plan.md\n"
    for name, content in zip(FRAGMENTS, (data, model, trainer)):
        write_text(
            folder / name, header + yaml.dump(content, Dumper=_PlainDumper, sort_keys=False, default_flow_style=None)
        )
    write_text(folder / "plan.json", json.dumps({"choices": [vars(c) for c in choices], **facts}, indent=1) + "\n")
    write_text(folder / "plan.md", render(folder, choices, facts, budget_minutes, accelerator))
    return folder


def render(folder: Path, choices: list[Choice], facts: dict[str, Any], budget_minutes: float, accelerator: str) -> str:
    fp = facts.get("fingerprint", {})
    lines = [
        f"# Plan for {fp.get('dataset', '?')}",
        "",
        f"Budget: {budget_minutes:g} minutes on {accelerator} ({platform.processor() or platform.machine()}, "
        f"{platform.node()}). Run it with:",
        "",
        "```bash",
        f"medlight fit --plan {folder}",
        "# the same as: medlight fit " + " ".join(f"--config {folder / f}" for f in FRAGMENTS),
        "```",
        "",
        "Rules follow nnU-Net (Isensee et al. 2021, Nature Methods 18:203-211); departures are named.",
        "",
        "## Fingerprint",
        "",
        *[f"- {k}: {v}" for k, v in fp.items()],
        "",
        "## Choices",
        "",
        "| choice | value | reason |",
        "|---|---|---|",
        *[f"| {c.name} | `{_short(c.value)}` | {c.reason} |" for c in choices],
        "",
    ]
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text.replace("|", "\\|")
