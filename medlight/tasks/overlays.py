"""Pictures of what a network does, for files and dashboards: attention maps (ABN), segmentation overlays with a
class legend, reconstructions beside their target and error. Each returns or saves an RGB image."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
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
    fig = attention_figure(panels)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def attention_rgb(panels: list[dict]) -> np.ndarray:
    """:func:`save_overlays`'s picture as an (H, W, 3) uint8 array."""
    return figure_rgb(attention_figure(panels))


def attention_figure(panels: list[dict]) -> Figure:
    fig, axes = plt.subplots(len(panels), 2, figsize=(5, 2.4 * len(panels)), squeeze=False)
    for row, panel in zip(axes, panels):
        row[0].imshow(panel["image"][0].numpy(), cmap="gray")
        row[1].imshow(overlay_rgb(panel["image"], panel["map"]))
        row[0].set_title(panel["title"], fontsize=7)
        row[1].set_title("M(x)", fontsize=7)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    return fig


def figure_rgb(fig: Figure, dpi: int = 80) -> np.ndarray:
    """Render a figure to an (H, W, 3) uint8 array and close it."""
    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    plt.close(fig)
    return rgb


def _grey(image: Tensor) -> np.ndarray:
    x = image.detach().float().cpu()
    return ((x - x.min()) / (x.max() - x.min()).clamp(min=1e-6)).numpy()


def _colour_labels(labels: Tensor, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 4) RGBA: each class in its colour, background transparent."""
    index = labels.detach().long().cpu().numpy()
    rgba = np.zeros((*index.shape, 4))
    for c in range(1, len(colours) + 1):
        rgba[index == c] = [*colours[c - 1], alpha]
    return rgba


def pick_slice(volume: Tensor, label: Tensor, axis: int = -1) -> int:
    """The slice along ``axis`` of a 3D volume with the most foreground in ``label`` (the middle one if none)."""
    axis = axis % volume.dim()
    foreground = (label > 0).sum(dim=[d for d in range(label.dim()) if d != axis])
    return int(foreground.argmax()) if bool(foreground.any()) else volume.shape[axis] // 2


def segmentation_rgb(rows: list[dict], class_names: list[str]) -> np.ndarray:
    """A row per case (2D ``image``, ``label``, ``prediction`` maps and a ``title``): image, ground truth and
    prediction drawn over it, and a legend naming each class's colour."""
    colours = np.array([plt.get_cmap("tab10")(i % 10)[:3] for i in range(len(class_names))])
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.2, 2.5 * len(rows) + 0.5), squeeze=False)
    for row_axes, row in zip(axes, rows):
        grey = _grey(row["image"])
        for ax, (name, labels) in zip(
            row_axes, [("image", None), ("ground truth", row["label"]), ("prediction", row["prediction"])]
        ):
            ax.imshow(grey, cmap="gray")
            if labels is not None:
                ax.imshow(_colour_labels(labels, colours))
            ax.set_title(f"{row['title']}: {name}" if name == "image" else name, fontsize=7)
            ax.axis("off")
    handles = [Patch(color=colours[i], label=name) for i, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if len(rows) < 3 else 0.03, 1, 1))
    return figure_rgb(fig)


def reconstruction_rgb(rows: list[dict]) -> np.ndarray:
    """A row per volume (2D ``zero_filled``, ``output``, ``target`` and a ``title``): the three on the target's
    grey scale, and the absolute error of the output."""
    fig, axes = plt.subplots(len(rows), 4, figsize=(9, 2.4 * len(rows)), squeeze=False)
    for row_axes, row in zip(axes, rows):
        target = row["target"].detach().float().cpu()
        top = float(target.max()) or 1.0
        pictures = [("zero-filled", row["zero_filled"]), ("output", row["output"]), ("target", target)]
        for ax, (name, image) in zip(row_axes, pictures):
            ax.imshow(image.detach().float().cpu().numpy(), cmap="gray", vmin=0, vmax=top)
            ax.set_title(f"{row['title']}: {name}" if name == "zero-filled" else name, fontsize=7)
        error = (row["output"].detach().float().cpu() - target).abs().numpy()
        shown = row_axes[3].imshow(error, cmap="inferno", vmin=0, vmax=top * 0.2)
        row_axes[3].set_title("|output - target|", fontsize=7)
        fig.colorbar(shown, ax=row_axes[3], fraction=0.046)
        for ax in row_axes:
            ax.axis("off")
    fig.tight_layout()
    return figure_rgb(fig)
