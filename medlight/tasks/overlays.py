"""Attention-map overlays: a slice in grey with its attention map M(x) on top, saved as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402


def overlay_rgb(image: Tensor, att_map: Tensor, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8: the first image channel (min-max scaled) blended with M(x) upsampled to (H, W)."""
    grey = image[0].float()
    grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp(min=1e-6)
    heat = F.interpolate(att_map[None].float(), size=grey.shape, mode="bilinear", align_corners=False)[0, 0]
    colour = torch.as_tensor(plt.get_cmap("jet")(heat.clamp(0, 1).numpy())[..., :3], dtype=torch.float32)
    rgb = (1 - alpha) * grey[..., None].expand(-1, -1, 3) + alpha * colour
    return (rgb.clamp(0, 1).numpy() * 255).astype(np.uint8)


def save_overlays(panels: list[dict], path: Path) -> Path:
    """One PNG with a row per panel: image, overlay. Each panel has ``image``, ``map`` and a ``title``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(panels), 2, figsize=(5, 2.4 * len(panels)), squeeze=False)
    for row, panel in zip(axes, panels):
        row[0].imshow(panel["image"][0].numpy(), cmap="gray")
        row[1].imshow(overlay_rgb(panel["image"], panel["map"]))
        row[0].set_title(panel["title"], fontsize=7)
        row[1].set_title("M(x)", fontsize=7)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
