"""A plain MONAI classification script of the kind a user writes: MONAI ResNet-18 (2D), Adam, resize, flips,
cross-entropy, trained until a wall-clock budget is spent, then tested: slice ROC AUC, and sensitivity and
specificity at the usual fixed 0.5 threshold.

It reads the image folder and the patient-wise split from a medlight classification plan's data.yaml /
splits.json, so both sides train and test on exactly the same images. Not part of medlight.

    python experiments/plan_benchmark/monai_classification_baseline.py PLAN_DIR --budget-minutes 10 --out R.json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
import yaml
from monai.data import DataLoader, Dataset
from monai.networks.nets import resnet18
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    NormalizeIntensityd,
    RandFlipd,
    RandScaleIntensityd,
    Resized,
)
from torchmetrics.functional.classification import binary_auroc

TEST_SHARE = 0.15  # of the budget kept for the test
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    torch.manual_seed(0)
    data = yaml.safe_load((args.plan / "data.yaml").read_text())["data"]["init_args"]
    root = Path(data["image_folder"])
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    split = json.loads(Path(data["split_file"]).read_text())
    test_patients = set(split["test"])
    val_patients = set(split["folds"][data["fold"]])
    train, test = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.name.lower().endswith(SUFFIXES):
                match = re.match(data.get("patient_pattern", r"^([^_]+)"), file.name)
                patient = match.group(1) if match else file.name
                item = {"image": str(file), "label": label}
                if patient in test_patients:
                    test.append(item)
                elif patient not in val_patients:  # the script, like most, does not use the validation fold
                    train.append(item)
    size = data["image_size"]
    load = [LoadImaged("image"), EnsureChannelFirstd("image"), Resized("image", size), NormalizeIntensityd("image")]
    load.append(EnsureTyped("image", track_meta=False))  # plain tensors: file metadata differ between images
    augment = [RandFlipd("image", prob=0.5, spatial_axis=1), RandScaleIntensityd("image", factors=0.1, prob=0.5)]
    loader = DataLoader(Dataset(train, Compose(load + augment)), batch_size=32, shuffle=True, num_workers=0)
    in_channels = int(Compose(load)(train[0])["image"].shape[0])
    net = resnet18(spatial_dims=2, n_input_channels=in_channels, num_classes=len(classes))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    deadline = start + args.budget_minutes * 60 * (1 - TEST_SHARE)
    steps = 0
    while time.perf_counter() < deadline:
        for batch in loader:
            optimizer.zero_grad()
            loss = loss_fn(net(batch["image"]), batch["label"])
            loss.backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() >= deadline:
                break
    net.eval()
    probs, labels = [], []
    with torch.no_grad():
        for batch in DataLoader(Dataset(test, Compose(load)), batch_size=64):
            probs.append(torch.softmax(net(batch["image"]), dim=1)[:, 1])
            labels.append(batch["label"])
    p, y = torch.cat(probs), torch.cat(labels)
    predicted = p > 0.5
    result = {
        "method": f"MONAI ResNet-18 2D, Adam 1e-3, cross-entropy, {size} input, batch 32, threshold 0.5",
        "auc": float(binary_auroc(p, y)),
        "sensitivity": float((predicted & (y == 1)).sum() / max(1, int((y == 1).sum()))),
        "specificity": float((~predicted & (y == 0)).sum() / max(1, int((y == 0).sum()))),
        "steps": steps,
        "test_images": len(test),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
