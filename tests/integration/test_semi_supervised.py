"""The teacher-student task through the real CLI on a tiny synthetic dataset."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.integration.helpers import REPO, TINY_3D, run_cli

TINY_SEMI = str(REPO / "tests" / "configs" / "tiny_semi_3d.yaml")


def semi_args(dataset: Path, run_dir: Path, *extra: str, config: str = TINY_SEMI) -> list[str]:
    return [
        "fit",
        "--config",
        config,
        "--data.dataset",
        str(dataset),
        "--data.split_file",
        str(dataset.parent / "splits.json"),
        "--trainer.default_root_dir",
        str(run_dir),
        *extra,
    ]


def test_farcluss_fits_updates_its_teacher_and_tests(msd_session: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert run_cli(semi_args(msd_session, run, "--data.labeled_split_file", str(tmp_path / "lab.json"))) == 0
    assert (run / "metrics" / "test_summary.json").is_file()
    assert len(pd.read_csv(run / "metrics" / "test_per_case.csv")) > 0
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    teacher = {k[len("teacher.net.") :]: v for k, v in state.items() if k.startswith("teacher.net.")}
    student = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    assert teacher.keys() == student.keys() and any(k.startswith("teacher.projector.") for k in state)
    assert any(not torch.equal(teacher[k], student[k]) for k in student)  # an average, not a copy
    assert "class_frequency.frequencies" in state
    logged = pd.read_csv(run / "metrics.csv")
    for column in ("train/loss_sup", "train/loss_unsup", "train/loss_contrast", "train/class_weight_ball"):
        assert logged[column].notna().any(), column
    assert (logged["train/loss_contrast"].dropna() > 0).any()  # every voxel is 'confident' at threshold 0
    # validation scores the teacher (val/*, which checkpoints follow) and the student (val_student/*)
    assert logged["val/dice"].notna().any() and logged["val_student/dice"].notna().any()


@pytest.mark.parametrize(
    "extra",
    [
        ["--model.consistency", "mse", "--model.contrastive", "false", "--model.class_rebalancing", "false"],
        ["--model.top_k", "1", "--model.certainty_weighting", "false", "--model.evaluate_with", "student"],
    ],
    ids=["mean_teacher", "ablations"],
)
def test_mean_teacher_and_ablations_run(msd_session: Path, tmp_path: Path, extra: list[str]) -> None:
    args = semi_args(msd_session, tmp_path / "run", "--data.labeled_split_file", str(tmp_path / "l.json"), *extra)
    assert run_cli([*args, "--test_after_fit", "false"]) == 0
    logged = pd.read_csv(tmp_path / "run" / "metrics.csv")
    other = "val_teacher/dice" if "student" in extra else "val_student/dice"
    assert logged["val/dice"].notna().any() and logged[other].notna().any()


def test_teacher_student_needs_the_semi_supervised_data_module(msd_session: Path, tmp_path: Path, capsys) -> None:
    args = semi_args(msd_session, tmp_path / "run", config=TINY_3D)
    args += ["--model", "medlight.tasks.TeacherStudentTask"]  # keeps the config's network
    assert run_cli(args) == 2
    assert "SemiSupervisedDataModule" in capsys.readouterr().err


def test_supervised_task_on_the_semi_supervised_data_trains_on_labeled_cases(msd_session: Path, tmp_path: Path) -> None:
    args = semi_args(msd_session, tmp_path / "run", config=TINY_3D)
    args += ["--data", "medlight.data.SemiSupervisedDataModule", "--data.labeled_fraction", "0.3"]
    args += ["--data.unlabeled", "false"]  # the supervised-only baseline: the labeled stream alone
    args += ["--data.labeled_split_file", str(tmp_path / "l.json"), "--test_after_fit", "false"]
    assert run_cli(args) == 0
    assert (tmp_path / "l.json").is_file()
