"""``medlight ensemble``: a fold ensemble tested on the held-out set, written as a run-like folder.

The members are run folders of one data set and split (e.g. the folds of a study variant). Each member's
network is rebuilt from its ``config.yaml`` and loaded from ``checkpoints/best.ckpt`` (``last.ckpt`` when it
has none); the mean of their softmax probabilities is tested by the ordinary segmentation test, so the folder
holds what a run's test writes (per-case CSV, counts, summary, predictions) plus ``external.json`` naming the
members. A study lists it as an external variant (:mod:`medlight.studies.spec`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from medlight.errors import ConfigError, DatasetError
from medlight.runs.layout import RunLayout, write_json
from medlight.tasks.ensemble import EnsembleTask
from medlight.tasks.segmentation import SegmentationTask

MEMBER_SPECIFIC = ("fold", "seed")  # data settings the members may differ in


def load_run(folder: Path) -> tuple[LightningModule, LightningDataModule, dict[str, Any], Path]:
    """The task (with its trained weights), data module, config and checkpoint of a run folder."""
    layout = RunLayout(folder)
    if not layout.config.is_file():
        raise ConfigError(f"{folder}: not a run folder (no config.yaml)")
    config = yaml.safe_load(layout.config.read_text()) or {}
    checkpoint = layout.best_checkpoint if layout.best_checkpoint.is_file() else layout.last_checkpoint
    if not checkpoint.is_file():
        raise ConfigError(f"{folder}: no checkpoints/best.ckpt or last.ckpt; has this run been trained?")
    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningModule, "model", required=True)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    init = parser.instantiate_classes(parser.parse_object({"model": config["model"], "data": config["data"]}))
    task, datamodule = init.model, init.data
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    task.load_state_dict(state)
    return task, datamodule, config, checkpoint


def ensemble_runs(runs: Sequence[str | Path], out: str | Path, accelerator: str = "auto") -> RunLayout:
    """Test the mean of the runs' softmax probabilities on their shared held-out test set; write ``out``.

    Raises:
        ConfigError: a run is not a trained segmentation run, or the runs differ in data set, split or data
            settings other than fold and seed.
        DatasetError: the split has no held-out test set (every case would be in some member's training data).
    """
    loaded = [load_run(Path(r)) for r in runs]
    first_task, datamodule, first_config, _ = loaded[0]
    shared = _data_settings(first_config)
    for (task, _, config, _), run in zip(loaded, runs):
        if not isinstance(task, SegmentationTask):
            raise ConfigError(f"{run}: a {type(task).__name__} run; an ensemble is of segmentation runs")
        if _data_settings(config) != shared:
            raise ConfigError(f"{run}: data settings differ from {runs[0]}'s (only {MEMBER_SPECIFIC} may differ)")
    datamodule.prepare_data()
    splits = getattr(datamodule, "splits", None)
    if splits is None or not splits.test:
        raise DatasetError(
            f"{runs[0]}: the split has no held-out test set; an ensemble of folds can only be tested on cases none "
            "of its members trained on (use test_fraction > 0 or imagesTs/labelsTs)"
        )
    assert isinstance(first_task, SegmentationTask)
    ensemble = EnsembleTask(
        [task.net for task, *_ in loaded if isinstance(task, SegmentationTask)],
        inference=first_task.inference,
        postprocessing=first_task.postprocessing,
        save_predictions=first_task.save_predictions,
        nsd_tolerance=first_task.nsd_tolerance,
    )
    trainer = Trainer(
        default_root_dir=str(out),
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(ensemble, datamodule=datamodule)
    layout = RunLayout(Path(out))
    write_json(
        layout.external,
        {
            "kind": "fold ensemble (mean softmax)",
            "runs": [str(Path(r).resolve()) for r in runs],
            "checkpoints": [str(ckpt.resolve()) for *_, ckpt in loaded],
            "members": [
                {k: (c["data"].get("init_args") or {}).get(k) for k in MEMBER_SPECIFIC} for _, _, c, _ in loaded
            ],
            "split_file": str(splits.path),
            "split_sha256": splits.sha256,
            "test_cases": len(splits.test),
        },
    )
    return layout


def _data_settings(config: dict[str, Any]) -> dict[str, Any]:
    data = config.get("data") or {}
    args = {k: v for k, v in (data.get("init_args") or {}).items() if k not in MEMBER_SPECIFIC}
    return {"class_path": data.get("class_path"), **args}
