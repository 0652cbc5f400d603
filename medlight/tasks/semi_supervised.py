"""Teacher-student semi-supervised segmentation: FARCLUSS and Mean Teacher as configurations of one task.

The teacher is an exponential moving average of the student (network and projection head), updated after
every optimizer step. Each step takes a labeled batch (supervised loss) and an unlabeled batch with a weak
view for the teacher and a voxel-aligned strong view for the student (see
:mod:`medlight.data.segmentation.semi_supervised`). The loss is ``supervised + ramp(step) * (lambda_u * unsupervised +
lambda_c * contrastive)``; the maths lives in :mod:`medlight.losses.semi_supervised`.

* FARCLUSS (``consistency: fuzzy``): top-K fuzzy pseudo-labels, certainty weights, adaptive class
  rebalancing and prototype contrast, each switchable for ablations.
* Mean Teacher (``consistency: mse``, ``contrastive: false``): softmax MSE between student and teacher.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from monai.networks.layers import Conv
from torch import Tensor, nn

from medlight.contracts import SemiSupervisedData, require
from medlight.errors import ConfigError
from medlight.keys import Key
from medlight.losses.semi_supervised import (
    ClassFrequencyEMA,
    certainty_weights,
    class_prototypes,
    prototype_infonce,
    rebalance_weights,
    sigmoid_rampup,
    softmax_mse,
    topk_fuzzy_targets,
    weighted_soft_cross_entropy,
)
from medlight.metrics.segmentation import PerCaseMetrics
from medlight.ops.ema import ema_update_, make_teacher, warmup_momentum
from medlight.ops.inference import build_inferer, predict_probabilities
from medlight.tasks.segmentation import SegmentationTask


def projection_head(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """Two 1x1 convolutions with a ReLU between: per-voxel features -> contrastive embedding."""
    conv = Conv[Conv.CONV, spatial_dims]
    return nn.Sequential(conv(in_channels, in_channels, 1), nn.ReLU(inplace=True), conv(in_channels, out_channels, 1))


def _call(net: nn.Module, method: str, x: Tensor) -> Tensor:
    """``net.<method>(x)`` for the optional parts of a network's interface (``forward_features``, ``head``)."""
    return getattr(net, method)(x)


def _flat(x: Tensor) -> Tensor:
    """(B, D, *spatial) -> (B * voxels, D)."""
    return x.movedim(1, -1).reshape(-1, x.shape[1])


class TeacherStudentTask(SegmentationTask):
    """Semi-supervised segmentation with an EMA teacher (needs a semi-supervised data module, e.g.
    :class:`medlight.data.SemiSupervisedDataModule` with ``unlabeled: true``).

    Args:
        net: segmentation network; with ``contrastive`` it must offer ``forward_features`` and ``head``.
        loss: supervised loss on labeled batches (default Dice + CE).
        consistency: ``fuzzy`` (FARCLUSS soft cross-entropy on top-K targets) or ``mse`` (Mean Teacher).
        top_k: classes kept in the fuzzy pseudo-labels (1: hard pseudo-labels).
        certainty_weighting: weigh each voxel's unsupervised loss by 1 - normalised teacher entropy.
        class_rebalancing: weigh voxels by the smoothed inverse class frequency of the pseudo-labels.
        rebalance_momentum: EMA momentum of the class frequencies (per step).
        rebalance_power: exponent of the inverse frequency (1: plain inverse frequency).
        contrastive: add the prototype InfoNCE term on projected student features.
        projection_dim: size of the contrastive embedding.
        temperature: InfoNCE temperature.
        prototype_confidence: teacher max-probability a voxel needs to shape prototypes and be contrasted.
        lambda_u: weight of the unsupervised term.
        lambda_c: weight of the contrastive term.
        rampup: sigmoid ramp-up length of both weights, as a share of the run's optimizer steps.
        ema_momentum: teacher momentum (ramped from 0 in the first steps, as Mean Teacher does).
        evaluate_with: network used for validation (``val/*``, which checkpoints follow), test and predict.
        validate_both: also validate the other network, logged as ``val_student/*`` (or ``val_teacher/*``).
        **kwargs: loss, inference and the rest of :class:`SegmentationTask`'s arguments.
    """

    consumes_unlabeled = True  # needs a semi-supervised data module with ``unlabeled: true``

    def __init__(
        self,
        net: nn.Module,
        consistency: Literal["fuzzy", "mse"] = "fuzzy",
        top_k: int = 2,
        certainty_weighting: bool = True,
        class_rebalancing: bool = True,
        rebalance_momentum: float = 0.99,
        rebalance_power: float = 0.5,
        contrastive: bool = True,
        projection_dim: int = 32,
        temperature: float = 0.1,
        prototype_confidence: float = 0.8,
        lambda_u: float = 1.0,
        lambda_c: float = 0.1,
        rampup: float = 0.3,
        ema_momentum: float = 0.99,
        evaluate_with: Literal["teacher", "student"] = "teacher",
        validate_both: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(net, **kwargs)
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler", "inference", "postprocessing"])
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        self.consistency, self.top_k = consistency, top_k
        self.certainty_weighting, self.class_rebalancing = certainty_weighting, class_rebalancing
        self.rebalance_momentum, self.rebalance_power = rebalance_momentum, rebalance_power
        self.contrastive, self.projection_dim = contrastive, projection_dim
        self.temperature, self.prototype_confidence = temperature, prototype_confidence
        self.lambda_u, self.lambda_c, self.rampup = lambda_u, lambda_c, rampup
        self.ema_momentum, self.evaluate_with, self.validate_both = ema_momentum, evaluate_with, validate_both
        self.other_val_metrics = PerCaseMetrics()
        self.projector: nn.Module | None = None
        self.class_frequency: ClassFrequencyEMA | None = None
        self.teacher: nn.ModuleDict | None = None
        self._steps: int | None = None

    # -- set-up: projection head, class-frequency state and teacher, once the data's shape is known ------------
    def setup(self, stage: str) -> None:
        require(
            getattr(self.trainer, "datamodule", None),
            SemiSupervisedData,
            type(self).__name__,
            "medlight.data.SemiSupervisedDataModule",
        )
        super().setup(stage)
        if self.teacher is not None:
            return
        assert self.spec is not None
        modules: dict[str, nn.Module] = {"net": self.net}
        if self.contrastive:
            if not (hasattr(self.net, "forward_features") and hasattr(self.net, "head")):
                raise ConfigError(
                    f"contrastive: true needs a network with forward_features() and head ({type(self.net).__name__} "
                    "has not); use a medlight.nets UNet or set contrastive: false"
                )
            x = torch.zeros(1, self.spec.in_channels, *self.spec.patch_size, device=self.device)
            with torch.no_grad():
                channels = _call(self.net, "forward_features", x).shape[1]
            self.projector = projection_head(self.spec.spatial_dims, channels, self.projection_dim).to(self.device)
            modules["projector"] = self.projector
        self.class_frequency = ClassFrequencyEMA(self.num_classes, self.rebalance_momentum).to(self.device)
        self.teacher = nn.ModuleDict({k: make_teacher(m) for k, m in modules.items()})

    # -- training ------------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if "labeled" not in batch or "unlabeled" not in batch:
            raise ConfigError("TeacherStudentTask needs batches {'labeled', 'unlabeled'} (SemiSupervisedDataModule)")
        labeled, unlabeled = batch[Key.LABELED], batch[Key.UNLABELED]
        n_lab = labeled[Key.IMAGE].shape[0]
        # one student pass over labeled images and strong views (instance norm: samples stay independent)
        student_in = torch.cat([labeled[Key.IMAGE], unlabeled[Key.IMAGE_STRONG]]).as_subclass(Tensor)
        features = _call(self.net, "forward_features", student_in) if self.contrastive else None
        logits = _call(self.net, "head", features) if features is not None else self.net(student_in)
        supervised = self.loss(logits[:n_lab], labeled[Key.LABEL])
        terms = self.unsupervised_terms(
            unlabeled[Key.IMAGE].as_subclass(Tensor), logits[n_lab:], features[n_lab:] if features is not None else None
        )
        ramp = sigmoid_rampup(self.global_step, round(self.rampup * self._total_steps()))
        loss = supervised + ramp * (self.lambda_u * terms["unsup"] + self.lambda_c * terms["contrast"])
        loss = self.guard_loss(loss)
        logged: dict[str, Any] = {"train/loss_sup": supervised, "train/ramp": ramp}
        logged.update({f"train/{k}": v for k, v in terms.items() if k not in ("unsup", "contrast")})
        logged.update({"train/loss_unsup": terms["unsup"], "train/loss_contrast": terms["contrast"]})
        self.log_train(loss, n_lab, logged)
        return loss

    def unsupervised_terms(self, weak: Tensor, student_logits: Tensor, student_features: Tensor | None) -> dict:
        """Consistency and contrastive losses on one unlabeled batch, plus diagnostics to log."""
        assert self.teacher is not None
        self.teacher.eval()
        with torch.no_grad():
            t_net = self.teacher["net"]
            t_features = _call(t_net, "forward_features", weak) if self.contrastive else None
            t_logits = _call(t_net, "head", t_features) if t_features is not None else t_net(weak)
            t_probs = F.softmax(t_logits.float(), dim=1)
        out: dict[str, Tensor] = {"pseudo_certainty": certainty_weights(t_probs).mean()}
        if self.consistency == "mse":
            out["unsup"] = softmax_mse(student_logits, t_logits)
        else:
            out["unsup"] = self._fuzzy_loss(student_logits, t_probs, out)
        out["contrast"] = student_logits.new_zeros(())
        if self.contrastive and student_features is not None and t_features is not None:
            out["contrast"] = self._contrast(student_features, t_features, t_probs)
        return out

    def _fuzzy_loss(self, student_logits: Tensor, t_probs: Tensor, logs: dict) -> Tensor:
        targets = topk_fuzzy_targets(t_probs, self.top_k)
        weights = certainty_weights(t_probs) if self.certainty_weighting else None
        if self.class_rebalancing:
            assert self.class_frequency is not None
            class_w = rebalance_weights(self.class_frequency.update(targets), self.rebalance_power)
            for name, w in zip(["background", *self.spec.class_names], class_w):  # type: ignore[union-attr]
                logs[f"class_weight_{name}"] = w
            voxel_w = (targets * class_w.view(1, -1, *[1] * (targets.dim() - 2))).sum(dim=1)
            weights = voxel_w if weights is None else weights * voxel_w
        return weighted_soft_cross_entropy(student_logits, targets, weights)

    def _contrast(self, student_features: Tensor, t_features: Tensor, t_probs: Tensor) -> Tensor:
        assert self.projector is not None and self.teacher is not None
        z_student = _flat(self.projector(student_features))
        with torch.no_grad():
            z_teacher = _flat(self.teacher["projector"](t_features))
        confidence, pseudo = t_probs.max(dim=1)
        mask, pseudo = confidence.flatten() >= self.prototype_confidence, pseudo.flatten()
        prototypes, present = class_prototypes(z_teacher, pseudo, mask, self.num_classes)
        return prototype_infonce(z_student[mask], pseudo[mask], prototypes, present, self.temperature)

    def _total_steps(self) -> int:
        if self._steps is None:
            steps = self.trainer.estimated_stepping_batches
            self._steps = int(steps) if steps != float("inf") else 0
        return self._steps

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        assert self.teacher is not None
        momentum = warmup_momentum(self.ema_momentum, self.global_step)
        ema_update_(self.teacher["net"], self.net, momentum)
        if self.projector is not None:
            ema_update_(self.teacher["projector"], self.projector, momentum)

    # -- evaluation with the teacher (default) or the student --------------------------------------------
    @property
    def other_network(self) -> str:
        return "student" if self.evaluate_with == "teacher" else "teacher"

    def predict_volume(self, image: Tensor, network: str | None = None) -> Tensor:
        """Softmax probabilities by sliding window, from ``network`` (default: ``evaluate_with``)."""
        assert self.spec is not None and self.teacher is not None
        net = self.teacher["net"] if (network or self.evaluate_with) == "teacher" else self.net
        inferer = build_inferer(self.spec.patch_size, self.inference, self.spec.slice_axis)
        return predict_probabilities(net, image, inferer, self.inference.mirror_axes)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        if self.validate_both:
            probs = self.predict_volume(batch[Key.IMAGE], self.other_network)
            self.other_val_metrics.update(batch[Key.CASE_INDEX], self.validation_case_values(batch, probs))

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.validate_both:
            self.log_validation(self.other_val_metrics, f"val_{self.other_network}")
