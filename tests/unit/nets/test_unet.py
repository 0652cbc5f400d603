import pytest
import torch
from monai.networks.blocks import ResidualUnit
from monai.networks.nets.attentionunet import AttentionBlock

from medlight.nets import AttentionResUNet, ResUNet, UNet

NETS = [UNet, ResUNet, AttentionResUNet]
SHAPES = [
    (3, (2, 1, 32, 32, 32)),
    (3, (1, 2, 33, 47, 31)),  # odd sizes, two input channels
    (2, (2, 1, 64, 64)),
    (2, (1, 3, 61, 45)),
]


@pytest.mark.parametrize("net_cls", NETS)
@pytest.mark.parametrize(("dims", "shape"), SHAPES)
@pytest.mark.parametrize("out_channels", [2, 4])
@pytest.mark.parametrize("strides", [(2, 2), (2, 2, 1)])
def test_output_shape(net_cls, dims, shape, out_channels, strides) -> None:
    net = net_cls(dims, shape[1], out_channels, channels=(8, 16, 32), strides=strides)
    y = net(torch.randn(shape))
    assert y.shape == (shape[0], out_channels, *shape[2:])
    assert net.forward_features(torch.randn(shape)).shape == (shape[0], 8, *shape[2:])


def test_variants_differ_only_by_their_ingredients() -> None:
    def count(net, kind):
        return sum(isinstance(m, kind) for m in net.modules())

    plain, res, att = (cls(3, 1, 2, channels=(8, 16, 32), strides=(2, 2)) for cls in NETS)
    assert count(plain, ResidualUnit) == 0 and count(plain, AttentionBlock) == 0
    assert count(res, ResidualUnit) == 5 and count(res, AttentionBlock) == 0
    assert count(att, ResidualUnit) == 5 and count(att, AttentionBlock) == 2


def test_attention_gates_change_the_output() -> None:
    torch.manual_seed(0)
    net = AttentionResUNet(2, 1, 2, channels=(4, 8), strides=(2,))
    x = torch.randn(1, 1, 16, 16)
    before = net(x)
    for p in net.gates[0].parameters():
        torch.nn.init.normal_(p)
    assert not torch.allclose(before, net(x))


@pytest.mark.parametrize("net_cls", NETS)
def test_one_training_step_reduces_loss_and_reaches_every_parameter(net_cls) -> None:
    torch.manual_seed(0)
    net = net_cls(2, 1, 2, channels=(4, 8, 16), strides=(2, 2))
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


def test_bad_strides_are_rejected() -> None:
    with pytest.raises(ValueError, match="strides"):
        UNet(3, 1, 2, channels=(8, 16, 32), strides=(2,))


@pytest.mark.parametrize("net_cls", NETS)
def test_per_axis_strides_keep_a_coarse_axis_and_any_size(net_cls) -> None:
    net = net_cls(3, 1, 3, channels=(4, 8, 16, 16), strides=([2, 2, 1], [2, 2, 2], [2, 2, 1], 1))
    assert net.total_stride == [8, 8, 2]
    x = torch.randn(1, 1, 37, 30, 5)
    assert net(x).shape == (1, 3, 37, 30, 5)
