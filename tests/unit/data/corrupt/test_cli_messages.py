"""A handful of defects through the command line: a one-line ``medlight: error:`` and exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medlight.cli import main
from tests.conftest import LABELS
from tests.unit.data.corrupt.helpers import IMAGE_DEFECTS, folders, msd


@pytest.mark.parametrize(
    ("variant", "spec", "fragment"),
    [
        ("null", None, "must hold a JSON object"),
        ("number", 42, "must hold a JSON object"),
        ("training_strings", {"training": ["a.nii.gz"]}, "'training' must be a list"),
        ("labels_list", {"training": [], "labels": ["bg"]}, "labels must be an object"),
        ("channel_names_list", {"channel_names": ["t1"], "file_ending": ".nii.gz"}, "'channel_names' must be"),
    ],
)
def test_check_data_refuses_bad_dataset_json(
    tmp_path: Path, capsys: pytest.CaptureFixture, variant: str, spec: object, fragment: str
) -> None:
    root = msd(tmp_path / "msd")
    (root / "dataset.json").write_text(json.dumps(spec))
    assert main(["check-data", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medlight: error:") and fragment in err and "dataset.json" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_check_data_reports_a_flipped_gzip_payload(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = msd(tmp_path / "msd")
    IMAGE_DEFECTS["gzip_payload_flip_a"][0](root / "imagesTr" / "case_001.nii.gz", np.random.default_rng(3))
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert any("unreadable" in line and "case_001.nii.gz" in line for line in out.splitlines())


@pytest.mark.parametrize("labels", [{str(k): v for k, v in LABELS.items()}, {v: k for k, v in LABELS.items()}])
def test_check_data_accepts_both_label_styles(tmp_path: Path, capsys: pytest.CaptureFixture, labels: dict) -> None:
    root = folders(tmp_path / "f")
    assert main(["check-data", str(root), "--labels", json.dumps(labels)]) == 0
    assert "0 error(s)" in capsys.readouterr().out


@pytest.mark.parametrize("labels", ['["background", "organ"]', '{"organ": "liver"}'])
def test_check_data_refuses_bad_labels(tmp_path: Path, capsys: pytest.CaptureFixture, labels: str) -> None:
    root = folders(tmp_path / "f")
    assert main(["check-data", str(root), "--labels", labels]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medlight: error: labels given in the config") and "Traceback" not in err
