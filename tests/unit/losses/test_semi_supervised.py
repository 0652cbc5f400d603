"""Pseudo-label maths and loss terms on tiny hand-made tensors, with values computed by hand."""

import math

import pytest
import torch

from medlight.losses import (
    ClassFrequencyEMA,
    certainty_weights,
    class_frequencies,
    class_prototypes,
    prototype_infonce,
    rebalance_weights,
    sigmoid_rampup,
    softmax_mse,
    topk_fuzzy_targets,
    weighted_soft_cross_entropy,
)


def voxels(*rows: list[float]) -> torch.Tensor:
    """(1, C, N) tensor from one row of class values per voxel (a 1-D 'image' of N voxels)."""
    return torch.tensor(rows, dtype=torch.float64).t()[None]


@pytest.mark.parametrize(
    "k, expected",
    [(1, [1.0, 0.0, 0.0]), (2, [0.625, 0.375, 0.0]), (3, [0.5, 0.3, 0.2]), (5, [0.5, 0.3, 0.2])],
)
def test_topk_fuzzy_targets_keep_k_classes_renormalised(k: int, expected: list[float]) -> None:
    probs = voxels([0.5, 0.3, 0.2], [0.2, 0.3, 0.5])
    out = topk_fuzzy_targets(probs, k)
    torch.testing.assert_close(out[0, :, 0], torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(out[0, :, 1], torch.tensor(expected[::-1], dtype=torch.float64))


def test_topk_fuzzy_targets_work_on_3d_maps_and_refuse_k0() -> None:
    probs = torch.softmax(torch.randn(2, 4, 3, 3, 3), dim=1)
    out = topk_fuzzy_targets(probs, 2)
    assert out.shape == probs.shape and ((out > 0).sum(dim=1) == 2).all()
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2, 3, 3, 3))
    with pytest.raises(ValueError):
        topk_fuzzy_targets(probs, 0)


def test_certainty_is_one_minus_normalised_entropy() -> None:
    probs = voxels([1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0.0, 0.0])
    # one-hot: H = 0; uniform: H = log 4; two halves: H = log 2 = log 4 / 2
    torch.testing.assert_close(certainty_weights(probs)[0], torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64))


def test_class_frequencies_and_rebalance_weights() -> None:
    targets = voxels([1.0, 0.0], [0.5, 0.5])
    freq = class_frequencies(targets)
    torch.testing.assert_close(freq, torch.tensor([0.75, 0.25], dtype=torch.float64))
    # inverse frequency [4/3, 4]; sum f*raw = 2 -> [2/3, 2]
    w1 = rebalance_weights(freq, power=1.0, eps=0.0)
    torch.testing.assert_close(w1, torch.tensor([2 / 3, 2.0], dtype=torch.float64))
    # square root: raw [1/sqrt(0.75), 2]; sum f*raw = sqrt(0.75) + 0.5
    norm = math.sqrt(0.75) + 0.5
    w = rebalance_weights(freq, power=0.5, eps=0.0)
    torch.testing.assert_close(w, torch.tensor([1 / math.sqrt(0.75) / norm, 2 / norm], dtype=torch.float64))
    assert float((freq * w).sum()) == pytest.approx(1.0)
    assert torch.isfinite(rebalance_weights(torch.tensor([1.0, 0.0]))).all()  # unseen class: finite weight


def test_class_frequency_ema_smooths_over_steps() -> None:
    ema = ClassFrequencyEMA(2, momentum=0.5)
    torch.testing.assert_close(ema.frequencies, torch.tensor([0.5, 0.5]))
    batch = voxels([1.0, 0.0], [1.0, 0.0]).float()
    torch.testing.assert_close(ema.update(batch), torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(ema.update(batch), torch.tensor([0.875, 0.125]))
    assert "frequencies" in ema.state_dict()  # saved with the checkpoint
    with pytest.raises(ValueError):
        ClassFrequencyEMA(2, momentum=1.0)


def test_weighted_soft_cross_entropy() -> None:
    logits = torch.zeros(1, 2, 2, dtype=torch.float64)  # softmax 0.5 / 0.5 everywhere
    targets = voxels([1.0, 0.0], [0.25, 0.75])
    assert float(weighted_soft_cross_entropy(logits, targets)) == pytest.approx(math.log(2))
    weights = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert float(weighted_soft_cross_entropy(logits, targets, weights)) == pytest.approx(math.log(2) / 2)
    # a confident correct logit: -log(e^2 / (e^2 + 1))
    sharp = voxels([2.0, 0.0])
    assert float(weighted_soft_cross_entropy(sharp, voxels([1.0, 0.0]))) == pytest.approx(math.log(1 + math.exp(-2)))


def test_softmax_mse() -> None:
    student = torch.zeros(1, 2, 1)  # [0.5, 0.5]
    teacher = voxels([math.log(3.0), 0.0]).float()  # [0.75, 0.25]
    assert float(softmax_mse(student, teacher)) == pytest.approx(0.125)
    assert float(softmax_mse(teacher, teacher)) == 0.0


def test_class_prototypes_average_normalised_features_of_masked_voxels() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, -1.0]])
    labels = torch.tensor([0, 1, 0, 1])
    mask = torch.tensor([True, True, True, False])  # the last voxel would flip class 1's prototype
    protos, present = class_prototypes(features, labels, mask, num_classes=3)
    torch.testing.assert_close(protos, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
    assert present.tolist() == [True, True, False]


def test_prototype_infonce_by_hand() -> None:
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    present = torch.tensor([True, True, False])
    features = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 1, 2])  # the class-2 voxel has no prototype and is left out
    # each kept feature: logits [2, 0] at T=0.5 with its own class at 2 -> log(1 + e^-2)
    loss = prototype_infonce(features, labels, protos, present, temperature=0.5)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    wrong = prototype_infonce(features[:1], torch.tensor([1]), protos, present, temperature=0.5)
    assert float(wrong) == pytest.approx(math.log(1 + math.exp(2)), rel=1e-6)  # pulled to the other class
    one = prototype_infonce(features, labels, protos, torch.tensor([True, False, False]), 0.5)
    assert float(one) == 0.0  # a single class present: nothing to contrast


def test_prototype_infonce_has_gradient_towards_the_prototype() -> None:
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    f = torch.tensor([[1.0, 1.0]], requires_grad=True)
    prototype_infonce(f, torch.tensor([0]), protos, torch.tensor([True, True]), 0.1).backward()
    assert f.grad is not None and f.grad[0, 0] < 0 < f.grad[0, 1]  # descent moves f towards class 0


@pytest.mark.parametrize(
    "step, length, expected",
    [(0, 10, math.exp(-5)), (5, 10, math.exp(-1.25)), (10, 10, 1.0), (20, 10, 1.0), (3, 0, 1.0)],
)
def test_sigmoid_rampup(step: int, length: int, expected: float) -> None:
    assert sigmoid_rampup(step, length) == pytest.approx(expected)
