"""Pieces the architecture zoo shares: resizing to the input size, optional local pretrained weights,
and a wrapper that lets fixed-multiple networks (e.g. MONAI SwinUNETR) take any input size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medlight.errors import ConfigError


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear (2D) or trilinear (3D) resize of a feature map to ``size``; a no-op when it already fits."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    return F.interpolate(x, size=tuple(int(s) for s in size), mode=mode, align_corners=False)


def load_pretrained(module: nn.Module, path: str | Path | None, ignore: tuple[str, ...] = ()) -> None:
    """Load weights from a local file into ``module`` (never downloads anything).

    The file holds a state dict, or a checkpoint with one under ``state_dict``/``model``. Keys missing from
    the file keep their initialisation (e.g. a 2-class head on an ImageNet backbone); a key present in both
    with a different shape is an error, as is a file without a single matching key. Keys starting with
    a prefix in ``ignore`` (e.g. ``head.``, whose class count differs) are not loaded.

    Raises:
        ConfigError: the file is missing, unreadable, or does not fit ``module``.
    """
    if path is None:
        return
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: pretrained weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file: say which and why
        raise ConfigError(f"{path}: cannot read pretrained weights ({type(err).__name__}: {err})") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: pretrained weights must be a state dict, got {type(state).__name__}")
    own = module.state_dict()
    matching = {k: v for k, v in state.items() if k in own and not k.startswith(ignore)}
    wrong = [f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in matching.items() if v.shape != own[k].shape]
    if wrong:
        raise ConfigError(f"{path}: pretrained weights do not fit the network: {'; '.join(wrong[:5])}")
    if not matching:
        raise ConfigError(f"{path}: no parameter name in the file matches the network (e.g. {next(iter(own))!r})")
    module.load_state_dict(matching, strict=False)


class PadToMultiple(nn.Module):
    """Pad the input to a multiple of ``multiple`` per spatial axis, run ``net``, crop the output back.

    For networks that only take sizes divisible by their total stride (MONAI SwinUNETR needs 32), so they
    take the hippocampus patches (48x64, 32x48x32) and odd sizes like every other network here.

    Args:
        net: the wrapped network.
        multiple: required divisor of every spatial size.
        mode: ``torch.nn.functional.pad`` mode (``constant`` pads with zeros, the normalised mean).
    """

    def __init__(self, net: nn.Module, multiple: int = 32, mode: str = "constant") -> None:
        super().__init__()
        self.net, self.multiple, self.mode = net, multiple, mode

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[2:]
        pad = [p for s in reversed(size) for p in (0, (-int(s)) % self.multiple)]
        y = self.net(F.pad(x, pad, mode=self.mode) if any(pad) else x)
        return y[(..., *(slice(0, int(s)) for s in size))]
