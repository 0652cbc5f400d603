"""The ``medlight`` command.

``medlight fit|validate|test|predict --config ...`` is Lightning's CLI (configs stack with repeated
``--config``; ``--print_config`` shows the resolved run). medlight adds, around the trainer:

* a run folder (``trainer.default_root_dir``; default ``runs/<data set>/<network>``) holding checkpoints,
  CSV/wandb logs, the manifest, per-case metrics and predictions; ``fit`` on a folder resumes from its newest
  checkpoint, and refuses a folder that holds a run of another task, network or data set;
* atomic checkpoint writing: ``best.ckpt`` by the task's own monitor, ``last.ckpt`` every epoch and every
  ``--checkpoint_every_n_steps`` steps;
* after ``fit``, a test of the best checkpoint on the held-out cases (``--test_after_fit false`` skips it).

``medlight check-data PATH`` scans a dataset and lists every problem in one pass.
``medlight evaluate PRED_DIR --reference LABEL_DIR`` scores a folder of predictions like a run's test;
``medlight ensemble --runs RUN... --out DIR`` tests the mean of fold models' probabilities on the held-out set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from medlight.errors import ConfigError, MedlightError
from medlight.runs.checkpointing import AtomicCheckpointIO, run_checkpoints
from medlight.runs.dashboard import Dashboard, close_dashboards, dashboard_config, identify
from medlight.runs.layout import RunLayout, run_identity
from medlight.runs.manifest import RunManifest
from medlight.runs.progress import ProgressLog
from medlight.runs.tracking import Tracking, build_loggers, drop_replayed_rows

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


class MedlightCLI(LightningCLI):
    """LightningCLI with medlight's run-folder conventions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # fit re-saves its own run's config
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
            help="fit resumes from the run folder's newest checkpoint (checkpoints/last.ckpt or hpc_ckpt_*.ckpt)",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=100,
            help="also write checkpoints/last.ckpt every N optimizer steps (0: only at the end of each epoch)",
        )

    # -- the run folder: derived when not given; never another run's ----------------------------------------
    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand]
        if not cfg.trainer.get("default_root_dir"):
            cfg.trainer.default_root_dir = default_run_dir(self._resolved_config() or {})
        layout = RunLayout(Path(cfg.trainer.default_root_dir))
        if self.subcommand == "fit" and layout.config.is_file():
            check_same_run(layout, self._resolved_config() or {})

    # -- trainer: loggers, checkpointing, manifest ----------------------------------------------------------
    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        run_dir = Path(config["default_root_dir"])
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        resolved = self._resolved_config()
        callbacks += self._dashboard(config, run_dir, Tracking(**vars(cfg.tracking)), resolved)
        if any(isinstance(c, ModelCheckpoint) for c in [*(config.get("callbacks") or []), *callbacks]):
            raise ConfigError(
                "trainer.callbacks holds a ModelCheckpoint: checkpoints are the task's (best.ckpt by its own metric) "
                "and the CLI's (last.ckpt every epoch and --checkpoint_every_n_steps); remove it from the config"
            )
        monitor = getattr(self.model, "checkpoint_monitor", ("val/dice", "max"))
        for checkpoint in run_checkpoints(monitor, int(cfg.get("checkpoint_every_n_steps") or 0)):
            checkpoint.dirpath = str(RunLayout(run_dir).checkpoints)
            callbacks.append(checkpoint)
        # a test, validate or predict of a finished run keeps the fit's config.yaml and manifest.json
        suffix = "" if self.subcommand == "fit" else f"_{self.subcommand}"
        self.save_config_kwargs = {**self.save_config_kwargs, "config_filename": f"config{suffix}.yaml"}
        callbacks.append(RunManifest(resolved, f"manifest{suffix}.json"))
        if config.get("enable_progress_bar") is False:  # e.g. a SLURM log: one line every log_every_n_steps
            callbacks.append(ProgressLog())
        if config.get("strategy") == "ddp" and getattr(self.model, "ddp_find_unused_parameters", False):
            # e.g. adapters a batch does not route through: plain DDP would wait for their gradients forever
            rank_zero_info("DDP: this task leaves some parameters without gradient in a step; finding them each step")
            config["strategy"] = "ddp_find_unused_parameters_true"
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
        layout = RunLayout(Path(self.trainer.default_root_dir))
        if self.trainer.is_global_zero:
            layout.remove_stale_temporaries()
        newest = layout.resume_checkpoint()
        if cfg.get("ckpt_path") is None and cfg.get("resume") and newest is not None:
            rank_zero_info(f"Resuming from {newest}")
            cfg["ckpt_path"] = str(newest)
            if self.trainer.is_global_zero:
                step = int(torch.load(newest, map_location="cpu", weights_only=True).get("global_step", 0))
                drop_replayed_rows(layout.metrics_log, step)

    def after_fit(self) -> None:
        if not self.config_init["fit"].get("test_after_fit") or self.trainer.interrupted:
            return
        best = getattr(self.trainer.checkpoint_callback, "best_model_path", "")
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, weights_only=True)


def default_run_dir(config: dict[str, Any]) -> str:
    """``runs/<data set>/<network>-<hash of the run identity>`` (e.g. ``runs/hippocampus/ResUNet-3f2a1c``) for a
    run whose config names no folder: the same configuration finds its folder again (and resumes), another
    task, network or data set never shares it."""
    identity = run_identity(config)
    sources = [v.get("dataset") if isinstance(v, dict) else v for k, v in identity.items() if k.startswith("data.")]
    dataset = next((v for v in sources if isinstance(v, str) and v), None)
    data_name = Path(dataset).stem if dataset else str(identity["data"] or "data").rsplit(".", 1)[-1]
    net = identity["model.net"]
    net_name = str((net.get("class_path") if isinstance(net, dict) else identity["model"]) or "model")
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return str(Path("runs") / data_name / f"{net_name.rsplit('.', 1)[-1]}-{digest}")  # one folder per identity


def check_same_run(layout: RunLayout, config: dict[str, Any]) -> None:
    """Refuse to resume (or overwrite) a run folder whose saved config is of another task, network or data."""
    try:
        saved = run_identity(yaml.safe_load(layout.config.read_text()) or {})
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{layout.config}: unreadable ({err}); choose another --trainer.default_root_dir") from err
    current = run_identity(config)
    differ = [k for k in current if current[k] != saved.get(k)]
    if differ:
        raise ConfigError(
            f"{layout.root} holds another run ({', '.join(differ)} differ from this config's); resuming it would "
            "mix two runs. Choose another --trainer.default_root_dir, or delete the folder to start over"
        )


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
        help='label values and names for folder layouts, e.g. \'{"0": "background", "1": "organ"}\' '
        'or nnU-Net v2 style \'{"background": 0, "organ": 1}\'',
    )
    parser.add_argument("--json", action="store_true", help="print the problems as JSON lines")
    args = parser.parse_args(argv)
    desc = discover(args.path, args.labels)  # {value: name} or nnU-Net v2 {name: value}
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


# -- evaluate, ensemble ------------------------------------------------------------------------------------
def evaluate_main(argv: list[str]) -> int:
    """``medlight evaluate PRED_DIR --reference LABEL_DIR``: score predictions into a run-like folder."""
    from medlight.studies.evaluate import evaluate_folder

    parser = argparse.ArgumentParser(prog="medlight evaluate", description=evaluate_main.__doc__)
    parser.add_argument("predictions", type=Path, help="folder of predicted label maps (or a run folder)")
    parser.add_argument("--reference", type=Path, required=True, help="folder of reference label maps")
    parser.add_argument("--labels", type=json.loads, help='label values and names, e.g. \'{"0": "bg", "1": "a"}\'')
    parser.add_argument("--nsd-tolerance", type=float, nargs="+", default=[1.0], help="NSD tolerance (mm), per class")
    parser.add_argument("--out", type=Path, help="output folder (default: PRED_DIR/evaluation)")
    args = parser.parse_args(argv)
    labels = {int(k): v for k, v in args.labels.items()} if args.labels else None
    tolerance = args.nsd_tolerance[0] if len(args.nsd_tolerance) == 1 else args.nsd_tolerance
    layout = evaluate_folder(
        args.predictions, args.reference, args.out or args.predictions / "evaluation", labels, tolerance
    )
    print(f"wrote {layout.per_case('test')} and {layout.summary('test')}")
    return 0


def ensemble_main(argv: list[str]) -> int:
    """``medlight ensemble --runs RUN... --out DIR``: test the mean of the runs' softmax on their held-out set."""
    from medlight.studies.ensemble import ensemble_runs

    parser = argparse.ArgumentParser(prog="medlight ensemble", description=ensemble_main.__doc__)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders (e.g. one per fold)")
    parser.add_argument("--out", type=Path, required=True, help="output run-like folder")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (cpu, gpu, auto)")
    args = parser.parse_args(argv)
    layout = ensemble_runs(args.runs, args.out, args.accelerator)
    print(f"wrote {layout.per_case('test')} and {layout.summary('test')}")
    return 0


# -- plan -----------------------------------------------------------------------------------------------
def plan_main(argv: list[str]) -> int:
    """``medlight plan DATASET``: configure training from the data and a time budget (see medlight.planning)."""
    from medlight.planning import plan

    parser = argparse.ArgumentParser(prog="medlight plan", description=plan_main.__doc__)
    parser.add_argument("dataset", help="dataset folder (any layout medlight reads)")
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="wall time of fit, validation and test")
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--out", type=Path, help="plan folder (default: plans/<dataset name>)")
    parser.add_argument("--labels", type=json.loads, help="label values and names for folder layouts (JSON)")
    parser.add_argument(
        "--slices",
        type=int,
        metavar="AXIS",
        help="classify the 2D slices across this volume axis (positive: holds foreground) instead of segmenting",
    )
    parser.add_argument(
        "--positive-labels", type=int, nargs="+", help="with --slices: label values that make a slice positive"
    )
    args = parser.parse_args(argv)
    labels = {int(k): v for k, v in args.labels.items()} if args.labels else None
    folders = plan(
        args.dataset, args.budget_minutes, args.accelerator, args.out, labels, args.slices, args.positive_labels
    )
    for folder in folders:
        print(f"wrote {folder}/plan.md; train with: medlight fit --plan {folder}")
    return 0


def expand_plan(argv: list[str]) -> list[str]:
    """``--plan DIR`` -> ``--config DIR/data.yaml --config DIR/model.yaml --config DIR/trainer.yaml``."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--plan" or arg.startswith("--plan="):
            folder = Path(arg.split("=", 1)[1] if "=" in arg else next(args, ""))
            out += [x for name in ("data", "model", "trainer") for x in ("--config", str(folder / f"{name}.yaml"))]
        else:
            out.append(arg)
    return out


# -- study ----------------------------------------------------------------------------------------------
def study_main(argv: list[str]) -> int:
    """``medlight study run|report|list|cv STUDY_FOLDER``: expand a study file into runs, run them, report.

    ``cv`` writes the out-of-fold tables (per fold and pooled) beside the report."""
    from medlight.studies.render import make_report
    from medlight.studies.runner import DEFAULT_RUNS_ROOT, command_line, run_dir, run_study, write_slurm_array
    from medlight.studies.spec import load_study

    parser = argparse.ArgumentParser(prog="medlight study", description=study_main.__doc__)
    parser.add_argument("action", choices=["run", "report", "list", "cv"])
    parser.add_argument("study", help="study folder (holding study.yaml)")
    parser.add_argument("--budget", help="budget named in the study file (default: its default_budget)")
    parser.add_argument("--runs-root", type=Path, default=DEFAULT_RUNS_ROOT, help="where run folders go")
    parser.add_argument("--only", help="run only runs whose name contains this text")
    parser.add_argument("--index", type=int, help="run only the run with this index (SLURM array task)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run: also pass --KEY VALUE to every fit, e.g. --set data.init_args.num_workers=7",
    )
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
            how = f"bash {script}" if script.suffix == ".sh" else f"sbatch {script}"
            print(f"wrote {script}; submit with: {how}")
            return 0
        failed = run_study(study, budget, args.runs_root, args.only, args.index, args.dry_run, args.set)
        return 1 if failed else 0
    if args.action == "cv":
        from medlight.studies.cv import write_out_of_fold

        print(f"wrote {write_out_of_fold(study, budget, args.runs_root, args.out)}")
        return 0
    print(f"wrote {make_report(study, budget, args.runs_root, args.out, args.wandb)}")
    return 0


USAGE = """usage: medlight {fit,validate,test,predict,check-data,plan,evaluate,ensemble,study} ...

  fit|validate|test|predict   Lightning CLI (see `medlight fit --help`); stack configs with --config
  check-data PATH             list every problem of a dataset in one pass
  plan DATASET                configure training from the data and a time budget (fit --plan DIR runs it)
  evaluate PRED_DIR --reference LABEL_DIR   score a folder of predictions like a run's test
  ensemble --runs RUN... --out DIR          test a fold ensemble (mean softmax) on the held-out set
  study run|report|list DIR   run a study (resumable; or as a SLURM job array) and report its results
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if argv and argv[0] == "check-data":
            return check_data_main(argv[1:])
        if argv and argv[0] in ("evaluate", "ensemble"):
            return {"evaluate": evaluate_main, "ensemble": ensemble_main}[argv[0]](argv[1:])
        if argv and argv[0] == "study":
            return study_main(argv[1:])
        if argv and argv[0] == "plan":
            return plan_main(argv[1:])
        if any(a == "--plan" or a.startswith("--plan=") for a in argv):
            argv = expand_plan(argv)
        if not argv or argv[0] in ("-h", "--help") or argv[0] not in LIGHTNING_SUBCOMMANDS:
            print(USAGE, end="")
            return 0 if argv and argv[0] in ("-h", "--help") else 2
        with warnings.catch_warnings():
            # args differ from sys.argv when --plan was expanded (or main is called from Python): intended here,
            # so Lightning's warning about passing both would only alarm the user
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            cli = MedlightCLI(args=argv)
        close_dashboards(cli.trainer.loggers)
        return 0
    except MedlightError as err:
        print(f"medlight: error: {err}", file=sys.stderr)
        return err.exit_code
