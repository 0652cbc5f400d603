"""Supervised segmentation task: wraps any network, owns loss, sliding-window inference and metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
import yaml
from lightning.pytorch.utilities import rank_zero_only
from monai.data import MetaTensor
from monai.losses import DiceCELoss
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from monai.transforms import SaveImage
from torch import Tensor, nn

from medlight.contracts import (
    SegmentationData,
    SegmentationSpec,
    SemiSupervisedData,
    TunableSegmentationData,
    require,
)
from medlight.errors import ConfigError
from medlight.keys import Key
from medlight.metrics.segmentation import (
    COUNTS,
    NSD_TOLERANCE_MM,
    PerCaseMetrics,
    case_counts,
    case_metrics,
    format_summary,
    per_case_rows,
    summarise,
)
from medlight.ops.inference import Inference, Postprocessing, build_inferer, predict_probabilities, to_labels
from medlight.runs.layout import write_table, write_text
from medlight.tasks.base import MedlightTask
from medlight.tasks.overlays import pick_slice, segmentation_rgb


class SegmentationTask(MedlightTask):
    """Train and evaluate a segmentation network.

    Validation scores each validation case once per epoch in the preprocessed geometry (fast, for model
    selection). Test maps predictions back to each source image's geometry, scores them against the
    untouched label, and writes per-case metrics and NIfTI predictions. Predict writes predictions only.

    Args:
        net: any ``nn.Module`` mapping (B, C_in, *spatial) to (B, classes, *spatial) logits.
        loss: a loss taking (logits, label map); default MONAI DiceCELoss.
        inference: sliding-window settings for validation, test and predict.
        postprocessing: label-map clean-up applied at test and predict.
        postprocessing_candidates: other clean-ups to try: at the start of the test, each (and ``postprocessing``)
            is scored on the validation cases by mean Dice and the best is used for the test, reported in the
            test summary and written as a config fragment ``postprocessing.yaml`` in the run folder.
        save_predictions: write NIfTI (or PNG) predictions at test and predict.
        nsd_tolerance: tolerance (mm) of the normalised surface Dice, one value or one per foreground class.
        **kwargs: optimizer, scheduler and loss-guard settings of :class:`MedlightTask`.
    """

    checkpoint_monitor = ("val/dice", "max")  # selects best.ckpt, tested after fit

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module | None = None,
        inference: Inference = Inference(),
        postprocessing: Postprocessing = Postprocessing(),
        postprocessing_candidates: list[Postprocessing] | None = None,
        save_predictions: bool = True,
        nsd_tolerance: float | list[float] = NSD_TOLERANCE_MM,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # only plain values: checkpoints must load with torch's weights_only=True; config.yaml has the rest
        self.save_hyperparameters(
            ignore=["net", "loss", "optimizer", "scheduler", "inference", "postprocessing", "postprocessing_candidates"]
        )
        self.postprocessing_candidates = list(postprocessing_candidates or [])
        self._postprocessing_choice: dict[str, Any] = {}
        self.net = net
        self.loss = loss if loss is not None else DiceCELoss(to_onehot_y=True, softmax=True)
        self.inference = inference
        self.postprocessing = postprocessing
        self.save_predictions = save_predictions
        self.nsd_tolerance = nsd_tolerance
        self.spec: SegmentationSpec | None = None
        self.val_metrics = PerCaseMetrics()
        self.test_metrics = PerCaseMetrics()
        self.test_counts = PerCaseMetrics()  # TP/FP/FN/TN and sizes per class, a second table

    # -- set-up: learn the data's shape and check the network fits it -------------------------------------
    consumes_unlabeled = False  # a teacher-student task trains on a semi-supervised module's unlabeled stream

    def setup(self, stage: str) -> None:
        datamodule = self.datamodule_
        self.spec = datamodule.spec
        self._check_network(self.spec)
        if isinstance(datamodule, SemiSupervisedData) and datamodule.unlabeled != self.consumes_unlabeled:
            raise ConfigError(
                f"{type(self).__name__} trains on labeled batches only, but the data module yields the unlabeled "
                "stream too: set data.init_args.unlabeled: false"
                if datamodule.unlabeled
                else f"{type(self).__name__} needs the unlabeled stream: set data.init_args.unlabeled: true"
            )

    def _check_network(self, spec: SegmentationSpec) -> None:
        what = f"a {spec.in_channels}-channel {spec.spatial_dims}D patch of size {spec.patch_size}"
        x, y = self.probe_network(spec.in_channels, spec.patch_size, what)
        expected = len(spec.class_names) + 1
        if y.shape[1] != expected or tuple(y.shape[2:]) != tuple(spec.patch_size):
            raise ConfigError(
                f"the network maps a {tuple(x.shape)} patch to {tuple(y.shape)}; the data needs "
                f"(1, {expected}, *{tuple(spec.patch_size)}): {expected} classes "
                f"(background + {', '.join(spec.class_names)}). Set the network's out_channels."
            )

    @property
    def datamodule_(self) -> SegmentationData:
        """The trainer's data module, checked against what this task reads from it."""
        return require(
            getattr(self.trainer, "datamodule", None),
            SegmentationData,
            type(self).__name__,
            "medlight.data.SegmentationDataModule",
        )

    @property
    def num_classes(self) -> int:
        assert self.spec is not None
        return len(self.spec.class_names) + 1

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # -- training ------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        logits = self.net(batch[Key.IMAGE])
        loss = self.guard_loss(self.loss(logits, batch[Key.LABEL]))
        self.log_train(loss, batch[Key.IMAGE].shape[0])
        return loss

    # -- whole-volume inference ----------------------------------------------------------------------------
    def predict_volume(self, image: Tensor) -> Tensor:
        """Softmax probabilities (B, classes, *spatial) over a whole image, by sliding window."""
        assert self.spec is not None
        inferer = build_inferer(self.spec.patch_size, self.inference, self.spec.slice_axis)
        return predict_probabilities(self.net, image, inferer, self.inference.mirror_axes)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        probs = self.predict_volume(batch[Key.IMAGE])
        self.val_metrics.update(batch[Key.CASE_INDEX], self.validation_case_values(batch, probs))
        if self.keeps_overlay(batch_idx):
            self.keep_overlay(self._overlay_row(batch, probs))

    def _overlay_row(self, batch: dict, probs: Tensor) -> dict:
        """The first channel, label and prediction of a validation case; for 3D its most-foreground slice."""
        image, label = batch[Key.IMAGE][0, 0].cpu(), batch[Key.LABEL][0, 0].cpu().as_subclass(Tensor)
        pred = probs[0].argmax(0).cpu()
        if image.dim() == 3:
            axis = self.spec.slice_axis if self.spec and self.spec.slice_axis is not None else -1
            index = pick_slice(image, label, axis)
            image, label, pred = (t.select(axis, index) for t in (image, label, pred))
        case = self.datamodule_.case_ids[int(batch[Key.CASE_INDEX].reshape(-1)[0])]
        return {"image": image.as_subclass(Tensor), "label": label, "prediction": pred, "title": case}

    def validation_case_values(self, batch: dict, probs: Tensor) -> Tensor:
        """Per-class metrics of one validation case from its (1, C, *spatial) probabilities."""
        label = batch[Key.LABEL][0]
        pred = probs[0].argmax(0, keepdim=True)
        label = label.cpu()
        return case_metrics(
            pred.cpu(), label.as_subclass(Tensor), self.num_classes, _spacing(label), self.nsd_tolerance
        )

    def on_validation_epoch_end(self) -> None:
        result = self.log_validation(self.val_metrics, "val")
        if result is not None:
            self._write_rows("val", *result)
        self.log_overlays("val/overlays", lambda rows: segmentation_rgb(rows, self.spec.class_names))  # type: ignore[union-attr]

    def log_validation(self, metrics: PerCaseMetrics, prefix: str) -> tuple[Tensor, Tensor] | None:
        """Compute, reset and log ``metrics`` as ``<prefix>/<metric>``; None during the sanity check."""
        index, values = metrics.gather()
        if self.trainer.sanity_checking:
            return None
        summary = summarise(values, self.spec.class_names)  # type: ignore[union-attr]
        self.log_dict({f"{prefix}/{k}": v for k, v in summary.items()}, sync_dist=False)
        return index, values

    def _to_source(self, batch: dict, probs: Tensor, stage: str) -> tuple[Tensor, MetaTensor]:
        """Map (1, C, *spatial) probabilities to the source image's geometry and turn them into labels."""
        datamodule = self.datamodule_
        source = datamodule.to_source_geometry(
            probs[0].cpu(), batch[Key.IMAGE][0].cpu(), datamodule.transform_for(stage)
        )
        labels = to_labels(torch.as_tensor(source), self.postprocessing)
        return labels, MetaTensor(labels.to(torch.uint8), meta=source.meta)

    def on_test_start(self) -> None:
        """Choose the post-processing on the validation cases when candidates are given (nnU-Net's rule)."""
        if not self.postprocessing_candidates:
            return
        datamodule = require(getattr(self.trainer, "datamodule", None), TunableSegmentationData, type(self).__name__)
        options = [self.postprocessing, *self.postprocessing_candidates]
        totals = torch.zeros(len(options) + 1, device=self.device)  # Dice sums per option, then the case count
        with torch.no_grad():
            for batch in datamodule.tuning_dataloader():
                totals[-1] += 1
                probs = self.predict_volume(batch[Key.IMAGE].to(self.device))[0].cpu()
                target = one_hot(batch[Key.LABEL][:1].cpu().long().as_subclass(Tensor), self.num_classes)
                for i, option in enumerate(options):
                    pred = one_hot(to_labels(probs, option)[None].long(), self.num_classes)
                    totals[i] += compute_dice(pred, target, include_background=False, ignore_empty=False).mean()
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum").cpu()
        scores = [round(float(t) / max(1.0, float(totals[-1])), 5) for t in totals[:-1]]
        best = int(torch.argmax(totals[:-1]))  # ties: the first, i.e. the configured post-processing
        self.postprocessing = options[best]
        self._postprocessing_choice = {"postprocessing": asdict(options[best]), "postprocessing_scores": scores}
        if self.trainer.is_global_zero:
            fragment = {"model": {"init_args": {"postprocessing": asdict(options[best])}}}
            write_text(
                self.run_dir / "postprocessing.yaml", "# chosen on the validation cases\n" + yaml.safe_dump(fragment)
            )

    def test_step(self, batch: dict, batch_idx: int) -> None:
        probs = self.predict_volume(batch[Key.IMAGE])
        labels, prediction = self._to_source(batch, probs, "test")
        target = batch[Key.LABEL_ORIGINAL][0].cpu()
        values = case_metrics(
            labels, target.as_subclass(Tensor), self.num_classes, _spacing(target), self.nsd_tolerance
        )
        self.test_metrics.update(batch[Key.CASE_INDEX], values)
        self.test_counts.update(
            batch[Key.CASE_INDEX], case_counts(labels, target.as_subclass(Tensor), self.num_classes)
        )
        if self.save_predictions:
            self._save(prediction)

    def on_test_epoch_end(self) -> None:
        index, values = self.test_metrics.gather()
        summary = summarise(values, self.spec.class_names, with_std=True)  # type: ignore[union-attr]
        self.log_dict({f"test/{k}": v for k, v in summary.items() if not k.endswith("_std")}, sync_dist=False)
        self._write_rows("test", index, values, summary)
        self._write_counts("test", *self.test_counts.gather())
        self.set_summary("test", {"cases": len(index), **summary, **self._postprocessing_choice})

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        probs = self.predict_volume(batch[Key.IMAGE])
        _, prediction = self._to_source(batch, probs, "predict")
        self._save(prediction)

    # -- outputs ---------------------------------------------------------------------------------------
    def _save(self, prediction: MetaTensor) -> None:
        out_dir = self.layout.predictions
        ext = (
            ".png"
            if self.spec is not None and self.spec.spatial_dims == 2 and self.spec.slice_axis is None
            else ".nii.gz"
        )
        SaveImage(
            output_dir=out_dir,
            output_postfix="",
            output_ext=ext,
            separate_folder=False,
            output_dtype="uint8",
            resample=False,
            print_log=False,
            scale=None,
        )(prediction)

    @rank_zero_only
    def _write_rows(self, stage: str, index: Tensor, values: Tensor, summary: dict | None = None) -> None:
        case_ids = self.datamodule_.case_ids
        rows = per_case_rows([case_ids[int(i)] for i in index], values, self.spec.class_names)  # type: ignore[union-attr]
        write_table(rows, self.layout.per_case(stage))
        if stage == "test":
            self.log_per_case(stage, rows)
        if summary is not None:
            print(format_summary(stage, summary, self.spec.class_names, len(rows), self.layout.metrics), flush=True)  # type: ignore[union-attr]

    @rank_zero_only
    def _write_counts(self, stage: str, index: Tensor, counts: Tensor) -> None:
        """``metrics/<stage>_counts.csv``: voxel counts per case and class (nnU-Net's TP, FP, FN, TN, n_ref, n_pred)."""
        assert self.spec is not None
        case_ids = [self.datamodule_.case_ids[int(i)] for i in index]
        rows = per_case_rows(case_ids, counts, self.spec.class_names, COUNTS)
        write_table(rows, self.layout.table(f"{stage}_counts.csv"))


def _spacing(image: Tensor) -> list[float] | None:
    """Voxel size in mm from a MetaTensor's affine (None for plain tensors)."""
    if isinstance(image, MetaTensor):
        return [float(s) for s in image.pixdim[: image.dim() - 1]]
    return None
