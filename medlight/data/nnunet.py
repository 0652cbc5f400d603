"""nnU-Net interoperability: its held-out test folders and its ``splits_final.json``.

* ``imagesTs``/``labelsTs`` next to ``imagesTr``: when both are present, those cases are the held-out test set
  (:func:`held_out_description`) and the split's folds cover only ``imagesTr``. ``imagesTs`` without
  ``labelsTs`` (as in the MSD) cannot be scored and is not used.
* ``splits_final.json``, nnU-Net's list of ``{"train": [...], "val": [...]}`` per fold, is read when
  ``split_file`` points to it, or when no split file is given and it lies beside ``dataset.json``
  (:func:`split_file_of`, :func:`load_splits_final`); its folds must be a partition (each fold trains on the
  other folds' validation cases, as nnU-Net makes them).
* A medlight split file is written in that format by :func:`export_splits_final`, or from the shell::

      python -m medlight.data.nnunet export DATASET/splits.json DATASET/splits_final.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from medlight.data.datalist import (
    IMAGE_2D_ENDINGS,
    VOLUME_ENDINGS,
    DatasetDescription,
    _group_channels,
    _pair,
)
from medlight.data.splits import Splits
from medlight.errors import DatasetError
from medlight.runs.layout import write_json

SPLITS_FINAL = "splits_final.json"


def held_out_description(desc: DatasetDescription) -> DatasetDescription | None:
    """The labelled cases of ``imagesTs``/``labelsTs`` (None when either folder is absent)."""
    image_dir, label_dir = desc.root / "imagesTs", desc.root / "labelsTs"
    if not (image_dir.is_dir() and label_dir.is_dir()):
        return None
    ending = _file_ending(desc.root)
    endings = (ending,) if ending else VOLUME_ENDINGS + IMAGE_2D_ENDINGS
    suffix = "always" if ending else "if_consistent"  # nnU-Net v2 (file_ending declared) always has _XXXX
    grouped, problems = _group_channels(desc.root, image_dir, endings, suffix=suffix)  # type: ignore[arg-type]
    cases, pair_problems = _pair(desc.root, grouped, label_dir, endings)
    problems += pair_problems
    if not cases:
        return None
    clash = sorted(set(desc.case_ids) & {c.case_id for c in cases})
    if clash:
        raise DatasetError(f"{image_dir}: case ids {clash[:5]} are also training cases (imagesTr); rename them")
    return DatasetDescription(
        desc.root, cases, desc.labels, desc.channels, desc.spatial_dims, problems, desc.channels_declared
    )


def _file_ending(root: Path) -> str | None:
    spec = root / "dataset.json"
    if not spec.is_file():
        return None
    try:
        return json.loads(spec.read_text()).get("file_ending")
    except json.JSONDecodeError:
        return None  # discovery has already refused an unreadable dataset.json


def split_file_of(dataset: Path, split_file: str | None) -> Path:
    """The split file a data module uses: the one given, else ``splits_final.json`` beside ``dataset.json``, else
    ``<dataset>/splits.json`` (medlight's, created on first use)."""
    if split_file:
        return Path(split_file)
    beside = dataset / SPLITS_FINAL
    return beside if beside.is_file() and (dataset / "dataset.json").is_file() else dataset / "splits.json"


def is_splits_final(path: Path) -> bool:
    """Whether ``path`` is an nnU-Net split file (a JSON list of folds), not a medlight one."""
    if not path.is_file():
        return False
    try:
        return isinstance(json.loads(path.read_text()), list)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def load_splits_final(path: Path, case_ids: Sequence[str], num_folds: int, test: Sequence[str] = ()) -> Splits:
    """nnU-Net's folds as medlight :class:`Splits` over ``case_ids`` (the training cases), with ``test`` held out.

    Raises:
        DatasetError: the file is malformed, has another number of folds, does not cover exactly the dataset's
            training cases, or is not a partition (a fold's train set is not the other folds' validation cases).
    """
    raw = path.read_bytes()
    try:
        folds = [(list(f["train"]), list(f["val"])) for f in json.loads(raw)]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: not an nnU-Net splits_final.json ({err})") from err
    if len(folds) != num_folds:
        raise DatasetError(f"{path}: has {len(folds)} folds but the run asks for num_folds={num_folds}")
    val = [sorted(v) for _, v in folds]
    for k, (train, _) in enumerate(folds):
        others = sorted(c for j, ids in enumerate(val) if j != k for c in ids)
        if sorted(train) != others:
            raise DatasetError(f"{path}: fold {k}'s train cases are not the other folds' validation cases")
    listed, current = {c for ids in val for c in ids}, set(case_ids)
    if listed != current or sum(map(len, val)) != len(listed):
        new, gone = sorted(current - listed), sorted(listed - current)
        raise DatasetError(
            f"{path}: folds do not partition the training cases: {len(new)} case(s) in no fold {new[:5]}, "
            f"{len(gone)} listed case(s) not in the dataset {gone[:5]}, or a case in two folds"
        )
    return Splits(path, -1, sorted(test), val, hashlib.sha256(raw).hexdigest())


def export_splits_final(split_file: str | Path, out: str | Path) -> Path:
    """Write a medlight split file's folds as nnU-Net's ``splits_final.json`` (its test set stays out of every fold)."""
    split_file = Path(split_file)
    try:
        folds = [sorted(ids) for ids in json.loads(split_file.read_text())["folds"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{split_file}: not a medlight split file ({err})") from err
    content = [
        {"train": sorted(c for j, ids in enumerate(folds) if j != k for c in ids), "val": val}
        for k, val in enumerate(folds)
    ]
    return write_json(Path(out), content)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3 or argv[0] != "export":
        print("usage: python -m medlight.data.nnunet export SPLIT_FILE SPLITS_FINAL_JSON", file=sys.stderr)
        return 2
    print(f"wrote {export_splits_final(argv[1], argv[2])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
