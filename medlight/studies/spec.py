"""A study file describes a comparison once; it expands into one run per (variant x grid point).

```yaml
name: unet_variants
description: UNet vs Res-UNet vs Attention Res-UNet on hippocampus
configs: [configs/trainer/cpu.yaml]          # stacked first, for every run
variants:                                    # what is compared; each adds configs and/or arguments
  unet_3d: [configs/data/hippocampus_3d.yaml, configs/model/unet_3d.yaml]
  attention_res_unet_3d:
    configs: [configs/data/hippocampus_3d.yaml, configs/model/attention_res_unet_3d.yaml]
    args: {model.init_args.inference.overlap: 0.5}
    after: unet_3d                           # optional: starts only once that variant's runs have finished
    budgets: {cpu: {trainer.max_epochs: 24}}  # optional: this variant's arguments under a budget (after the
                                             # budget's own and the variant's args)
grid:                                        # every combination is run for every variant
  fold: {keys: [data.init_args.fold], values: [0, 1, 2]}
  seed: {keys: [seed_everything, data.init_args.seed], values: [0, 1]}
conditions: []                               # grid factors that are conditions, not repeats (e.g. acceleration):
                                             # the report summarises and tests each of their values apart
budgets:                                     # named sets of arguments; the report says which was used
  cpu: {trainer.max_epochs: 12}
  gpu: {trainer.max_epochs: 300, trainer.accelerator: gpu}
default_budget: cpu
baseline: unet_3d                            # paired tests compare every variant with this one
primary_metric: dice                         # box plots and the headline table
```
Config paths are relative to the repository root (the folder holding ``configs/``) or to the study folder.

A variant can come from outside training (an nnU-Net or MONAI baseline, a fold ensemble):
``nnunet: {external: path/to/folder}`` names a run-like folder holding ``metrics/test_per_case.csv`` and
``metrics/test_summary.json`` (written by ``medlight evaluate`` or ``medlight ensemble``), and
``nnunet: {external: path/to/predictions, reference: path/to/labelsTs, labels: {0: bg, 1: a}}`` a folder of
predictions that ``study run`` scores. Such a variant is one run (no grid), named ``<variant>/single``; the runner
copies its tables into the study's run folder, so the report reads it like any run. Paths are relative to the
study folder when found there, else to the repository root.

A fold ensemble is a variant too: ``res_unet_3d_ensemble: {ensemble: res_unet_3d}`` tests the mean softmax of
that variant's fold models (``medlight ensemble``) on the held-out set, once per value of the other grid
factors (e.g. per seed: ``res_unet_3d_ensemble/seed0`` of ``res_unet_3d/fold0_seed0``, ``fold1_seed0``, ...). It
runs after its members (an implied ``after``) and needs a grid factor that sets the fold.

``after`` (a variant or a list of them) orders the runs: a variant whose runs need another's results (e.g. its
checkpoint) comes after it in ``study run`` and, under SLURM, in a later job array that waits for the earlier one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medlight.errors import ConfigError

STUDY_FILE = "study.yaml"


@dataclass(frozen=True)
class Run:
    """One run of a study: a variant at one grid point.

    Attributes:
        variant: variant name.
        point: grid factor -> value, e.g. {"fold": 0, "seed": 1}.
        configs: config files to stack, in order.
        args: ``--key value`` overrides (budget, variant, grid), applied after the configs.
    """

    variant: str
    point: dict[str, Any]
    configs: list[Path]
    args: dict[str, Any]
    external: dict[str, Any] | None = None  # {path, reference?, labels?}: scored outside training
    members: tuple[str, ...] = ()  # a fold ensemble: the names of the runs it averages

    @property
    def name(self) -> str:
        grid = "_".join(f"{k}{v}" for k, v in self.point.items()) or "single"
        return f"{self.variant}/{grid}"

    def command(self, run_dir: Path, group: str, study: str | None = None, budget: str | None = None) -> list[str]:
        """The ``medlight fit`` arguments of this run (the dashboards group and tag it by study, variant, point;
        for an external variant: where its tables come from)."""
        if self.external is not None:
            return ["external", str(self.external["path"])]
        if self.members:  # the members' folders sit beside this run's: <runs root>/<study>/<budget>/<run name>
            return ["ensemble", "--runs", *(str(run_dir.parents[1] / m) for m in self.members), "--out", str(run_dir)]
        out = ["fit"]
        for config in self.configs:
            out += ["--config", str(config)]
        for key, value in self.args.items():
            out += [f"--{key}", _cli_value(value)]
        out += ["--trainer.default_root_dir", str(run_dir), "--tracking.group", group]
        out += ["--tracking.name", self.name.replace("/", "-"), "--tracking.variant", self.variant]
        if self.point:
            out += ["--tracking.point", _cli_value(self.point)]
        if study is not None:
            out += ["--tracking.study", study]
        if budget is not None:
            out += ["--tracking.budget", budget]
        return out


@dataclass
class Study:
    """A parsed study file."""

    folder: Path
    name: str
    description: str
    runs_by_budget: dict[str, list[Run]]
    default_budget: str
    baseline: str | None
    primary_metric: str
    variants: list[str]
    grid: dict[str, dict] = field(default_factory=dict)
    budgets: dict[str, dict] = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)
    after: dict[str, list[str]] = field(default_factory=dict)  # variant -> the variants it waits for

    def waves(self, budget: str | None = None) -> list[list[int]]:
        """Indices of the runs in dependency order: a wave's runs wait only for earlier waves' runs."""
        level: dict[str, int] = {}
        for variant in self.variants:  # already ordered so that a variant comes after what it waits for
            level[variant] = 1 + max((level[v] for v in self.after.get(variant, [])), default=-1)
        out: list[list[int]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for i, run in enumerate(self.runs(budget)):
            out[level[run.variant]].append(i)
        return out

    def runs(self, budget: str | None = None) -> list[Run]:
        budget = budget or self.default_budget
        if budget not in self.runs_by_budget:
            raise ConfigError(f"{self.folder / STUDY_FILE}: no budget {budget!r} (has {sorted(self.runs_by_budget)})")
        return self.runs_by_budget[budget]


def load_study(folder: str | Path) -> Study:
    """Read ``<folder>/study.yaml`` and expand it into runs for every budget."""
    folder = Path(folder)
    path = folder / STUDY_FILE if folder.is_dir() else folder
    folder = path.parent
    if not path.is_file():
        raise ConfigError(f"{path}: no study file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    unknown = set(raw) - {
        "name",
        "description",
        "configs",
        "variants",
        "grid",
        "conditions",
        "budgets",
        "default_budget",
        "baseline",
        "primary_metric",
    }
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    if not raw.get("variants"):
        raise ConfigError(f"{path}: needs at least one variant")
    root = _repo_root(folder)
    base = [_resolve(p, folder, root, path) for p in raw.get("configs", [])]
    after = {name: _after(name, spec, raw["variants"], path) for name, spec in raw["variants"].items()}
    variants = {name: _variant(spec, folder, root, path) for name, spec in _ordered(raw["variants"], after, path)}
    if raw.get("conditions") and any(v[2] is not None for v in variants.values()):
        raise ConfigError(f"{path}: external variants are not supported in a study with conditions")
    grid = {name: _factor(name, spec, path) for name, spec in (raw.get("grid") or {}).items()}
    ensembles = {name: v[3] for name, v in variants.items() if v[3] is not None}
    for name, member in ensembles.items():
        if variants[member][2] is not None or variants[member][3] is not None:
            raise ConfigError(f"{path}: variant {name!r} ensembles {member!r}, which is not a trained variant")
        fold_factor(grid, path)  # an ensemble of folds needs folds
    conditions = list(raw.get("conditions") or [])
    if not_factors := sorted(set(conditions) - set(grid)):
        raise ConfigError(f"{path}: conditions {not_factors} are not grid factors ({sorted(grid)})")
    budgets = raw.get("budgets") or {"default": {}}
    default_budget = raw.get("default_budget", next(iter(budgets)))
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in variants:
        raise ConfigError(f"{path}: baseline {baseline!r} is not a variant ({sorted(variants)})")
    for name, variant_spec in variants.items():
        if unknown_budgets := sorted(set(variant_spec[4]) - set(budgets)):
            raise ConfigError(f"{path}: variant {name!r} sets budgets {unknown_budgets} the study lacks")
    runs_by_budget = {}
    for budget, budget_args in budgets.items():
        runs = []
        for variant, (configs, args, external, ensembled, per_budget) in variants.items():
            if external is not None:
                runs.append(Run(variant, {}, [], {}, external))
                continue
            if ensembled is not None:
                runs += _ensemble_runs(variant, ensembled, grid, path)
                continue
            for values in itertools.product(*(f["values"] for f in grid.values())):
                point = dict(zip(grid, values))
                point_args = {k: v for f, v in zip(grid.values(), values) for k in f["keys"]}
                overrides = {**(budget_args or {}), **args, **per_budget.get(budget, {}), **point_args}
                runs.append(Run(variant, point, base + configs, overrides))
        runs_by_budget[budget] = runs
    return Study(
        folder,
        raw.get("name", folder.name),
        raw.get("description", ""),
        runs_by_budget,
        default_budget,
        baseline,
        raw.get("primary_metric", "dice"),
        list(variants),
        grid,
        budgets,
        conditions,
        {k: v for k, v in after.items() if v},
    )


def fold_factor(grid: dict[str, dict], path: Path) -> str:
    """The grid factor that sets ``data.init_args.fold``."""
    for name, factor in grid.items():
        if any(key.split(".")[-1] == "fold" for key in factor["keys"]):
            return name
    raise ConfigError(f"{path}: no grid factor sets the fold (e.g. keys: [data.init_args.fold])")


def _ensemble_runs(variant: str, member: str, grid: dict[str, dict], path: Path) -> list[Run]:
    """One ensemble run per value of the grid factors other than the fold, over the member's fold runs."""
    fold = fold_factor(grid, path)
    others = [f for f in grid if f != fold]
    runs = []
    for values in itertools.product(*(grid[f]["values"] for f in others)):
        point = dict(zip(others, values))
        members = tuple(
            Run(member, {f: (v if f == fold else point[f]) for f in grid}, [], {}).name for v in grid[fold]["values"]
        )
        runs.append(Run(variant, point, [], {}, members=members))
    return runs


def _repo_root(folder: Path) -> Path:
    for candidate in [folder.resolve(), *folder.resolve().parents]:
        if (candidate / "configs").is_dir():
            return candidate
    return Path.cwd()


def _resolve(rel: str, folder: Path, root: Path, path: Path) -> Path:
    for base in (folder, root):
        candidate = (base / rel).resolve()
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{path}: config {rel!r} found neither in {folder} nor in {root}")


def _variant(spec: Any, folder: Path, root: Path, path: Path) -> tuple[list[Path], dict, dict | None, str | None, dict]:
    """(configs, args, external, ensembled variant, per-budget args) of a variant's entry."""
    if isinstance(spec, dict) and "ensemble" in spec:
        if set(spec) - {"ensemble", "after"} or not isinstance(spec["ensemble"], str):
            raise ConfigError(f"{path}: a fold ensemble variant is {{ensemble: <variant>}}")
        return [], {}, None, spec["ensemble"], {}
    if isinstance(spec, dict) and "external" in spec:
        if set(spec) - {"external", "reference", "labels"}:
            raise ConfigError(
                f"{path}: an external variant is {{external: folder, reference: labels, labels: {{...}}}}"
            )
        locate = lambda rel: next(  # noqa: E731
            (b / rel for b in (folder, root) if (b / rel).exists()), root / rel
        )
        external = {"path": locate(spec["external"])}
        if spec.get("reference"):
            external["reference"] = locate(spec["reference"])
        if spec.get("labels"):
            external["labels"] = {int(k): str(v) for k, v in spec["labels"].items()}
        return [], {}, external, None, {}
    if isinstance(spec, list):
        spec = {"configs": spec}
    if not isinstance(spec, dict) or set(spec) - {"configs", "args", "after", "budgets"}:
        raise ConfigError(
            f"{path}: a variant is a list of configs, {{configs: [...], args: {{...}}, after: ..., budgets: "
            "{<budget>: {...}}} or {external: folder} or {ensemble: variant}"
        )
    configs = [_resolve(p, folder, root, path) for p in spec.get("configs", [])]
    per_budget = spec.get("budgets") or {}
    if not isinstance(per_budget, dict) or not all(isinstance(v, dict) for v in per_budget.values()):
        raise ConfigError(f"{path}: a variant's budgets are {{<budget>: {{key: value}}}}")
    return configs, dict(spec.get("args") or {}), None, None, per_budget


def _after(name: str, spec: Any, variants: dict, path: Path) -> list[str]:
    waits = spec.get("after") if isinstance(spec, dict) else None
    waits = [] if waits is None else [waits] if isinstance(waits, str) else list(waits)
    if isinstance(spec, dict) and isinstance(spec.get("ensemble"), str) and spec["ensemble"] not in waits:
        waits.append(spec["ensemble"])  # an ensemble waits for its members
    if unknown := [w for w in waits if w not in variants or w == name]:
        raise ConfigError(f"{path}: variant {name!r}: after {unknown} names no other variant ({sorted(variants)})")
    return waits


def _ordered(variants: dict, after: dict[str, list[str]], path: Path) -> list[tuple[str, Any]]:
    """The variants in file order, except that each comes after the variants it waits for."""
    done: list[str] = []
    while len(done) < len(variants):
        ready = [v for v in variants if v not in done and all(w in done for w in after[v])]
        if not ready:
            cycle = sorted(v for v in variants if v not in done)
            raise ConfigError(f"{path}: the variants {cycle} wait for each other (`after` forms a cycle)")
        done.append(ready[0])
    return [(v, variants[v]) for v in done]


def _factor(name: str, spec: Any, path: Path) -> dict:
    if not isinstance(spec, dict) or "values" not in spec or not ({"keys", "key"} & set(spec)):
        raise ConfigError(f"{path}: grid factor {name!r} needs `keys` (or `key`) and `values`")
    keys = spec.get("keys") or [spec["key"]]
    return {"keys": [keys] if isinstance(keys, str) else list(keys), "values": list(spec["values"])}


def _cli_value(value: Any) -> str:
    if value is None:  # YAML null (e.g. check_val_every_n_epoch: null); str(None) would be the string "None"
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)
