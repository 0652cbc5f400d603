"""Exponential moving average of a network's weights (the Mean Teacher / FARCLUSS teacher)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` that only ever changes through :func:`ema_update_`."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place: ``teacher = momentum * teacher + (1 - momentum) * student`` for every parameter.

    Floating-point buffers (e.g. batch-norm running statistics) are averaged the same way; integer
    buffers (e.g. batch counters) are copied.

    Args:
        teacher: the averaged network (same architecture as ``student``).
        student: the network trained by gradient descent.
        momentum: weight of the teacher's current value, in [0, 1].
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    t_params, s_params = list(teacher.parameters()), list(student.parameters())
    if len(t_params) != len(s_params):
        raise ValueError("teacher and student have different architectures")
    for t, s in zip(t_params, s_params):
        t.lerp_(s.detach(), 1.0 - momentum)
    for tb, sb in zip(teacher.buffers(), student.buffers()):
        if tb.dtype.is_floating_point:
            tb.lerp_(sb, 1.0 - momentum)
        else:
            tb.copy_(sb)


def warmup_momentum(momentum: float, step: int) -> float:
    """``min(momentum, 1 - 1 / (step + 1))``: the teacher follows the student closely in the first steps."""
    return min(momentum, 1.0 - 1.0 / (step + 1))
