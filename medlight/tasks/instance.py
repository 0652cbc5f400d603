"""Instance segmentation task: a semantic network predicts foreground, boundary and centre-ness; watershed
post-processing turns them into objects; panoptic quality, aggregated Jaccard and detection F1 score them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import product
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torch import Tensor, nn

from medlight.data.instance import IMAGE, INSTANCES, TARGETS
from medlight.errors import ConfigError
from medlight.instances import CentreBoundaryLoss, remove_small_objects, watershed_instances
from medlight.metrics.instance import instance_scores
from medlight.metrics.segmentation import PerCaseMetrics
from medlight.reporting import write_table
from medlight.tasks.base import MedlightTask, default_optimizer

METRICS = ("pq", "aji", "f1", "sq", "precision", "recall", "objects", "found")


@dataclass(frozen=True)
class Watershed:
    """Post-processing settings (see :func:`medlight.instances.watershed_instances`)."""

    threshold: float = 0.5
    centre_threshold: float = 0.6
    min_size: int = 4


@dataclass(frozen=True)
class WatershedGrid:
    """Candidate post-processing settings, tried on the validation slices before the test.

    Every combination is scored by mean panoptic quality over the validation slices with the weights
    being tested; the best one is used for the test (ties: the first in grid order).
    """

    threshold: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    centre_threshold: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    min_size: tuple[int, ...] = (4, 10, 20, 40)


class InstanceSegmentationTask(MedlightTask):
    """Train a 3-output network (foreground, boundary, centre-ness logits) and evaluate object by object.

    Args:
        net: any ``nn.Module`` mapping (B, C_in, H, W) to (B, 3, H, W) logits, e.g. a ``medlight.nets.UNet``
            with ``out_channels: 3``.
        watershed: post-processing of the predicted maps at validation, test and predict.
        tune_watershed: if given, the watershed settings are chosen from this grid on the validation
            slices at the start of every test (with the weights under test), replacing ``watershed``;
            the table of all candidates goes to ``metrics/watershed_tuning.csv``.
        boundary_weight: weight of the boundary term of the loss.
        centre_weight: weight of the centre-ness term of the loss.
        divisible: whole slices are padded to a multiple of this (the network's total stride).
        optimizer: optimizer factory.
        scheduler: scheduler factory.
        scheduler_interval: ``step`` or ``epoch``.
        save_predictions: write instance maps (16-bit PNG) at test and predict.
        nonfinite_loss: ``skip`` or ``stop`` on a NaN/Inf loss.
        max_nonfinite_steps: consecutive skipped steps before stopping anyway.
    """

    def __init__(
        self,
        net: nn.Module,
        watershed: Watershed = Watershed(),
        tune_watershed: WatershedGrid | None = None,
        boundary_weight: float = 1.0,
        centre_weight: float = 1.0,
        divisible: int = 16,
        optimizer: OptimizerCallable = default_optimizer,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
        save_predictions: bool = True,
        nonfinite_loss: Literal["skip", "stop"] = "skip",
        max_nonfinite_steps: int = 10,
    ) -> None:
        super().__init__(optimizer, scheduler, scheduler_interval, nonfinite_loss, max_nonfinite_steps)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "watershed", "tune_watershed"])
        self.net = net
        self.loss = CentreBoundaryLoss(boundary_weight, centre_weight)
        self.watershed = watershed
        self.tune_watershed = tune_watershed
        self.divisible = divisible
        self.save_predictions = save_predictions
        self.val_metrics = PerCaseMetrics()
        self.test_metrics = PerCaseMetrics()

    def setup(self, stage: str) -> None:
        spec = getattr(getattr(self.trainer, "datamodule", None), "spec", None)
        if spec is None or not hasattr(spec, "in_channels"):
            raise ConfigError(f"{type(self).__name__} needs an instance data module (medlight.data.InstanceDataModule)")
        x = torch.zeros(1, spec.in_channels, *spec.patch_size, device=self.device)
        try:
            with torch.no_grad():
                y = self.net.eval()(x)
        except RuntimeError as err:
            raise ConfigError(
                f"the network cannot take a {spec.in_channels}-channel patch {spec.patch_size}: {err}"
            ) from err
        finally:
            self.net.train()
        if tuple(y.shape) != (1, 3, *spec.patch_size):
            raise ConfigError(
                f"the network maps a {tuple(x.shape)} patch to {tuple(y.shape)}; instance segmentation needs "
                f"(1, 3, *{spec.patch_size}) (foreground, boundary, centre-ness): set out_channels: 3"
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.guard_loss(self.loss(self.net(batch[IMAGE]), batch[TARGETS]))
        self.log("train/loss", loss, prog_bar=True, batch_size=batch[IMAGE].shape[0])
        return loss

    # -- inference ----------------------------------------------------------------------------------
    def predict_maps(self, image: Tensor) -> Tensor:
        """Sigmoid probabilities (B, 3, H, W) of a whole slice, padded to ``divisible`` and cropped back."""
        h, w = image.shape[-2:]
        pad_h, pad_w = -h % self.divisible, -w % self.divisible
        logits = self.net(F.pad(image.as_subclass(Tensor), (0, pad_w, 0, pad_h)))
        return torch.sigmoid(logits[..., :h, :w])

    def predict_instances(self, image: Tensor) -> np.ndarray:
        """Instance map (H, W) of the first image of a batch."""
        fg, boundary, centre = self.predict_maps(image)[0].float().cpu().numpy()
        return watershed_instances(fg, centre, boundary, **asdict(self.watershed))

    def _score(self, batch: dict, metrics: PerCaseMetrics) -> np.ndarray:
        pred = self.predict_instances(batch[IMAGE])
        scores = instance_scores(pred, batch[INSTANCES][0, 0].cpu().numpy())
        metrics.update(batch["case_index"], torch.tensor([[scores[m] for m in METRICS]]))
        return pred

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._score(batch, self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        pred = self._score(batch, self.test_metrics)
        if self.save_predictions:
            self._save(pred, batch["case_id"][0])

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._save(self.predict_instances(batch[IMAGE]), batch["case_id"][0])

    def on_validation_epoch_end(self) -> None:
        index, values = self.val_metrics.compute()
        self.val_metrics.reset()
        if self.trainer.sanity_checking:
            return
        self.log_dict({f"val/{k}": v for k, v in _means(values).items()}, sync_dist=False)

    # -- post-processing tuned on validation ----------------------------------------------------------------
    def on_test_start(self) -> None:
        if self.tune_watershed is None:
            return
        rows = self._tuning_table(self.tune_watershed) if self.trainer.is_global_zero else []
        # every rank must use the same settings: rank 0 tunes (on its share of the validation slices)
        best: dict[str, Any] = self.trainer.strategy.broadcast(max(rows, key=lambda r: r["pq"]) if rows else {}, src=0)
        self.watershed = Watershed(best["threshold"], best["centre_threshold"], int(best["min_size"]))
        if self.trainer.is_global_zero:
            write_table(rows, self.run_dir / "metrics" / "watershed_tuning.csv")
            print(
                f"watershed tuned on {best['slices']} validation slices: threshold {best['threshold']}, "
                f"centre_threshold {best['centre_threshold']}, min_size {best['min_size']} "
                f"(val pq {best['pq']:.3f})"
            )

    def _tuning_table(self, grid: WatershedGrid) -> list[dict[str, Any]]:
        """Mean validation PQ / AJI / F1 of every grid setting, in grid order."""
        datamodule: Any = getattr(self.trainer, "datamodule", None)
        datamodule.setup("validate")
        maps, targets = [], []
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            for batch in datamodule.val_dataloader():
                maps.append(self.predict_maps(batch[IMAGE].to(self.device))[0].float().cpu().numpy())
                targets.append(batch[INSTANCES][0, 0].numpy())
        self.net.train(was_training)
        if not maps:
            raise ConfigError("tune_watershed needs validation slices, and the validation split holds none")
        rows = []
        for threshold, centre_threshold in product(grid.threshold, grid.centre_threshold):
            # min_size only filters the watershed result: flood once per (threshold, centre_threshold)
            flooded = [watershed_instances(fg, c, b, threshold, centre_threshold) for fg, b, c in maps]
            for min_size in grid.min_size:
                scores = [instance_scores(remove_small_objects(f, min_size), t) for f, t in zip(flooded, targets)]
                means = {m: float(np.mean([s[m] for s in scores])) for m in ("pq", "aji", "f1", "found", "objects")}
                setting = Watershed(threshold, centre_threshold, min_size)
                rows.append({**asdict(setting), **means, "slices": len(scores)})
        return rows

    def on_test_epoch_end(self) -> None:
        index, values = self.test_metrics.compute()
        self.test_metrics.reset()
        summary = _means(values)
        self.log_dict({f"test/{k}": v for k, v in summary.items()}, sync_dist=False)
        self._write(index, values, summary)

    # -- outputs ---------------------------------------------------------------------------------------
    def _save(self, instances: np.ndarray, case_id: str) -> None:
        out = self.run_dir / "predictions"
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(instances.astype(np.uint16)).save(out / f"{case_id}.png")

    @rank_zero_only
    def _write(self, index: Tensor, values: Tensor, summary: dict[str, float]) -> None:
        datamodule: Any = getattr(self.trainer, "datamodule", None)
        case_ids: list[str] = datamodule.case_ids
        rows = [
            {"case_id": case_ids[int(i)], **{m: float(v) for m, v in zip(METRICS, row)}}
            for i, row in zip(index, values[:, 0])
        ]
        out = self.run_dir / "metrics"
        write_table(rows, out / "test_per_case.csv")
        stds = {f"{m}_std": float(values[:, 0, j].std()) if len(rows) > 1 else 0.0 for j, m in enumerate(METRICS)}
        settings = {f"watershed_{k}": v for k, v in asdict(self.watershed).items()}  # what the test used
        record = {"cases": len(rows), **summary, **stds, **settings}
        (out / "test_summary.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"test on {len(rows)} slices: " + "  ".join(f"{k} {summary[k]:.3f}" for k in ("pq", "aji", "f1")))


def _means(values: Tensor) -> dict[str, float]:
    """Mean of every metric over cases (values: cases x 1 x metrics)."""
    return {m: float(values[:, 0, j].mean()) for j, m in enumerate(METRICS)}
