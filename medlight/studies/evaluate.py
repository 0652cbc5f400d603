"""Score any folder of predicted label maps (an nnU-Net or MONAI baseline, a medlight run) with medlight's metrics.

``evaluate_folder(PRED_DIR, LABEL_DIR, OUT)`` writes what a run's test writes, so a study can list ``OUT`` as an
external variant and the report reads it like any run::

    OUT/metrics/test_per_case.csv   OUT/metrics/test_summary.json   OUT/metrics/test_counts.csv   OUT/external.json

Predictions are matched to references by case id, with medlight's discovery conventions: the file name without
its ending (``.nii.gz``, ``.nii``, ``.png``...); a prediction named after a channel file (``case_0000.nii.gz``,
as medlight saves predictions of multi-channel cases) also matches ``case``. A run folder (holding
``predictions/``) can be given as PRED_DIR.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medlight.data.datalist import CHANNEL_SUFFIX, IMAGE_2D_ENDINGS, VOLUME_ENDINGS, normalise_labels, strip_ending
from medlight.data.integrity import UnreadableFile, Volume, read_volume
from medlight.errors import DatasetError
from medlight.metrics.segmentation import (
    COUNTS,
    NSD_TOLERANCE_MM,
    case_counts,
    case_metrics,
    per_case_rows,
    summarise,
)
from medlight.runs.layout import RunLayout, write_json, write_table


def label_files(folder: Path) -> dict[str, Path]:
    """case id -> label file of a folder (files with the endings medlight reads; anything else is ignored)."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem, ending = strip_ending(path.name)
        if not path.is_file() or path.name.startswith(".") or ending.lower() not in VOLUME_ENDINGS + IMAGE_2D_ENDINGS:
            continue
        if stem in found:
            raise DatasetError(f"{folder}: two files for case {stem!r}: {found[stem].name} and {path.name}")
        found[stem] = path
    if not found:
        raise DatasetError(f"{folder}: no label files (NIfTI or PNG)")
    return found


def evaluate_folder(
    pred_dir: str | Path,
    reference_dir: str | Path,
    out: str | Path,
    labels: dict[int, str] | None = None,
    nsd_tolerance: float | Sequence[float] = NSD_TOLERANCE_MM,
) -> RunLayout:
    """Score every prediction in ``pred_dir`` against the reference of the same case in ``reference_dir``.

    Args:
        pred_dir: folder of predicted label maps, or a run folder holding ``predictions/``.
        reference_dir: folder of reference label maps (e.g. ``labelsTs``).
        out: run-like folder to write (see the module docstring).
        labels: label value -> name, background (0) included; default: ``dataset.json`` beside or above
            ``reference_dir``, else the values found in the references, named by their value.
        nsd_tolerance: NSD tolerance in mm, one value or one per foreground class.

    Raises:
        DatasetError: a case without prediction or a prediction without reference, an unreadable file, a
            prediction whose shape or geometry (spacing, affine) differs from its reference, or label values
            that are not declared.
    """
    pred_dir, reference_dir = Path(pred_dir), Path(reference_dir)
    if (pred_dir / "predictions").is_dir():
        pred_dir = pred_dir / "predictions"
    refs = label_files(reference_dir)
    preds = _pred_files(pred_dir, set(refs))
    missing, extra = sorted(set(refs) - set(preds)), sorted(set(preds) - set(refs))
    if missing or extra:
        raise DatasetError(
            f"{pred_dir} does not match {reference_dir}: {len(missing)} case(s) without prediction "
            f"{_preview(missing)}, {len(extra)} prediction(s) without reference {_preview(extra)}"
        )
    volumes = {cid: (_read(preds[cid]), _read(refs[cid])) for cid in sorted(refs)}
    labels = labels or _declared_labels(reference_dir) or _found_labels(v[1] for v in volumes.values())
    values = sorted(labels)
    if not values or values[0] != 0:
        raise DatasetError(f"labels {labels} must include the background value 0")
    class_names = [labels[v] for v in values[1:]]
    scores, counts = [], []
    for cid, (pred, ref) in volumes.items():
        _check_pair(preds[cid], pred, refs[cid], ref)
        p, g = (
            torch.from_numpy(_to_index(v.array, values, path))[None]
            for v, path in ((pred, preds[cid]), (ref, refs[cid]))
        )
        spacing = list(ref.spacing[: ref.array.ndim])
        scores.append(case_metrics(p, g, len(values), spacing, nsd_tolerance))
        counts.append(case_counts(p, g, len(values)))
    case_ids = list(volumes)
    layout = RunLayout(Path(out))
    write_table(per_case_rows(case_ids, torch.stack(scores), class_names), layout.per_case("test"))
    write_table(per_case_rows(case_ids, torch.stack(counts), class_names, COUNTS), layout.table("test_counts.csv"))
    summary = summarise(torch.stack(scores), class_names, with_std=True)
    layout.write_summary("test", {"cases": len(case_ids), **summary})
    write_json(
        layout.external,
        {
            "kind": "evaluated predictions",
            "predictions": str(pred_dir.resolve()),
            "reference": str(reference_dir.resolve()),
            "labels": {str(k): v for k, v in labels.items()},
            "nsd_tolerance_mm": nsd_tolerance if isinstance(nsd_tolerance, (int, float)) else list(nsd_tolerance),
        },
    )
    return layout


def _pred_files(pred_dir: Path, reference_ids: set[str]) -> dict[str, Path]:
    """Predictions by case id; a channel-suffixed name (``case_0000``) counts as ``case`` when only that matches."""
    plain = label_files(pred_dir)
    out: dict[str, Path] = {}
    for stem, path in plain.items():
        match = CHANNEL_SUFFIX.match(stem)
        case_id = match["case"] if match and stem not in reference_ids and match["case"] in reference_ids else stem
        if case_id in out:
            raise DatasetError(f"{pred_dir}: two predictions for case {case_id!r}: {out[case_id].name}, {path.name}")
        out[case_id] = path
    return out


def _read(path: Path) -> Volume:
    try:
        vol = read_volume(path)
    except UnreadableFile as err:
        raise DatasetError(f"{path}: {err}") from err
    array = vol.array
    if array.ndim == 3 and strip_ending(path.name)[1].lower() in IMAGE_2D_ENDINGS:  # an RGB(A) mask
        if not (array[..., :3] == array[..., :1]).all():
            raise DatasetError(f"{path}: a colour image; expected one channel of label values")
        array = array[..., 0]
    if np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array)):
        raise DatasetError(f"{path}: holds non-integer values; expected a label map")
    return Volume(np.asarray(array).astype(np.int64), vol.spacing, vol.affine)


def _check_pair(pred_path: Path, pred: Volume, ref_path: Path, ref: Volume) -> None:
    if pred.array.shape != ref.array.shape:
        raise DatasetError(
            f"{pred_path}: shape {pred.array.shape} differs from the reference {ref_path} {ref.array.shape}"
        )
    if not np.allclose(pred.spacing, ref.spacing, rtol=1e-3, atol=1e-4):
        raise DatasetError(f"{pred_path}: spacing {pred.spacing} differs from the reference {ref_path} {ref.spacing}")
    if (
        pred.affine is not None
        and ref.affine is not None
        and not np.allclose(pred.affine, ref.affine, rtol=1e-3, atol=1e-3)
    ):
        raise DatasetError(f"{pred_path}: origin/orientation (affine) differs from the reference {ref_path}")


def _to_index(array: np.ndarray, values: list[int], path: Path) -> np.ndarray:
    """Label values -> class indices 0..K-1 (in value order); undeclared values are an error."""
    unknown = sorted(set(np.unique(array).tolist()) - set(values))
    if unknown:
        raise DatasetError(f"{path}: label values {unknown} are not declared (declared: {values})")
    return np.searchsorted(np.asarray(values), array)


def _declared_labels(reference_dir: Path) -> dict[int, str] | None:
    for spec in (reference_dir / "dataset.json", reference_dir.parent / "dataset.json"):
        if spec.is_file():
            try:
                declared = json.loads(spec.read_text()).get("labels")
            except json.JSONDecodeError as err:
                raise DatasetError(f"{spec}: not valid JSON ({err})") from err
            if declared:
                return normalise_labels(declared, str(spec))
    return None


def _found_labels(references: object) -> dict[int, str]:
    found = sorted({0, *(int(v) for ref in references for v in np.unique(ref.array))})  # type: ignore[attr-defined]
    return {v: "background" if v == 0 else str(v) for v in found}


def _preview(ids: list[str], n: int = 5) -> str:
    return "[" + ", ".join(ids[:n]) + (", ..." if len(ids) > n else "") + "]"
