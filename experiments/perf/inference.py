"""Sliding-window inference throughput: medlight vs a direct MONAI ``sliding_window_inference`` call.

Same network (3D Res-UNet of the main job, random weights: speed does not depend on them), same volume, same
window (32x48x32), Gaussian blending, at overlaps 0.25 and 0.5, with and without mirroring test-time
augmentation over the three axes (8 passes; the direct reference flips by hand). The two are timed
alternately, several repeats each; the table gives median voxels per second and the ratio.

    python experiments/perf/inference.py --repeats 5
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
from monai.inferers import sliding_window_inference

sys.path.insert(0, str(Path(__file__).parent))
from common import header, median, table  # noqa: E402

from medlight.data import SegmentationSpec  # noqa: E402
from medlight.nets import ResUNet  # noqa: E402
from medlight.ops.inference import Inference  # noqa: E402
from medlight.tasks import SegmentationTask  # noqa: E402

ROI = (32, 48, 32)


def direct(net: torch.nn.Module, image: torch.Tensor, overlap: float, mirror: bool) -> torch.Tensor:
    """The reference: MONAI's function, softmax, and (optionally) all 8 flips averaged by hand."""
    axes = [2, 3, 4] if mirror else []
    flips = [list(c) for k in range(len(axes) + 1) for c in itertools.combinations(axes, k)]
    total = None
    for dims in flips:
        x = torch.flip(image, dims) if dims else image
        p = torch.softmax(sliding_window_inference(x, ROI, 4, net, overlap, mode="gaussian"), 1)
        p = torch.flip(p, dims) if dims else p
        total = p if total is None else total + p
    return total / len(flips)


def timed(fn) -> tuple[float, torch.Tensor]:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    out = fn()
    sync()  # CUDA kernels run asynchronously: wait for them before reading the clock
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 128, 96))
    parser.add_argument("--device", default="cpu", help="e.g. cuda")
    args = parser.parse_args()
    torch.manual_seed(0)
    net = ResUNet(3, 1, 3, channels=(16, 32, 64, 128), strides=(2, 2, 2, 1)).eval().to(args.device)
    task = SegmentationTask(net).to(args.device)
    task.spec = SegmentationSpec(["anterior", "posterior"], 1, 3, ROI)
    image = torch.randn(1, 1, *args.shape).to(args.device)
    voxels = image[0, 0].numel()
    rows = []
    with torch.no_grad():
        direct(net, image, 0.5, False)  # warm-up (oneDNN kernels)
        for overlap, mirror in itertools.product((0.25, 0.5), (False, True)):
            task.inference = Inference(overlap=overlap, sw_batch_size=4, mirror_axes=(0, 1, 2) if mirror else ())
            ours_t, ref_t, max_diff = [], [], 0.0
            for repeat in range(args.repeats):
                # alternate which one goes first, so neither profits from the other's warm caches
                run_ref = lambda o=overlap, m=mirror: timed(lambda: direct(net, image, o, m))  # noqa: E731
                run_ours = lambda: timed(lambda: task.predict_volume(image))  # noqa: E731
                if repeat % 2:
                    (t_ours, ours), (t_ref, ref) = run_ours(), run_ref()
                else:
                    (t_ref, ref), (t_ours, ours) = run_ref(), run_ours()
                ref_t.append(t_ref)
                ours_t.append(t_ours)
                max_diff = max(max_diff, float((ours - ref).abs().max()))
            rows.append(
                {
                    "overlap": overlap,
                    "mirror TTA": mirror,
                    "MONAI vox/s": voxels / median(ref_t),
                    "medlight vox/s": voxels / median(ours_t),
                    "ratio": median(ref_t) / median(ours_t),
                    "max |diff|": max_diff,
                }
            )
    print(header(f"Sliding-window inference, 3D Res-UNet, volume {tuple(args.shape)}, window {ROI}, Gaussian"))
    print(table(rows, ["overlap", "mirror TTA", "MONAI vox/s", "medlight vox/s", "ratio", "max |diff|"]))
    print(
        f"\nmedians of {args.repeats} alternating repeats; ratio = medlight throughput / MONAI throughput "
        "(target >= 0.98)"
    )


if __name__ == "__main__":
    main()
