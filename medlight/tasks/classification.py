"""Slice classification with an Attention Branch Network and a (dynamic) attention-map loss schedule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torch import Tensor, nn

from medlight.contracts import ClassificationData, require
from medlight.errors import ConfigError
from medlight.keys import Key
from medlight.losses.abn import AttentionLossSchedule, abn_loss
from medlight.metrics.classification import (
    SlicePredictions,
    classification_metrics,
    diagnose,
    patient_probabilities,
    youden_threshold,
)
from medlight.runs.dashboard import log_image, shows_images
from medlight.runs.layout import write_table
from medlight.tasks.base import MedlightTask
from medlight.tasks.overlays import attention_rgb, save_overlays


class ABNClassificationTask(MedlightTask):
    """Train and evaluate an Attention Branch Network on 2D slices.

    The prediction is the perception branch's softmax. Slice metrics pool every evaluated slice; patient
    metrics diagnose each patient from the mean softmax over its slices. At test, rank 0 writes
    ``metrics/test_per_case.csv`` (one row per patient), ``metrics/test_slices.csv`` (one row per slice),
    ``metrics/test_summary.json`` and ``attention/test_overlays.png`` (attention maps of a few slices per class).

    Args:
        net: a network returning (attention logits, perception logits, attention map), e.g.
            :class:`medlight.nets.AttentionBranchNetwork`.
        schedule: weighting of the attention-map loss (conventional or dynamic).
        positive_class: the class whose sensitivity, specificity and AUC are reported.
        patient_threshold: a patient is diagnosed ``positive_class`` when its mean probability exceeds
            this; None: argmax of the mean softmax.
        threshold_on_validation: choose that threshold at every validation by Youden's J over the validation
            patients (stored in the checkpoint, logged as ``val/threshold``, used at test instead of
            ``patient_threshold``), and a slice threshold the same way over the validation slices (logged as
            ``val/slice_threshold``; slice metrics otherwise take the argmax). Needs a validation fold apart
            from the test set (``cross_validate: false``).
        overlays_per_class: slices per class drawn in the attention overlays at test.
        **kwargs: optimizer, scheduler and loss-guard settings of :class:`MedlightTask`.
    """

    chosen_threshold: Tensor  # buffers, with threshold_on_validation only
    chosen_slice_threshold: Tensor

    def __init__(
        self,
        net: nn.Module,
        schedule: AttentionLossSchedule = AttentionLossSchedule(),
        positive_class: int = 1,
        patient_threshold: float | None = None,
        threshold_on_validation: bool = False,
        overlays_per_class: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["net", "schedule", "optimizer", "scheduler"])
        self.net = net
        self.schedule = schedule
        self.positive_class = positive_class
        self.patient_threshold = patient_threshold
        self.threshold_on_validation = threshold_on_validation
        if threshold_on_validation:  # a buffer only then: checkpoints of other runs keep their keys
            self.register_buffer("chosen_threshold", torch.tensor(-1.0))  # -1: not chosen yet (NaN would fail the
            # checkpoint's non-finite weight check)
            self.register_buffer("chosen_slice_threshold", torch.tensor(-1.0))
        self.overlays_per_class = overlays_per_class
        self.alpha: float | None = None
        self.val_store = SlicePredictions()
        self.test_store = SlicePredictions()
        self._panels: dict[int, list[dict]] = {}

    @property
    def datamodule_(self) -> ClassificationData:
        """The trainer's data module, checked against what this task reads from it."""
        return require(
            getattr(self.trainer, "datamodule", None),
            ClassificationData,
            type(self).__name__,
            "medlight.data.ClassificationDataModule",
        )

    def setup(self, stage: str) -> None:
        spec = self.datamodule_.spec
        classes, channels = len(spec.class_names), spec.in_channels
        if classes and getattr(self.net, "num_classes", classes) != classes:
            raise ConfigError(f"the network has {self.net.num_classes} classes, the data {classes}: set num_classes")
        if getattr(self.net, "in_channels", channels) != channels:
            raise ConfigError(
                f"the network takes {self.net.in_channels} channel(s), the data has {channels}: set in_channels"
            )
        if classes and not 0 <= self.positive_class < classes:
            raise ConfigError(f"positive_class {self.positive_class} is not a class index (0..{classes - 1})")

    def forward(self, x: Tensor) -> Tensor:
        """Class probabilities of the perception branch."""
        return torch.softmax(self.net(x)[1], dim=1)

    # -- training --------------------------------------------------------------------------------------
    def training_progress(self) -> float:
        """Fraction of training done at the start of this epoch (by epochs, else by steps)."""
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            return self.current_epoch / trainer.max_epochs
        return self.global_step / max(1, trainer.max_steps)

    def on_train_epoch_start(self) -> None:
        self.alpha = self.schedule.alpha(self.training_progress())
        if self.alpha is not None:
            self.log("train/alpha", self.alpha, on_step=False, on_epoch=True)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        att_logits, per_logits, att_map = self.net(batch[Key.IMAGE])
        terms = abn_loss(
            att_logits,
            per_logits,
            att_map,
            batch[Key.LABEL],
            self.schedule,
            self.alpha,
            batch[Key.MASK],
            batch["has_mask"],
        )
        loss = self.guard_loss(terms["loss"])
        size = batch[Key.IMAGE].shape[0]
        self.log_train(loss, size, {f"train/l_{k}": v for k, v in terms.items() if k != "loss"})
        return loss

    # -- evaluation ------------------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if not self.keeps_overlay(batch_idx):
            probs = self(batch[Key.IMAGE])
        else:  # the first slice of a few batches: its attention map, for the dashboards
            _, per_logits, att_map = self.net(batch[Key.IMAGE])
            probs = torch.softmax(per_logits, dim=1)
            self.keep_overlay(_panel(batch, probs, att_map, 0))
        self.val_store.update(probs, batch[Key.LABEL], batch[Key.CASE_INDEX], batch[Key.SLICE_INDEX])

    def on_validation_epoch_end(self) -> None:
        state = self.val_store.compute()
        self.val_store.reset()
        self.log_overlays("val/attention_overlays", attention_rgb)
        if self.trainer.sanity_checking or len(state["labels"]) == 0:
            return
        if self.threshold_on_validation:
            ids, mean_probs = patient_probabilities(state["probs"], state["patients"])
            truth = torch.stack(
                [_patient_label(state["labels"][state["patients"] == p], self.positive_class) for p in ids]
            )
            chosen = youden_threshold(mean_probs[:, self.positive_class], truth == self.positive_class)
            if not math.isnan(chosen):
                self.chosen_threshold.fill_(chosen)
                self.log("val/threshold", chosen, sync_dist=False)
            chosen = youden_threshold(state["probs"][:, self.positive_class], state["labels"] == self.positive_class)
            if not math.isnan(chosen):
                self.chosen_slice_threshold.fill_(chosen)
                self.log("val/slice_threshold", chosen, sync_dist=False)
        summary = self._summarise(state)
        self.log_dict({f"val/{k}": v for k, v in summary.items() if not math.isnan(v)}, sync_dist=False)

    @property
    def decision_threshold(self) -> float | None:
        """The patient threshold in use: chosen on validation when asked (and available), else the configured."""
        if self.threshold_on_validation and float(self.chosen_threshold) >= 0:
            return float(self.chosen_threshold)
        return self.patient_threshold

    @property
    def slice_threshold(self) -> float | None:
        """The slice threshold chosen on validation, or None (argmax)."""
        if self.threshold_on_validation and float(self.chosen_slice_threshold) >= 0:
            return float(self.chosen_slice_threshold)
        return None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints written before slice thresholds existed load with none chosen."""
        state = checkpoint.get("state_dict", {})
        if self.threshold_on_validation and "chosen_threshold" in state:
            state.setdefault("chosen_slice_threshold", torch.tensor(-1.0))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        att_logits, per_logits, att_map = self.net(batch[Key.IMAGE])
        probs = torch.softmax(per_logits, dim=1)
        self.test_store.update(probs, batch[Key.LABEL], batch[Key.CASE_INDEX], batch[Key.SLICE_INDEX])
        self._keep_panels(batch, probs, att_map)

    def on_test_epoch_end(self) -> None:
        state = self.test_store.compute()
        self.test_store.reset()
        summary = self._summarise(state)
        self.log_dict({f"test/{k}": v for k, v in summary.items() if not math.isnan(v)}, sync_dist=False)
        self._write_outputs(state, summary)
        self._panels = {}

    def _summarise(self, state: dict[str, Tensor]) -> dict[str, float]:
        """Slice metrics (``slice_*``) and patient metrics (``patient_*``) of collected predictions."""
        probs, labels, patients = state["probs"], state["labels"], state["patients"]
        slices = classification_metrics(probs, labels, self.positive_class, self.slice_threshold)
        ids, mean_probs = patient_probabilities(probs, patients)
        truth = torch.stack([_patient_label(labels[patients == p], self.positive_class) for p in ids])
        per_patient = classification_metrics(mean_probs, truth, self.positive_class, self.decision_threshold)
        return {
            **{f"slice_{k}": v for k, v in slices.items()},
            **{f"patient_{k}": v for k, v in per_patient.items()},
        }

    # -- outputs --------------------------------------------------------------------------------------
    def _keep_panels(self, batch: dict, probs: Tensor, att_map: Tensor) -> None:
        for i, label in enumerate(batch[Key.LABEL].tolist()):
            panels = self._panels.setdefault(label, [])
            if len(panels) < self.overlays_per_class:
                panels.append(_panel(batch, probs, att_map, i))

    @rank_zero_only
    def _write_outputs(self, state: dict[str, Tensor], summary: dict[str, float]) -> None:
        datamodule = self.datamodule_
        names, ids = datamodule.spec.class_names, datamodule.case_ids
        rows = _patient_rows(state, ids, names, self.positive_class, self.decision_threshold)
        write_table(rows, self.layout.per_case("test"))
        self.log_per_case("test", rows)
        write_table(_slice_rows(state, ids), self.layout.table("test_slices.csv"))
        cases = int(torch.unique(state["patients"]).numel())
        threshold = (
            {"patient_threshold": self.decision_threshold, "slice_threshold": self.slice_threshold}
            if self.threshold_on_validation
            else {}
        )
        self.set_summary("test", {"cases": cases, "slices": len(state["labels"]), **summary, **threshold})
        panels = [p for label in sorted(self._panels) for p in self._panels[label]]
        if panels:
            path = save_overlays(panels, self.run_dir / "attention" / "test_overlays.png")
            if shows_images(self.loggers):
                log_image(
                    self.loggers,
                    "test/attention_overlays",
                    np.asarray(Image.open(path).convert("RGB")),
                    self.global_step,
                )
        print(
            f"\ntest: {cases} patient(s), {len(state['labels'])} slice(s): "
            + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()),
            flush=True,
        )


def _panel(batch: dict, probs: Tensor, att_map: Tensor, i: int) -> dict:
    """Slice ``i`` of a batch with its attention map, for :func:`medlight.tasks.overlays.attention_rgb`."""
    label = int(batch[Key.LABEL][i])
    title = f"{batch['unit'][i]} slice {int(batch['slice_index'][i])}: class {label}, p={probs[i, label]:.2f}"
    return {"image": batch[Key.IMAGE][i].detach().cpu(), "map": att_map[i].detach().cpu(), "title": title}


def _patient_label(labels: Tensor, positive: int) -> Tensor:
    """A patient's class: ``positive`` if any of its slices is positive, else its most frequent class."""
    if bool((labels == positive).any()):
        return torch.tensor(positive)
    return torch.mode(labels).values


def _patient_rows(state: dict, ids: list[str], names: list[str], positive: int, threshold: float | None) -> list[dict]:
    probs, labels, patients = state["probs"], state["labels"], state["patients"]
    index, mean_probs = patient_probabilities(probs, patients)
    diagnosis = diagnose(mean_probs, positive, threshold)
    rows = []
    for p, mean, diag in zip(index.tolist(), mean_probs, diagnosis.tolist()):
        own = patients == p
        truth = int(_patient_label(labels[own], positive))
        rows.append(
            {
                Key.CASE_ID: ids[p],
                "label": names[truth],
                "prediction": names[diag],
                "correct": float(diag == truth),
                "probability": float(mean[positive]),
                "accuracy": float((probs[own].argmax(1) == labels[own]).float().mean()),
            }
        )
    return rows


def _slice_rows(state: dict, ids: list[str]) -> list[dict]:
    return [
        {
            Key.CASE_ID: ids[int(p)],
            "slice": int(s),
            "label": int(y),
            **{f"p{c}": round(float(v), 5) for c, v in enumerate(pr)},
        }
        for p, s, y, pr in zip(state["patients"], state["slices"], state["labels"], state["probs"])
    ]
