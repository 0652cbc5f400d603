"""Attention Branch Network (Fukui et al., CVPR 2019) on a 2D ResNet-18 built from MONAI blocks.

The first three ResNet stages extract features; the attention branch turns them into class logits and a
one-channel attention map M(x) in [0, 1]; the perception branch (the last ResNet stage and the classifier)
classifies the features re-weighted by (1 + M(x)), so the map can only emphasise, never erase, features.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock
from torch import Tensor, nn

from medlight.errors import ConfigError


class ABNOutput(NamedTuple):
    """What :class:`AttentionBranchNetwork` returns.

    Attributes:
        attention_logits: class logits of the attention branch, (B, classes).
        perception_logits: class logits of the perception branch, (B, classes); the prediction.
        attention_map: M(x), (B, 1, h, w) in [0, 1], at the feature resolution (1/16 of the input).
    """

    attention_logits: Tensor
    perception_logits: Tensor
    attention_map: Tensor


class AttentionBranchNetwork(nn.Module):
    """ABN with a 2D ResNet-18 backbone (MONAI ``ResNet`` with basic blocks, layers [2, 2, 2, 2]).

    Args:
        in_channels: image channels.
        num_classes: number of classes.
        width: channels of the first stage (64 is ResNet-18; smaller is cheaper on a CPU).
        pretrained: optional local file with a state dict of a MONAI 2D ResNet-18 (or of this network);
            matching tensors are loaded, nothing is downloaded.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 64, pretrained: str | None = None):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        resnet = ResNet(
            "basic", [2, 2, 2, 2], [width, 2 * width, 4 * width, 8 * width], spatial_dims=2,
            n_input_channels=in_channels, conv1_t_size=7, conv1_t_stride=2, num_classes=num_classes,
        )  # fmt: skip
        self.features = nn.Sequential(
            resnet.conv1, resnet.bn1, resnet.act, resnet.maxpool, resnet.layer1, resnet.layer2, resnet.layer3
        )
        assert resnet.fc is not None  # feed_forward=True (the default) builds it
        self.perception = nn.Sequential(resnet.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten(), resnet.fc)
        c_in, c_out = 4 * width, 8 * width
        shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        # the attention branch keeps the feature resolution (stride 1), so M(x) is as fine as the features
        self.attention = nn.Sequential(
            ResNetBlock(c_in, c_out, spatial_dims=2, downsample=shortcut),
            ResNetBlock(c_out, c_out, spatial_dims=2),
            nn.BatchNorm2d(c_out),
            nn.Conv2d(c_out, num_classes, 1, bias=False),
            nn.ReLU(inplace=True),
        )
        self.attention_logits = nn.Sequential(
            nn.Conv2d(num_classes, num_classes, 1, bias=False), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.attention_map = nn.Sequential(nn.Conv2d(num_classes, 1, 1, bias=False), nn.BatchNorm2d(1), nn.Sigmoid())
        if pretrained:
            self.load_backbone(pretrained, resnet)

    def forward(self, x: Tensor) -> ABNOutput:
        features = self.features(x)
        hidden = self.attention(features)
        att_map = self.attention_map(hidden)
        per_logits = self.perception(features * (1.0 + att_map))
        return ABNOutput(self.attention_logits(hidden), per_logits, att_map)

    def load_backbone(self, path: str, resnet: ResNet) -> None:
        """Load matching tensors from a local state dict of a MONAI ResNet-18 or of this network."""
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{file}: pretrained weights file not found (only local files are used)")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ConfigError(f"{file}: not a readable PyTorch state dict ({err})") from err
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise ConfigError(f"{file}: expected a state dict, found {type(state).__name__}")
        # a ResNet state dict: its modules are shared with self.features/self.perception, so load it there
        target: nn.Module = resnet if any(k.startswith("layer1.") for k in state) else self
        own = target.state_dict()
        usable = {k: v for k, v in state.items() if k in own and v.dim() > 0 and own[k].shape == v.shape}
        if not any(v.dim() >= 2 for v in usable.values()):  # a matching bias alone is no backbone
            raise ConfigError(f"{file}: no tensor matches a 2D ResNet-18 of this width and input channels")
        target.load_state_dict(usable, strict=False)
