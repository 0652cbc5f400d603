"""Arguments inherited through ``**kwargs`` are still seen, typed and checked by the CLI's parser (jsonargparse)."""

from __future__ import annotations

import pytest
from jsonargparse import ArgumentParser

from medlight.data import SemiSupervisedDataModule
from medlight.nets import AttentionResUNet, ResUNet, UNet
from medlight.tasks import (
    ABNClassificationTask,
    InstanceSegmentationTask,
    ReconstructionTask,
    SegmentationTask,
    TeacherStudentTask,
)


def parser_of(cls: type) -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "x", fail_untyped=False, sub_configs=True)
    return parser


@pytest.mark.parametrize(
    "cls", [SegmentationTask, TeacherStudentTask, ABNClassificationTask, InstanceSegmentationTask, ReconstructionTask]
)
def test_tasks_see_the_base_task_arguments(cls: type) -> None:
    parser = parser_of(cls)
    assert parser.get_defaults().x.max_nonfinite_steps == 10
    net = ["--x.net", "torch.nn.Identity"]
    assert parser.parse_args([*net, "--x.nonfinite_loss", "stop"]).x.nonfinite_loss == "stop"
    with pytest.raises(Exception, match="nonfinite_loss"):  # a bad Literal is refused as before
        parser.parse_args([*net, "--x.nonfinite_loss", "maybe"])


def test_teacher_student_sees_the_segmentation_arguments() -> None:
    defaults = parser_of(TeacherStudentTask).get_defaults().x
    assert defaults.save_predictions is True and defaults.top_k == 2 and "inference" in defaults


def test_semi_supervised_data_sees_the_segmentation_data_arguments() -> None:
    parser = parser_of(SemiSupervisedDataModule)
    defaults = parser.get_defaults().x
    assert defaults.num_folds == 5 and defaults.cache == "memory" and defaults.unlabeled is True
    with pytest.raises(Exception, match="cache"):
        parser.parse_args(["--x.dataset", "d", "--x.cache", "sometimes"])


@pytest.mark.parametrize("cls", [UNet, ResUNet, AttentionResUNet])
def test_unet_variants_take_the_shared_arguments_but_not_the_variant_flags(cls: type) -> None:
    parser = parser_of(cls)
    defaults = parser.get_defaults().x
    assert defaults.channels == (16, 32, 64, 128) or list(defaults.channels) == [16, 32, 64, 128]
    assert "residual" not in defaults and "attention" not in defaults
    with pytest.raises(Exception, match="residual"):
        parser.parse_args(["--x.residual", "true"])
