"""The EMA teacher update on a tiny network, by hand."""

import pytest
import torch
from torch import nn

from medlight.ops.ema import ema_update_, make_teacher, warmup_momentum


def test_ema_update_blends_parameters_and_buffers() -> None:
    student = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        teacher[0].weight.fill_(0.0)
        student[0].weight.fill_(1.0)
        student[1].running_mean.fill_(2.0)
        student[1].num_batches_tracked.fill_(7)
    ema_update_(teacher, student, momentum=0.9)
    assert float(teacher[0].weight) == pytest.approx(0.1)
    assert float(teacher[1].running_mean) == pytest.approx(0.2)  # 0.9 * 0 + 0.1 * 2
    assert int(teacher[1].num_batches_tracked) == 7  # integer buffers are copied
    ema_update_(teacher, student, momentum=0.9)
    assert float(teacher[0].weight) == pytest.approx(0.19)  # 0.9 * 0.1 + 0.1 * 1
    assert float(student[0].weight.detach()) == 1.0  # the student is untouched
    ema_update_(teacher, student, momentum=0.0)
    assert float(teacher[0].weight.detach()) == 1.0
    with pytest.raises(ValueError):
        ema_update_(teacher, student, momentum=1.5)


def test_warmup_momentum() -> None:
    assert warmup_momentum(0.99, 0) == 0.0
    assert warmup_momentum(0.99, 1) == 0.5
    assert warmup_momentum(0.99, 1000) == 0.99
