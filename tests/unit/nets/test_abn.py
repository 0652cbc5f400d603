"""Attention Branch Network: branch shapes, M(x) in [0, 1], local pretrained weights."""

from pathlib import Path

import pytest
import torch
from monai.networks.nets import ResNet

from medlight.errors import ConfigError
from medlight.nets import AttentionBranchNetwork


@pytest.mark.parametrize(
    ("in_channels", "classes", "size", "map_size"),
    [(1, 2, (64, 64), (4, 4)), (2, 3, (64, 32), (4, 2)), (3, 2, (48, 80), (3, 5))],
)
def test_branch_shapes(in_channels: int, classes: int, size: tuple, map_size: tuple) -> None:
    net = AttentionBranchNetwork(in_channels, classes, width=8)
    out = net(torch.randn(2, in_channels, *size))
    assert out.attention_logits.shape == (2, classes)
    assert out.perception_logits.shape == (2, classes)
    assert out.attention_map.shape == (2, 1, *map_size)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_attention_map_stays_in_unit_interval(scale: float) -> None:
    torch.manual_seed(0)
    net = AttentionBranchNetwork(1, 2, width=8)
    for mode in (net.train, net.eval):
        mode()
        att_map = net(scale * torch.randn(3, 1, 32, 32)).attention_map
        assert att_map.min() >= 0 and att_map.max() <= 1


def test_perception_branch_sees_the_attention_map() -> None:
    """Changing M(x) changes the perception logits: features are re-weighted by (1 + M)."""
    torch.manual_seed(0)
    net = AttentionBranchNetwork(1, 2, width=8).eval()
    x = torch.randn(1, 1, 32, 32)
    before = net(x).perception_logits
    with torch.no_grad():
        net.attention_map[1].bias += 5.0  # pushes M(x) towards 1
    assert not torch.allclose(before, net(x).perception_logits)


def test_pretrained_backbone_from_a_local_file(tmp_path: Path) -> None:
    resnet = ResNet("basic", [2, 2, 2, 2], [8, 16, 32, 64], spatial_dims=2, n_input_channels=1, conv1_t_size=7,
                    conv1_t_stride=2, num_classes=2)  # fmt: skip
    torch.save(resnet.state_dict(), tmp_path / "r18.pt")
    net = AttentionBranchNetwork(1, 2, width=8, pretrained=str(tmp_path / "r18.pt"))
    assert torch.equal(net.features[0].weight, resnet.conv1.weight)
    assert torch.equal(net.perception[0][0].conv1.weight, resnet.layer4[0].conv1.weight)
    with pytest.raises(ConfigError, match="missing.pt"):
        AttentionBranchNetwork(1, 2, width=8, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="no tensor matches"):
        AttentionBranchNetwork(3, 2, width=16, pretrained=str(tmp_path / "r18.pt"))
