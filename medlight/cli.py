"""The ``medlight`` command.

``medlight fit|validate|test|predict --config ...`` is Lightning's CLI (configs stack with repeated
``--config``; ``--print_config`` shows the resolved run). medlight adds, around the trainer:

* a run folder (``trainer.default_root_dir``) holding checkpoints, CSV/wandb logs, the manifest, per-case
  metrics and predictions; ``fit`` on a folder with ``checkpoints/last.ckpt`` resumes from it;
* atomic checkpoint writing, a best-by-``val/dice`` and a last checkpoint unless the config has its own;
* after ``fit``, a test of the best checkpoint on the held-out cases (``--test_after_fit false`` skips it).

``medlight check-data PATH`` scans a dataset and lists every problem in one pass.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from medlight.errors import MedlightError
from medlight.runs.checkpointing import AtomicCheckpointIO
from medlight.runs.dashboard import Dashboard, close_dashboards, dashboard_config, identify
from medlight.runs.layout import RunLayout
from medlight.runs.manifest import RunManifest
from medlight.runs.tracking import Tracking, build_loggers

DEFAULT_RUN_DIR = "runs/default"
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


class MedlightCLI(LightningCLI):
    """LightningCLI with medlight's run-folder conventions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_class_arguments(Tracking, "tracking")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after fit, test the best checkpoint on the held-out cases",
        )
        parser.add_argument(
            "--resume",
            type=bool,
            default=True,
            help="fit resumes from <run folder>/checkpoints/last.ckpt when it exists",
        )
        parser.set_defaults({"trainer.default_root_dir": DEFAULT_RUN_DIR})

    # -- trainer: loggers, checkpointing, manifest ----------------------------------------------------------
    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        run_dir = Path(config.get("default_root_dir") or DEFAULT_RUN_DIR)
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        resolved = self._resolved_config()
        callbacks += self._dashboard(config, run_dir, Tracking(**vars(cfg.tracking)), resolved)
        all_callbacks = list(config.get("callbacks") or []) + list(callbacks)
        if not any(isinstance(c, ModelCheckpoint) for c in all_callbacks):
            defaults = default_checkpoints()
            callbacks += defaults
            all_callbacks += defaults
        for cb in all_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = str(RunLayout(run_dir).checkpoints)
        callbacks.append(RunManifest(resolved))
        plugins = config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if not any(hasattr(p, "save_checkpoint") for p in plugins):
            plugins.append(AtomicCheckpointIO())
        config["plugins"] = plugins
        return super()._instantiate_trainer(config, callbacks)

    def _dashboard(self, config: dict[str, Any], run_dir: Path, tracking: Tracking, resolved: Any) -> list:
        """medlight's loggers (unless the config names its own) and the callbacks that fill the dashboards."""
        flat = dashboard_config(resolved, tracking)
        if config.get("logger") in (None, True):
            config["logger"] = build_loggers(run_dir, identify(tracking, flat))
        if config.get("logger") is False:
            return []
        given = list(config.get("callbacks") or [])
        artifact = tracking.checkpoint_artifact
        out: list = [Dashboard(flat, checkpoint_artifact=tracking.wandb == "online" if artifact is None else artifact)]
        if not any(isinstance(c, LearningRateMonitor) for c in given):
            out.append(LearningRateMonitor(logging_interval="step"))
        return out

    def _resolved_config(self) -> dict[str, Any] | None:
        try:
            parser = self._parser(self.subcommand)
            return yaml.safe_load(parser.dump(self.config[self.subcommand], skip_none=False, skip_validation=True))
        except Exception:  # the manifest must never stop a run; the config.yaml next to it has the same
            return None

    # -- fit: resume, then test ---------------------------------------------------------------------------
    def before_fit(self) -> None:
        cfg = self.config_init["fit"]
        last = RunLayout(Path(self.trainer.default_root_dir)).last_checkpoint
        if cfg.get("ckpt_path") is None and cfg.get("resume") and last.is_file():
            rank_zero_info(f"Resuming from {last}")
            cfg["ckpt_path"] = str(last)

    def after_fit(self) -> None:
        if not self.config_init["fit"].get("test_after_fit") or self.trainer.interrupted:
            return
        best = getattr(self.trainer.checkpoint_callback, "best_model_path", "")
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, weights_only=False)


def default_checkpoints() -> list[ModelCheckpoint]:
    """Best checkpoint by validation Dice, and the last one (saved every epoch, for resuming)."""
    best = ModelCheckpoint(
        filename="best",
        monitor="val/dice",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(save_last=True, save_top_k=0, enable_version_counter=False)
    return [best, last]


# -- check-data -----------------------------------------------------------------------------------------
def check_data_main(argv: list[str]) -> int:
    """``medlight check-data PATH``: list every problem of a dataset; exit 1 if any is an error."""
    from medlight.data.datalist import discover
    from medlight.data.integrity import check_dataset
    from medlight.data.problems import format_report

    parser = argparse.ArgumentParser(prog="medlight check-data", description=check_data_main.__doc__)
    parser.add_argument("path", help="dataset folder (dataset.json, or image/label folders)")
    parser.add_argument(
        "--labels",
        type=json.loads,
        default=None,
        help='label values and names for folder layouts, e.g. \'{"0": "background", "1": "organ"}\'',
    )
    parser.add_argument("--json", action="store_true", help="print the problems as JSON lines")
    args = parser.parse_args(argv)
    labels = {int(k): v for k, v in args.labels.items()} if args.labels else None
    desc = discover(args.path, labels)
    problems = check_dataset(desc, progress=sys.stderr.isatty())
    if args.json:
        for p in problems:
            print(
                json.dumps(
                    {
                        "path": str(p.path),
                        "check": p.check,
                        "message": p.message,
                        "case_id": p.case_id,
                        "severity": p.severity,
                    }
                )
            )
    else:
        print(format_report(problems, desc.root, len(desc.cases)))
        if not desc.labels:
            print("note: no labels declared, so label values were not checked (pass --labels)")
    return 1 if any(p.severity == "error" for p in problems) else 0


# -- study ----------------------------------------------------------------------------------------------
def study_main(argv: list[str]) -> int:
    """``medlight study run|report|list STUDY_FOLDER``: expand a study file into runs, run them, report."""
    from medlight.studies.render import make_report
    from medlight.studies.runner import DEFAULT_RUNS_ROOT, command_line, run_dir, run_study, write_slurm_array
    from medlight.studies.spec import load_study

    parser = argparse.ArgumentParser(prog="medlight study", description=study_main.__doc__)
    parser.add_argument("action", choices=["run", "report", "list"])
    parser.add_argument("study", help="study folder (holding study.yaml)")
    parser.add_argument("--budget", help="budget named in the study file (default: its default_budget)")
    parser.add_argument("--runs-root", type=Path, default=DEFAULT_RUNS_ROOT, help="where run folders go")
    parser.add_argument("--only", help="run only runs whose name contains this text")
    parser.add_argument("--index", type=int, help="run only the run with this index (SLURM array task)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument(
        "--slurm",
        nargs="*",
        metavar="KEY=VALUE",
        help="write a SLURM job-array script instead of running; each KEY=VALUE becomes an "
        "`#SBATCH --KEY=VALUE` line, e.g. --slurm gpus=1 time=04:00:00 partition=gpu",
    )
    parser.add_argument(
        "--wandb",
        choices=["disabled", "offline", "online"],
        default="disabled",
        help="report: also log the tables and figures to wandb, grouped by study",
    )
    parser.add_argument("--out", type=Path, help="report: output folder (default: <study>/reports/<budget>)")
    args = parser.parse_args(argv)
    study = load_study(args.study)
    budget = args.budget or study.default_budget
    if args.action == "list":
        for i, run in enumerate(study.runs(budget)):
            folder = run_dir(study, budget, run, args.runs_root)
            command = " ".join(command_line(study, budget, run, args.runs_root)[3:])
            print(f"{i:3d}  {run.name:40s} {folder}\n     {command}")
        return 0
    if args.action == "run":
        if args.slurm is not None:
            script = write_slurm_array(study, budget, args.runs_root, [f"--{o.lstrip('-')}" for o in args.slurm])
            print(f"wrote {script}; submit it with: sbatch {script}")
            return 0
        return 1 if run_study(study, budget, args.runs_root, args.only, args.index, args.dry_run) else 0
    print(f"wrote {make_report(study, budget, args.runs_root, args.out, args.wandb)}")
    return 0


USAGE = """usage: medlight {fit,validate,test,predict,check-data,study} ...

  fit|validate|test|predict   Lightning CLI (see `medlight fit --help`); stack configs with --config
  check-data PATH             list every problem of a dataset in one pass
  study run|report|list DIR   run a study (resumable; or as a SLURM job array) and report its results
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if argv and argv[0] == "check-data":
            return check_data_main(argv[1:])
        if argv and argv[0] == "study":
            return study_main(argv[1:])
        if not argv or argv[0] in ("-h", "--help") or argv[0] not in LIGHTNING_SUBCOMMANDS:
            print(USAGE, end="")
            return 0 if argv and argv[0] in ("-h", "--help") else 2
        cli = MedlightCLI(args=argv) if argv != sys.argv[1:] else MedlightCLI()
        close_dashboards(cli.trainer.loggers)
        return 0
    except MedlightError as err:
        print(f"medlight: error: {err}", file=sys.stderr)
        return err.exit_code
