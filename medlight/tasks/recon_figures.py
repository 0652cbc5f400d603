"""Reconstructions a reader can look at: NIfTI volumes and PNGs of zero-filled | reconstruction | reference | error."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def save_volume(volume: Tensor, path: Path) -> Path:
    """A (slices, H, W) magnitude volume as NIfTI (H, W, slices), identity affine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(volume.detach().float().cpu().numpy().transpose(1, 2, 0))
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def save_comparison(zero_filled: Tensor, pred: Tensor, target: Tensor, path: Path, title: str = "") -> Path:
    """One PNG, a row per slice of (n, H, W) images: zero-filled, reconstruction, reference (one grey scale,
    the reference's maximum) and |reconstruction - reference| (x5 on the same scale)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = target.shape[0]
    fig, axes = plt.subplots(n, 4, figsize=(10, 2.6 * n), squeeze=False)
    peak = float(target.max())
    for row in range(n):
        panels = [
            ("zero-filled", zero_filled[row]),
            ("reconstruction", pred[row]),
            ("reference", target[row]),
            ("|error| x5", 5 * (pred[row] - target[row]).abs()),
        ]
        for ax, (name, image) in zip(axes[row], panels):
            ax.imshow(image.detach().float().cpu().numpy(), cmap="gray", vmin=0, vmax=peak)
            ax.set_title(name if row == 0 else "", fontsize=9)
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
