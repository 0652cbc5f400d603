"""A plain MONAI segmentation script of the kind a user writes: MONAI UNet, Adam, standard transforms, Dice+CE,
trained until a wall-clock budget is spent, then tested on the held-out cases with MONAI's DiceMetric.

It reads the cases and the split from a medlight plan folder's data.yaml / splits.json, so both sides train,
validate and test on exactly the same cases. Not part of medlight: no medlight import beyond reading the split.

    python experiments/plan_benchmark/monai_baseline.py PLAN_DIR --budget-minutes 10 --out RESULT.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml
from monai.data import CacheDataset, DataLoader, decollate_batch
from monai.inferers import SliceInferer, sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.nets import UNet
from monai.transforms import (
    AsDiscrete,
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    MapLabelValued,
    NormalizeIntensityd,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
    SqueezeDimd,
)

from medlight.data.datalist import discover

TEST_SHARE = 0.15  # of the budget kept for the test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("plan", type=Path)
    parser.add_argument("--budget-minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    torch.manual_seed(0)
    data = yaml.safe_load((args.plan / "data.yaml").read_text())["data"]["init_args"]
    desc = discover(data["dataset"], data.get("labels"))
    split = json.loads(Path(data["split_file"]).read_text())
    by_id = {c.case_id: c for c in desc.cases}
    folds = split["folds"]
    val_ids = folds[data["fold"]]
    train_ids = [c for i, f in enumerate(folds) if i != data["fold"] for c in f]
    test_ids = split["test"] or val_ids

    def items(ids):
        out = []
        for cid in ids:
            case = by_id[cid]
            images = [str(p) for p in case.images]
            out.append({"image": images if len(images) > 1 else images[0], "label": str(case.label)})
        return out

    two_d = desc.spatial_dims == 2
    slice_axis = 2 if desc.spatial_dims == 3 and data.get("slice_axis") is not None else None
    dims = 2 if two_d or slice_axis is not None else 3
    classes = len(desc.labels)
    first = Compose([LoadImaged("image", reader="PILReader" if two_d else None), EnsureChannelFirstd("image")])
    shape = first(items(train_ids[:1])[0])["image"].shape[1:]
    # a user's usual first choice (96 in 2D, 64 in 3D), no larger than the first image rounded up to 16
    patch = [min(96 if dims == 2 else 64, -(-int(s) // 16) * 16) for s in shape][:dims]
    roi = [*patch, 1] if slice_axis is not None else patch
    load = [
        LoadImaged(["image", "label"], reader="PILReader" if two_d else None),
        EnsureChannelFirstd(["image", "label"]),
    ]
    label_map = (data.get("preprocessing") or {}).get("label_map")
    if label_map:
        load.append(MapLabelValued("label", list(map(int, label_map)), list(label_map.values())))
    if not two_d:
        load.append(Orientationd(["image", "label"], axcodes="RAS"))
    load.append(NormalizeIntensityd("image", channel_wise=True))
    train_tf = Compose(
        [
            *load,
            SpatialPadd(["image", "label"], roi),
            RandCropByPosNegLabeld(["image", "label"], "label", roi, pos=1, neg=1, num_samples=4),
            *([SqueezeDimd(["image", "label"], dim=3)] if slice_axis is not None else []),
            *[RandFlipd(["image", "label"], prob=0.5, spatial_axis=a) for a in range(dims)],
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        ]
    )
    train = CacheDataset(items(train_ids), train_tf, progress=False)
    loader = DataLoader(train, batch_size=2, shuffle=True, num_workers=0)
    in_channels = int(train[0][0]["image"].shape[0])
    net = UNet(dims, in_channels, classes, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
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
    metric = DiceMetric(include_background=False, reduction="mean_batch")
    test = CacheDataset(items(test_ids), Compose(load), progress=False)
    post_pred, post_label = AsDiscrete(argmax=True, to_onehot=classes), AsDiscrete(to_onehot=classes)
    with torch.no_grad():
        for case in DataLoader(test, batch_size=1):
            if slice_axis is not None:
                logits = SliceInferer(roi_size=patch, spatial_dim=slice_axis, sw_batch_size=4)(case["image"], net)
            else:
                logits = sliding_window_inference(case["image"], patch, 4, net)
            metric(
                [post_pred(x) for x in decollate_batch(logits)], [post_label(y) for y in decollate_batch(case["label"])]
            )
    per_class = [float(v) for v in metric.aggregate()]
    result = {
        "method": f"MONAI UNet {dims}D (16-256, res units 2), Adam 1e-3, Dice+CE, patch {patch}, batch 2x4",
        "dice": sum(per_class) / len(per_class),
        "dice_per_class": per_class,
        "steps": steps,
        "test_cases": len(test_ids),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
