"""Data module for multi-coil k-space reconstruction, with center and protocol identifiers on every sample.

Training items are single slices, undersampled with a fresh mask per draw (seeded, so resumable).
Evaluation items are whole volumes with one fixed mask per volume (seeded by the case id, so every run and
every model sees the same mask). K-space and target are divided by the maximum of the zero-filled RSS
image, a quantity known at inference time, so intensity scales of different sites are comparable.
Splits are made per center (one split file per center), so each center has its own held-out test volumes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Compose, MapTransform, Randomizable
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from medlight.data.base import MedlightDataModule
from medlight.data.kspace.io import discover_kspace, read_kspace
from medlight.data.kspace.simulation import SimulationConfig, simulate
from medlight.data.splits import load_or_create_splits
from medlight.errors import ConfigError
from medlight.keys import Key
from medlight.ops.kspace import MaskKind, cartesian_mask, case_seed, ifft2c, rss, scanner_mask, to_real

log = logging.getLogger(__name__)


class UndersampleKspaced(Randomizable, MapTransform):
    """Undersample ``item[Key.KSPACE]`` (..., coils, H, W, 2) with a Cartesian mask over W.

    Adds ``masked`` (normalised undersampled k-space), ``mask`` (1, 1, W, 1) and scales ``target`` alike.
    With ``fixed=True`` the mask is seeded by ``item[Key.CASE_ID]`` (validation/test); else by the transform's
    random state, which the resumable training loader seeds per draw.
    """

    def __init__(
        self, acceleration: float, center_fraction: float, kind: MaskKind, fixed: bool, center_lines: int | None = None
    ) -> None:
        MapTransform.__init__(self, ["kspace"])
        self.acceleration, self.center_fraction, self.kind, self.fixed = acceleration, center_fraction, kind, fixed
        self.center_lines = center_lines

    def randomize(self, data: Any = None) -> None:
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, item: dict) -> dict:
        self.randomize()
        seed = case_seed(item[Key.CASE_ID]) if self.fixed else self._seed
        kspace: Tensor = item[Key.KSPACE]
        if self.center_lines:  # the scanner's way: every R-th line plus a number of centre lines
            mask = scanner_mask(kspace.shape[-2], int(self.acceleration), self.center_lines, self.kind, seed)
        else:
            mask = cartesian_mask(kspace.shape[-2], self.acceleration, self.center_fraction, self.kind, seed)
        mask = mask.view(1, 1, -1, 1)
        masked = kspace * mask
        scale = rss(ifft2c(masked), coil_dim=-3).amax().clamp_min(1e-12)
        out = {k: v for k, v in item.items() if k != "kspace"}
        return {**out, "masked": masked / scale, "mask": mask, "target": item[Key.TARGET] / scale, "scale": scale}


class KspaceDataModule(MedlightDataModule):
    """Multi-center, multi-protocol k-space data (real files or the simulator).

    Args:
        dataset: folder of k-space files (see :mod:`medlight.data.kspace.io`); ignored with ``simulation``.
        simulation: simulate the dataset (see :mod:`medlight.data.kspace.simulation`) and read it from its folder.
        split_dir: folder of the per-center split files (default ``<dataset>/splits``).
        num_folds: validation folds per center.
        fold: validation fold.
        test_fraction: share of each center's volumes held out for testing.
        train_centers: centers trained and validated on (default all).
        test_centers: centers tested on (default all).
        max_train_volumes: train on at most this many volumes (the first of a seeded order), e.g. to adapt
            to a new center from a small part of its data.
        acceleration: undersampling factor (4, 8, ...).
        center_fraction: share of fully sampled centre columns.
        mask: ``equispaced`` or ``random`` Cartesian masks.
        center_lines: scanner-style masks instead (:func:`medlight.ops.kspace.scanner_mask`): this many fully
            sampled centre lines plus every ``acceleration``-th line (``equispaced``) or as many random ones;
            ``acceleration`` is then the scanner's R (an integer) and ``center_fraction`` is ignored.
        batch_size: training slices per batch; slices of centers with different coil counts cannot share a
            batch, so keep 1 unless every training center has the same coil count.
        num_workers: loader workers.
        seed: sampling, mask and split seed.
    """

    def __init__(
        self,
        dataset: str | None = None,
        simulation: SimulationConfig | None = None,
        split_dir: str | None = None,
        num_folds: int = 5,
        fold: int = 0,
        test_fraction: float = 0.3,
        train_centers: list[str] | None = None,
        test_centers: list[str] | None = None,
        max_train_volumes: int | None = None,
        acceleration: float = 4.0,
        center_fraction: float = 0.08,
        mask: MaskKind = "equispaced",
        center_lines: int | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, "none", None)
        if dataset is None and simulation is None:
            raise ConfigError("KspaceDataModule needs `dataset` (a folder of k-space files) or `simulation`")
        self.dataset, self.simulation, self.split_dir = dataset, simulation, split_dir
        self.num_folds, self.fold, self.test_fraction = num_folds, fold, test_fraction
        self.train_centers, self.test_centers, self.max_train_volumes = train_centers, test_centers, max_train_volumes
        self.acceleration, self.center_fraction, self.mask = acceleration, center_fraction, mask
        self.center_lines = center_lines
        try:  # an impossible mask must fail now, not at the first validation or test
            cartesian_mask(64, acceleration, center_fraction, mask)
        except ValueError as err:
            raise ConfigError(f"data.acceleration / data.center_fraction: {err}") from err
        self.case_ids: list[str] = []
        self.case_meta: dict[int, dict[str, str]] = {}  # case index -> case_id, center, protocol
        self.parts: dict[str, list[dict]] = {}

    def prepare_data(self) -> None:
        if self.simulation is not None:
            simulate(self.simulation)

    @property
    def root(self) -> Path:
        if self.simulation is not None:
            out = Path(self.simulation.out_dir)
            return out if out.is_absolute() else Path.cwd() / out
        return Path(self.dataset)  # type: ignore[arg-type]

    def setup(self, stage: str) -> None:
        if self.parts:
            return
        if self.simulation is not None:
            simulate(self.simulation)  # no-op when prepare_data already made it
        cases = discover_kspace(self.root)
        self.case_ids = [c["case_id"] for c in cases]
        self.case_meta = {i: {k: c[k] for k in ("case_id", "center", "protocol")} for i, c in enumerate(cases)}
        split_dir = Path(self.split_dir) if self.split_dir else self.root / "splits"
        parts: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
        for center in sorted({c["center"] for c in cases}):
            mine = [c for c in cases if c["center"] == center]
            splits = load_or_create_splits(
                split_dir / f"{center}.json",
                [c["case_id"] for c in mine],
                self.num_folds,
                self.seed,
                self.test_fraction,
            )
            by_id = {c["case_id"]: c for c in mine}
            if self.train_centers is None or center in self.train_centers:
                parts["train"] += [by_id[i] for i in splits.train_ids(self.fold)]
                parts["val"] += [by_id[i] for i in splits.val_ids(self.fold)]
            if self.test_centers is None or center in self.test_centers:
                parts["test"] += [by_id[i] for i in splits.test]
        if self.max_train_volumes is not None:
            order = torch.randperm(len(parts["train"]), generator=torch.Generator().manual_seed(self.seed))
            parts["train"] = [parts["train"][int(i)] for i in order[: self.max_train_volumes]]
        self._check_parts(parts, {c["center"] for c in cases})
        self.parts = parts
        log.info("k-space data: %s", ", ".join(f"{k} {len(v)} volume(s)" for k, v in parts.items()))

    def _check_parts(self, parts: dict[str, list[dict]], centers: set[str]) -> None:
        for name, wanted in (("train_centers", self.train_centers), ("test_centers", self.test_centers)):
            missing = sorted(set(wanted or []) - centers)
            if missing:
                raise ConfigError(f"{self.root}: {name} {missing} not in the data (centers: {sorted(centers)})")
        if not parts["train"] or not parts["test"]:
            raise ConfigError(f"{self.root}: no training or no test volumes for these centers and split settings")

    # -- items --------------------------------------------------------------------------------------
    def _volumes(self, cases: list[dict]) -> list[dict]:
        items = []
        for case in cases:
            volume = read_kspace(case["file"])
            kspace = to_real(volume.kspace)
            # the stored reference if the file has one, else the RSS of the fully sampled k-space
            target = torch.from_numpy(volume.target) if volume.target is not None else rss(ifft2c(kspace))
            ident = {Key.CASE_ID: case["case_id"], "center": case["center"], "protocol": case["protocol"]}
            index = self.case_ids.index(case["case_id"])
            items.append({**ident, Key.CASE_INDEX: index, "kspace": kspace, "target": target})
        return items

    def _slices(self, cases: list[dict]) -> list[dict]:
        out = []
        for vol in self._volumes(cases):
            ident = {k: v for k, v in vol.items() if k not in ("kspace", "target")}
            out += [
                {**ident, "kspace": vol["kspace"][s], "target": vol["target"][s]} for s in range(len(vol["kspace"]))
            ]
        return out

    def _undersample(self, fixed: bool) -> Compose:
        return Compose(
            [UndersampleKspaced(self.acceleration, self.center_fraction, self.mask, fixed, self.center_lines)]
        )

    def train_dataloader(self) -> DataLoader:
        slices = self.train_share(self._slices(self.parts["train"]))
        coils = {s["kspace"].shape[0] for s in slices}
        if self.batch_size > 1 and len(coils) > 1:
            raise ConfigError(f"batch_size {self.batch_size} needs one coil count; training data has {sorted(coils)}")
        return self.train_loader(_ListDataset(slices), self._undersample(fixed=False), collate_fn=default_collate)

    def _eval(self, part: str) -> DataLoader:
        transform = self._undersample(fixed=True)
        items = [transform(v) for v in self._volumes(self.eval_share(self.parts[part], part))]
        return self.eval_loader(_ListDataset(items), collate_fn=default_collate)

    def val_dataloader(self) -> DataLoader:
        return self._eval("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval("test")


class _ListDataset(Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]
