"""Training length from a time budget: time a few real training steps of the planned model on real patches on this
machine, and a whole-case inference, then solve for the number of steps that lets fit, validation and test end
within the budget, with a stated margin.

nnU-Net trains 1,000 epochs of 250 steps whatever the machine; a CPU user has minutes, so here the budget decides.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from monai.losses import DiceCELoss
from torch import nn

from medlight.data.segmentation import SegmentationDataModule
from medlight.keys import Key
from medlight.ops.inference import Inference, build_inferer, predict_probabilities

# Share of the budget left unplanned (machine noise, checkpoints, logging). The estimate has erred on the slow
# side: a 10-minute hippocampus plan estimated 480 s and its fit took 401 s; a 3-minute one 144 s and 138 s.
MARGIN = 0.1
STARTUP_S = 20.0  # imports, CLI parsing, trainer set-up (measured about 10-20 s on a 2-core CPU)
EVAL_FACTOR = 1.5  # a validation case costs its sliding-window inference times this (metrics, HD95)
TEST_FACTOR = 2.5  # a test case: inference, mapping to the source geometry, metrics, saving, post-processing
VALIDATION_SHARE = 0.1  # validations take at most this share of the budget
MAX_VALIDATIONS = 10
MIN_STEPS = 10
# Timing: steps after warm-up until both counts are reached (short timings scatter by +-30% on a shared CPU).
WARMUP_STEPS, MIN_TIMED_STEPS, MIN_TIMED_S, MAX_TIMED_STEPS = 3, 10, 6.0, 40


@dataclass
class Timing:
    """Measured seconds on this machine."""

    step_s: float  # one training step (batch loading and augmentation included)
    load_s: float  # loading and preprocessing one case (caching)
    infer_s: float  # sliding-window inference of one validation case
    steps_timed: int


@dataclass
class Schedule:
    max_steps: int
    validations: int
    val_check_interval: int
    estimate_s: dict[str, float]
    reason: str
    fit_s: float  # wall-clock cap on training and validations (trainer.max_time): a slow step cannot overrun


def measure(data: SegmentationDataModule, net: nn.Module, accelerator: str) -> Timing:
    """Time training steps of ``net`` on patches from ``data``'s own training pipeline, and one inference."""
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    data._describe()
    assert data.splits is not None
    train_ids = data.splits.train_ids(data.fold)
    items = data.items(train_ids[: max(8, data.batch_size)])  # enough cases for full batches: a short one times low
    start = time.perf_counter()
    cached = data.cached(items, data.eval_transform(), "plan")
    load_s = (time.perf_counter() - start) / max(1, len(items))
    loader = data.train_loader(cached, data.train_random_transform())
    net = net.to(device).train()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    times: list[float] = []
    batches = iter(_forever(loader))
    for step in range(WARMUP_STEPS + MAX_TIMED_STEPS):
        _sync(device)
        start = time.perf_counter()
        batch = next(batches)
        image, label = batch[Key.IMAGE].to(device), batch[Key.LABEL].to(device)
        loss = loss_fn(net(image.as_subclass(torch.Tensor)), label.as_subclass(torch.Tensor))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _sync(device)
        if step >= WARMUP_STEPS:
            times.append(time.perf_counter() - start)
        if timed_enough(times):
            break
    val_ids = data.splits.val_ids(data.fold) or train_ids
    case = data.eval_transform()(data.items(val_ids[:1])[0])
    image = torch.as_tensor(case[Key.IMAGE])[None].to(device)
    inferer = build_inferer(data.patch_size, Inference(), data.slice_axis)
    net.eval()
    with torch.no_grad():
        predict_probabilities(net, image, inferer)  # warm-up
        _sync(device)
        start = time.perf_counter()
        predict_probabilities(net, image, inferer)
        _sync(device)
        infer_s = time.perf_counter() - start
    return Timing(sorted(times)[len(times) // 2], load_s, infer_s, len(times))


def schedule(budget_s: float, timing: Timing, n_train: int, n_val: int, n_test: int) -> Schedule:
    """Steps so that start-up, training, validations and the test fit in ``budget_s`` less the margin."""
    usable = budget_s * (1 - MARGIN)
    startup = STARTUP_S + timing.load_s * (n_train + n_val + n_test)
    val_cost = EVAL_FACTOR * timing.infer_s * n_val
    test_cost = TEST_FACTOR * timing.infer_s * n_test + val_cost  # the post-processing choice re-scores validation
    validations = int(min(MAX_VALIDATIONS, max(1, VALIDATION_SHARE * budget_s // max(val_cost, 1e-9))))
    train_s = usable - startup - validations * val_cost - test_cost
    steps = int(train_s // timing.step_s)
    note = ""
    if steps < MIN_STEPS:
        steps = MIN_STEPS
        note = f"; the budget is too short for this data and model: {MIN_STEPS} steps (the minimum) will overrun it"
    interval = max(1, math.ceil(steps / validations))
    estimate = {
        "startup": round(startup, 1),
        "training": round(steps * timing.step_s, 1),
        "validation": round(validations * val_cost, 1),
        "test": round(test_cost, 1),
    }
    reason = (
        f"measured {timing.step_s:.3f} s per step (median of {timing.steps_timed} after warm-up), "
        f"{timing.infer_s:.2f} s per case inference, {timing.load_s:.2f} s per case loading; "
        f"{steps} steps, {validations} validation(s), leaving a {MARGIN:.0%} margin of the {budget_s / 60:g}-minute "
        f"budget (estimate: {estimate}){note}"
    )
    fit_s = max(train_s, 0.0) + validations * val_cost
    reason += f"; fit stops at {fit_s:.0f} s of training and validation even if steps remain (trainer.max_time)"
    return Schedule(steps, validations, interval, estimate, reason, fit_s)


def timed_enough(times: list[float]) -> bool:
    return len(times) >= MIN_TIMED_STEPS and sum(times) > MIN_TIMED_S


def _forever(loader):
    while True:
        yield from loader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
