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
from typing import Literal

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


def discover(root: str | Path, labels: dict | None = None) -> DatasetDescription:
    """Describe the dataset under ``root`` (see the module docstring for the layouts).

    Args:
        root: dataset folder.
        labels: label value -> name (or nnU-Net v2 name -> value); required only for folder layouts, whose
            labels nothing declares. Given together with a dataset.json, it must agree with it.

    Raises:
        DatasetError: the folder does not exist or has no recognisable layout, or dataset.json is unreadable
            or not shaped as its layout requires.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    wanted = normalise_labels(labels, "labels given in the config") if labels is not None else None
    spec_path = root / "dataset.json"
    if spec_path.is_file():
        try:
            spec = json.loads(spec_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{spec_path}: not valid JSON ({err})") from err
        if not isinstance(spec, dict):
            raise DatasetError(f"{spec_path}: must hold a JSON object, not {type(spec).__name__}")
        desc = _from_msd(root, spec_path, spec) if "training" in spec else _from_nnunet_v2(root, spec_path, spec)
        if wanted is not None and wanted != desc.labels:
            raise DatasetError(
                f"{spec_path}: labels given in the config {labels} differ from dataset.json {desc.labels}"
            )
        return desc
    return _from_folders(root, wanted or {})


def normalise_labels(labels: object, where: str) -> dict[int, str]:
    """Accept {value: name} (MSD) or {name: value} (nnU-Net v2) and return {value: name}.

    Raises:
        DatasetError: ``labels`` is not such an object (``where`` names its origin in the message).
    """
    if not isinstance(labels, dict):
        raise DatasetError(f"{where}: labels must be an object {{value: name}}, not {type(labels).__name__}")
    out: dict[int, str] = {}
    for key, value in labels.items():
        if isinstance(value, (list, tuple)):  # nnU-Net v2 region labels are not supported
            raise DatasetError(f"{where}: region-based label {key!r} -> {value} is not supported")
        number, name = (value, key) if _is_label_value(value) and not _is_label_value(key) else (key, value)
        if not _is_label_value(number):
            raise DatasetError(f"{where}: label {key!r}: {value!r} has no integer value (use {{value: name}})")
        if int(number) in out:
            raise DatasetError(f"{where}: label value {int(number)} is declared twice")
        out[int(number)] = str(name)
    return out


def _is_label_value(x: object) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return x >= 0
    if isinstance(x, float):
        return x.is_integer() and x >= 0
    return isinstance(x, str) and x.strip().isdigit()


def _inside(root: Path, rel: str, case_id: str | None, problems: list[Problem], what: str) -> Path | None:
    """Resolve ``rel`` (symlinks too) against root; record a problem if it leaves the dataset folder."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        problems.append(
            Problem(
                root / "dataset.json", "path_outside_dataset", f"{what} path {rel!r} leaves the dataset folder", case_id
            )
        )
        return None
    return path


def _escapes(root: Path, path: Path) -> Problem | None:
    """A problem if ``path`` (a symlink, or inside a symlinked folder) resolves outside the dataset folder."""
    if path.resolve().is_relative_to(root.resolve()):
        return None
    return Problem(
        path,
        "path_outside_dataset",
        f"resolves to {path.resolve()}, outside the dataset folder",
        strip_ending(path.name)[0],
    )


def _channel_files(path: Path) -> tuple[Path, ...] | None:
    """``case_0000.nii.gz``, ``case_0001.nii.gz``... next to where ``case.nii.gz`` would be, if any."""
    stem, ending = strip_ending(path.name)
    found = sorted(path.parent.glob(f"{stem}_[0-9][0-9][0-9][0-9]{ending}"))
    return tuple(found) or None


def _from_msd(root: Path, spec_path: Path, spec: dict) -> DatasetDescription:
    problems: list[Problem] = []
    labels = normalise_labels(spec.get("labels", {}), str(spec_path))
    channels = _ordered_names(spec.get("modality", {"0": "image"}), spec_path, "modality")
    training = spec["training"]
    if not isinstance(training, list) or not all(isinstance(e, dict) for e in training):
        raise DatasetError(f'{spec_path}: \'training\' must be a list of {{"image": ..., "label": ...}} objects')
    cases: list[Case] = []
    listed_labels: set[Path] = set()
    for n, entry in enumerate(training):
        image_rel, label_rel = entry.get("image"), entry.get("label")
        bad = [k for k, v in (("image", image_rel), ("label", label_rel)) if v is not None and not isinstance(v, str)]
        if bad or not image_rel:
            what = f"'{bad[0]}' is {entry[bad[0]]!r}, not a path" if bad else "has no 'image' path"
            problems.append(Problem(spec_path, "bad_entry", f"training entry {n} {what}", f"entry_{n}"))
            continue
        case_id = strip_ending(Path(image_rel).name)[0]
        image = _inside(root, image_rel, case_id, problems, "image")
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
    cases = _unique(cases, spec_path, problems)
    problems += _unlisted_labels(root / "labelsTr", listed_labels)
    return DatasetDescription(root, cases, labels, channels, _dims_of(cases, spec), problems)


def _ordered_names(names: object, spec_path: Path, key: str) -> list[str]:
    """Names of a {"0": name, "1": name} object (``modality``, ``channel_names``) in index order."""
    if not isinstance(names, dict) or not names or not all(_is_label_value(k) for k in names):
        raise DatasetError(f'{spec_path}: \'{key}\' must be an object {{"0": name, "1": name, ...}}, got {names!r}')
    return [str(name) for _, name in sorted(names.items(), key=lambda kv: int(kv[0]))]


def _unique(cases: list[Case], where: Path, problems: list[Problem]) -> list[Case]:
    """Keep the first case of each id; every other one is a ``duplicate_case`` error (the case becomes bad)."""
    seen: dict[str, Case] = {}
    for case in cases:
        if case.case_id in seen:
            problems.append(
                Problem(where, "duplicate_case", f"case id {case.case_id} is listed more than once", case.case_id)
            )
        else:
            seen[case.case_id] = case
    return list(seen.values())


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


def _from_nnunet_v2(root: Path, spec_path: Path, spec: dict) -> DatasetDescription:
    if "file_ending" not in spec or "channel_names" not in spec:
        raise DatasetError(
            f"{spec_path}: neither an MSD 'training' list nor nnU-Net v2 'channel_names' + 'file_ending' keys"
        )
    ending = spec["file_ending"]
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DatasetError(f"{spec_path}: 'file_ending' must be a file ending such as \".nii.gz\", got {ending!r}")
    channels = _ordered_names(spec["channel_names"], spec_path, "channel_names")
    labels = normalise_labels(spec.get("labels", {}), str(spec_path))
    image_dir, label_dir = root / "imagesTr", root / "labelsTr"
    grouped, problems = _group_channels(root, image_dir, (ending,), suffix="always")
    cases, pair_problems = _pair(root, grouped, label_dir, (ending,))
    return DatasetDescription(root, cases, labels, channels, _dims_of(cases, spec), problems + pair_problems)


def _from_folders(root: Path, labels: dict[int, str]) -> DatasetDescription:
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    label_dir = next((root / d for d in LABEL_DIRS if (root / d).is_dir()), None)
    if image_dir is None:
        raise DatasetError(f"{root}: no dataset.json and no image folder (looked for {', '.join(IMAGE_DIRS)})")
    endings = VOLUME_ENDINGS + IMAGE_2D_ENDINGS
    label_stems = {strip_ending(p.name)[0] for p in _files(label_dir, endings)} if label_dir else set()
    grouped, problems = _group_channels(root, image_dir, endings, label_stems=label_stems)
    cases, pair_problems = _pair(root, grouped, label_dir, endings)
    n_channels = max((len(c.images) for c in cases), default=1)
    channels = [f"channel{i}" for i in range(n_channels)]
    return DatasetDescription(
        root, cases, labels, channels, _dims_of(cases, {}), problems + pair_problems, channels_declared=False
    )


def discover_images(folder: str | Path) -> list[Case]:
    """Unlabeled cases to predict: the image folder of a dataset, or a plain folder of image files.

    Raises:
        DatasetError: the folder is missing or empty, or a file resolves outside it or repeats a name.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder does not exist")
    image_dir = next((folder / d for d in IMAGE_DIRS if (folder / d).is_dir()), folder)
    grouped, problems = _group_channels(folder, image_dir, VOLUME_ENDINGS + IMAGE_2D_ENDINGS)
    if problems:
        raise DatasetError(f"{problems[0].path}: {problems[0].check}: {problems[0].message}")
    if not grouped:
        raise DatasetError(f"{image_dir}: no image files to predict")
    return [Case(cid, tuple(files)) for cid, files in sorted(grouped.items())]


def _files(folder: Path, endings: tuple[str, ...]) -> list[Path]:
    """Visible files of ``folder`` with one of ``endings``, sorted."""
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and strip_ending(p.name)[1].lower() in endings
    ]


def _group_channels(
    root: Path,
    image_dir: Path,
    endings: tuple[str, ...],
    suffix: Literal["always", "if_consistent"] = "if_consistent",
    label_stems: set[str] = frozenset(),  # type: ignore[assignment]
) -> tuple[dict[str, list[Path]], list[Problem]]:
    """case id -> channel files, and the problems found (files leaving the dataset, duplicate names).

    ``_XXXX`` suffixes name channels in nnU-Net v2 (``suffix="always"``). Elsewhere they do only when the
    whole folder follows the pattern: every file has a suffix, every case has channels ``_0000`` ... ``_{k-1}``
    for one k, and no label is named after a whole file name; otherwise ``patient_0001`` is a case name.
    """
    if not image_dir.is_dir():
        return {}, []
    problems: list[Problem] = []
    files = []
    for path in _files(image_dir, endings):
        escape = _escapes(root, path)
        if escape is None:
            files.append(path)
        else:
            problems.append(escape)
    stems = {path: strip_ending(path.name) for path in files}
    by_suffix: dict[str, list[Path]] = defaultdict(list)
    matches = {path: CHANNEL_SUFFIX.match(stem) for path, (stem, _) in stems.items()}
    for path, match in matches.items():
        by_suffix[match["case"] if match else stems[path][0]].append(path)
    if suffix == "always" or _is_channel_pattern(matches, by_suffix, label_stems, stems):
        return dict(by_suffix), problems
    grouped: dict[str, list[Path]] = defaultdict(list)
    for path, (stem, _) in stems.items():
        if stem in grouped:
            problems.append(Problem(path, "duplicate_case", f"another file is also named {stem}", stem))
            continue
        grouped[stem].append(path)
    return dict(grouped), problems


def _is_channel_pattern(matches: dict, by_suffix: dict[str, list[Path]], label_stems: set[str], stems: dict) -> bool:
    if not matches or not all(matches.values()) or any(stem in label_stems for stem, _ in stems.values()):
        return False
    counts = {len(files) for files in by_suffix.values()}
    if len(counts) != 1:
        return False
    expected = [f"{c:04d}" for c in range(counts.pop())]
    return all(sorted(matches[p]["channel"] for p in files) == expected for files in by_suffix.values())


def _pair(
    root: Path, grouped: dict[str, list[Path]], label_dir: Path | None, endings: tuple[str, ...]
) -> tuple[list[Case], list[Problem]]:
    labels: dict[str, Path] = {}
    problems: list[Problem] = []
    if label_dir is not None and label_dir.is_dir():
        for path in _files(label_dir, endings):
            stem = strip_ending(path.name)[0]
            escape = _escapes(root, path)
            if escape is not None:
                problems.append(escape)
            elif stem in labels:
                problems.append(Problem(path, "duplicate_case", f"another label file is also named {stem}", stem))
            else:
                labels[stem] = path
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
