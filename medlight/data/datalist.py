"""Discover the cases of a dataset on disk.

Three layouts are understood:

* MSD / nnU-Net v1: ``dataset.json`` with a ``training`` list of ``{"image", "label"}`` paths;
  a multi-channel image is either one 4D file or ``<case>_0000``, ``<case>_0001``, ... files.
* nnU-Net v2: ``dataset.json`` with ``channel_names``, ``labels`` ({name: value}) and ``file_ending``;
  cases are discovered from ``imagesTr/<case>_XXXX<ending>`` and ``labelsTr/<case><ending>``.
* paired folders without dataset.json: an image folder (``imagesTr``, ``images``, ``img``) and a label
  folder (``labelsTr``, ``labels``, ``masks``) matched by file name; NIfTI volumes or 2D PNG/JPG/BMP/TIFF.

Discovery never raises on a bad case: it records a :class:`Problem` (image without label, missing file,
path leaving the dataset folder) and goes on, so that one pass lists everything that is wrong.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from medlight.data.problems import Problem
from medlight.errors import DatasetError

VOLUME_ENDINGS = (".nii.gz", ".nii")
IMAGE_2D_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGE_DIRS = ("imagesTr", "images", "img", "image")
LABEL_DIRS = ("labelsTr", "labels", "masks", "mask", "label")
CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Case:
    """One training case: its channel files and its label file.

    Attributes:
        case_id: unique name of the case (file name without ending and channel suffix).
        images: one path per channel file; a single multi-channel (4D) file is one entry.
        label: the label file, or None for unlabeled cases.
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None


@dataclass
class DatasetDescription:
    """What a dataset holds, as discovered on disk.

    Attributes:
        root: dataset folder.
        cases: cases that have at least their image files.
        labels: label value -> name, background (0) included; empty when nothing declares them.
        channels: channel (modality) names; their count is the expected number of input channels.
        spatial_dims: 3 for volumes, 2 for 2D images.
        problems: what discovery already found wrong (orphans, missing files, escaping paths).
    """

    root: Path
    cases: list[Case]
    labels: dict[int, str]
    channels: list[str]
    spatial_dims: int
    problems: list[Problem] = field(default_factory=list)
    channels_declared: bool = True

    @property
    def class_names(self) -> list[str]:
        """Names of the foreground classes, in label-value order."""
        return [name for value, name in sorted(self.labels.items()) if value != 0]

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]


def strip_ending(name: str) -> tuple[str, str]:
    """Split a file name into (stem, ending) for the endings medlight reads."""
    for ending in VOLUME_ENDINGS + IMAGE_2D_ENDINGS:
        if name.lower().endswith(ending):
            return name[: -len(ending)], ending
    return Path(name).stem, Path(name).suffix


def discover(root: str | Path, labels: dict[int, str] | None = None) -> DatasetDescription:
    """Describe the dataset under ``root`` (see the module docstring for the layouts).

    Args:
        root: dataset folder.
        labels: label value -> name; required only for folder layouts, whose labels nothing declares.
            Given together with a dataset.json, it must agree with it.

    Raises:
        DatasetError: the folder does not exist or has no recognisable layout, or dataset.json is unreadable.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    spec_path = root / "dataset.json"
    if spec_path.is_file():
        try:
            spec = json.loads(spec_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{spec_path}: not valid JSON ({err})") from err
        desc = _from_msd(root, spec) if "training" in spec else _from_nnunet_v2(root, spec)
        if labels is not None and _normalise_labels(labels) != desc.labels:
            raise DatasetError(
                f"{spec_path}: labels given in the config {labels} differ from dataset.json {desc.labels}"
            )
        return desc
    return _from_folders(root, _normalise_labels(labels) if labels else {})


def _normalise_labels(labels: dict) -> dict[int, str]:
    """Accept {value: name} (MSD) or {name: value} (nnU-Net v2) and return {value: name}."""
    out: dict[int, str] = {}
    for key, value in labels.items():
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit() and not key.isdigit()):
            out[int(value)] = str(key)
        elif isinstance(value, (list, tuple)):  # nnU-Net v2 region labels are not supported
            raise DatasetError(f"region-based label {key!r} -> {value} is not supported")
        else:
            out[int(key)] = str(value)
    return out


def _inside(root: Path, rel: str, case_id: str | None, problems: list[Problem], what: str) -> Path | None:
    """Resolve ``rel`` against root; record a problem if it leaves the dataset folder or is absent."""
    path = (root / rel).resolve() if not Path(rel).is_absolute() else Path(rel).resolve()
    if not path.is_relative_to(root.resolve()):
        problems.append(
            Problem(
                root / "dataset.json", "path_outside_dataset", f"{what} path {rel!r} leaves the dataset folder", case_id
            )
        )
        return None
    return path


def _channel_files(path: Path) -> tuple[Path, ...] | None:
    """``case_0000.nii.gz``, ``case_0001.nii.gz``... next to where ``case.nii.gz`` would be, if any."""
    stem, ending = strip_ending(path.name)
    found = sorted(path.parent.glob(f"{stem}_[0-9][0-9][0-9][0-9]{ending}"))
    return tuple(found) or None


def _from_msd(root: Path, spec: dict) -> DatasetDescription:
    problems: list[Problem] = []
    labels = _normalise_labels(spec.get("labels", {}))
    channels = [name for _, name in sorted(spec.get("modality", {"0": "image"}).items(), key=lambda kv: int(kv[0]))]
    cases: list[Case] = []
    listed_labels: set[Path] = set()
    for entry in spec["training"]:
        image_rel, label_rel = entry.get("image"), entry.get("label")
        case_id = strip_ending(Path(str(image_rel or label_rel)).name)[0]
        image = _inside(root, image_rel, case_id, problems, "image") if image_rel else None
        label = _inside(root, label_rel, case_id, problems, "label") if label_rel else None
        if label is not None:
            listed_labels.add(label)
            if not label.exists():
                problems.append(Problem(label, "missing_file", "label listed in dataset.json does not exist", case_id))
                label = None
        images: tuple[Path, ...] | None = None
        if image is not None:
            images = (image,) if image.exists() else _channel_files(image)
            if images is None:
                problems.append(Problem(image, "missing_file", "image listed in dataset.json does not exist", case_id))
        if images is None:
            continue
        if label is None and label_rel is None:
            problems.append(Problem(images[0], "missing_label", "image has no label in dataset.json", case_id))
        cases.append(Case(case_id, images, label))
    problems += _unlisted_labels(root / "labelsTr", listed_labels)
    return DatasetDescription(root, cases, labels, channels, _dims_of(cases, spec), problems)


def _unlisted_labels(label_dir: Path, listed: set[Path]) -> list[Problem]:
    if not label_dir.is_dir():
        return []
    return [
        Problem(
            path, "missing_image", "label file has no image (not listed in dataset.json)", strip_ending(path.name)[0]
        )
        for path in sorted(label_dir.iterdir())
        if path.is_file() and not path.name.startswith(".") and path.resolve() not in listed
    ]


def _from_nnunet_v2(root: Path, spec: dict) -> DatasetDescription:
    if "file_ending" not in spec or "channel_names" not in spec:
        raise DatasetError(
            f"{root / 'dataset.json'}: neither an MSD 'training' list nor nnU-Net v2 "
            "'channel_names' + 'file_ending' keys"
        )
    ending = spec["file_ending"]
    channels = [name for _, name in sorted(spec["channel_names"].items(), key=lambda kv: int(kv[0]))]
    labels = _normalise_labels(spec.get("labels", {}))
    image_dir, label_dir = root / "imagesTr", root / "labelsTr"
    cases, problems = _pair(_group_channels(image_dir, (ending,)), label_dir, (ending,))
    return DatasetDescription(root, cases, labels, channels, _dims_of(cases, spec), problems)


def _from_folders(root: Path, labels: dict[int, str]) -> DatasetDescription:
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    label_dir = next((root / d for d in LABEL_DIRS if (root / d).is_dir()), None)
    if image_dir is None:
        raise DatasetError(f"{root}: no dataset.json and no image folder (looked for {', '.join(IMAGE_DIRS)})")
    endings = VOLUME_ENDINGS + IMAGE_2D_ENDINGS
    grouped = _group_channels(image_dir, endings)
    cases, problems = _pair(grouped, label_dir, endings)
    n_channels = max((len(c.images) for c in cases), default=1)
    channels = [f"channel{i}" for i in range(n_channels)]
    return DatasetDescription(root, cases, labels, channels, _dims_of(cases, {}), problems, channels_declared=False)


def discover_images(folder: str | Path) -> list[Case]:
    """Unlabeled cases to predict: the image folder of a dataset, or a plain folder of image files."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder does not exist")
    image_dir = next((folder / d for d in IMAGE_DIRS if (folder / d).is_dir()), folder)
    grouped = _group_channels(image_dir, VOLUME_ENDINGS + IMAGE_2D_ENDINGS)
    if not grouped:
        raise DatasetError(f"{image_dir}: no image files to predict")
    return [Case(cid, tuple(files)) for cid, files in sorted(grouped.items())]


def _group_channels(image_dir: Path, endings: tuple[str, ...]) -> dict[str, list[Path]]:
    """case id -> channel files, grouping ``_XXXX`` suffixes when every file of a case has one."""
    grouped: dict[str, list[Path]] = defaultdict(list)
    if not image_dir.is_dir():
        return grouped
    for path in sorted(image_dir.iterdir()):
        stem, ending = strip_ending(path.name)
        if not path.is_file() or path.name.startswith(".") or ending.lower() not in endings:
            continue
        match = CHANNEL_SUFFIX.match(stem)
        grouped[match["case"] if match else stem].append(path)
    return grouped


def _pair(
    grouped: dict[str, list[Path]], label_dir: Path | None, endings: tuple[str, ...]
) -> tuple[list[Case], list[Problem]]:
    labels: dict[str, Path] = {}
    if label_dir is not None and label_dir.is_dir():
        for path in sorted(label_dir.iterdir()):
            stem, ending = strip_ending(path.name)
            if path.is_file() and not path.name.startswith(".") and ending.lower() in endings:
                labels[stem] = path
    problems: list[Problem] = []
    cases = []
    for case_id, files in sorted(grouped.items()):
        label = labels.pop(case_id, None)
        if label is None and label_dir is not None:
            problems.append(Problem(files[0], "missing_label", "image has no label file", case_id))
        cases.append(Case(case_id, tuple(files), label))
    problems += [Problem(p, "missing_image", "label file has no image", cid) for cid, p in sorted(labels.items())]
    return cases, problems


def _dims_of(cases: list[Case], spec: dict) -> int:
    declared = str(spec.get("tensorImageSize", "")).upper()
    if declared == "2D":
        return 2
    if cases and strip_ending(cases[0].images[0].name)[1].lower() in IMAGE_2D_ENDINGS:
        return 2
    return 3
