"""Data modules fulfil the Protocols their tasks read; anything else is refused with a message naming what lacks."""

from pathlib import Path

import pytest

from medlight.contracts import SegmentationData, SemiSupervisedData, require
from medlight.data import SegmentationDataModule, SemiSupervisedDataModule
from medlight.errors import ConfigError
from tests.conftest import make_msd


def test_segmentation_data_modules_fulfil_their_contracts(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "msd", n=6, shape=(16, 16, 12))
    common = {"split_file": str(tmp_path / "splits.json"), "num_folds": 2, "patch_size": (8, 8, 8), "cache": "none"}
    plain = SegmentationDataModule(str(root), **common)
    semi = SemiSupervisedDataModule(str(root), labeled_fraction=0.5, unlabeled=False, **common)
    assert isinstance(plain, SegmentationData) and not isinstance(plain, SemiSupervisedData)
    assert isinstance(semi, SemiSupervisedData) and semi.unlabeled is False
    assert require(plain, SegmentationData, "SegmentationTask") is plain


def test_a_data_module_of_another_kind_is_refused_by_name() -> None:
    class Other:
        case_ids: list[str] = []

    with pytest.raises(ConfigError, match=r"SegmentationTask needs a data module .*Other lacks .*spec"):
        require(Other(), SegmentationData, "SegmentationTask")
    with pytest.raises(ConfigError, match="NoneType"):
        require(None, SegmentationData, "SegmentationTask")
