import io

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


def test_poly_decay_follows_the_wall_clock_when_time_runs_out_first() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    spent = [0.0]
    sched = PolyLR(opt, total_steps=100, power=1.0, follow_max_time=True)
    sched.set_time_share(lambda: spent[0])
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.99)  # steps ahead of the clock: step decay
    spent[0] = 0.75
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)  # the clock ahead: time decay
    spent[0] = 1.2
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.0
    state = sched.state_dict()
    assert "_time_share" not in state and state["follow_max_time"] is True
    torch.save(state, io.BytesIO())  # no closure in a checkpoint


def test_poly_decay_ignores_the_clock_unless_asked() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = PolyLR(opt, total_steps=10, power=1.0)
    sched.set_time_share(lambda: 0.9)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.9)
