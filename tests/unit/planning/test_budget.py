"""The training-length arithmetic of ``medlight plan`` on hand-made timings (no training)."""

from __future__ import annotations

import pytest

from medlight.planning import budget
from medlight.planning.segmentation import lightning_duration


def test_schedule_fits_startup_training_validation_and_test_in_the_budget_less_the_margin() -> None:
    timing = budget.Timing(step_s=0.2, load_s=0.01, infer_s=0.1, steps_timed=10)
    plan = budget.schedule(600, timing, n_train=160, n_val=40, n_test=50)
    total = sum(plan.estimate_s.values())
    assert total <= 600 * (1 - budget.MARGIN) + timing.step_s
    assert total > 600 * (1 - budget.MARGIN) - 2 * timing.step_s  # and uses it: no idle budget
    assert plan.estimate_s["training"] == pytest.approx(plan.max_steps * 0.2, abs=0.1)
    # the wall-clock cap on fit is the planned training plus validations, so a slow step cannot overrun
    assert plan.fit_s == pytest.approx(plan.estimate_s["training"] + plan.estimate_s["validation"], abs=0.3)
    assert 1 <= plan.validations <= budget.MAX_VALIDATIONS
    assert plan.val_check_interval * plan.validations >= plan.max_steps


def test_a_budget_too_short_gets_the_minimum_steps_and_says_so() -> None:
    timing = budget.Timing(step_s=5.0, load_s=1.0, infer_s=2.0, steps_timed=10)
    plan = budget.schedule(30, timing, n_train=10, n_val=5, n_test=5)
    assert plan.max_steps == budget.MIN_STEPS and "overrun" in plan.reason


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "00:00:00:01"), (503.7, "00:00:08:23"), (90061, "01:01:01:01")])
def test_max_time_is_written_as_lightning_reads_it(seconds: float, text: str) -> None:
    assert lightning_duration(seconds) == text
