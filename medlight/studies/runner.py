"""Run a study's runs one after the other (skipping finished ones), or hand them to SLURM as a job array."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from medlight.errors import MedlightError
from medlight.runs.layout import RunLayout, write_json, write_text
from medlight.studies.spec import Run, Study, _repo_root

DEFAULT_RUNS_ROOT = Path("runs") / "studies"


def run_dir(study: Study, budget: str, run: Run, runs_root: Path = DEFAULT_RUNS_ROOT) -> Path:
    return runs_root / study.name / budget / run.name


def is_complete(folder: Path) -> bool:
    """A run is complete once its test summary exists (it is written after fit and test both finished)."""
    return RunLayout(folder).is_complete()


def command_line(study: Study, budget: str, run: Run, runs_root: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "medlight",
        *run.command(run_dir(study, budget, run, runs_root), f"{study.name}/{budget}", study.name, budget),
    ]


def run_study(
    study: Study,
    budget: str,
    runs_root: Path = DEFAULT_RUNS_ROOT,
    only: str | None = None,
    index: int | None = None,
    dry_run: bool = False,
) -> int:
    """Run every incomplete run (or one, by ``index``); an interrupted run resumes from its last checkpoint.

    Returns the number of runs that failed.
    """
    runs = study.runs(budget)
    selected = [(i, r) for i, r in enumerate(runs) if (index is None or i == index) and (not only or only in r.name)]
    if index is not None and not selected:
        raise SystemExit(f"no run with index {index} (the study has {len(runs)})")
    cwd = _repo_root(study.folder)
    failures = []
    for i, run in selected:
        folder = run_dir(study, budget, run, runs_root)
        if run.external is not None:
            if not dry_run and not _take_external(run, folder):
                failures.append(run.name)
            continue
        cmd = command_line(study, budget, run, runs_root)
        if is_complete(folder):
            print(f"[{i + 1}/{len(runs)}] {run.name}: complete, skipped", flush=True)
            continue
        print(f"[{i + 1}/{len(runs)}] {run.name}: {shlex.join(cmd[1:])}", flush=True)
        if dry_run:
            continue
        start = time.time()
        result = subprocess.run(cmd, cwd=cwd)
        elapsed = time.time() - start
        _record(folder, run, elapsed, result.returncode)
        if result.returncode != 0:
            failures.append(run.name)
            print(f"[{i + 1}/{len(runs)}] {run.name}: FAILED (exit {result.returncode})", flush=True)
    if failures:
        print(f"{len(failures)} run(s) failed: {', '.join(failures)}; `study run` again resumes them", flush=True)
    return len(failures)


def _take_external(run: Run, folder: Path) -> bool:
    """Copy (or score, with ``reference``) an external variant's tables into its study run folder; False on error.

    Refreshed on every ``study run``, so a re-made ensemble or re-evaluated baseline is picked up.
    """
    from medlight.studies.evaluate import evaluate_folder

    assert run.external is not None
    source = Path(run.external["path"])
    try:
        if "reference" in run.external:
            evaluate_folder(source, run.external["reference"], folder, run.external.get("labels"))
        else:
            src, dst = RunLayout(source), RunLayout(folder)
            if not src.is_complete():
                raise MedlightError(
                    f"{src.summary('test')} does not exist: make it with `medlight evaluate` or `medlight ensemble`"
                )
            for name in ("test_per_case.csv", "test_counts.csv", "test_summary.json"):  # the summary last: complete
                if src.table(name).is_file():
                    write_text(dst.table(name), src.table(name).read_text())
            external = json.loads(src.external.read_text()) if src.external.is_file() else {}
            write_json(dst.external, {**external, "copied_from": str(source.resolve())})
    except MedlightError as err:
        print(f"{run.name}: external variant FAILED: {err}", flush=True)
        return False
    print(f"{run.name}: external, tables taken from {source}", flush=True)
    return True


def _record(folder: Path, run: Run, seconds: float, returncode: int) -> None:
    """Append this attempt to the run folder's ``study_run.jsonl`` (wall time per attempt)."""
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        "run": run.name,
        "point": run.point,
        "seconds": round(seconds, 1),
        "returncode": returncode,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with (folder / "study_run.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")


def write_slurm_array(study: Study, budget: str, runs_root: Path, slurm_args: list[str]) -> Path:
    """A job-array script with one array task per run; each task is ``medlight study run --index``."""
    runs = study.runs(budget)
    out = runs_root / study.name / budget / "slurm_array.sbatch"
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = out.parent / "slurm_logs"
    logs.mkdir(exist_ok=True)  # SLURM does not create the --output folder
    header = [
        f"#SBATCH --job-name={study.name}",
        f"#SBATCH --array=0-{len(runs) - 1}",
        f"#SBATCH --output={logs}/%A_%a.out",
        "#SBATCH --requeue",
        *(f"#SBATCH {a}" for a in slurm_args),
    ]
    body = (
        f"cd {shlex.quote(str(_repo_root(study.folder)))}\n"
        f"srun medlight study run {shlex.quote(str(study.folder))} --budget {budget} "
        f'--runs-root {shlex.quote(str(runs_root))} --index "$SLURM_ARRAY_TASK_ID"\n'
    )
    names = "\n".join(f"#   {i}: {r.name}" for i, r in enumerate(runs))
    out.write_text("#!/bin/bash\n" + "\n".join(header) + f"\n# array index -> run\n{names}\nset -euo pipefail\n" + body)
    return out
