"""A problem found in a dataset, and the report that lists them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One failed check on one file.

    Attributes:
        path: the file (or dataset.json) the problem is about.
        check: short machine-readable name of the failed check, e.g. ``shape_mismatch``.
        message: what is wrong, in words a user can act on.
        case_id: the case the file belongs to, when known.
        severity: ``error`` makes ``fit`` refuse the dataset; ``warning`` is only reported.
    """

    path: Path
    check: str
    message: str
    case_id: str | None = None
    severity: Severity = "error"

    def line(self) -> str:
        case = f" [{self.case_id}]" if self.case_id else ""
        return f"{self.severity.upper():7s} {self.check:22s} {self.path}{case}: {self.message}"


def format_report(problems: Iterable[Problem], root: Path | str, num_cases: int) -> str:
    """Render problems as a plain-text report, errors first, one line each."""
    problems = sorted(problems, key=lambda p: (p.severity != "error", str(p.path), p.check))
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    bad_cases = len({p.case_id for p in problems if p.severity == "error" and p.case_id})
    head = f"Dataset {root}: {num_cases} cases; {errors} error(s) in {bad_cases} case(s); {warnings} warning(s)"
    return "\n".join([head, *(p.line() for p in problems)])
