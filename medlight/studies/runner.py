"""Run a study's runs one after the other (skipping finished ones), or hand them to SLURM as a job array."""

from __future__ import annotations

import json
import shlex
import signal
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


def command_line(study: Study, budget: str, run: Run, runs_root: Path, overrides: list[str] | None = None) -> list[str]:
    """The run's ``python -m medlight fit`` command; ``overrides`` (``key=value``) come last, e.g. the loader
    workers of the machine a SLURM array task landed on."""
    extra = [part for o in overrides or [] for part in (f"--{o.partition('=')[0]}", o.partition("=")[2])]
    return [
        sys.executable,
        "-m",
        "medlight",
        *run.command(run_dir(study, budget, run, runs_root), f"{study.name}/{budget}", study.name, budget),
        *extra,
    ]


def run_study(
    study: Study,
    budget: str,
    runs_root: Path = DEFAULT_RUNS_ROOT,
    only: str | None = None,
    index: int | None = None,
    dry_run: bool = False,
    overrides: list[str] | None = None,
) -> int:
    """Run every incomplete run (or one, by ``index``), in the study's order (a variant after those it waits for);
    an interrupted run resumes from its newest checkpoint.

    Returns the number of runs that failed.
    """
    # SLURM's time-limit warning (SIGUSR1) reaches every process of the job step: this one must survive it while
    # the fit below writes its checkpoint and requeues the job. A handler, not SIG_IGN: the child gets the default.
    signal.signal(signal.SIGUSR1, lambda *_: print("study run: SIGUSR1 (time limit near); the fit handles it"))
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
        cmd = command_line(study, budget, run, runs_root, overrides)
        waiting = [m for m in run.members if not is_complete(folder.parents[1] / m)]
        if waiting and not dry_run and not is_complete(folder):
            print(f"[{i + 1}/{len(runs)}] {run.name}: FAILED, members not complete: {', '.join(waiting)}", flush=True)
            failures.append(run.name)
            continue
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


SLURM_DEFAULTS = {
    "--cpus-per-task": "4",  # feeds the loader workers (one CPU stays with the training process)
    "--signal": "SIGUSR1@90",  # 90 s before the time limit: Lightning writes hpc_ckpt_*.ckpt and requeues the job
}


def write_slurm_array(study: Study, budget: str, runs_root: Path, slurm_args: list[str]) -> Path:
    """A job-array script with one array task per run (each is ``medlight study run --index``), and, when
    variants wait for others (``after:``), ``submit.sh`` submitting one array per wave, each ``afterok`` of the
    previous one. Returns the script to run: ``submit.sh`` when there are waves, else the array script."""
    runs, waves = study.runs(budget), study.waves(budget)
    out = runs_root / study.name / budget / "slurm_array.sbatch"
    out.parent.mkdir(parents=True, exist_ok=True)
    logs = out.parent / "slurm_logs"
    logs.mkdir(exist_ok=True)  # SLURM does not create the --output folder
    given = {a.split("=", 1)[0] for a in slurm_args}
    defaults = [f"{k}={v}" for k, v in SLURM_DEFAULTS.items() if k not in given]
    header = [
        f"#SBATCH --job-name={study.name}",
        f"#SBATCH --array=0-{len(runs) - 1}",
        f"#SBATCH --output={logs}/%A_%a.out",
        "#SBATCH --open-mode=append",  # a requeued task appends to its log
        "#SBATCH --requeue",
        *(f"#SBATCH {a}" for a in [*defaults, *slurm_args]),
    ]
    folder, root = shlex.quote(str(study.folder)), shlex.quote(str(runs_root))
    body = (
        f"cd {shlex.quote(str(_repo_root(study.folder)))}\n"
        "workers=$(( ${SLURM_CPUS_PER_TASK:-1} > 1 ? ${SLURM_CPUS_PER_TASK:-1} - 1 : 0 ))\n"
        f"srun {shlex.quote(sys.executable)} -m medlight study run {folder} --budget {budget} --runs-root {root} "
        '--index "$SLURM_ARRAY_TASK_ID" --set data.init_args.num_workers="$workers" '
        "--set trainer.enable_progress_bar=false\n"  # one log line every log_every_n_steps instead
    )
    names = "\n".join(f"#   {i}: {r.name}" for i, r in enumerate(runs))
    out.write_text("#!/bin/bash\n" + "\n".join(header) + f"\n# array index -> run\n{names}\nset -euo pipefail\n" + body)
    if len(waves) == 1:
        return out
    lines = [
        "#!/bin/bash",
        "# One job array per wave of variants; each waits for the previous one to succeed.",
        "set -euo pipefail",
    ]
    lines.append(f"script={shlex.quote(str(out.resolve()))}")
    for n, wave in enumerate(waves):
        variants = sorted({runs[i].variant for i in wave})
        depend = "" if n == 0 else f' --dependency=afterok:"$job{n - 1}"'
        lines.append(
            f"job{n}=$(sbatch --parsable --array={','.join(map(str, wave))}{depend} \"$script\" | cut -d';' -f1)"
        )
        lines.append(f'echo "wave {n} ({", ".join(variants)}): job $job{n}"')
    submit = out.parent / "submit.sh"
    submit.write_text("\n".join(lines) + "\n")
    submit.chmod(0o755)
    return submit
