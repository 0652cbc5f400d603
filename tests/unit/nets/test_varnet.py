"""VarNet backbone and hierarchical adapters: routing, fallback, data consistency, frozen backbone."""

import logging

import pytest
import torch

from medlight.nets.adapters import UNIVERSAL, AdapterRouter, BottleneckAdapter, HierarchicalAdapter
from medlight.nets.varnet import VarNet, ZeroFilled
from medlight.ops.kspace import cartesian_mask, fft2c, rss

SMALL = {"num_cascades": 2, "features": (4, 4, 8, 8, 8, 4), "sens_features": (2, 2, 4, 4, 4, 2)}


def _batch(batch: int = 1, coils: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    full = fft2c(torch.randn(batch, coils, size, size, 2, generator=g))
    mask = cartesian_mask(size, 4, 0.125, seed=3).view(1, 1, 1, size, 1).expand(batch, 1, 1, size, 1)
    return full * mask, mask, full


def _net(**kw: object) -> VarNet:
    torch.manual_seed(0)
    return VarNet(protocols=["t1", "flair"], centers=["A", "B"], **{"universal_prob": 0.0, **SMALL, **kw})  # type: ignore[arg-type]


def test_router_picks_known_adapters_and_falls_back_to_universal(caplog: pytest.LogCaptureFixture) -> None:
    router = AdapterRouter(["t1", "flair"], ["A", "B"], universal_prob=0.0)
    with caplog.at_level(logging.WARNING):
        routes = router(["t1", "flair", "t1", "dwi"], ["A", "B", "Z", "A"], training=False)
        router(["t1"], ["Z"], training=False)  # reported once per id, not per batch
    assert routes == [("t1", "A"), ("flair", "B"), ("t1", UNIVERSAL), (None, UNIVERSAL)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("center 'Z'" in m for m in messages) == 1 and sum("protocol 'dwi'" in m for m in messages) == 1


def test_stochastic_replacement_in_training_only() -> None:
    router = AdapterRouter(["t1"], ["A"], universal_prob=0.5)
    torch.manual_seed(0)
    training = router(["t1"] * 400, ["A"] * 400, training=True)
    share = sum(c == UNIVERSAL for _, c in training) / 400
    assert 0.4 < share < 0.6
    assert all(c == "A" for _, c in router(["t1"] * 50, ["A"] * 50, training=False))


def test_hierarchical_adapter_applies_each_samples_own_modules() -> None:
    layer = HierarchicalAdapter(4, ["t1", "flair"], ["A", "B"])
    for i, module in enumerate([*layer.protocol.values(), *layer.center.values(), layer.universal]):
        torch.nn.init.constant_(module.up.bias, float(10**i))  # each adapter adds its own constant
    x = torch.zeros(3, 4, 5, 5)
    layer.route = [("t1", "A"), ("flair", UNIVERSAL), (None, "B")]
    out = layer(x)
    # t1 adds 1 then A adds 100; flair adds 10 then universal adds 10000; B alone adds 1000
    assert torch.allclose(out[0], torch.full((4, 5, 5), 101.0))
    assert torch.allclose(out[1], torch.full((4, 5, 5), 10010.0))
    assert torch.allclose(out[2], torch.full((4, 5, 5), 1000.0))
    layer.route = None
    assert torch.equal(layer(x), x)


def test_a_new_adapter_is_the_identity() -> None:
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(BottleneckAdapter(8)(x), x)


def test_network_routes_by_identifiers() -> None:
    net = _net()
    for adapter in net.adapters():  # make center A's adapters non-trivial
        torch.nn.init.normal_(adapter.center["A"].up.weight, std=0.5)
    net.eval()
    masked, mask, _ = _batch()
    with torch.no_grad():
        a = net(masked, mask, ["A"], ["t1"])
        b = net(masked, mask, ["B"], ["t1"])
        unknown = net(masked, mask, ["Z"], ["t1"])
    assert a.shape == (1, 32, 32)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(b, unknown)  # B, universal and all others are still zero-initialised


def test_final_data_consistency_keeps_sampled_lines_exactly() -> None:
    masked, mask, _ = _batch(batch=2)
    kspace = _net().eval().forward_kspace(masked, mask, ["A", "B"], ["t1", "t1"])
    cols = mask[0].reshape(-1)
    assert torch.equal(kspace[..., cols, :], masked[..., cols, :])
    assert kspace[..., ~cols, :].abs().sum() > 0  # unsampled lines were filled in


def test_frozen_backbone_gets_no_gradient() -> None:
    net = _net()
    adapter_params = {id(p) for a in net.adapters() for p in a.center["A"].parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) in adapter_params)
    masked, mask, full = _batch()
    loss = (net(masked, mask, ["A"], ["t1"]) - rss(torch.randn_like(full))).pow(2).mean()
    loss.backward()
    grads = {id(p): p.grad for p in net.parameters()}
    assert all(grads[i] is not None for i in adapter_params)
    # the zero-initialised up-projections get a gradient first (they block it to the layers before them)
    ups = [a.center["A"].up.weight for a in net.adapters()]
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in ups)
    assert all(g is None for i, g in grads.items() if i not in adapter_params)


def test_masks_differing_within_a_batch_are_handled_per_sample() -> None:
    masked, mask, full = _batch(batch=2)
    other = cartesian_mask(32, 4, 0.125, kind="random", seed=9).view(1, 1, 1, 32, 1)
    mask2 = torch.cat([mask[:1], other])
    out = _net().eval()(full * mask2, mask2, ["A", "B"], ["t1", "flair"])
    assert out.shape == (2, 32, 32) and torch.isfinite(out).all()


def test_zero_filled_is_the_rss_of_the_undersampled_data() -> None:
    masked, mask, _ = _batch()
    out = ZeroFilled()(masked, mask)
    assert out.shape == (1, 32, 32) and sum(p.numel() for p in ZeroFilled().parameters()) == 0


def test_adapting_a_center_routes_every_training_sample_through_its_adapter() -> None:
    from medlight.tasks.reconstruction import ReconstructionTask

    task = ReconstructionTask(_net(universal_prob=0.3), trainable="center_adapters", adapt_centers=["B"])
    task._freeze()
    assert task.net.router.universal_prob == 0.0  # a universal-routed sample would train nothing
    masked, mask, full = _batch()
    task.net.train()
    for _ in range(5):  # with universal_prob 0.3 one of five would have had no gradient 83% of the time
        loss = (task.net(masked, mask, ["B"], ["t1"]) - rss(torch.randn_like(full))).pow(2).mean()
        assert loss.requires_grad
    assert ReconstructionTask(_net(universal_prob=0.3)).net.router.universal_prob == 0.3  # training all: kept
