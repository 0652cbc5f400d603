import pytest
import torch

from medlight.tasks.optim import PolyLR


def test_poly_decay_with_total_filled_in_later() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = PolyLR(opt, power=1.0)
    sched.set_total_steps(10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0 - k / 10 for k in range(10)])
    sched.set_total_steps(99)  # an explicit or earlier total wins
    assert sched.total_steps == 10
    state = sched.state_dict()
    assert state["total_steps"] == 10 and state["power"] == 1.0
