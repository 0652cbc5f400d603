"""The real, imperfect MSD hippocampus copy in ../shared/data (skipped where it is absent)."""

from pathlib import Path

import pytest

from tests.integration.helpers import run_subprocess

pytestmark = pytest.mark.shared_data
LABELS = '{"0": "background", "1": "anterior", "2": "posterior"}'
DATA_ARGS = [
    "--data.labels",
    LABELS,
    "--data.patch_size",
    "[16,16,16]",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_val_batches",
    "2",
    "--trainer.limit_test_batches",
    "2",
]


def test_check_data_lists_the_three_real_problems(shared_hippocampus: Path) -> None:
    result = run_subprocess(["check-data", str(shared_hippocampus), "--labels", LABELS])
    assert result.returncode == 1
    out = result.stdout
    assert "3 error(s) in 3 case(s)" in out
    for name in ("hippocampus_118.nii.gz", "hippocampus_010.nii.gz", "hippocampus_281.nii.gz"):
        assert name in out


def test_fit_refuses_then_skips_the_bad_cases_when_asked(shared_hippocampus: Path, tmp_path: Path) -> None:
    from tests.integration.helpers import tiny_fit_args

    args = tiny_fit_args(shared_hippocampus, tmp_path / "run", *DATA_ARGS)
    args[args.index("--data.split_file") + 1] = str(tmp_path / "splits.json")
    refused = run_subprocess(args)
    assert refused.returncode == 2 and "hippocampus_118" in refused.stderr and "Traceback" not in refused.stderr
    skipped = run_subprocess([*args, "--data.skip_bad_cases", "true"])
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert "Leaving out 1 bad case(s): hippocampus_118" in skipped.stderr
