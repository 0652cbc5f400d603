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
    validation_column,
)
from medlight.studies.stats import hodges_lehmann


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


def skewed_cases(metric: str) -> pd.DataFrame:
    """Most cases a little lower than the baseline, a few much higher: the mean rises, the median falls."""
    rng = np.random.default_rng(1)
    diffs = np.concatenate([-0.1 - 0.01 * rng.random(40), np.full(6, 2.0)])
    assert diffs.mean() > 0 and np.median(diffs) < 0
    base = 3 + rng.random(len(diffs))
    rows = [
        {"variant": v, "run": f"{v}/single", "case_id": f"c{i}", metric: value}
        for v, values in (("base", base), ("other", base + diffs))
        for i, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_families_group_per_class_columns() -> None:
    assert metric_families(["dice_a", "dice_b", "psnr", "hd95_a"]) == {
        "dice": ["dice_a", "dice_b"],
        "psnr": ["psnr"],
        "hd95": ["hd95_a"],
    }


def test_summary_is_numeric_mean_and_std_over_runs() -> None:
    cases = fake_cases()
    table = summary_table(cases, ["dice"], ["base", "good", "missing"])
    assert list(table["variant"]) == ["base", "good"] and list(table["runs"]) == [2, 2]
    per_run = cases[cases.variant == "good"].groupby("run")["dice"].mean()
    assert table.loc[1, "dice_mean"] == pytest.approx(per_run.mean())
    assert table.loc[1, "dice_std"] == pytest.approx(per_run.std(ddof=1))
    one_run = summary_table(cases[cases.seed == 0], ["dice"], ["base"])
    assert one_run.loc[0, "runs"] == 1 and np.isnan(one_run.loc[0, "dice_std"])  # not measured, never 0


def test_paired_tests_match_scipy_and_name_the_winner() -> None:
    cases = fake_cases()
    tests = paired_tests(cases, ["dice", "hd95"], ["base", "good", "same"], "base", ["seed"], "seed", resamples=200)
    good = tests[(tests.variant == "good") & (tests.metric == "dice")].iloc[0]
    per_case = cases.groupby(["variant", "case_id"])["dice"].mean()
    diff = per_case.loc["good"] - per_case.loc["base"]
    assert good.p == pytest.approx(stats.wilcoxon(diff).pvalue) and good.cases == 20 and good.runs == 2
    assert good.hl_diff == pytest.approx(hodges_lehmann(diff.to_numpy()))
    assert good.ci_low <= good.hl_diff <= good.ci_high and good.ci_low > 0.04
    assert good.verdict == "better" and good.p_holm == pytest.approx(min(1.0, 2 * good.p))
    assert tests[(tests.variant == "good") & (tests.metric == "hd95")].iloc[0].verdict == "better"  # lower hd95
    assert tests[(tests.variant == "same") & (tests.metric == "hd95")].iloc[0].p == 1.0


@pytest.mark.parametrize(("metric", "expected"), [("hd95", "better"), ("dice", "worse")])
def test_verdict_follows_the_test_not_the_mean(metric: str, expected: str) -> None:
    cases = skewed_cases(metric)
    row = paired_tests(cases, [metric], ["base", "other"], "base", resamples=200).iloc[0]
    assert row.mean_diff > 0 and row.hl_diff < 0 and row.w_minus > row.w_plus  # the mean points the other way
    assert row.p < 0.05 and row.verdict == expected
    assert row.cases_improved == (40 if lower_is_better(metric) else 6)
    assert row.ci_high < 0  # the interval is that of the HL estimate, not of the mean


def test_seed_replication_counts_the_seeds_that_agree() -> None:
    cases = fake_cases()
    third = cases[cases.seed == 1].assign(seed=2)
    third["run"] = third["run"].str.replace("seed1", "seed2")
    third.loc[third.variant == "good", "dice"] -= 0.1  # in seed 2, 'good' is worse than the baseline
    cases = pd.concat([cases, third], ignore_index=True)
    tests = paired_tests(cases, ["dice"], ["base", "good"], "base", ["seed"], "seed", resamples=100)
    row = tests.iloc[0]
    assert row.verdict == "better" and row.replication == "replicates in 2/3 seeds" and row.seeds_agreeing == 2


def test_a_single_run_says_seed_variation_is_not_measured() -> None:
    cases = fake_cases()
    one = paired_tests(cases[cases.seed == 0], ["dice"], ["base", "good"], "base", ["seed"], "seed", resamples=50)
    assert one.iloc[0].replication == "1 run: seed variation not measured" and one.iloc[0].runs == 1
    no_seed_factor = paired_tests(cases, ["dice"], ["base", "good"], "base", ["seed"], None, resamples=50)
    assert no_seed_factor.iloc[0].replication == "1 seed (2 runs): seed variation not measured"


def test_direction_of_metrics() -> None:
    assert lower_is_better("hd95") and lower_is_better("nmse") and not lower_is_better("dice")


def test_validation_column_of_a_metric() -> None:
    assert validation_column(["val/dice", "val/dice_a"], "dice") == "val/dice"
    assert validation_column(["val/slice_accuracy", "val/patient_accuracy"], "accuracy") == "val/patient_accuracy"
    assert validation_column(["train/loss"], "dice") is None


def test_conditions_are_summarised_and_tested_apart() -> None:
    low, high = fake_cases().assign(acceleration=4), fake_cases().assign(acceleration=8)
    high["dice"] -= 0.2  # a harder condition: pooling would mix its values with the easier one's
    high.loc[high.variant == "good", "dice"] -= 0.1  # and there 'good' is worse than the baseline
    cases = pd.concat([low, high], ignore_index=True)
    parts = by_condition(cases, ["acceleration"])
    assert [c for c, _ in parts] == [{"acceleration": 4}, {"acceleration": 8}]
    summary = per_condition(parts, summary_table, ["dice"], ["base", "good"])
    assert list(summary.columns[:2]) == ["acceleration", "variant"] and len(summary) == 4
    assert summary.loc[0, "dice_mean"] == summary_table(low, ["dice"], ["base"]).loc[0, "dice_mean"]
    tests = per_condition(parts, paired_tests, ["dice"], ["base", "good"], "base", ["seed", "acceleration"])
    assert list(tests["verdict"]) == ["better", "worse"] and list(tests["acceleration"]) == [4, 8]
    assert by_condition(cases, [])[0][1] is cases


def test_a_variant_without_folds_is_paired_with_the_baseline_averaged_over_its_folds() -> None:
    """A fold ensemble has one run per seed and no fold; the fold models have one per (fold, seed)."""
    rows = []
    for seed in (0, 1):
        for case in range(12):
            for fold in (0, 1, 2):
                rows.append(
                    {
                        "variant": "folds",
                        "fold": fold,
                        "seed": seed,
                        "run": f"folds/f{fold}s{seed}",
                        "case_id": f"c{case}",
                        "dice": 0.70 + 0.01 * case + 0.01 * fold,
                    }
                )
            rows.append(
                {
                    "variant": "ensemble",
                    "fold": np.nan,
                    "seed": seed,
                    "run": f"ensemble/s{seed}",
                    "case_id": f"c{case}",
                    "dice": 0.73 + 0.01 * case,
                }
            )  # the folds' mean (0.71) + 0.02
    cases = pd.DataFrame(rows)
    tests = paired_tests(cases, ["dice"], ["folds", "ensemble"], "folds", ["fold", "seed"], "seed", resamples=200)
    row = tests.iloc[0]
    assert row.runs == 2 and row.cases == 12 and row.hl_diff == pytest.approx(0.02)
    assert row.verdict == "better" and row.replication == "replicates in 2/2 seeds"
