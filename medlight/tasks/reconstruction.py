"""Multi-coil MRI reconstruction task: train, adapt (frozen backbone) or evaluate a k-space network.

Wraps any network called as ``net(masked_kspace, mask, centers, protocols) -> (B, H, W)`` RSS magnitude
(:class:`medlight.nets.VarNet`, :class:`medlight.nets.ZeroFilled`). Validation and test score whole volumes
(PSNR, SSIM, NMSE, in the data's own intensity units) per volume and per center; test writes
``metrics/test_per_case.csv`` and ``metrics/test_summary.json`` with the parameter shares of the adapters.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from medlight.contracts import ReconstructionData, require
from medlight.errors import ConfigError
from medlight.keys import Key
from medlight.losses.reconstruction import MSSSIML1Loss
from medlight.metrics.reconstruction import RECON_METRICS, volume_metrics
from medlight.metrics.segmentation import PerCaseMetrics
from medlight.nets.adapters import HierarchicalAdapter
from medlight.runs.layout import write_table
from medlight.tasks.base import MedlightTask

log = logging.getLogger(__name__)
Trainable = Literal["all", "adapters", "center_adapters"]


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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"])
        self.net = net
        self.loss = loss if loss is not None else MSSSIML1Loss()
        self.init_from, self.trainable, self.adapt_centers = init_from, trainable, list(adapt_centers or [])
        self.eval_chunk = eval_chunk
        self.val_metrics, self.test_metrics = PerCaseMetrics(), PerCaseMetrics()
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
        pred = self(batch[Key.MASKED], batch[Key.MASK], batch[Key.CENTER], batch[Key.PROTOCOL])
        loss = self.loss(pred, batch[Key.TARGET])
        if not loss.requires_grad:  # no trainable parameters: nothing to step
            return None
        loss = self.guard_loss(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return loss

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
        pred, target = self.reconstruct_volume(batch)
        self.val_metrics.update(batch[Key.CASE_INDEX], volume_metrics(pred, target)[None])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        pred, target = self.reconstruct_volume(batch)
        self.test_metrics.update(batch[Key.CASE_INDEX], volume_metrics(pred, target)[None])

    def on_validation_epoch_end(self) -> None:
        index, values = self.val_metrics.gather()
        if not self.trainer.sanity_checking:
            self.log_dict({f"val/{k}": v for k, v in self._summary(index, values).items()}, sync_dist=False)

    def on_test_epoch_end(self) -> None:
        index, values = self.test_metrics.gather()
        summary = self._summary(index, values, with_std=True)
        self.log_dict({f"test/{k}": v for k, v in summary.items() if "_" not in k}, sync_dist=False)
        self._write(index, values, {**summary, **self.parameter_counts()})

    # -- outputs ---------------------------------------------------------------------------------------
    def _cases(self, index: Tensor) -> list[dict]:
        meta = require(getattr(self.trainer, "datamodule", None), ReconstructionData, type(self).__name__).case_meta
        return [meta[int(i)] for i in index]

    def _summary(self, index: Tensor, values: Tensor, with_std: bool = False) -> dict[str, float]:
        values = values.reshape(len(index), len(RECON_METRICS)).double()
        out = {m: float(values[:, j].mean()) for j, m in enumerate(RECON_METRICS)}
        if with_std:
            out |= {
                f"{m}_std": float(values[:, j].std()) if len(index) > 1 else 0.0 for j, m in enumerate(RECON_METRICS)
            }
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
        self.set_summary("test", {"cases": len(rows), **summary})
        lines = [f"\ntest: {len(rows)} volume(s); per-case table in {out}"]
        lines += [f"  {k:22s} {v:.4f}" for k, v in summary.items() if not k.endswith("_std")]
        print("\n".join(lines), flush=True)
