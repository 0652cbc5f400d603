"""The architecture zoo: output shapes (2D/3D, odd sizes, class counts), a training step, pretrained loading."""

from pathlib import Path

import pytest
import torch
from monai.networks.nets import DynUNet, SegResNet, SwinUNETR

from medlight.errors import ConfigError
from medlight.nets import DeepLabV3Plus, HRNet, PadToMultiple, PSPNet, SegFormer
from medlight.nets.backbone import DilatedResNet

SMALL = {  # small widths keep the table fast; the defaults are checked once below
    DeepLabV3Plus: {"channels": (8, 8, 16, 16), "aspp_channels": 8, "low_level_channels": 4},
    PSPNet: {"channels": (8, 8, 16, 16), "fuse_channels": 8},
    HRNet: {"width": 4, "stem_channels": 8, "blocks": 1},
    SegFormer: {"dims": (8, 16, 16, 16), "heads": (1, 1, 2, 2), "decoder_dim": 16},
}
SHAPES = [
    (2, (2, 1, 48, 64)),  # the hippocampus 2D patch
    (2, (1, 2, 37, 53)),  # odd sizes, two input channels
    (2, (1, 1, 17, 9)),  # smaller than the deepest stride
    (3, (1, 1, 32, 48, 32)),  # the hippocampus 3D patch
    (3, (2, 1, 21, 19, 17)),
]


@pytest.mark.parametrize("net_cls", list(SMALL), ids=lambda c: c.__name__)
@pytest.mark.parametrize(("dims", "shape"), SHAPES)
@pytest.mark.parametrize("out_channels", [2, 3, 5])
def test_output_shape(net_cls, dims, shape, out_channels) -> None:
    net = net_cls(dims, shape[1], out_channels, **SMALL[net_cls]).eval()
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (shape[0], out_channels, *shape[2:])


# parameter counts of the configured defaults (1 input channel, 3 classes); README tables quote them
PARAMS = {
    (DeepLabV3Plus, 2): 2_973_283,
    (DeepLabV3Plus, 3): 8_540_323,
    (PSPNet, 2): 2_260_355,
    (PSPNet, 3): 6_574_019,
    (HRNet, 2): 1_837_053,
    (SegFormer, 2): 3_711_779,
}


@pytest.mark.parametrize(("net_cls", "dims"), list(PARAMS), ids=lambda v: getattr(v, "__name__", str(v)))
def test_default_sizes_and_parameter_counts(net_cls, dims) -> None:
    net = net_cls(dims, 1, 3).eval()
    shape = (1, 1, 48, 64) if dims == 2 else (1, 1, 32, 48, 32)
    with torch.no_grad():
        assert net(torch.randn(shape)).shape == (1, 3, *shape[2:])
    assert sum(p.numel() for p in net.parameters()) == PARAMS[(net_cls, dims)]


@pytest.mark.parametrize("net_cls", list(SMALL), ids=lambda c: c.__name__)
def test_one_training_step_reduces_loss_and_reaches_every_parameter(net_cls) -> None:
    torch.manual_seed(0)
    net = net_cls(2, 1, 2, **SMALL[net_cls])
    x = torch.randn(4, 1, 32, 32)
    y = (x > 0).long()[:, 0]
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in net.parameters())


def test_backbone_output_stride() -> None:
    x = torch.randn(1, 1, 64, 64)
    for stride in (8, 16):
        low, deep = DilatedResNet(2, 1, (4, 4, 8, 8), output_stride=stride)(x)
        assert low.shape[2:] == (16, 16) and deep.shape[2:] == (64 // stride, 64 // stride)
    with pytest.raises(ValueError, match="output_stride"):
        DilatedResNet(2, 1, output_stride=32)


def test_hrnet_keeps_one_branch_per_resolution() -> None:
    net = HRNet(2, 1, 2, width=4, stem_channels=8, blocks=1, num_branches=3)
    xs = [net.to_first(net.stem(torch.randn(1, 1, 64, 64)))]
    for transition, stage in zip(net.transitions, net.stages):
        xs = stage([*xs, transition(xs[-1])])
    assert [tuple(x.shape[1:]) for x in xs] == [(4, 16, 16), (8, 8, 8), (16, 4, 4)]


@pytest.mark.parametrize(
    "net",
    [
        SwinUNETR(in_channels=1, out_channels=3, spatial_dims=2, feature_size=12, window_size=4),
        SegResNet(spatial_dims=2, init_filters=8, in_channels=1, out_channels=3),
        DynUNet(2, 1, 3, [3, 3, 3, 3], [1, 2, 2, 2], [2, 2, 2], filters=[8, 8, 16, 16]),
    ],
    ids=["swin_unetr", "segresnet", "dynunet"],
)
def test_pad_to_multiple_lets_monai_networks_take_any_size(net) -> None:
    wrapped = PadToMultiple(net, 32).eval()
    with torch.no_grad():
        for size in ((48, 64), (37, 53)):
            assert wrapped(torch.randn(1, 1, *size)).shape == (1, 3, *size)


def test_pretrained_weights_load_from_a_local_file_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = DeepLabV3Plus(2, 1, 5, **SMALL[DeepLabV3Plus])
    path = tmp_path / "encoder.pt"
    torch.save({"state_dict": source.encoder.state_dict()}, path)
    net = DeepLabV3Plus(2, 1, 2, pretrained=path, **SMALL[DeepLabV3Plus])
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], value)
    # a whole-network file with another class count: everything but the head loads
    torch.save(SegFormer(2, 1, 5, **SMALL[SegFormer]).state_dict(), path)
    assert SegFormer(2, 1, 2, pretrained=path, **SMALL[SegFormer]).head.out_channels == 2


def test_bad_pretrained_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        PSPNet(2, 1, 2, pretrained=tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="garbage.pt: cannot read"):
        PSPNet(2, 1, 2, pretrained=garbage)
    other = tmp_path / "other.pt"
    torch.save(DilatedResNet(2, 1, (4, 4, 8, 8)).state_dict(), other)  # same names, other widths
    with pytest.raises(ConfigError, match="other.pt: pretrained weights do not fit"):
        PSPNet(2, 1, 2, pretrained=other)
    unrelated = tmp_path / "unrelated.pt"
    torch.save({"foo.weight": torch.zeros(1)}, unrelated)
    with pytest.raises(ConfigError, match="no parameter name"):
        HRNet(2, 1, 2, pretrained=unrelated)
