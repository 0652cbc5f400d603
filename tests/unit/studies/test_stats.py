import numpy as np
import pytest
from scipy import stats

from medlight.studies.stats import case_units, hierarchical_bootstrap, hodges_lehmann, holm, signed_rank


def test_hodges_lehmann_is_the_median_of_walsh_averages() -> None:
    d = np.array([1.0, 2.0, 9.0])
    walsh = [1.0, 1.5, 5.0, 2.0, 5.5, 9.0]  # (d_i + d_j) / 2 for i <= j
    assert hodges_lehmann(d) == pytest.approx(np.median(walsh))


def test_signed_rank_matches_scipy_and_gives_the_rank_sums() -> None:
    d = np.array([-0.3, -0.2, -0.1, 0.0, 0.4, -0.5, -0.6])
    test = signed_rank(d)
    assert test.p == pytest.approx(stats.wilcoxon(d).pvalue)
    assert (test.w_plus, test.w_minus) == (4.0, 17.0)  # the zero dropped; |0.4| has rank 4 of the 6 others
    assert (test.positive, test.negative) == (1, 5)
    assert signed_rank(np.zeros(4)).p == 1.0


def test_case_units_average_a_shared_test_set_and_keep_cross_validation_cases() -> None:
    shared = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert case_units(shared).tolist() == [2.0, 3.0]
    folds = np.array([[1.0, np.nan, np.nan], [np.nan, 2.0, 3.0]])  # each case tested in one fold
    assert case_units(folds).tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("nested", [False, True])
def test_bootstrap_of_a_constant_shift_collapses_on_it(nested: bool) -> None:
    diffs = np.full((3, 12), 0.2)
    if nested:
        diffs[np.arange(12) % 3 != np.arange(3)[:, None]] = np.nan  # case k tested only in run k % 3
    low, high = hierarchical_bootstrap(diffs, resamples=200)
    assert low == pytest.approx(0.2) and high == pytest.approx(0.2)


def test_bootstrap_sees_the_spread_between_runs() -> None:
    cases = np.linspace(-0.01, 0.01, 20)
    same = np.tile(0.05 + cases, (4, 1))
    runs_differ = same + np.array([[-0.1], [0.1], [-0.1], [0.1]])  # seeds disagree; the case mean is unchanged
    narrow = np.subtract(*reversed(hierarchical_bootstrap(same, resamples=500)))
    wide = np.subtract(*reversed(hierarchical_bootstrap(runs_differ, resamples=500)))
    assert narrow < 0.02 and wide > 0.1
    assert hierarchical_bootstrap(runs_differ, resamples=500) == hierarchical_bootstrap(runs_differ, resamples=500)


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
