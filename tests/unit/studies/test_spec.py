from pathlib import Path

import pytest
import yaml

from medlight.errors import ConfigError
from medlight.studies.spec import load_study
from tests.integration.helpers import REPO


def write_study(folder: Path, **content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
    return folder


def test_expansion_of_variants_grid_and_budgets(tmp_path: Path) -> None:
    (tmp_path / "extra.yaml").write_text("trainer: {max_epochs: 1}\n")
    folder = write_study(
        tmp_path,
        name="s",
        configs=["configs/trainer/cpu.yaml"],
        variants={
            "a": ["configs/model/unet_3d.yaml"],
            "b": {"configs": ["extra.yaml"], "args": {"model.init_args.save_predictions": False}},
        },
        grid={
            "fold": {"keys": ["data.init_args.fold"], "values": [0, 1]},
            "seed": {"key": "seed_everything", "values": [3]},
        },
        budgets={"cpu": {"trainer.max_steps": 5}, "big": {"trainer.max_steps": 500}},
        baseline="a",
    )
    study = load_study(folder)
    runs = study.runs()
    assert study.default_budget == "cpu" and [r.name for r in runs] == [
        "a/fold0_seed3",
        "a/fold1_seed3",
        "b/fold0_seed3",
        "b/fold1_seed3",
    ]
    b = runs[3]
    assert b.configs == [REPO / "configs/trainer/cpu.yaml", (tmp_path / "extra.yaml").resolve()]
    assert b.args == {
        "trainer.max_steps": 5,
        "model.init_args.save_predictions": False,
        "data.init_args.fold": 1,
        "seed_everything": 3,
    }
    cmd = b.command(Path("out/b"), group="s/cpu", study="s", budget="cpu")
    assert cmd[:3] == ["fit", "--config", str(REPO / "configs/trainer/cpu.yaml")]
    flag = cmd.index("--model.init_args.save_predictions")
    assert cmd[flag + 1] == "false"
    assert cmd[-14:] == [
        "--trainer.default_root_dir",
        "out/b",
        "--tracking.group",
        "s/cpu",
        "--tracking.name",
        "b-fold1_seed3",
        "--tracking.variant",
        "b",
        "--tracking.point",
        "{fold: 1, seed: 3}",
        "--tracking.study",
        "s",
        "--tracking.budget",
        "cpu",
    ]
    assert study.runs("big")[0].args["trainer.max_steps"] == 500


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"variants": {}}, "at least one variant"),
        ({"variants": {"a": ["nope.yaml"]}}, "nope.yaml"),
        ({"variants": {"a": []}, "baseline": "z"}, "baseline 'z'"),
        ({"variants": {"a": []}, "grid": {"fold": [0, 1]}}, "needs `keys`"),
        ({"variants": {"a": []}, "colour": 1}, "unknown keys"),
        ({"variants": {"a": []}, "grid": {"seed": {"key": "s", "values": [0]}}, "conditions": ["fold"]}, "not grid"),
    ],
)
def test_bad_study_files(tmp_path: Path, content: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_study(write_study(tmp_path, **content))
    with pytest.raises(ConfigError, match="no study file"):
        load_study(tmp_path / "elsewhere")


def test_a_variant_can_set_its_own_arguments_under_one_budget(tmp_path: Path) -> None:
    variants = {
        "short": [],
        "long": {"args": {"trainer.max_steps": 7}, "budgets": {"cpu": {"trainer.max_steps": 20}}},
    }
    budgets = {"cpu": {"trainer.max_steps": 10}, "smoke": {"trainer.max_steps": 2}}
    study = load_study(write_study(tmp_path, variants=variants, budgets=budgets))
    steps = {budget: {r.variant: r.args["trainer.max_steps"] for r in study.runs(budget)} for budget in budgets}
    assert steps == {"cpu": {"short": 10, "long": 20}, "smoke": {"short": 2, "long": 7}}
    with pytest.raises(ConfigError, match=r"budgets \['gpu'\] the study lacks"):
        load_study(write_study(tmp_path, variants={"a": {"budgets": {"gpu": {}}}}, budgets=budgets))


def test_unknown_budget(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path, variants={"a": []}, budgets={"cpu": {}}))
    with pytest.raises(ConfigError, match="no budget 'gpu'"):
        study.runs("gpu")


def test_after_orders_variants_and_makes_waves(tmp_path: Path) -> None:
    folder = write_study(
        tmp_path,
        name="s",
        variants={"adapted": {"after": "source"}, "source": [], "other": [], "last": {"after": ["adapted", "other"]}},
        grid={"fold": {"key": "data.init_args.fold", "values": [0, 1]}},
    )
    study = load_study(folder)
    assert study.variants == ["source", "adapted", "other", "last"]  # file order, except after what it waits for
    names = [r.name for r in study.runs()]
    assert [[names[i] for i in wave] for wave in study.waves()] == [
        ["source/fold0", "source/fold1", "other/fold0", "other/fold1"],
        ["adapted/fold0", "adapted/fold1"],
        ["last/fold0", "last/fold1"],
    ]


@pytest.mark.parametrize(
    ("variants", "message"),
    [({"a": {"after": "b"}}, "names no other variant"), ({"a": {"after": "b"}, "b": {"after": "a"}}, "cycle")],
)
def test_bad_after_is_refused(tmp_path: Path, variants: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_study(write_study(tmp_path, name="s", variants=variants))
