"""``medlight plan`` on tiny synthetic datasets of very different geometry: the configs it writes are accepted by
``medlight fit --plan`` and train for 2 steps; a short planned fit keeps (loosely) within its budget."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from medlight.cli import expand_plan, main
from medlight.planning.fingerprint import fingerprint
from tests.conftest import LABELS, make_msd, make_nnunet_v2, make_png, save_nifti, synthetic_case

QUIET = ["--tracking.wandb", "disabled", "--trainer.enable_progress_bar", "false"]
QUIET += ["--trainer.enable_model_summary", "false"]


def msd(root: Path, n: int, shape: tuple, spacing: tuple, modality: str = "MRI", transform=None) -> Path:
    rng = np.random.default_rng(3)
    training = []
    for i in range(n):
        image, label = synthetic_case(shape, rng)
        if transform is not None:
            image, label = transform(image, label)
        save_nifti(image, root / "imagesTr" / f"c{i:02d}.nii.gz", spacing)
        save_nifti(label, root / "labelsTr" / f"c{i:02d}.nii.gz", spacing)
        training.append({"image": f"./imagesTr/c{i:02d}.nii.gz", "label": f"./labelsTr/c{i:02d}.nii.gz"})
    labels = {str(k): v for k, v in LABELS.items()}
    spec = {"modality": {"0": modality}, "labels": labels, "training": training, "tensorImageSize": "3D"}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def ct_like(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (image - 100) * 10 - 200, label  # Hounsfield-like: -600..+400


def imbalanced(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    small = np.zeros_like(label)
    small[label == 1] = 1
    small[tuple(np.argwhere(label == 2)[:4].T)] = 2  # 4 voxels of class 2
    return image, small


def binary_png(root: Path, n: int = 8) -> Path:
    """2D grey images with 0/255 masks (a folder layout whose labels nothing declares)."""
    rng = np.random.default_rng(5)
    for i in range(n):
        image, label = synthetic_case((40, 48), rng)
        for sub, array in (("images", np.clip(image, 0, 255).astype(np.uint8)), ("masks", (label > 0) * 255)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array.astype(np.uint8)).save(root / sub / f"im{i:02d}.png")
    return root


DATASETS = {
    "isotropic_3d": lambda r: make_msd(r, n=8, shape=(20, 24, 16)),
    "anisotropic_3d": lambda r: msd(r, 8, (28, 28, 10), (0.8, 0.8, 4.0)),
    "ct_like": lambda r: msd(r, 8, (20, 20, 16), (1.0, 1.0, 1.0), "CT", ct_like),
    "imbalanced": lambda r: msd(r, 8, (20, 20, 16), (1.5, 1.5, 1.5), "MRI", imbalanced),
    "nnunet_v2_two_channels": lambda r: make_nnunet_v2(r, n=8, shape=(16, 16, 12)),
    "png_grey": lambda r: make_png(r, n=8),
    "png_rgb": lambda r: make_png(r, n=8, rgb=True),
    "png_0_255": binary_png,
}


@pytest.mark.parametrize("kind", sorted(DATASETS))
def test_planned_configs_train_for_two_steps(kind: str, tmp_path: Path) -> None:
    dataset = DATASETS[kind](tmp_path / kind)
    out = tmp_path / "plan"
    assert main(["plan", str(dataset), "--budget-minutes", "1", "--out", str(out)]) == 0
    folders = [out, *sorted(p.parent for p in out.glob("*/plan.md"))]
    for folder in folders:
        plan = json.loads((folder / "plan.json").read_text())
        assert {c["name"] for c in plan["choices"]} >= {"normalisation", "patch_and_batch", "network", "max_steps"}
        assert "|" in (folder / "plan.md").read_text()
        run = tmp_path / f"run_{folder.name}"
        args = ["fit", "--plan", str(folder), "--trainer.max_steps", "2", "--trainer.default_root_dir", str(run)]
        assert main([*args, *QUIET]) == 0
        summary = json.loads((run / "metrics" / "test_summary.json").read_text())
        assert summary["cases"] >= 1 and "postprocessing" in summary
        assert (run / "postprocessing.yaml").is_file()
    if kind == "anisotropic_3d":
        assert len(folders) == 2  # 3D and 2D slices, to choose on validation
        assert yaml.safe_load((out / "2d_slices" / "data.yaml").read_text())["data"]["init_args"]["slice_axis"] == 2
    if kind == "ct_like":
        prep = yaml.safe_load((out / "data.yaml").read_text())["data"]["init_args"]["preprocessing"]
        assert prep["intensity"] == "ct_dataset" and prep["ct_window"][0] < -300


def test_fingerprint_finds_0_255_masks_and_maps_them(tmp_path: Path) -> None:
    fp = fingerprint(binary_png(tmp_path / "png"))
    assert fp.labels == {0: "background", 255: "class255"} and not fp.labels_declared
    assert fp.spatial_dims == 2 and fp.in_channels == 1 and fp.eight_bit
    assert fp.cases[0].shape == (48, 40)  # (W, H), as MONAI's PIL reader gives it


def test_fit_plan_expands_to_three_configs() -> None:
    assert expand_plan(["fit", "--plan", "p", "--x", "1"]) == [
        "fit",
        *["--config", "p/data.yaml", "--config", "p/model.yaml", "--config", "p/trainer.yaml"],
        *["--x", "1"],
    ]
    assert expand_plan(["fit", "--plan=p"])[1:3] == ["--config", "p/data.yaml"]


def test_a_short_planned_fit_keeps_within_its_budget(tmp_path: Path) -> None:
    dataset = make_msd(tmp_path / "msd", n=10, shape=(24, 24, 16))
    budget_minutes = 1.0
    assert main(["plan", str(dataset), "--budget-minutes", str(budget_minutes), "--out", str(tmp_path / "p")]) == 0
    start = time.perf_counter()
    assert main(["fit", "--plan", str(tmp_path / "p"), "--trainer.default_root_dir", str(tmp_path / "r"), *QUIET]) == 0
    elapsed = time.perf_counter() - start
    planned = yaml.safe_load((tmp_path / "p" / "trainer.yaml").read_text())["trainer"]["max_steps"]
    assert planned > 10
    assert elapsed < 1.5 * budget_minutes * 60  # loosely: shared CPUs make step times noisy


def class_folders(root: Path, n: int = 12) -> Path:
    """Two classes of 8-bit images, 3 images per patient, positives a minority with a bright blob."""
    rng = np.random.default_rng(7)
    for i in range(n):
        name = "lesion" if i % 3 == 0 else "normal"
        pixels = rng.normal(100, 10, (50, 60))
        if name == "lesion":
            pixels[20:30, 25:35] += 80
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name / f"p{i // 3:02d}_{i}.png")
    return root


def test_classification_plan_trains_for_two_steps_with_a_validation_threshold(tmp_path: Path) -> None:
    out = tmp_path / "plan"
    assert (
        main(["plan", str(class_folders(tmp_path / "images", n=24)), "--budget-minutes", "1", "--out", str(out)]) == 0
    )
    model = yaml.safe_load((out / "model.yaml").read_text())["model"]["init_args"]
    assert model["threshold_on_validation"] is True
    data = yaml.safe_load((out / "data.yaml").read_text())["data"]["init_args"]
    assert data["image_size"] == [64, 64] and data["cross_validate"] is False
    assert data["balance_classes"] is True  # a third are lesions: minority oversampled
    run = tmp_path / "run"
    assert (
        main(["fit", "--plan", str(out), "--trainer.max_steps", "2", "--trainer.default_root_dir", str(run), *QUIET])
        == 0
    )
    summary = json.loads((run / "metrics" / "test_summary.json").read_text())
    assert "patient_threshold" in summary and summary["cases"] >= 1


def test_slices_of_volumes_plan_a_classifier_that_fit_accepts(tmp_path: Path) -> None:
    root = msd(tmp_path / "volumes", 8, (20, 24, 16), (1.0, 1.0, 2.0))
    out = tmp_path / "plan"
    args = ["plan", str(root), "--slices", "2", "--budget-minutes", "1", "--out", str(out)]
    assert main(args) == 0
    data = yaml.safe_load((out / "data.yaml").read_text())["data"]["init_args"]
    assert data["volumes"] == {"dataset": str(root.resolve()), "axis": 2, "positive_labels": []}
    assert data["image_size"] == [64, 64]  # in-plane 20 x 24, raised to the smallest input
    assert "slices across axis 2 of 8 volumes" in (out / "plan.md").read_text()
    counts = json.loads((out / "plan.json").read_text())["fingerprint"]["classes"]
    assert set(counts) == {"negative", "positive"} and sum(counts.values()) == 8 * 16
    run = tmp_path / "run"
    fit = ["fit", "--plan", str(out), "--trainer.max_steps", "2", "--trainer.default_root_dir", str(run), *QUIET]
    assert main(fit) == 0
    assert (run / "metrics" / "test_summary.json").is_file()


def test_positive_labels_without_slices_is_a_clear_error(tmp_path: Path, capsys) -> None:
    root = msd(tmp_path / "volumes", 2, (12, 12, 8), (1.0, 1.0, 1.0))
    assert main(["plan", str(root), "--positive-labels", "1", "--out", str(tmp_path / "p")]) != 0
    assert "--slices" in capsys.readouterr().err
