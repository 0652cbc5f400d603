"""Multi-coil MRI reconstruction task: train, adapt (frozen backbone) or evaluate a k-space network.

Wraps any network called as ``net(masked_kspace, mask, centers, protocols) -> (B, H, W)`` RSS magnitude
(:class:`medlight.nets.VarNet`, :class:`medlight.nets.ZeroFilled`, the classical
:class:`medlight.nets.SenseRecon` and :class:`medlight.nets.L1WaveletCS`). Validation and test score whole
volumes (PSNR, SSIM, NMSE, in the data's own intensity units) per volume and per center; test writes
``metrics/test_per_case.csv`` and ``metrics/test_summary.json`` with the parameter shares of the adapters, and
NIfTI volumes and side-by-side PNGs of the first test volumes under ``reconstructions/``.

A network with a ``lamda`` buffer and a ``lamda_grid`` (the classical ones) has its regularisation chosen at
the first validation: every candidate reconstructs every validation volume, the best mean SSIM wins.

``adaptation: self_supervised`` trains without fully sampled data (SSDU, Yaman et al. 2020): each training
slice's sampled lines are split at random into a data-consistency set (60%, the centre included) given to the
network and a loss set (40%) it must predict (:func:`medlight.ops.kspace.ssdu_split`,
:func:`medlight.losses.reconstruction.ssdu_kspace_loss`); the reference image is never read in training, and
``best.ckpt`` is selected by the same k-space loss on the validation volumes (fixed split per volume).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn
from torchmetrics import MeanMetric

from medlight.contracts import ReconstructionData, require
from medlight.errors import ConfigError
from medlight.keys import Key
from medlight.losses.reconstruction import MSSSIML1Loss, ssdu_kspace_loss
from medlight.metrics.reconstruction import RECON_METRICS, volume_metrics
from medlight.metrics.segmentation import PerCaseMetrics
from medlight.metrics.spread import std_over_cases
from medlight.nets.adapters import HierarchicalAdapter
from medlight.ops.kspace import ifft2c, rss, ssdu_split
from medlight.runs.layout import write_table
from medlight.tasks.base import MedlightTask
from medlight.tasks.overlays import reconstruction_rgb
from medlight.tasks.recon_figures import save_comparison, save_volume

log = logging.getLogger(__name__)
Trainable = Literal["all", "adapters", "center_adapters"]
Adaptation = Literal["supervised", "self_supervised"]


class ReconstructionTask(MedlightTask):
    """Train and evaluate a reconstruction network on :class:`medlight.data.KspaceDataModule` batches.

    Args:
        net: the reconstruction network.
        loss: loss of (B, H, W) magnitudes; default MS-SSIM + L1 (:class:`medlight.losses.MSSSIML1Loss`).
        init_from: checkpoint whose weights start this run (e.g. the backbone trained on source centers);
            ``{run_dir}`` and ``{run_name}`` are replaced by this run's folder and its name. Missing weights
            (e.g. a new center's adapters) keep their initialisation.
        trainable: ``all`` parameters, only the ``adapters``, or only the ``center_adapters`` of
            ``adapt_centers`` (the backbone and every other adapter frozen).
        adapt_centers: centers whose adapters start as copies of the universal adapter (a new center).
        eval_chunk: slices per forward pass at validation and test.
        adaptation: ``supervised`` (image loss against the fully sampled reference) or ``self_supervised``
            (SSDU: k-space loss on held-out sampled lines; needs a network with ``forward_kspace``).
        ssdu_loss_fraction: share of the sampled lines held out for the loss in self-supervised training.
        ssdu_density: how the held-out lines are drawn (:func:`medlight.ops.kspace.ssdu_split`): ``uniform``,
            or ``gaussian`` around the k-space centre (the SSDU paper's choice).
        ssdu_keep_center: centre lines never held out; None: the whole fully sampled centre block. The
            sensitivity maps are estimated from all acquired lines either way, so a small protected block
            (the SSDU paper's code keeps 4) lets calibration lines, where the signal is, enter the loss.
        save_examples: test volumes (per process) saved as NIfTI and PNG under ``reconstructions/``.
        **kwargs: optimizer (it gets only the trainable parameters), scheduler and loss-guard settings of
            :class:`MedlightTask`.
    """

    checkpoint_monitor = ("val/ssim", "max")  # selects best.ckpt, tested after fit

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module | None = None,
        init_from: str | None = None,
        trainable: Trainable = "all",
        adapt_centers: list[str] | None = None,
        eval_chunk: int = 8,
        adaptation: Adaptation = "supervised",
        ssdu_loss_fraction: float = 0.4,
        ssdu_density: Literal["uniform", "gaussian"] = "uniform",
        ssdu_keep_center: int | None = None,
        save_examples: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"])
        self.net = net
        self.loss = loss if loss is not None else MSSSIML1Loss()
        self.init_from, self.trainable, self.adapt_centers = init_from, trainable, list(adapt_centers or [])
        self.eval_chunk = eval_chunk
        self.val_metrics, self.test_metrics = PerCaseMetrics(), PerCaseMetrics()
        self.adaptation, self.ssdu_loss_fraction, self.save_examples = adaptation, ssdu_loss_fraction, save_examples
        self.ssdu_density, self.ssdu_keep_center = ssdu_density, ssdu_keep_center
        if adaptation == "self_supervised":
            if not hasattr(net, "forward_kspace"):
                raise ConfigError(f"adaptation='self_supervised' needs a network with forward_kspace, not {type(net)}")
            self.checkpoint_monitor = ("val/kspace_loss", "min")  # no fully sampled data selects the checkpoint
            self.val_kspace_loss = MeanMetric()
        grid = tuple(getattr(net, "lamda_grid", ()) or ())
        self.lamda_grid = grid if hasattr(net, "lamda") else ()
        self.tuning_metrics = nn.ModuleList(PerCaseMetrics() for _ in self.lamda_grid)
        self._tuned, self._saved = not self.lamda_grid, 0
        self._initialised = False

    # -- set-up: start weights, frozen parts --------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self._initialised:
            return
        self._initialised = True
        if self.init_from:
            self._load_start_weights(self._resolve(self.init_from))
        self._freeze()
        total, trainable = self.parameter_counts()["params_total"], self.parameter_counts()["params_trainable"]
        log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))

    def _resolve(self, template: str) -> Path:
        run_dir = self.run_dir if self._trainer is not None else Path(".")
        return Path(template.format(run_dir=run_dir, run_name=run_dir.name))

    def _load_start_weights(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(f"{path}: init_from checkpoint not found (train the source model first)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        except Exception as err:  # a broken or foreign file: say which
            raise ConfigError(f"{path}: cannot load a Lightning checkpoint from it ({err})") from err
        result = self.load_state_dict(state, strict=False)
        if result.unexpected_keys:
            raise ConfigError(f"{path}: weights the network does not have, e.g. {result.unexpected_keys[:3]}")
        for adapter in self._adapters():
            for center in self.adapt_centers:
                if center not in adapter.center:
                    raise ConfigError(f"adapt_centers: {center!r} is not among the network's centers")
                adapter.center[center].load_state_dict(adapter.universal.state_dict())
        log.info("started from %s (%d new weight tensors initialised afresh)", path, len(result.missing_keys))

    @property
    def ddp_find_unused_parameters(self) -> bool:  # type: ignore[override]
        """Adapters: each batch routes through only some of them, so the others get no gradient in that step."""
        return bool(self._adapters())

    def _adapters(self) -> list[HierarchicalAdapter]:
        return [m for m in self.net.modules() if isinstance(m, HierarchicalAdapter)]

    def _freeze(self) -> None:
        if self.trainable == "all":
            return
        if not self._adapters():
            raise ConfigError(f"trainable={self.trainable!r} needs a network with adapters")
        if self.trainable == "center_adapters" and not self.adapt_centers:
            raise ConfigError("trainable='center_adapters' needs adapt_centers (the centers to adapt to)")
        keep = {id(p) for p in self._trainable_adapter_parameters()}
        for p in self.net.parameters():
            p.requires_grad_(id(p) in keep)
        router = getattr(self.net, "router", None)
        if self.trainable == "center_adapters" and router is not None and router.universal_prob > 0:
            # a sample routed to the (frozen) universal adapter would give the new center's adapter no gradient
            log.info("adaptation: universal_prob %.2f -> 0 (no sample bypasses its center)", router.universal_prob)
            router.universal_prob = 0.0

    def _trainable_adapter_parameters(self) -> list[nn.Parameter]:
        if self.trainable == "adapters":
            return [p for a in self._adapters() for p in a.parameters()]
        return [p for a in self._adapters() for c in self.adapt_centers for p in a.center[c].parameters()]

    def parameter_counts(self) -> dict[str, float]:
        """Total and trainable parameters, and the shares of all adapters and of one center's adapters."""
        total = sum(p.numel() for p in self.net.parameters())
        adapters = self._adapters()
        one_center = next(iter(adapters[0].center), None) if adapters else None
        center = sum(p.numel() for a in adapters if one_center for p in a.center[one_center].parameters())
        return {
            "params_total": total,
            "params_trainable": sum(p.numel() for p in self.net.parameters() if p.requires_grad),
            "trainable_share": sum(p.numel() for p in self.net.parameters() if p.requires_grad) / max(total, 1),
            "adapter_share": sum(p.numel() for a in adapters for p in a.parameters()) / max(total, 1),
            "center_adapter_share": center / max(total, 1),
        }

    # -- steps ---------------------------------------------------------------------------------------
    def forward(self, masked: Tensor, mask: Tensor, centers: list[str], protocols: list[str]) -> Tensor:
        return self.net(masked, mask, centers, protocols)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor | None:
        if not any(p.requires_grad for p in self.net.parameters()):  # zero-filled, SENSE, CS: nothing to train
            return None
        if self.adaptation == "self_supervised":
            loss = self._ssdu_loss(batch[Key.MASKED], batch[Key.MASK], batch[Key.CENTER], batch[Key.PROTOCOL])
        else:
            pred = self(batch[Key.MASKED], batch[Key.MASK], batch[Key.CENTER], batch[Key.PROTOCOL])
            loss = self.loss(pred, batch[Key.TARGET])
        loss = self.guard_loss(loss)
        self.log_train(loss, batch[Key.MASKED].shape[0])
        return loss

    def _ssdu_loss(
        self, masked: Tensor, mask: Tensor, centers: list[str], protocols: list[str], seed: int = -1
    ) -> Tensor:
        """SSDU: predict the loss-set lines from the data-consistency set; a fresh split per slice and step
        (seeded by the step, so a resumed run draws the same splits), or the fixed ``seed`` for validation."""
        dc, held_out = [], []
        for i in range(masked.shape[0]):
            draw = seed if seed >= 0 else 7919 * self.global_step + i
            a, b = ssdu_split(
                mask[min(i, mask.shape[0] - 1)],
                self.ssdu_loss_fraction,
                keep_center=self.ssdu_keep_center,
                seed=draw,
                density=self.ssdu_density,
            )
            dc.append(a)
            held_out.append(b)
        shape = (masked.shape[0], 1, 1, masked.shape[-2], 1)
        dc_mask = torch.stack(dc).view(shape).to(masked.device)
        loss_mask = torch.stack(held_out).view(shape).to(masked.device)
        calibration = (masked, mask.bool().expand(masked.shape[0], *mask.shape[1:]))
        pred = self.net.forward_kspace(  # type: ignore[operator]
            masked * dc_mask, dc_mask, centers, protocols, calibration=calibration
        )
        return ssdu_kspace_loss(pred, masked, loss_mask)

    def reconstruct_volume(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(slices, H, W) reconstruction and reference of a one-volume batch, in the data's units."""
        masked, mask, scale = batch[Key.MASKED][0], batch[Key.MASK], batch[Key.SCALE][0]
        n = masked.shape[0]
        parts = [
            self(masked[i : i + self.eval_chunk], mask, batch[Key.CENTER] * n, batch[Key.PROTOCOL] * n)[
                : min(self.eval_chunk, n - i)
            ]
            for i in range(0, n, self.eval_chunk)
        ]
        return torch.cat(parts) * scale, batch[Key.TARGET][0] * scale

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if not self._tuned and not self.trainer.sanity_checking:  # score every regularisation candidate
            for value, metrics in zip(self.lamda_grid, self.tuning_metrics):
                self.net.lamda.fill_(value)  # type: ignore[operator]
                pred, target = self.reconstruct_volume(batch)
                metrics.update(batch[Key.CASE_INDEX], volume_metrics(pred, target)[None])  # type: ignore[operator]
            return
        pred, target = self.reconstruct_volume(batch)
        self.val_metrics.update(batch[Key.CASE_INDEX], volume_metrics(pred, target)[None])
        if self.keeps_overlay(batch_idx):
            i = pred.shape[0] // 2  # the middle slice
            zero_filled = rss(ifft2c(batch[Key.MASKED][0][i]), coil_dim=-3) * batch[Key.SCALE][0]
            title = self._cases(batch[Key.CASE_INDEX].reshape(-1))[0]["case_id"]
            self.keep_overlay(
                {"zero_filled": zero_filled.cpu(), "output": pred[i].cpu(), "target": target[i].cpu(), "title": title}
            )
        if self.adaptation == "self_supervised":
            masked, n = batch[Key.MASKED][0], batch[Key.MASKED].shape[1]
            with torch.no_grad():
                loss = self._ssdu_loss(
                    masked,
                    batch[Key.MASK],
                    batch[Key.CENTER] * n,
                    batch[Key.PROTOCOL] * n,
                    seed=int(batch[Key.CASE_INDEX]),
                )
            self.val_kspace_loss.update(loss)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        pred, target = self.reconstruct_volume(batch)
        self.test_metrics.update(batch[Key.CASE_INDEX], volume_metrics(pred, target)[None])
        if self._saved < self.save_examples:
            self._saved += 1
            self._save_example(batch, pred, target)

    def _save_example(self, batch: dict, pred: Tensor, target: Tensor) -> None:
        case = self._cases(batch[Key.CASE_INDEX].reshape(-1))[0]
        zero_filled = rss(ifft2c(batch[Key.MASKED][0])) * batch[Key.SCALE][0]
        n = pred.shape[0]
        rows = sorted({n // 4, n // 2, (3 * n) // 4})[:3]
        out = self.layout.reconstructions
        save_volume(pred, out / f"{case['case_id']}.nii.gz")
        scores = volume_metrics(pred, target)
        title = (
            f"{case['case_id']} ({case['center']}, {case['protocol']}): PSNR {scores[0]:.2f} dB, SSIM {scores[1]:.3f}"
        )
        save_comparison(zero_filled[rows], pred[rows], target[rows], out / f"{case['case_id']}.png", title)

    def on_validation_epoch_end(self) -> None:
        if not self._tuned and not self.trainer.sanity_checking:
            index, values = self._choose_lamda()
        else:
            index, values = self.val_metrics.gather()
        if self.adaptation == "self_supervised":
            kspace_loss = self.val_kspace_loss.compute()
            self.val_kspace_loss.reset()
        if not self.trainer.sanity_checking:
            self.log_dict({f"val/{k}": v for k, v in self._summary(index, values).items()}, sync_dist=False)
            if self.lamda_grid:
                self.log("val/lamda", float(self.net.lamda), sync_dist=False)  # type: ignore[arg-type]
            if self.adaptation == "self_supervised":
                self.log("val/kspace_loss", kspace_loss, sync_dist=False)
            if not any(p.requires_grad for p in self.net.parameters()):
                self.trainer.should_stop = True  # zero-filled, SENSE, CS: after the lamda choice nothing changes
        self.log_overlays("val/reconstructions", reconstruction_rgb)

    def _choose_lamda(self) -> tuple[Tensor, Tensor]:
        """Keep the candidate with the best mean validation SSIM; its values are this epoch's validation."""
        scored = [metrics.gather() for metrics in self.tuning_metrics]  # type: ignore[operator]
        ssims = [float(v.reshape(len(i), len(RECON_METRICS))[:, RECON_METRICS.index("ssim")].mean()) for i, v in scored]
        best = max(range(len(ssims)), key=ssims.__getitem__)
        self.net.lamda.fill_(self.lamda_grid[best])  # type: ignore[operator]
        self._tuned = True
        table = ", ".join(f"{v:g}: {s:.4f}" for v, s in zip(self.lamda_grid, ssims))
        log.info("lamda chosen on validation (mean SSIM per candidate: %s): %g", table, self.lamda_grid[best])
        return scored[best]

    def on_test_epoch_start(self) -> None:
        self._saved = 0

    def on_test_epoch_end(self) -> None:
        index, values = self.test_metrics.gather()
        summary = self._summary(index, values, with_std=True)
        self.log_dict({f"test/{k}": v for k, v in summary.items() if "_" not in k}, sync_dist=False)
        self._write(index, values, {**summary, **self.parameter_counts()})

    # -- outputs ---------------------------------------------------------------------------------------
    def _cases(self, index: Tensor) -> list[dict]:
        meta = require(
            getattr(self.trainer, "datamodule", None),
            ReconstructionData,
            type(self).__name__,
            "medlight.data.KspaceDataModule",
        ).case_meta
        return [meta[int(i)] for i in index]

    def _summary(self, index: Tensor, values: Tensor, with_std: bool = False) -> dict[str, float]:
        values = values.reshape(len(index), len(RECON_METRICS)).double()
        out = {m: float(values[:, j].mean()) for j, m in enumerate(RECON_METRICS)}
        if with_std:
            out |= {f"{m}_std": std_over_cases(values[:, j].cpu().numpy()) for j, m in enumerate(RECON_METRICS)}
        centers = [c["center"] for c in self._cases(index)]
        for center in sorted(set(centers)):
            rows = torch.tensor([c == center for c in centers])
            out |= {f"{m}_{center}": float(values[rows, j].mean()) for j, m in enumerate(RECON_METRICS)}
        return out

    @rank_zero_only
    def _write(self, index: Tensor, values: Tensor, summary: dict[str, float]) -> None:
        values = values.reshape(len(index), len(RECON_METRICS))
        rows = [
            {
                Key.CASE_ID: c["case_id"],
                "center": c["center"],
                "protocol": c["protocol"],
                **{m: float(v) for m, v in zip(RECON_METRICS, row)},
            }
            for c, row in zip(self._cases(index), values)
        ]
        out = self.layout.metrics
        write_table(rows, self.layout.per_case("test"))
        self.log_per_case("test", rows)
        self.set_summary("test", {"cases": len(rows), **summary})
        lines = [f"\ntest: {len(rows)} volume(s); per-case table in {out}"]
        lines += [f"  {k:22s} {v:.4f}" for k, v in summary.items() if not k.endswith("_std")]
        print("\n".join(lines), flush=True)
