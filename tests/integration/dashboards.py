"""Read back what a run logged to its dashboards: the offline wandb run and the TensorBoard event files."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlight.runs.layout import RunLayout

BLOCK = 32 * 1024  # wandb's transaction log is a LevelDB-style log: 32 KiB blocks of framed chunks


@dataclass
class WandbRun:
    """What an offline wandb run holds: config, group, tags, logged keys and its media files."""

    config: dict[str, Any] = field(default_factory=dict)
    group: str = ""
    tags: list[str] = field(default_factory=list)
    history_keys: set[str] = field(default_factory=set)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (type, name)
    folder: Path = Path()

    def media(self, kind: str) -> list[Path]:
        """Files under ``files/media/<kind>`` (``images``, ``table``)."""
        return sorted((self.folder / "files" / "media" / kind).rglob("*.*"))


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of a ``run-<id>.wandb`` file (wandb's own record type, ``wandb.proto``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B", f"{path}: not a wandb transaction log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer: padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding up to the block's end
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_wandb(run_dir: Path) -> WandbRun:
    """The (last) offline wandb run under ``<run_dir>/wandb``."""
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert folders, f"no offline wandb run under {run_dir}"
    out = WandbRun(folder=folders[-1])
    for path in sorted(f for folder in folders for f in folder.glob("run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                out.group, out.tags = record.run.run_group, list(record.run.tags)
                out.config |= {i.key: json.loads(i.value_json) for i in record.run.config.update}
            elif kind == "config":
                out.config |= {i.key: json.loads(i.value_json) for i in record.config.update}
            elif kind == "artifact":
                out.artifacts.append((record.artifact.type, record.artifact.name))
            elif kind == "history":
                out.history_keys |= {i.key or i.nested_key[0] for i in record.history.item}  # media: nested
    return out


@dataclass
class TensorBoardRun:
    hparams: dict[str, Any]
    scalars: set[str]
    images: set[str]
    texts: dict[str, str]


def read_tensorboard(run_dir: Path) -> TensorBoardRun:
    """Hyperparameters, scalar and image tags, and text entries of ``<run_dir>/tensorboard``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(RunLayout(run_dir).tensorboard), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    hparams: dict[str, Any] = {}
    content = acc.PluginTagToContent("hparams").get("_hparams_/session_start_info")
    if content is not None:
        info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        for key, value in info.hparams.items():
            hparams[key] = getattr(value, value.WhichOneof("kind"))
    texts = {}
    for tag in acc.Tags()["tensors"]:
        if tag.endswith("/text_summary"):
            value = tensor_util.make_ndarray(acc.Tensors(tag)[-1].tensor_proto)
            texts[tag.removesuffix("/text_summary")] = value.item().decode()
    return TensorBoardRun(hparams, set(acc.Tags()["scalars"]), set(acc.Tags()["images"]), texts)
