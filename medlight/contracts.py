"""The contract between tasks and data modules: what a data module tells, and what each task reads.

Tasks never import :mod:`medlight.data`; they check their data module against one of the Protocols below
(``isinstance(datamodule, SegmentationData)``) and read only what it lists. Facts flow one way: from the
data module to the task, never back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class SegmentationSpec:
    """What a segmentation task needs to know about its data.

    Attributes:
        class_names: foreground class names (the network outputs ``len + 1`` channels, background first).
        in_channels: input channels of the network.
        spatial_dims: spatial dimensions of the network (2 in slice mode).
        patch_size: training patch size, also the sliding-window size at inference.
        slice_axis: volume axis that is sliced in 2D slice mode, else None.
    """

    class_names: list[str]
    in_channels: int
    spatial_dims: int
    patch_size: tuple[int, ...]
    slice_axis: int | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ClassificationSpec:
    """Class names in index order and the network's input channels."""

    class_names: list[str]
    in_channels: int


@dataclass(frozen=True)
class InstanceSpec:
    """What an instance task needs to know: input channels and the training patch size."""

    in_channels: int
    patch_size: tuple[int, int]


@runtime_checkable
class RunFacts(Protocol):
    """A data module that tells the run manifest its seeds, split file and any subset file (with hashes)."""

    def run_facts(self) -> dict[str, Any]: ...


@runtime_checkable
class SegmentationData(Protocol):
    """What :class:`medlight.tasks.SegmentationTask` reads from its data module."""

    @property
    def spec(self) -> SegmentationSpec: ...

    case_ids: list[str]  # case index (the batches' ``case_index``) -> case id

    def transform_for(self, stage: str) -> Any:
        """The evaluation transform of a stage's loader (to invert predictions)."""

    def to_source_geometry(self, prediction: Any, image: Any, transform: Any) -> Any:
        """A (C, *spatial) prediction mapped back to the source image's geometry."""


@runtime_checkable
class TunableSegmentationData(SegmentationData, Protocol):
    """Segmentation data that also yields its validation cases at test, to choose the post-processing on them."""

    def tuning_dataloader(self) -> Any:
        """The validation cases (one per batch, with labels), available at test too."""


@runtime_checkable
class SemiSupervisedData(SegmentationData, Protocol):
    """Segmentation data with a labeled subset; ``unlabeled`` says whether it also yields the unlabeled stream
    (batches ``{"labeled": ..., "unlabeled": ...}``) or the labeled cases alone."""

    unlabeled: bool


@runtime_checkable
class ClassificationData(Protocol):
    """What :class:`medlight.tasks.ABNClassificationTask` reads from its data module."""

    @property
    def spec(self) -> ClassificationSpec: ...

    case_ids: list[str]  # unit (patient) index -> unit id


@runtime_checkable
class InstanceData(Protocol):
    """What :class:`medlight.tasks.InstanceSegmentationTask` reads from its data module."""

    @property
    def spec(self) -> InstanceSpec: ...

    case_ids: list[str]

    def tuning_dataloader(self) -> Any:
        """The validation slices, available at test too, for choosing post-processing (the watershed)."""


@runtime_checkable
class ReconstructionData(Protocol):
    """What :class:`medlight.tasks.ReconstructionTask` reads from its data module."""

    case_meta: dict[int, dict[str, str]]  # case index -> case_id, center, protocol


def require(datamodule: Any, contract: type, task: str, example: str = "") -> Any:
    """``datamodule`` if it fulfils ``contract``; else a :class:`medlight.errors.ConfigError` naming what is missing
    (and ``example``, a data module that fulfils it)."""
    from medlight.errors import ConfigError

    if datamodule is None or not isinstance(datamodule, contract):
        members = sorted(_members(contract))
        missing = [m for m in members if datamodule is None or not hasattr(datamodule, m)]
        kind = f"{contract.__name__}, e.g. {example}" if example else contract.__name__
        raise ConfigError(
            f"{task} needs a data module that provides {', '.join(members)} ({kind}); "
            f"{type(datamodule).__name__} lacks {', '.join(missing) or 'them'}"
        )
    return datamodule


def _members(contract: type) -> set[str]:
    names: set[str] = set()
    for base in contract.__mro__:
        if base is object or base is Protocol:
            continue
        names |= {n for n in vars(base) if not n.startswith("_")} | set(getattr(base, "__annotations__", {}))
    return names
