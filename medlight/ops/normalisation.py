"""Intensity normalisation of arrays that do not go through MONAI's dictionary transforms."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def zscore(image: NDArray, region: NDArray | None = None) -> NDArray[np.float32]:
    """Z-score each channel of a (C, *spatial) image, with statistics taken inside ``region`` when it is given
    and not empty (e.g. an organ mask), over all voxels otherwise."""
    out = np.empty(image.shape, np.float32)
    for c, channel in enumerate(image.astype(np.float32)):
        values = channel[region] if region is not None and region.any() else channel
        out[c] = (channel - values.mean()) / max(float(values.std()), 1e-6)
    return out
