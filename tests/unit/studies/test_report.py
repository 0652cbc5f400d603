import numpy as np
import pandas as pd
import pytest
from scipy import stats

from medlight.studies.report import (
    by_condition,
    lower_is_better,
    metric_families,
    paired_tests,
    per_condition,
    summary_table,
)


def fake_cases() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for variant, shift in (("base", 0.0), ("good", 0.05), ("same", 0.0)):
        for seed in (0, 1):
            for case in range(20):
                value = 0.7 + 0.01 * case + shift + (0.002 * rng.standard_normal() if variant != "same" else 0)
                rows.append(
                    {
                        "variant": variant,
                        "seed": seed,
                        "run": f"{variant}/seed{seed}",
                        "case_id": f"c{case}",
                        "dice": value,
                        "hd95": 5 - 10 * shift,
                    }
                )
    return pd.DataFrame(rows)


def test_families_group_per_class_columns() -> None:
    assert metric_families(["dice_a", "dice_b", "psnr", "hd95_a"]) == {
        "dice": ["dice_a", "dice_b"],
        "psnr": ["psnr"],
        "hd95": ["hd95_a"],
    }


def test_summary_is_mean_and_std_over_runs() -> None:
    cases = fake_cases()
    table = summary_table(cases, ["dice"], ["base", "good", "missing"])
    assert list(table["variant"]) == ["base", "good"] and list(table["runs"]) == [2, 2]
    per_run = cases[cases.variant == "good"].groupby("run")["dice"].mean()
    assert table.loc[1, "dice"] == f"{per_run.mean():.3f} ± {per_run.std(ddof=1):.3f}"


def test_paired_tests_match_scipy_and_name_the_winner() -> None:
    cases = fake_cases()
    tests = paired_tests(cases, ["dice", "hd95"], ["base", "good", "same"], baseline="base")
    good = tests[(tests.variant == "good") & (tests.metric == "dice")].iloc[0]
    per_case = cases.groupby(["variant", "case_id"])["dice"].mean()
    expected = stats.wilcoxon(per_case.loc["good"] - per_case.loc["base"]).pvalue
    assert good.p == pytest.approx(expected) and good.cases == 20
    assert good.verdict == "better" and good.p_holm == pytest.approx(min(1.0, 2 * expected))
    assert tests[(tests.variant == "good") & (tests.metric == "hd95")].iloc[0].verdict == "better"  # lower hd95
    assert tests[(tests.variant == "same") & (tests.metric == "hd95")].iloc[0].p == 1.0


def test_direction_of_metrics() -> None:
    assert lower_is_better("hd95") and lower_is_better("nmse") and not lower_is_better("dice")


def test_conditions_are_summarised_and_tested_apart() -> None:
    low, high = fake_cases().assign(acceleration=4), fake_cases().assign(acceleration=8)
    high["dice"] -= 0.2  # a harder condition: pooling would mix its values with the easier one's
    high.loc[high.variant == "good", "dice"] -= 0.1  # and there 'good' is worse than the baseline
    cases = pd.concat([low, high], ignore_index=True)
    parts = by_condition(cases, ["acceleration"])
    assert [c for c, _ in parts] == [{"acceleration": 4}, {"acceleration": 8}]
    summary = per_condition(parts, summary_table, ["dice"], ["base", "good"])
    assert list(summary.columns[:2]) == ["acceleration", "variant"] and len(summary) == 4
    assert summary.loc[0, "dice"] == summary_table(low, ["dice"], ["base"]).loc[0, "dice"]
    tests = per_condition(parts, paired_tests, ["dice"], ["base", "good"], "base")
    assert list(tests["verdict"]) == ["better", "worse"] and list(tests["acceleration"]) == [4, 8]
    assert by_condition(cases, [])[0][1] is cases
