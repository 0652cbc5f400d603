"""Statistics of paired comparisons: Wilcoxon signed-rank, Hodges-Lehmann estimate, hierarchical bootstrap, Holm.

The unit of a comparison is a paired difference ``variant - baseline`` of one test case in one run (same grid
point, e.g. same fold and seed). They come as a matrix ``runs x cases`` with NaN where a case was not tested
in a run (cross-validation folds test different cases; a shared test set fills the matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def hodges_lehmann(diffs: np.ndarray) -> float:
    """The median of the Walsh averages (d_i + d_j) / 2, i <= j: the estimate that goes with the signed-rank test."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return float("nan")
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2))


@dataclass(frozen=True)
class SignedRank:
    p: float
    w_plus: float  # sum of the ranks of |d| over the positive differences (zeros dropped, as the test does)
    w_minus: float
    positive: int  # cases with d > 0
    negative: int


def signed_rank(diffs: np.ndarray) -> SignedRank:
    """Two-sided Wilcoxon signed-rank test (scipy) and its rank sums, which say in which direction it points."""
    d = np.asarray(diffs, dtype=float)
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return SignedRank(1.0, 0.0, 0.0, 0, 0)
    ranks = stats.rankdata(np.abs(nonzero))
    p = float(stats.wilcoxon(d).pvalue)
    return SignedRank(
        p, float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum()), int((d > 0).sum()), int((d < 0).sum())
    )


def case_units(diffs: np.ndarray) -> np.ndarray:
    """The values the test is over: each case averaged over the runs that tested it.

    A shared test set (no NaN) gives one value per case; cross-validation (every case tested in one run) gives
    each case's single value.
    """
    d = np.asarray(diffs, dtype=float)
    tested = ~np.isnan(d)
    keep = tested.any(axis=0)
    return np.where(tested, d, 0.0).sum(axis=0)[keep] / tested.sum(axis=0)[keep]


def hierarchical_bootstrap(
    diffs: np.ndarray,
    statistic=hodges_lehmann,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(case_units(...))`` resampling runs, then cases.

    Runs are drawn with replacement (the spread between seeds/folds), then cases with replacement from what
    those runs tested (the spread between cases). On a shared test set each resampled case is averaged over the
    resampled runs, as the estimate is; with cross-validation each drawn run brings its own cases.
    """
    d = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    crossed = not np.isnan(d).any()
    values = np.empty(resamples)
    for b in range(resamples):
        runs = d[rng.integers(0, len(d), len(d))]
        units = case_units(runs) if crossed else runs[~np.isnan(runs)]
        values[b] = statistic(units[rng.integers(0, len(units), len(units))])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error over the comparisons given)."""
    order = np.argsort(pvalues)
    adjusted = np.empty(len(pvalues))
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()
