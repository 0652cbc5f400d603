"""Instance targets and watershed post-processing: touching objects are separated again."""

import numpy as np
import pytest

from medlight.metrics.instance import instance_scores
from medlight.ops.instances import instance_targets, remove_small_objects, slice_instances, watershed_instances


def touching_disks() -> np.ndarray:
    yy, xx = np.mgrid[:24, :40]
    out = np.zeros((24, 40), int)
    out[(yy - 12) ** 2 + (xx - 12) ** 2 <= 64] = 1
    out[(yy - 12) ** 2 + (xx - 27) ** 2 <= 64] = 2  # centres 15 apart, radius 8: the disks touch
    return out


def test_targets_of_a_hand_made_map() -> None:
    t = np.zeros((5, 7), int)
    t[1:4, 1:4] = 3  # a 3x3 square: border ring of 8 pixels, one centre pixel
    fg, boundary, centre = instance_targets(t)
    assert fg.sum() == 9 and boundary.sum() == 8 and boundary[2, 2] == 0
    assert centre[2, 2] == 1.0 and centre[1, 1] == 0.5 and centre[0, 0] == 0  # distances 2 and 1, max 2
    assert instance_targets(np.zeros((3, 3), int)).sum() == 0


def test_watershed_separates_touching_objects_that_a_foreground_mask_merges() -> None:
    truth = touching_disks()
    fg, boundary, centre = instance_targets(truth)
    assert instance_scores((fg > 0.5).astype(int), truth)["found"] == 1  # connected components: merged
    pred = watershed_instances(fg, centre, boundary)
    scores = instance_scores(pred, truth)
    assert scores["found"] == 2 and scores["f1"] == 1.0 and scores["aji"] > 0.9


def test_foreground_without_a_centre_is_kept_and_small_objects_go() -> None:
    fg = np.zeros((10, 10))
    fg[1:4, 1:4] = 1  # no centre predicted here
    fg[6:9, 6:9] = 1
    centre = np.zeros((10, 10))
    centre[7, 7] = 1
    pred = watershed_instances(fg, centre)
    assert sorted(np.unique(pred).tolist()) == [0, 1, 2] and pred.dtype == np.int32
    fg[0, 9] = 1  # a single stray pixel
    assert watershed_instances(fg, centre, min_size=2).max() == 2


def test_remove_small_objects_renumbers_what_is_left() -> None:
    labels = np.array([[1, 1, 0, 3], [1, 0, 0, 3], [0, 5, 0, 3]])
    assert remove_small_objects(labels, 3).tolist() == [[1, 1, 0, 2], [1, 0, 0, 2], [0, 0, 0, 2]]
    assert remove_small_objects(labels, 1).max() == 3  # nothing removed, ids made consecutive
    assert remove_small_objects(labels, 4).max() == 0


def test_three_dimensional() -> None:
    truth = np.stack([touching_disks()] * 3)
    fg, boundary, centre = instance_targets(truth)
    assert instance_scores(watershed_instances(fg, centre, boundary), truth)["f1"] == 1.0


def test_slice_instances_labels_each_slice_on_its_own() -> None:
    volume = np.zeros((6, 6, 2), int)
    volume[0:2, 0:2, 0] = 4  # two blobs of class 4 in slice 0
    volume[3:5, 3:5, 0] = 4
    volume[0, 5, 0] = 4  # a 1-pixel blob
    volume[1:3, 1:3, 1] = 2  # other class in slice 1: not an object
    volume[4, 4, 1] = 4
    volume[4, 5, 1] = 1  # touches the class-4 pixel, counted with it when class 1 is included
    out = slice_instances(volume, classes=(4,), min_size=2)
    assert sorted(np.unique(out[..., 0]).tolist()) == [0, 1, 2] and out[..., 1].max() == 0
    assert slice_instances(volume, classes=(1, 4))[..., 1].max() == 1
    diagonal = np.zeros((3, 3, 1), int)
    diagonal[0, 0, 0] = diagonal[1, 1, 0] = 1  # only corner-connected: two objects
    assert slice_instances(diagonal, classes=(1,)).max() == 2


def test_brats_tumour_slices_hold_several_objects(shared_data_root) -> None:
    nib = pytest.importorskip("nibabel")
    case = next((shared_data_root / "brats2015_subset" / "train").glob("*/OTMultiClass.nii.gz"))
    labels = np.asarray(nib.load(str(case)).dataobj).astype(np.int16)
    instances = slice_instances(labels, classes=(4,), axis=2, min_size=10)  # enhancing tumour, axial slices
    per_slice = instances.reshape(-1, instances.shape[2]).max(0)
    assert per_slice.max() >= 2  # separable objects exist: the derivation gives a real instance task


@pytest.fixture
def shared_data_root():
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "brats2015_subset").is_dir():
        pytest.skip("../shared/data/brats2015_subset is not present (it is not part of a clone)")
    return SHARED_DATA


def test_centre_boundary_loss_is_lower_for_matching_logits() -> None:
    import torch

    from medlight.losses.instance import CentreBoundaryLoss

    instances = np.zeros((16, 16), np.int32)
    instances[3:9, 3:9], instances[9:14, 4:12] = 1, 2
    targets = torch.from_numpy(instance_targets(instances))[None]
    loss = CentreBoundaryLoss()
    good = loss(torch.logit(targets.clamp(0.01, 0.99)), targets)
    bad = loss(torch.logit((1 - targets).clamp(0.01, 0.99)), targets)
    assert float(good) < 0.5 * float(bad)
    with pytest.raises(ValueError, match="need \\(B, 3"):
        loss(torch.zeros(1, 2, 16, 16), targets[:, :2])
