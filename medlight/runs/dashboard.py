"""What a run shows on its dashboards (wandb, TensorBoard): the resolved config as readable keys, images, tables.

* :func:`flatten_config` turns the resolved LightningCLI config into dotted keys (``model.net`` = the network's
  class name, ``model.optimizer.lr``, ``data.patch_size``, ``seed_everything``), dropping the
  ``class_path``/``init_args`` levels;
* :func:`identify` fills a run's dashboard group and tags (study, budget, variant, grid point; task, network);
* :class:`Dashboard` logs that config, the manifest facts and the parameter counts to every logger at the start
  of each stage, and the best checkpoint as a wandb artifact when asked;
* :func:`log_image` and :func:`log_table` log to wandb and TensorBoard alike and leave the CSV logger alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from medlight.runs.manifest import RunManifest
from medlight.runs.tracking import Tracking

# manifest entries that are not facts of what the run is (or are in the config already)
_NOT_FACTS = ("config", "command", "machine", "time", "stages", "fold")


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested config; ``{class_path, init_args}`` becomes the class name and its arguments.

    >>> flatten_config({"model": {"class_path": "a.Task", "init_args": {"net": {"class_path": "b.UNet"}}}})
    {'model': 'Task', 'model.net': 'UNet'}
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and "class_path" in value:
            out[name] = _class_name(value)
            out.update(flatten_config(value.get("init_args") or {}, name))
            out.update(flatten_config(value.get("dict_kwargs") or {}, name))
        elif isinstance(value, Mapping) and value:
            out.update(flatten_config(value, name))
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):  # e.g. trainer.callbacks
            out[name] = [_class_name(v) if isinstance(v, Mapping) else v for v in value]
        else:
            out[name] = value
    return out


def _class_name(value: Mapping[str, Any]) -> str:
    return str(value.get("class_path", "?")).rsplit(".", 1)[-1]


def dashboard_config(resolved: Mapping[str, Any] | None, tracking: Tracking) -> dict[str, Any]:
    """The run's config as the dashboards show it: flat resolved config, then the study keys if any."""
    flat = {k: v for k, v in flatten_config(resolved or {}).items() if not k.startswith("tracking")}
    study = {"study": tracking.study, "budget": tracking.budget, "variant": tracking.variant}
    flat |= {k: v for k, v in study.items() if v is not None}
    flat |= {f"grid.{k}": v for k, v in (tracking.point or {}).items()}
    return flat


def identify(tracking: Tracking, flat: Mapping[str, Any]) -> Tracking:
    """``tracking`` with a default group (the data set's name) and tags (task, network; study, variant, grid)."""
    group = tracking.group
    if group is None:
        dataset = flat.get("data.dataset")
        group = Path(str(dataset)).name if isinstance(dataset, str) and dataset else flat.get("data")
    tags = [str(flat[k]) for k in ("model", "model.net") if isinstance(flat.get(k), str)]
    for key in ("study", "budget", "variant"):
        if getattr(tracking, key) is not None:
            tags.append(f"{key}:{getattr(tracking, key)}")
    tags += [f"{k}:{v}" for k, v in (tracking.point or {}).items()]
    tags += list(tracking.tags)
    unique = list(dict.fromkeys(t[:64] for t in tags))  # wandb takes tags of at most 64 characters
    return dataclasses.replace(tracking, group=group, tags=unique)


def manifest_facts(manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    """The manifest's facts as dotted keys: ``git.commit``, ``git.dirty``, ``split_sha256``, ``packages.torch``..."""
    if not manifest:
        return {}
    return flatten_config({k: v for k, v in manifest.items() if k not in _NOT_FACTS})


def parameter_counts(module: LightningModule) -> dict[str, int]:
    params = list(module.parameters())
    return {
        "params.total": sum(p.numel() for p in params),
        "params.trainable": sum(p.numel() for p in params if p.requires_grad),
    }


class Dashboard(Callback):
    """Log the run's config, manifest facts and parameter counts to every logger at the start of each stage.

    Args:
        config: the flat config (:func:`dashboard_config`).
        checkpoint_artifact: after fit, log the best checkpoint as a wandb model artifact.
    """

    def __init__(self, config: Mapping[str, Any], checkpoint_artifact: bool = False) -> None:
        self.config = dict(config)
        self.checkpoint_artifact = checkpoint_artifact

    @rank_zero_only
    def log_config(self, trainer: Trainer, pl_module: LightningModule) -> None:
        manifest = next((c.manifest for c in trainer.callbacks if isinstance(c, RunManifest)), None)  # type: ignore[attr-defined]
        flat = {**self.config, **manifest_facts(manifest), **parameter_counts(pl_module)}
        for logger in trainer.loggers:
            logger.log_hyperparams(flat)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_config(trainer, pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":  # in fit, on_fit_start has logged it
            self.log_config(trainer, pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_config(trainer, pl_module)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.log_config(trainer, pl_module)

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if not self.checkpoint_artifact or not best:
            return
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                artifact = wandb.Artifact(f"model-{logger.experiment.id}", type="model")
                artifact.add_file(best, name="best.ckpt")
                logger.experiment.log_artifact(artifact, aliases=["best"])


def close_dashboards(loggers: Iterable[Any]) -> None:
    """Finish the wandb run and stop wandb's service, so that its files are complete on disk now (else only at
    the process's exit): a caller in the same process (a notebook, a test) can read or sync them."""
    started = [lg for lg in loggers if isinstance(lg, WandbLogger) and lg._experiment is not None]
    if not started:
        return
    import wandb

    for logger in started:
        logger.experiment.finish()
    wandb.teardown()


# -- images and tables, for any logger --------------------------------------------------------------------
def shows_images(loggers: Iterable[Any]) -> bool:
    """Whether any logger can show images (so a task can skip drawing them for the CSV logger alone)."""
    return any(isinstance(logger, (WandbLogger, TensorBoardLogger)) for logger in loggers)


def log_image(loggers: Iterable[Any], key: str, image: np.ndarray, step: int, caption: str | None = None) -> None:
    """Log an (H, W, 3) uint8 image to every wandb and TensorBoard logger; others are skipped."""
    for logger in loggers:
        try:
            if isinstance(logger, WandbLogger):
                logger.log_image(key, [image], step=step, **({"caption": [caption]} if caption else {}))
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(key, image, global_step=step, dataformats="HWC")
        except Exception as err:  # a dashboard must never stop training
            rank_zero_warn(f"could not log image {key} to {type(logger).__name__}: {err}")


def log_table(loggers: Iterable[Any], key: str, rows: Sequence[Mapping[str, Any]], step: int = 0) -> None:
    """Log rows (one dict per row, same keys) as a wandb Table and as a TensorBoard text table."""
    if not rows:
        return
    columns = [str(c) for c in rows[0]]
    data = [[_plain(v) for v in row.values()] for row in rows]
    for logger in loggers:
        try:
            if isinstance(logger, WandbLogger):
                logger.log_table(key, columns=columns, data=data, step=step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text(key, markdown_table(columns, data), global_step=step)
        except Exception as err:  # a dashboard must never stop training
            rank_zero_warn(f"could not log table {key} to {type(logger).__name__}: {err}")


def markdown_table(columns: Sequence[str], data: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in data]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (numpy and torch scalars become Python numbers, enums their value)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, str):
        return str(value)
    return value
