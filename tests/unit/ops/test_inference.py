import pytest
import torch
from monai.inferers import sliding_window_inference

from medlight.nets import ResUNet
from medlight.ops.inference import Inference, Postprocessing, build_inferer, predict_probabilities, to_labels


def test_sliding_window_is_monai_with_gaussian_blending() -> None:
    torch.manual_seed(0)
    net = ResUNet(3, 1, 3, channels=(4, 8), strides=(2,)).eval()
    image = torch.randn(1, 1, 20, 24, 18)
    config = Inference(overlap=0.5, sw_batch_size=2)
    with torch.no_grad():
        ours = predict_probabilities(net, image, build_inferer((16, 16, 16), config))
        direct = torch.softmax(sliding_window_inference(image, (16, 16, 16), 2, net, 0.5, mode="gaussian"), 1)
    assert torch.allclose(ours, direct, atol=1e-6)


def test_mirroring_averages_flipped_predictions() -> None:
    class Ramp(torch.nn.Module):  # logits that depend on position: mirroring changes them
        def forward(self, x):
            ramp = torch.linspace(0, 1, x.shape[-1]).expand_as(x)
            return torch.cat([ramp, 1 - ramp], dim=1)

    image = torch.zeros(1, 1, 4, 6)
    inferer = build_inferer((4, 6), Inference())
    plain = predict_probabilities(Ramp(), image, inferer)
    mirrored = predict_probabilities(Ramp(), image, inferer, mirror_axes=(1,))
    assert not torch.allclose(plain, mirrored)
    assert torch.allclose(mirrored, torch.full_like(mirrored, 0.5), atol=1e-6)  # symmetric after averaging


def test_slice_inferer_runs_a_2d_net_over_a_volume() -> None:
    net = ResUNet(2, 1, 2, channels=(4, 8), strides=(2,)).eval()
    inferer = build_inferer((16, 16), Inference(), slice_axis=2)
    with torch.no_grad():
        probs = predict_probabilities(net, torch.randn(1, 1, 20, 18, 5), inferer)
    assert probs.shape == (1, 2, 20, 18, 5)
    assert torch.allclose(probs.sum(1), torch.ones(1, 20, 18, 5), atol=1e-5)


def probs_from(labels: torch.Tensor, classes: int = 3, confidence: float = 0.9) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(labels, classes).movedim(-1, 0).float()
    return onehot * confidence + (1 - onehot) * (1 - confidence) / (classes - 1)


def test_postprocessing() -> None:
    labels = torch.zeros(12, 12, 12, dtype=torch.long)
    labels[1:6, 1:6, 1:6] = 1  # big blob
    labels[9, 9, 9] = 1  # speck
    labels[8:11, 1:4, 1:4] = 2
    probs = probs_from(labels)
    assert torch.equal(to_labels(probs, Postprocessing())[0], labels)
    kept = to_labels(probs, Postprocessing(keep_largest=True))[0]
    assert kept[9, 9, 9] == 0 and kept[3, 3, 3] == 1 and kept[9, 2, 2] == 2
    cleaned = to_labels(probs, Postprocessing(min_size=5))[0]
    assert cleaned[9, 9, 9] == 0 and (cleaned == 2).sum() == 27
    unsure = to_labels(probs_from(labels, confidence=0.6), Postprocessing(threshold=0.7))[0]
    assert unsure.max() == 0
    assert to_labels(probs_from(labels, confidence=0.6), Postprocessing(threshold=0.5))[0].max() == 2


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_probabilities_sum_to_one(blend) -> None:
    net = ResUNet(2, 1, 3, channels=(4, 8), strides=(2,)).eval()
    with torch.no_grad():
        p = predict_probabilities(
            net, torch.randn(1, 1, 30, 22), build_inferer((16, 16), Inference(blend=blend)), mirror_axes=(0, 1)
        )
    assert torch.allclose(p.sum(1), torch.ones(1, 30, 22), atol=1e-5)
