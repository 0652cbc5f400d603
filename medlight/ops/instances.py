"""Centre/boundary-aware instance segmentation: training targets from instance maps, and their inverse.

A semantic network (any in ``medlight.nets``) predicts three maps per pixel: foreground, object boundary
and a centre-ness map (1 at an object's innermost pixels, falling to 0 at its border). Objects that touch
share a foreground region but keep separate centres, so marker-controlled watershed on the centre-ness
map, limited to predicted foreground, separates them again. Works in 2D and 3D.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.segmentation import find_boundaries, watershed


def instance_targets(instances: NDArray) -> NDArray[np.float32]:
    """(3, *spatial) targets from an instance map: foreground, inner boundary, centre-ness.

    Centre-ness is each object's distance to its own border divided by that object's largest distance,
    so every object, small or large, peaks at 1.
    """
    instances = np.asarray(instances)
    foreground = instances > 0
    boundary = find_boundaries(instances, mode="inner") & foreground
    centre = np.zeros(instances.shape, np.float32)
    for obj, box in enumerate(ndimage.find_objects(instances.astype(np.int64)), start=1):
        if box is None:
            continue
        mask = np.pad(instances[box] == obj, 1)  # pad: the crop's edge is not the object's border
        dist = ndimage.distance_transform_edt(mask)[(slice(1, -1),) * mask.ndim]
        inside = mask[(slice(1, -1),) * mask.ndim]
        centre[box][inside] = (dist[inside] / dist.max()).astype(np.float32)
    return np.stack([foreground, boundary, centre]).astype(np.float32)


def watershed_instances(
    foreground: NDArray,
    centre: NDArray,
    boundary: NDArray | None = None,
    threshold: float = 0.5,
    centre_threshold: float = 0.6,
    min_size: int = 0,
) -> NDArray[np.int32]:
    """Instance map from predicted foreground / centre-ness (/ boundary) probabilities.

    Markers are the connected regions where centre-ness exceeds ``centre_threshold`` (inside foreground);
    the watershed floods ``-centre`` (raised by the boundary probability when given) from them, within
    the foreground mask. Foreground regions without any marker become one object each.

    Args:
        foreground: foreground probability, (*spatial).
        centre: centre-ness probability, same shape.
        boundary: optional boundary probability, same shape.
        threshold: foreground probability threshold.
        centre_threshold: centre-ness threshold for markers.
        min_size: objects smaller than this many pixels are removed (0: keep all).

    Returns:
        int32 instance map, objects numbered 1..n.
    """
    mask = np.asarray(foreground) > threshold
    markers = connected_components(mask & (np.asarray(centre) > centre_threshold))
    # foreground components that hold no marker become one object each
    reached = ndimage.binary_dilation(markers > 0, iterations=0, mask=mask)  # marker regions grown within mask
    orphans = connected_components(mask & ~reached)
    markers[orphans > 0] = orphans[orphans > 0] + markers.max()
    relief = -np.asarray(centre, np.float32) + (np.asarray(boundary, np.float32) if boundary is not None else 0)
    return remove_small_objects(watershed(relief, markers, mask=mask), min_size)


def remove_small_objects(labels: NDArray, min_size: int) -> NDArray[np.int32]:
    """``labels`` without objects of fewer than ``min_size`` pixels, renumbered 1..n."""
    labels = np.asarray(labels)
    if min_size > 1:
        small = np.bincount(labels.ravel()) < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return _renumber(labels)


def _renumber(labels: NDArray) -> NDArray[np.int32]:
    ids, inverse = np.unique(labels, return_inverse=True)
    out = inverse.reshape(labels.shape).astype(np.int32)
    return out if ids[0] == 0 else out + 1


def slice_instances(labels: NDArray, classes: tuple[int, ...], axis: int = 2, min_size: int = 1) -> NDArray[np.int32]:
    """Per-slice instance maps from a semantic label volume: connected components of ``classes``.

    The honest way to get separable objects from a semantic dataset (e.g. the enhancing-tumour class of
    BraTS, which splits into several blobs in many axial slices): each slice along ``axis`` is labelled
    on its own (4-/6-connectivity: face neighbours only), objects numbered 1..n within each slice, and
    components smaller than ``min_size`` pixels dropped.

    Args:
        labels: integer label volume.
        classes: label values that count as foreground.
        axis: slicing axis.
        min_size: smallest object kept, in pixels.

    Returns:
        int32 volume of the same shape holding a 2D instance map in every slice.
    """
    foreground = np.isin(np.asarray(labels), classes)
    out = np.zeros(foreground.shape, np.int32)
    for i in range(foreground.shape[axis]):
        index = (slice(None),) * axis + (i,)
        out[index] = remove_small_objects(connected_components(foreground[index], connectivity=1), min_size)
    return out
