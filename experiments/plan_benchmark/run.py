"""Planned medlight against a plain MONAI script, at the same wall-clock budget, on each data set at hand.

    python experiments/plan_benchmark/run.py --sets hippocampus_3d --budget-minutes 3 --out results.md

For every set: ``medlight plan`` (its own time is reported, not counted in the budget), ``medlight fit --plan``
(fit, validation, test and the post-processing choice within the budget), then ``monai_baseline.py`` on the same
split at the same budget; both test Dice side by side, with budget, machine and versions. Derived data sets
(2D slices, the BraTS view) are built under /tmp; ../shared/data is only read, never copied into the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SHARED = REPO.parent / "shared" / "data"
WORK = Path("/tmp/plan_benchmark_data")


def hippocampus_3d() -> Path:
    return REPO / "data" / "hippocampus"


def hippocampus_2d() -> Path:
    """Every axial slice with foreground of the hippocampus volumes, as 8-bit PNG images and label masks."""
    root = WORK / "hippocampus_2d"
    if not (root / "masks").is_dir():
        spec = json.loads((hippocampus_3d() / "dataset.json").read_text())
        for sub in ("images", "masks"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for entry in spec["training"]:
            image = np.asarray(nib.load(str(hippocampus_3d() / entry["image"])).dataobj, dtype=np.float32)
            label = np.asarray(nib.load(str(hippocampus_3d() / entry["label"])).dataobj, dtype=np.uint8)
            lo, hi = np.percentile(image, [0.5, 99.5])
            pixels = (np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
            case = Path(entry["image"]).name.split(".")[0]
            for k in range(label.shape[2]):
                if label[..., k].any():
                    Image.fromarray(pixels[..., k]).save(root / "images" / f"{case}s{k:02d}.png")
                    Image.fromarray(label[..., k]).save(root / "masks" / f"{case}s{k:02d}.png")
    return root


def brats() -> Path:
    """An MSD layout of the BraTS 2015 subset: FLAIR and T1c as channels _0000/_0001. The files are copied to
    /tmp, outside the repository (medlight refuses symbolic links that leave a dataset folder); the licence
    (non-commercial) allows local benchmarks that read ../shared/data, never a copy in the project."""
    root = WORK / "brats"
    if root.is_dir() and any(p.is_symlink() for p in (root / "imagesTr").iterdir()):
        shutil.rmtree(root)  # an older view made of links
    if not (root / "dataset.json").is_file():
        (root / "imagesTr").mkdir(parents=True, exist_ok=True)
        (root / "labelsTr").mkdir(parents=True, exist_ok=True)
        training = []
        for folder in sorted((SHARED / "brats2015_subset").glob("*/brats_*")):
            for c, name in enumerate(("Flair_subtrMeanDivStd.nii.gz", "T1c_subtrMeanDivStd.nii.gz")):
                shutil.copyfile(folder / name, root / "imagesTr" / f"{folder.name}_{c:04d}.nii.gz")
            shutil.copyfile(folder / "OTMultiClass.nii.gz", root / "labelsTr" / f"{folder.name}.nii.gz")
            training.append({"image": f"./imagesTr/{folder.name}.nii.gz", "label": f"./labelsTr/{folder.name}.nii.gz"})
        labels = {"0": "background", "1": "necrosis", "2": "edema", "3": "non_enhancing", "4": "enhancing"}
        spec = {"modality": {"0": "FLAIR", "1": "T1c"}, "labels": labels, "training": training}
        (root / "dataset.json").write_text(json.dumps(spec, indent=1))
    return root


def hippocampus_slices() -> Path:
    """Slice classification: every sagittal (axis 0) slice of the hippocampus volumes as an 8-bit PNG, in class
    folders ``absent`` / ``present`` (hippocampus in the slice or not); file names start with the case, so the
    split is patient-wise."""
    root = WORK / "hippocampus_slices"
    if not (root / "present").is_dir():
        spec = json.loads((hippocampus_3d() / "dataset.json").read_text())
        for sub in ("absent", "present"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        for entry in spec["training"]:
            image = np.asarray(nib.load(str(hippocampus_3d() / entry["image"])).dataobj, dtype=np.float32)
            label = np.asarray(nib.load(str(hippocampus_3d() / entry["label"])).dataobj, dtype=np.uint8)
            lo, hi = np.percentile(image, [0.5, 99.5])
            pixels = (np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
            case = Path(entry["image"]).name.split(".")[0].replace("_", "")
            for k in range(label.shape[0]):
                name = "present" if label[k].any() else "absent"
                Image.fromarray(pixels[k]).save(root / name / f"{case}_s{k:02d}.png")
    return root


SETS = {
    "hippocampus_3d": hippocampus_3d,
    "hippocampus_2d": hippocampus_2d,
    "brats": brats,
    "hippocampus_slices": hippocampus_slices,
}
CLASSIFICATION = {"hippocampus_slices"}


def run(command: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as f:
        subprocess.run(command, check=True, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    return time.perf_counter() - start


def fit(folder: Path, args: list[str]) -> float:
    """``medlight fit ARGS`` into ``folder/medlight`` (no dashboard, no progress bar); its wall seconds."""
    quiet = ["--tracking.wandb", "disabled", "--trainer.enable_progress_bar", "false"]
    command = [sys.executable, "-m", "medlight", "fit", *args, "--trainer.default_root_dir", str(folder / "medlight")]
    return run([*command, *quiet], folder / "fit.log")


def bench(name: str, budget: float, out: Path) -> dict:
    dataset = SETS[name]()
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    py = [sys.executable]
    plan_s = run(
        [*py, "-m", "medlight", "plan", str(dataset), "--budget-minutes", str(budget), "--out", str(folder / "plan")],
        folder / "plan.log",
    )
    fit_s = fit(folder, ["--plan", str(folder / "plan")])
    summary = json.loads((folder / "medlight" / "metrics" / "test_summary.json").read_text())
    steps = json.loads((folder / "plan" / "plan.json").read_text())
    max_steps = next(c["value"] for c in steps["choices"] if c["name"] == "max_steps")
    classify = name in CLASSIFICATION
    script = "monai_classification_baseline.py" if classify else "monai_baseline.py"
    base_s = run(
        [
            *py,
            str(HERE / script),
            str(folder / "plan"),
            "--budget-minutes",
            str(budget),
            "--out",
            str(folder / "baseline.json"),
        ],
        folder / "baseline.log",
    )
    baseline = json.loads((folder / "baseline.json").read_text())
    if classify:  # slice ROC AUC (threshold-free); the script's images, medlight's slices: the same test images
        summary = {**summary, "dice": summary["slice_auc"], "cases": summary["slices"]}
        threshold = summary.get("slice_threshold")
        summary["postprocessing"] = f"slice threshold {threshold:.3f} (validation)" if threshold else "argmax"
        baseline = {**baseline, "dice": baseline["auc"]}
    return {
        "set": name,
        "metric": "slice AUC" if classify else "Dice",
        "planned_dice": summary["dice"],
        "planned_wall_s": round(fit_s, 1),
        "planned_steps": max_steps,
        "plan_s": round(plan_s, 1),
        "postprocessing": summary.get("postprocessing"),
        "baseline_dice": baseline["dice"],
        "baseline_wall_s": round(base_s, 1),
        "baseline_steps": baseline["steps"],
        "test_cases": summary["cases"],
    }


MAKE_MAIN = ["configs/data/hippocampus_3d.yaml", "configs/model/res_unet_3d.yaml", "configs/trainer/cpu.yaml"]


def make_main_at_budget(out: Path) -> dict:
    """``make main``'s hand-tuned configuration, stopped at the planned hippocampus_3d fit's ``max_time`` (the
    same share of the budget for fit and validations), its poly decay following that time as the plan's does."""
    planned = out / "hippocampus_3d"
    max_time = yaml.safe_load((planned / "plan" / "trainer.yaml").read_text())["trainer"]["max_time"]
    folder = out / "hippocampus_3d_make_main"
    folder.mkdir(parents=True, exist_ok=True)
    configs = [a for c in MAKE_MAIN for a in ("--config", c)]
    time_share = ["--trainer.max_time", max_time, "--model.init_args.scheduler.init_args.follow_max_time", "true"]
    fit_s = fit(folder, [*configs, *time_share])
    summary = json.loads((folder / "medlight" / "metrics" / "test_summary.json").read_text())
    with (folder / "medlight" / "metrics.csv").open() as f:
        steps = max(int(row["step"]) for row in csv.DictReader(f))
    return {"dice": summary["dice"], "wall_s": round(fit_s, 1), "steps": steps, "max_time": max_time}


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    versions = ", ".join(f"{p} {version(p)}" for p in ("torch", "monai", "lightning"))
    return f"{model}, {os.cpu_count()} CPU(s) (shared); {versions}; medlight {commit.stdout.strip()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "plan_benchmark")
    parser.add_argument("--report", type=Path, help="also write the Markdown table here")
    parser.add_argument(
        "--make-main",
        action="store_true",
        help="then fit make main's hand-tuned configs, stopped at the max_time of OUT's hippocampus_3d plan",
    )
    args = parser.parse_args()
    rows = []
    for name in args.sets:
        try:
            rows.append(bench(name, args.budget_minutes, args.out))
        except (subprocess.CalledProcessError, OSError, KeyError, ValueError) as error:  # the other sets still run
            rows.append({"set": name, "failed": f"{type(error).__name__}: {error} (logs in {args.out / name})"})
        (args.out / name).mkdir(parents=True, exist_ok=True)
        (args.out / name / "result.json").write_text(json.dumps(rows[-1], indent=1))
    hand_tuned = None
    if args.make_main:  # the hippocampus_3d plan of this run, or of an earlier one in the same --out
        hand_tuned = make_main_at_budget(args.out)
        (args.out / "hippocampus_3d_make_main" / "result.json").write_text(json.dumps(hand_tuned, indent=1))
    done = [r for r in rows if "failed" not in r]
    lines = [
        f"Budget: {args.budget_minutes:g} minutes of wall time each (fit + validation + test), CPU.",
        f"Machine: {machine()}.",
    ]
    lines += (
        [
            "",
            "| data set | test cases | metric | planned medlight | steps | wall s | plain MONAI | steps | wall s |"
            " plan s | post-processing chosen |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *[
                f"| {r['set']} | {r['test_cases']} | {r['metric']}"
                f" | {r['planned_dice']:.3f} | {r['planned_steps']} | {r['planned_wall_s']}"
                f" | {r['baseline_dice']:.3f} | {r['baseline_steps']} | {r['baseline_wall_s']} | {r['plan_s']}"
                f" | {r['postprocessing']} |"
                for r in done
            ],
            *[f"| {r['set']} | failed: {r['failed']} |" for r in rows if "failed" in r],
        ]
        if rows
        else []
    )
    if hand_tuned:
        lines += [
            "",
            f"make main's hand-tuned configuration, stopped at the plan's max_time {hand_tuned['max_time']}:"
            f" test Dice {hand_tuned['dice']:.3f} after {hand_tuned['steps']} steps, {hand_tuned['wall_s']} s wall.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.report:
        args.report.write_text(text)


if __name__ == "__main__":
    main()
