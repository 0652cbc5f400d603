"""A tiny real study: run, skip finished runs, identical numbers on a re-run, report, SLURM array."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medlight.cli import main
from medlight.studies.spec import load_study
from tests.conftest import SHARED_DATA, make_msd
from tests.integration.helpers import REPO, TINY_3D

STUDIES = sorted((REPO / "experiments").glob("*/study.yaml"))


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    data = make_msd(root / "data", n=12, shape=(20, 20, 16))
    folder = root / "tiny"
    folder.mkdir()
    (folder / "study.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "description": "two nets, two seeds",
                "configs": [TINY_3D],
                "variants": {"res": [], "plain": {"args": {"model.init_args.net.class_path": "medlight.nets.UNet"}}},
                "grid": {"seed": {"keys": ["seed_everything", "data.init_args.seed"], "values": [0, 1]}},
                "budgets": {
                    "quick": {
                        "trainer.max_epochs": 2,
                        "data.init_args.dataset": str(data),
                        "data.init_args.split_file": str(root / "splits.json"),
                    }
                },
                "baseline": "res",
            },
            sort_keys=False,
        )
    )
    return folder


def test_run_is_resumable_deterministic_and_reported(tiny_study: Path, tmp_path: Path, capsys) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["study", "run", str(tiny_study), "--runs-root", str(first)]) == 0
    assert main(["study", "run", str(tiny_study), "--runs-root", str(first)]) == 0
    assert capsys.readouterr().out.count("complete, skipped") == 4  # the second call runs nothing
    assert main(["study", "run", str(tiny_study), "--runs-root", str(second)]) == 0
    out_a, out_b = tmp_path / "report_a", tmp_path / "report_b"
    assert main(["study", "report", str(tiny_study), "--runs-root", str(first), "--out", str(out_a)]) == 0
    assert main(["study", "report", str(tiny_study), "--runs-root", str(second), "--out", str(out_b)]) == 0
    a, b = pd.read_csv(out_a / "results.csv"), pd.read_csv(out_b / "results.csv")
    pd.testing.assert_frame_equal(a, b)  # same seeds, CPU, deterministic: the same numbers
    assert set(a["variant"]) == {"res", "plain"} and len(a) == 4 * a["case_id"].nunique()
    report = (out_a / "report.md").read_text()
    for expected in (
        "mean ± std over runs",
        "Paired tests against res",
        "box_per_case.png",
        "learning_curves.png",
        "overlays.png",
        "Every run",
        "medlight study run",
    ):
        assert expected in report
    assert (out_a / "report.html").is_file() and (out_a / "overlays.png").stat().st_size > 1000
    assert {"val/dice", "train/loss"} <= set(pd.read_csv(out_a / "curves.csv")["series"])
    assert (out_a / "environment.json").is_file() and (out_a / "box_per_case.pdf").is_file()
    # without the run folders, the report folder alone re-renders the same numbers and the learning curves
    summary = (out_a / "summary.csv").read_text()
    assert main(["study", "report", str(tiny_study), "--runs-root", str(tmp_path / "gone"), "--out", str(out_a)]) == 0
    assert (out_a / "summary.csv").read_text() == summary and "learning_curves.png" in (out_a / "report.md").read_text()


def test_slurm_array_and_dry_run(tiny_study: Path, tmp_path: Path, capsys) -> None:
    assert (
        main(["study", "run", str(tiny_study), "--runs-root", str(tmp_path), "--slurm", "gpus=1", "time=01:00:00"]) == 0
    )
    script = (tmp_path / "tiny" / "quick" / "slurm_array.sbatch").read_text()
    assert "#SBATCH --array=0-3" in script and "#SBATCH --gpus=1" in script
    assert '--index "$SLURM_ARRAY_TASK_ID"' in script and (tmp_path / "tiny" / "quick" / "slurm_logs").is_dir()
    assert "#SBATCH --signal=SIGUSR1@90" in script and "#SBATCH --cpus-per-task=4" in script
    assert f"srun {sys.executable} -m medlight study run" in script and "enable_progress_bar=false" in script
    assert not (tmp_path / "tiny" / "quick" / "submit.sh").exists()  # no variant waits for another
    assert main(["study", "run", str(tiny_study), "--runs-root", str(tmp_path), "--dry-run"]) == 0
    assert not (tmp_path / "tiny" / "quick" / "res").exists()


def test_slurm_waves_wait_for_the_variants_they_need(tmp_path: Path, capsys) -> None:
    study = load_study(REPO / "experiments" / "hieradapt")
    waves = study.waves("smoke")
    assert [{study.runs("smoke")[i].variant for i in wave} for wave in waves] == [
        {"zero_filled", "backbone", "universal_zero_shot"},
        {"adapted"},
    ]
    args = ["study", "run", str(study.folder), "--budget", "smoke", "--runs-root", str(tmp_path), "--slurm"]
    assert main([*args, "time=00:30:00"]) == 0
    submit = (tmp_path / "hieradapt" / "smoke" / "submit.sh").read_text()
    assert "--array=0,1,2,3,4,5 " in submit and '--array=6,7 --dependency=afterok:"$job0"' in submit
    assert "submit.sh" in capsys.readouterr().out


@pytest.mark.parametrize("study_file", STUDIES, ids=lambda p: p.parent.name)
def test_committed_studies_expand_and_their_runs_parse(study_file: Path, tmp_path: Path, capsys) -> None:
    study = load_study(study_file.parent)
    for budget in study.budgets:
        assert study.runs(budget), budget
    for variant in study.variants:  # every trained variant's resolved config is valid for its budget
        run = next(r for r in study.runs() if r.variant == variant)
        if run.external is not None or run.members:  # scored or ensembled, not fitted: no config of its own
            continue
        args = run.command(tmp_path / "run", group="check")
        with pytest.raises(SystemExit) as done:  # --print_config prints and exits
            main([*args, "--print_config"])
        assert done.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("study_file", STUDIES, ids=lambda p: p.parent.name)
def test_committed_studies_smoke_budget_runs_one_point(study_file: Path, tmp_path: Path) -> None:
    study = load_study(study_file.parent)
    if "smoke" not in study.budgets:
        pytest.skip("no smoke budget")
    if not SHARED_DATA.is_dir() and any(
        "../shared/data" in c.read_text() for r in study.runs("smoke") for c in r.configs
    ):
        pytest.skip("the study reads ../shared/data, which is not present (it is not part of a clone)")
    first_point = study.runs("smoke")[0].name.split("/", 1)[1]
    assert (
        main(
            [
                "study",
                "run",
                str(study.folder),
                "--budget",
                "smoke",
                "--runs-root",
                str(tmp_path),
                "--only",
                first_point,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "study",
                "report",
                str(study.folder),
                "--budget",
                "smoke",
                "--runs-root",
                str(tmp_path),
                "--out",
                str(tmp_path / "report"),
            ]
        )
        == 0
    )
