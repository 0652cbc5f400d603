import json
from pathlib import Path

import pytest

from medlight.data.splits import load_or_create_splits
from medlight.errors import DatasetError

IDS = [f"c{i:02d}" for i in range(23)]


def test_split_is_a_partition_and_is_written_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "splits.json"
    s = load_or_create_splits(path, IDS, num_folds=4, seed=3, test_fraction=0.2)
    assert path.is_file()
    assert len(s.test) == 5  # ceil(0.2 * 23)
    everything = s.test + [c for fold in s.folds for c in fold]
    assert sorted(everything) == sorted(IDS)  # each case exactly once
    for k in range(4):
        assert set(s.train_ids(k)).isdisjoint(s.val_ids(k))
        assert set(s.train_ids(k)) | set(s.val_ids(k)) == set(IDS) - set(s.test)
    first_bytes = path.read_bytes()
    again = load_or_create_splits(path, list(reversed(IDS)), num_folds=4, seed=3, test_fraction=0.2)
    assert again.folds == s.folds and again.sha256 == s.sha256 and path.read_bytes() == first_bytes


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path) -> None:
    a = load_or_create_splits(tmp_path / "a.json", IDS, 5, seed=0)
    b = load_or_create_splits(tmp_path / "b.json", IDS, 5, seed=0)
    c = load_or_create_splits(tmp_path / "c.json", IDS, 5, seed=1)
    assert a.folds == b.folds and a.test == b.test
    assert a.folds != c.folds


def test_groups_never_straddle_parts(tmp_path: Path) -> None:
    groups = {cid: f"patient{i // 3}" for i, cid in enumerate(IDS)}
    s = load_or_create_splits(tmp_path / "g.json", IDS, 3, seed=0, test_fraction=0.25, groups=groups)
    parts = [s.test, *s.folds]
    for patient in set(groups.values()):
        members = {c for c, g in groups.items() if g == patient}
        assert sum(bool(members & set(part)) for part in parts) == 1


def test_reuse_with_other_cases_or_settings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    load_or_create_splits(path, IDS, 5)
    with pytest.raises(DatasetError, match="1 case\\(s\\) not in the split"):
        load_or_create_splits(path, [*IDS, "new"], 5)
    with pytest.raises(DatasetError, match="not in the dataset"):
        load_or_create_splits(path, IDS[:-1], 5)
    with pytest.raises(DatasetError, match="num_folds=5"):
        load_or_create_splits(path, IDS, 3)
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(DatasetError, match="not a medlight split file"):
        load_or_create_splits(path, IDS, 5)


def test_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="num_folds"):
        load_or_create_splits(tmp_path / "x.json", IDS, 1)
    with pytest.raises(DatasetError, match="too few"):
        load_or_create_splits(tmp_path / "y.json", IDS[:4], 5)
    with pytest.raises(DatasetError, match="fold 7"):
        load_or_create_splits(tmp_path / "z.json", IDS, 5).val_ids(7)
