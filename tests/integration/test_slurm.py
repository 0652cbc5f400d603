"""A real SLURM (scripts/slurm/local-cluster.sh sets one up on this machine): a study array whose dependent
variant waits for the one it needs, and a fit that is sent SIGUSR1, writes an hpc checkpoint, is requeued and
finishes from it. Skipped where ``sbatch`` is absent or no cluster answers ``sinfo``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from medlight.cli import main
from tests.conftest import make_msd
from tests.integration.helpers import REPO, TINY_3D, tiny_fit_args

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}  # the jobs run this checkout's code


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, env=ENV, timeout=60).stdout.strip()


def queued(job: str) -> str:
    """The job's state letters in the queue ('' once it has left), array tasks included."""
    return " ".join(sh("squeue", "-h", "-j", job, "-o", "%t").split())


def wait_gone(job: str, timeout: float) -> None:
    end = time.time() + timeout
    while queued(job):
        if time.time() > end:
            subprocess.run(["scancel", job], env=ENV)
            pytest.fail(f"job {job} still queued after {timeout} s")
        time.sleep(2)


def test_study_array_runs_the_dependent_variant_after_the_one_it_needs(tmp_path: Path) -> None:
    data = make_msd(tmp_path / "data", n=12, shape=(20, 20, 16))
    folder = tmp_path / "study"
    folder.mkdir()
    study = {
        "name": "ordered",
        "configs": [TINY_3D],
        "variants": {"second": {"after": "first", "args": {"seed_everything": 1}}, "first": []},
        "budgets": {
            "smoke": {
                "trainer.max_epochs": 1,
                "trainer.limit_train_batches": 2,
                "data.init_args.dataset": str(data),
                "data.init_args.split_file": str(tmp_path / "splits.json"),
            }
        },
    }
    (folder / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    runs = tmp_path / "runs"
    args = ["study", "run", str(folder), "--runs-root", str(runs), "--slurm", "cpus-per-task=1", "time=00:10:00"]
    assert main(args) == 0
    submit = runs / "ordered" / "smoke" / "submit.sh"
    lines = sh("bash", str(submit)).splitlines()
    print("\n".join(lines))
    jobs = [line.split("job ")[-1] for line in lines]
    assert len(jobs) == 2 and lines[0].startswith("wave 0 (first)") and lines[1].startswith("wave 1 (second)")
    assert f"Dependency=afterok:{jobs[0]}" in sh("scontrol", "show", "job", jobs[1])  # the second array waits
    for job in jobs:
        wait_gone(job, 300)
    first, second = (runs / "ordered" / "smoke" / name / "single" for name in ("first", "second"))
    for run in (first, second):
        assert (run / "metrics" / "test_summary.json").is_file(), sorted(p.name for p in run.rglob("*"))
    finished = (first / "metrics" / "test_summary.json").stat().st_mtime
    started = datetime.fromisoformat(json.loads((second / "manifest.json").read_text())["time"]).timestamp()
    print(f"first finished at {finished:.0f}, second started at {started:.0f} (unix seconds)")
    assert started >= int(finished)  # the manifest's time has whole seconds
    logs = sorted((runs / "ordered" / "smoke" / "slurm_logs").glob("*.out"))
    assert len(logs) == 2 and all("\r" not in log.read_text() for log in logs)  # no progress bars
    assert any("step 1 (epoch 0)" in log.read_text() for log in logs)  # log lines instead


def test_fit_sent_sigusr1_is_requeued_and_resumes_from_its_hpc_checkpoint(tmp_path: Path) -> None:
    data = make_msd(tmp_path / "data", n=12, shape=(20, 20, 16))
    run = tmp_path / "run"
    fit = tiny_fit_args(data, run, "--trainer.max_epochs", "50", "--trainer.limit_train_batches", "1.0")
    fit += ["--trainer.check_val_every_n_epoch", "25", "--trainer.log_every_n_steps", "5"]
    fit += ["--checkpoint_every_n_steps", "0", "--trainer.enable_progress_bar", "false"]
    script = tmp_path / "fit.sbatch"
    script.write_text(
        "#!/bin/bash\n#SBATCH --job-name=requeue-test\n#SBATCH --requeue\n#SBATCH --open-mode=append\n"
        f"#SBATCH --output={tmp_path}/slurm-%j.out\n#SBATCH --cpus-per-task=1\n#SBATCH --signal=SIGUSR1@90\n"
        f'cd {REPO}\necho "start, restart count ${{SLURM_RESTART_COUNT:-0}}"\n'
        f"srun {sys.executable} -m medlight {' '.join(fit)}\n"
    )
    job = sh("sbatch", "--parsable", str(script)).split(";")[0]
    out = tmp_path / f"slurm-{job}.out"
    end = time.time() + 240
    while "step 20 (" not in (out.read_text() if out.is_file() else ""):  # well inside the first epochs
        assert time.time() < end and queued(job), out.read_text() if out.is_file() else "no output"
        time.sleep(1)
    sh("scancel", "--signal=USR1", job)  # what SLURM sends 90 s before the time limit
    wait_gone(job, 540)  # SLURM starts a requeued job only after a delay (about 2 minutes here)
    log = out.read_text()
    print(log[-3000:])
    assert "Handling auto-requeue signal" in log and "start, restart count 1" in log
    assert "Resuming from" in log  # the newest of hpc_ckpt_1.ckpt and last.ckpt (written until the kill)
    hpc = sorted(run.glob("hpc_ckpt_*.ckpt"))
    assert hpc, "no hpc checkpoint written"
    hpc_step = torch.load(hpc[0], weights_only=True)["global_step"]
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    steps = pd.read_csv(run / "metrics.csv").dropna(subset=["train/loss"])["step"]
    print(f"hpc checkpoint at step {hpc_step}; finished at step {last['global_step']}; {len(steps)} logged steps")
    assert 20 <= hpc_step < last["global_step"] and steps.max() < last["global_step"]
    assert steps.is_unique  # each step logged once across the two attempts
    assert (run / "metrics" / "test_summary.json").is_file()
