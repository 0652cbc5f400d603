"""ABN loss values on hand-made tensors, for both schedules, and the alpha schedule."""

import math

import pytest
import torch

from medlight.losses import AttentionLossSchedule, abn_loss, map_loss

L_ATT = math.log(2)  # logits (0, 0): both classes 1/2
L_PER = -math.log(0.75)  # logits (ln 3, 0), target 0: p = 3/4
L_MAP = 0.25  # M = 0.5 everywhere; the mask's top-left quarter is 1 -> target [[1, 0], [0, 0]]


def tensors() -> dict:
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1
    return {
        "attention_logits": torch.tensor([[0.0, 0.0]]),
        "perception_logits": torch.tensor([[math.log(3), 0.0]]),
        "att_map": torch.full((1, 1, 2, 2), 0.5),
        "target": torch.tensor([0]),
        "mask": mask,
    }


def test_map_loss_resizes_the_mask_by_area() -> None:
    t = tensors()
    assert float(map_loss(t["att_map"], t["mask"])) == pytest.approx(L_MAP)
    half = torch.zeros(1, 1, 4, 4)
    half[..., 0, :] = 1  # each 2x2 cell of the top row is half covered -> target 0.5 -> MSE 0.125
    assert float(map_loss(torch.zeros(1, 1, 2, 2), half)) == pytest.approx(0.125)


def test_conventional_loss() -> None:
    terms = abn_loss(**tensors(), schedule=AttentionLossSchedule("conventional", gamma=2.0))
    assert float(terms["att"]) == pytest.approx(L_ATT)
    assert float(terms["per"]) == pytest.approx(L_PER)
    assert float(terms["map"]) == pytest.approx(L_MAP)
    assert float(terms["loss"]) == pytest.approx(L_ATT + L_PER + 2.0 * L_MAP)  # 1.480829


@pytest.mark.parametrize(
    ("alpha", "expected"), [(0.9, 0.9 * 2 * 0.25 + 0.1 * (L_ATT + L_PER)), (0.1, 0.05 + 0.9 * (L_ATT + L_PER))]
)
def test_dynamic_loss(alpha: float, expected: float) -> None:
    terms = abn_loss(**tensors(), schedule=AttentionLossSchedule("dynamic", gamma=2.0), alpha=alpha)
    assert float(terms["loss"]) == pytest.approx(expected)
    assert expected == pytest.approx({0.9: 0.5480829, 0.1: 0.9327461}[alpha], abs=1e-6)


def test_without_masks_it_is_plain_abn() -> None:
    t = tensors()
    t["mask"] = None
    for schedule, alpha in ((AttentionLossSchedule("conventional"), None), (AttentionLossSchedule("dynamic"), 0.9)):
        terms = abn_loss(**t, schedule=schedule, alpha=alpha)
        assert float(terms["loss"]) == pytest.approx(L_ATT + L_PER) and float(terms["map"]) == 0.0


def test_samples_without_a_mask_are_left_out_of_the_map_term() -> None:
    att_map = torch.stack([torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 0.9)])
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :2, :2] = 1
    assert float(map_loss(att_map, mask, torch.tensor([True, False]))) == pytest.approx(L_MAP)
    assert float(map_loss(att_map, mask, torch.tensor([False, False]))) == 0.0


def test_dynamic_needs_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        abn_loss(**tensors(), schedule=AttentionLossSchedule("dynamic"))


def test_alpha_schedule() -> None:
    step = AttentionLossSchedule("dynamic")
    assert [step.alpha(e / 10) for e in range(10)] == [0.9] * 5 + [0.1] * 5  # 10 epochs: switch at epoch 5
    ramp = AttentionLossSchedule("dynamic", ramp=0.2)
    assert [ramp.alpha(p) for p in (0.0, 0.4, 0.5, 0.6, 1.0)] == pytest.approx([0.9, 0.9, 0.5, 0.1, 0.1])
    assert AttentionLossSchedule("conventional").alpha(0.3) is None
    custom = AttentionLossSchedule("dynamic", alpha_start=0.7, alpha_end=0.2, switch_at=0.25)
    assert (custom.alpha(0.2), custom.alpha(0.25)) == (0.7, 0.2)
