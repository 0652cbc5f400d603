"""The keys of the data dicts that data modules yield and tasks read: one name for each, defined once.

``Key`` members are ``str`` (``Key.IMAGE == "image"``), so MONAI transforms, collated batches and saved
files see plain strings.
"""

from enum import StrEnum


class Key(StrEnum):
    IMAGE = "image"
    LABEL = "label"
    LABEL_ORIGINAL = "label_original"  # untouched label, to score predictions in the source geometry
    IMAGE_STRONG = "image_strong"  # the student's strongly perturbed view of an unlabeled image
    MASK = "mask"  # organ mask (classification) or sampling mask (k-space)
    INSTANCES = "instances"  # instance map: 0 background, 1..N objects
    TARGETS = "targets"  # foreground, boundary and centre-ness maps derived from the instances
    CASE_ID = "case_id"  # the case's name in the dataset
    CASE_INDEX = "case_index"  # the case's position in the data module's ``case_ids``
    SLICE_INDEX = "slice_index"
    KSPACE = "kspace"
    MASKED = "masked"  # undersampled k-space
    TARGET = "target"  # fully sampled reference image
    SCALE = "scale"
    CENTER = "center"
    PROTOCOL = "protocol"
    LABELED = "labeled"  # the two streams of a semi-supervised batch
    UNLABELED = "unlabeled"
