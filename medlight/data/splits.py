"""Seeded k-fold splits, written to a split file once and reused by every run and every model.

A split file holds a held-out test set and ``num_folds`` validation folds over the remaining cases.
Cases can be grouped (e.g. slices or scans of one patient): a group never straddles two parts.
Reusing a split file checks that it was made for the same cases and settings, so a run can never
silently train on a different partition than its neighbours in a study.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medlight.errors import DatasetError
from medlight.runs.layout import write_json

SPLIT_FORMAT = 1


@dataclass(frozen=True)
class Splits:
    """A partition of case ids into a test set and validation folds.

    Attributes:
        path: the split file.
        seed: the seed that made it.
        test: held-out case ids, never used for training or model selection.
        folds: validation case ids of each fold; fold k trains on every other fold.
        sha256: hash of the split file's bytes, recorded in every run manifest.
    """

    path: Path
    seed: int
    test: list[str]
    folds: list[list[str]]
    sha256: str

    @property
    def num_folds(self) -> int:
        return len(self.folds)

    def val_ids(self, fold: int) -> list[str]:
        self._check_fold(fold)
        return list(self.folds[fold])

    def train_ids(self, fold: int) -> list[str]:
        """Every non-test case outside validation fold ``fold``."""
        self._check_fold(fold)
        return [cid for k, ids in enumerate(self.folds) if k != fold for cid in ids]

    def _check_fold(self, fold: int) -> None:
        if not 0 <= fold < self.num_folds:
            raise DatasetError(f"{self.path}: fold {fold} does not exist (the split has {self.num_folds} folds)")


def load_or_create_splits(
    path: str | Path,
    case_ids: Sequence[str],
    num_folds: int = 5,
    seed: int = 0,
    test_fraction: float = 0.2,
    groups: dict[str, str] | None = None,
    test_cases: Sequence[str] | None = None,
) -> Splits:
    """Load the split file at ``path``, or create it from ``case_ids`` if it does not exist.

    Args:
        path: split file (JSON). Created with its parent folders on first use.
        case_ids: every case of the dataset, bad ones included, so that skipping a case never reshuffles.
        num_folds: number of validation folds (>= 2); fold k validates on 1/num_folds of the non-test cases.
        seed: seed of the shuffle.
        test_fraction: share of cases (or groups) held out as the test set; ignored with ``test_cases``.
        groups: case id -> group id (patient); cases of a group stay together.
        test_cases: explicit held-out case ids (their groups go with them) instead of a random test set.

    Raises:
        DatasetError: the existing file is malformed (parts overlap, unknown or unassigned or repeated ids),
            was made for other cases or settings, or cannot be written.
    """
    path = Path(path)
    wanted_test = sorted(set(test_cases)) if test_cases is not None else None
    if wanted_test is not None:
        unknown = sorted(set(wanted_test) - set(case_ids))
        if unknown:
            raise DatasetError(f"test_cases: {len(unknown)} id(s) are not cases of the dataset {_preview(unknown)}")
    if path.is_file():
        return _load(path, case_ids, num_folds, seed, test_fraction, wanted_test)
    content = _make(case_ids, num_folds, seed, test_fraction, groups or {}, wanted_test)
    try:
        write_json(path, content)
    except OSError as err:
        raise DatasetError(f"{path}: cannot write the split file ({err}); set split_file to a writable path") from err
    return _load(path, case_ids, num_folds, seed, test_fraction, wanted_test)


def _make(
    case_ids: Sequence[str],
    num_folds: int,
    seed: int,
    test_fraction: float,
    groups: dict[str, str],
    test_cases: list[str] | None,
) -> dict:
    if num_folds < 2:
        raise DatasetError(f"num_folds must be >= 2, got {num_folds}")
    if not 0 <= test_fraction < 1:
        raise DatasetError(f"test_fraction must be in [0, 1), got {test_fraction}")
    members: dict[str, list[str]] = {}
    for cid in sorted(case_ids):
        members.setdefault(groups.get(cid, cid), []).append(cid)
    keys = sorted(members)
    random.Random(seed).shuffle(keys)
    if test_cases is not None:
        chosen = {groups.get(cid, cid) for cid in test_cases}
        test_keys, rest = [k for k in keys if k in chosen], [k for k in keys if k not in chosen]
    else:
        n_test = math.ceil(test_fraction * len(keys)) if test_fraction > 0 else 0
        test_keys, rest = keys[:n_test], keys[n_test:]
    if len(rest) < num_folds:
        raise DatasetError(f"{len(rest)} case group(s) left after the test set: too few for {num_folds} folds")
    content = {
        "format": SPLIT_FORMAT,
        "seed": seed,
        "num_folds": num_folds,
        "test_fraction": test_fraction,
        "case_ids": sorted(case_ids),
        "groups": {cid: g for cid, g in sorted(groups.items()) if g != cid},
        "test": sorted(c for k in test_keys for c in members[k]),
        "folds": [sorted(c for k in rest[i::num_folds] for c in members[k]) for i in range(num_folds)],
    }
    if test_cases is not None:
        content["test_cases"] = test_cases
    return content


def _load(
    path: Path,
    case_ids: Sequence[str],
    num_folds: int,
    seed: int,
    test_fraction: float,
    test_cases: list[str] | None,
) -> Splits:
    raw = path.read_bytes()
    try:
        content = json.loads(raw)
        stored = (content["num_folds"], content["seed"], content["test_fraction"])
        listed = content["case_ids"]
        test, folds = content["test"], content["folds"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DatasetError(
            f"{path}: not a medlight split file (needs num_folds, seed, test_fraction, case_ids, test, folds; "
            f"{type(err).__name__}: {err}); delete it to make a new one"
        ) from err
    _validate(path, listed, test, folds)
    if stored != (num_folds, seed, test_fraction) or len(folds) != num_folds:
        raise DatasetError(
            f"{path}: made with num_folds={stored[0]} ({len(folds)} folds), seed={stored[1]}, "
            f"test_fraction={stored[2]}, but this run asks for num_folds={num_folds}, seed={seed}, "
            f"test_fraction={test_fraction}. Use the same settings, or point split_file to a new file."
        )
    if test_cases is not None and not set(test_cases) <= set(test):
        raise DatasetError(
            f"{path}: test_cases {_preview(sorted(set(test_cases) - set(test)))} are not in this split file's test "
            "set; point split_file to a new file to make a split with them held out"
        )
    current = set(case_ids)
    if set(listed) != current:
        new, gone = sorted(current - set(listed)), sorted(set(listed) - current)
        raise DatasetError(
            f"{path}: split file does not match the dataset: {len(new)} case(s) not in the split "
            f"{_preview(new)}, {len(gone)} split case(s) not in the dataset {_preview(gone)}. "
            "Runs must share one partition: restore the dataset, or make a new split file."
        )
    return Splits(path, seed, list(test), [list(f) for f in folds], hashlib.sha256(raw).hexdigest())


def _validate(path: Path, listed: object, test: object, folds: object) -> None:
    """A split file must partition its ``case_ids``: disjoint parts, every id known and assigned exactly once."""

    def ids(value: object) -> bool:
        return isinstance(value, list) and all(isinstance(x, str) for x in value)

    if not ids(listed) or not ids(test) or not isinstance(folds, list) or not all(ids(f) for f in folds):
        raise DatasetError(f"{path}: case_ids, test and every fold must be lists of case ids (strings)")
    assert isinstance(listed, list) and isinstance(test, list)  # for mypy: checked above
    parts = [("test", test), *((f"fold {k}", fold) for k, fold in enumerate(folds))]
    seen: dict[str, str] = {}
    for name, part in parts:
        for cid in part:
            if cid in seen:
                where = "twice in " + name if seen[cid] == name else f"in both {seen[cid]} and {name}"
                raise DatasetError(f"{path}: split parts overlap: case {cid} is {where}")
            seen[cid] = name
    repeated = sorted(cid for cid, n in Counter(listed).items() if n > 1)
    unknown = sorted(set(seen) - set(listed))
    unassigned = sorted(set(listed) - set(seen))
    for what, found in (("repeated in case_ids", repeated), ("unknown", unknown), ("in no part", unassigned)):
        if found:
            raise DatasetError(f"{path}: invalid split file: {len(found)} case id(s) {what} {_preview(found)}")


def _preview(ids: list[str], n: int = 5) -> str:
    return "[" + ", ".join(ids[:n]) + (", ..." if len(ids) > n else "") + "]"
