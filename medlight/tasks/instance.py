"""Instance segmentation task: a semantic network predicts foreground, boundary and centre-ness; watershed
post-processing turns them into objects; panoptic quality, aggregated Jaccard and detection F1 score them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torch import Tensor, nn

from medlight.contracts import InstanceData, require
from medlight.errors import ConfigError
from medlight.keys import Key
from medlight.losses.instance import CentreBoundaryLoss
from medlight.metrics.instance import instance_scores
from medlight.metrics.segmentation import PerCaseMetrics
from medlight.metrics.spread import std_over_cases
from medlight.ops.instances import remove_small_objects, watershed_instances
from medlight.runs.layout import write_table
from medlight.tasks.base import MedlightTask

METRICS = ("pq", "aji", "f1", "sq", "precision", "recall", "objects", "found")


@dataclass(frozen=True)
class Watershed:
    """Post-processing settings (see :func:`medlight.ops.instances.watershed_instances`)."""

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
        save_predictions: write instance maps (16-bit PNG) at test and predict.
        **kwargs: optimizer, scheduler and loss-guard settings of :class:`MedlightTask`.
    """

    checkpoint_monitor = ("val/pq", "max")  # selects best.ckpt, tested after fit

    def __init__(
        self,
        net: nn.Module,
        watershed: Watershed = Watershed(),
        tune_watershed: WatershedGrid | None = None,
        boundary_weight: float = 1.0,
        centre_weight: float = 1.0,
        divisible: int = 16,
        save_predictions: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler", "watershed", "tune_watershed"])
        self.net = net
        self.loss = CentreBoundaryLoss(boundary_weight, centre_weight)
        self.watershed = watershed
        self.tune_watershed = tune_watershed
        self.divisible = divisible
        self.save_predictions = save_predictions
        self.val_metrics = PerCaseMetrics()
        self.test_metrics = PerCaseMetrics()

    @property
    def datamodule_(self) -> InstanceData:
        """The trainer's data module, checked against what this task reads from it."""
        return require(
            getattr(self.trainer, "datamodule", None),
            InstanceData,
            type(self).__name__,
            "medlight.data.InstanceDataModule",
        )

    def setup(self, stage: str) -> None:
        spec = self.datamodule_.spec
        what = f"a {spec.in_channels}-channel patch {spec.patch_size}"
        x, y = self.probe_network(spec.in_channels, spec.patch_size, what)
        if tuple(y.shape) != (1, 3, *spec.patch_size):
            raise ConfigError(
                f"the network maps a {tuple(x.shape)} patch to {tuple(y.shape)}; instance segmentation needs "
                f"(1, 3, *{spec.patch_size}) (foreground, boundary, centre-ness): set out_channels: 3"
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.guard_loss(self.loss(self.net(batch[Key.IMAGE]), batch[Key.TARGETS]))
        self.log_train(loss, batch[Key.IMAGE].shape[0])
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
        pred = self.predict_instances(batch[Key.IMAGE])
        scores = instance_scores(pred, batch[Key.INSTANCES][0, 0].cpu().numpy())
        metrics.update(batch[Key.CASE_INDEX], torch.tensor([[scores[m] for m in METRICS]]))
        return pred

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._score(batch, self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        pred = self._score(batch, self.test_metrics)
        if self.save_predictions:
            self._save(pred, batch[Key.CASE_ID][0])

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._save(self.predict_instances(batch[Key.IMAGE]), batch[Key.CASE_ID][0])

    def on_validation_epoch_end(self) -> None:
        index, values = self.val_metrics.gather()
        if self.trainer.sanity_checking:
            return
        self.log_dict({f"val/{k}": v for k, v in _means(values).items()}, sync_dist=False)

    # -- post-processing tuned on validation ----------------------------------------------------------------
    def on_test_start(self) -> None:
        if self.tune_watershed is None:
            return
        loader = self.datamodule_.tuning_dataloader() if self.trainer.is_global_zero else None
        rows = self._tuning_table(self.tune_watershed, loader) if loader is not None else []
        # every rank must use the same settings: rank 0 tunes (on its share of the validation slices)
        best: dict[str, Any] = self.trainer.strategy.broadcast(max(rows, key=lambda r: r["pq"]) if rows else {}, src=0)
        self.watershed = Watershed(best["threshold"], best["centre_threshold"], int(best["min_size"]))
        if self.trainer.is_global_zero:
            write_table(rows, self.layout.table("watershed_tuning.csv"))
            print(
                f"watershed tuned on {best['slices']} validation slices: threshold {best['threshold']}, "
                f"centre_threshold {best['centre_threshold']}, min_size {best['min_size']} "
                f"(val pq {best['pq']:.3f})"
            )

    def _tuning_table(self, grid: WatershedGrid, loader: Iterable[dict]) -> list[dict[str, Any]]:
        """Mean PQ / AJI / F1 over the slices of ``loader`` (the validation slices) of every grid setting."""
        maps, targets = [], []
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            for batch in loader:
                maps.append(self.predict_maps(batch[Key.IMAGE].to(self.device))[0].float().cpu().numpy())
                targets.append(batch[Key.INSTANCES][0, 0].numpy())
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
        index, values = self.test_metrics.gather()
        summary = _means(values)
        self.log_dict({f"test/{k}": v for k, v in summary.items()}, sync_dist=False)
        self._write(index, values, summary)

    # -- outputs ---------------------------------------------------------------------------------------
    def _save(self, instances: np.ndarray, case_id: str) -> None:
        out = self.layout.predictions
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(instances.astype(np.uint16)).save(out / f"{case_id}.png")

    @rank_zero_only
    def _write(self, index: Tensor, values: Tensor, summary: dict[str, float]) -> None:
        case_ids = self.datamodule_.case_ids
        rows = [
            {Key.CASE_ID: case_ids[int(i)], **{m: float(v) for m, v in zip(METRICS, row)}}
            for i, row in zip(index, values[:, 0])
        ]
        write_table(rows, self.layout.per_case("test"))
        stds = {f"{m}_std": std_over_cases(values[:, 0, j].cpu().numpy()) for j, m in enumerate(METRICS)}
        settings = {f"watershed_{k}": v for k, v in asdict(self.watershed).items()}  # what the test used
        record = {"cases": len(rows), **summary, **stds, **settings}
        self.set_summary("test", record)
        print(f"test on {len(rows)} slices: " + "  ".join(f"{k} {summary[k]:.3f}" for k in ("pq", "aji", "f1")))


def _means(values: Tensor) -> dict[str, float]:
    """Mean of every metric over cases (values: cases x 1 x metrics)."""
    return {m: float(values[:, 0, j].mean()) for j, m in enumerate(METRICS)}
