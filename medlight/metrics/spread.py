"""The one spread over cases that every task writes as ``<metric>_std`` in its summaries."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike


def std_over_cases(values: ArrayLike) -> float:
    """Sample standard deviation (ddof 1) over cases, NaN values left out; NaN with fewer than two values.

    The same definition as the reports' spread over runs, so no table mixes two kinds of "std".
    """
    arr = np.asarray(values, dtype=np.float64)
    if np.count_nonzero(~np.isnan(arr)) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanstd(arr, ddof=1))
