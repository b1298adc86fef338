"""cvtriage's tiling against SAHI's sliced prediction, side by side: seconds per image and box agreement.

SAHI's `get_sliced_prediction` (at the best of the `batch_size` values it takes) and cvtriage's
Detector with the same model, the same slices and the same merging, on the real aerial still and
frames of the real football clip in ../shared/data:
  - SAHI: `--slice`-px square slices at `--overlap` (its own grid), plus its "standard
    prediction" of the whole image (its default), GREEDYNMM over intersection-over-smaller 0.5,
    class by class; Ultralytics' NMS at its default IoU 0.7, at the model's input size;
  - cvtriage: `--tile RxC` with as many rows and columns as SAHI has slices, at the same overlap
    (cvtriage's tiles are equal and span the image, SAHI's are exactly `--slice` px with the last
    one shifted in, so a tile is a few pixels smaller or larger than a slice, and sits elsewhere),
    `tile_full_frame` on, the same NMS IoU, class-aware, and the same merge
    (cvtriage.scan.tiling.merge_across_tiles); and the same Detector given SAHI's very slices, so its
    boxes differ from SAHI's only by how they are inferred and merged, not by the layout;
  - for a model that takes any input size (PyTorch), SAHI's slices at `--small-input` px too:
    what packing several tiles into one model input at that scale would see (faster, but the
    objects are smaller than SAHI shows them to the model).
Both at confidence 0.3 (cvtriage infers down to 0.8 x that, see scan.detector.WEAK_CONF_SHARE, and keeps
the boxes at 0.3, as its events do). Seconds per image: warm, the median of `--repeats` runs, SAHI
and cvtriage run in turn so a change in the machine's load hits both. Agreement: boxes matched
one-to-one (same class, IoU >= 0.5, greedy, highest IoU first) over max(SAHI's boxes, cvtriage's
boxes), all images of a row pooled.

Target (issue 13): cvtriage >= 2x faster than SAHI at >= 95% agreement, on the CPU and on CUDA.

    python benchmarks/tiling_vs_sahi.py                     # both COCO models in ../shared/data
    python benchmarks/tiling_vs_sahi.py --device cuda --frames 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

import cv2
import numpy as np

from cvtriage.boxes import iou_matrix
from cvtriage.config import ScanConfig
from cvtriage.models import load_model, resolve_device
from cvtriage.scan.detector import Detector

SHARED = PROJECT_ROOT.parent / "shared" / "data"
STILL = SHARED / "images" / "aerial_small_vehicles.jpeg"
CLIP = SHARED / "video" / "drone_soccer_field.mp4"
WEIGHTS = [SHARED / "weights" / "yolov8n-coco-int8_openvino_model", SHARED / "weights" / "yolov8n-coco.pt"]
SAHI_VERSION = "0.12.8"
CONF = 0.3
NMS_IOU = 0.7  # Ultralytics' default, which SAHI leaves in place
MATCH_IOU = 0.5
CAR = 2  # COCO's class id


@dataclass
class Boxes:
    xyxy: np.ndarray
    classes: np.ndarray


def football_frames(count: int) -> list[np.ndarray]:
    """`count` frames spread evenly over the clip (read in order: no seeking)."""
    capture = cv2.VideoCapture(str(CLIP))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = {round(i * (total - 1) / max(count - 1, 1)) for i in range(count)}
    frames = []
    for index in range(max(wanted) + 1):
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            frames.append(frame)
    capture.release()
    return frames


def sahi_slices(width: int, height: int, size: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """SAHI's slices (x0, y0, x1, y1) of an image, row by row."""
    from sahi.slicing import get_slice_bboxes

    return [tuple(s) for s in get_slice_bboxes(height, width, size, size, False, overlap, overlap)]


def agreement(pairs: list[tuple[Boxes, Boxes]]) -> tuple[int, int]:
    """(matched, max of the two counts), summed over the images."""
    matched = largest = 0
    for a, b in pairs:
        largest += max(len(a.classes), len(b.classes))
        if not len(a.classes) or not len(b.classes):
            continue
        iou = iou_matrix(a.xyxy, b.xyxy) * (a.classes[:, None] == b.classes[None, :])
        used_a, used_b = set(), set()
        rows, cols = np.nonzero(iou >= MATCH_IOU)
        for i, j in sorted(zip(rows.tolist(), cols.tolist()), key=lambda pair: -iou[pair]):
            if i not in used_a and j not in used_b:
                used_a.add(i)
                used_b.add(j)
        matched += len(used_a)
    return matched, largest


def timed(run, repeats: int) -> tuple[list[float], object]:
    result = run()  # warm
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="+", default=[str(w) for w in WEIGHTS])
    parser.add_argument("--slice", type=int, default=256, help="SAHI's slice side in pixels")
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--frames", type=int, default=3, help="football frames, spread over the clip")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16", help="SAHI batch_size values to try")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--small-input", type=int, default=320, help="input size of the smaller-scale row (0: none)")
    args = parser.parse_args()

    if not SHARED.is_dir():
        print(f"skipped: {SHARED} is absent (the real still, clip and COCO weights)")
        return 0
    try:
        import sahi
        from sahi import AutoDetectionModel
        from sahi.predict import get_sliced_prediction
    except ImportError:
        print(f"SAHI is not installed: pip install sahi=={SAHI_VERSION}", file=sys.stderr)
        return 1

    os.environ.setdefault("YOLO_OFFLINE", "1")
    device = resolve_device(args.device)
    sahi_device = "cpu" if device == "cpu" else f"cuda:{device.split(',')[0]}"
    still = cv2.imread(str(STILL))
    images = {"aerial still": [still], f"football, {args.frames} frames": football_frames(args.frames)}
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    print(f"SAHI {sahi.__version__} vs cvtriage, {args.slice}-px slices at overlap {args.overlap} + the whole image, "
          f"conf {CONF}, device {device}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = []
    for weights in args.weights:
        name = Path(weights).name
        if name.endswith("_openvino_model"):
            try:
                import openvino  # noqa: F401
            except ImportError:
                print(f"{name}: skipped, the openvino package is not installed")
                continue
        sahi_model = AutoDetectionModel.from_pretrained(
            model_type="ultralytics", model_path=weights, confidence_threshold=CONF, device=sahi_device
        )
        model = load_model(weights)

        def sahi_boxes(image: np.ndarray, batch_size: int) -> Boxes:
            result = get_sliced_prediction(
                image[:, :, ::-1], sahi_model, args.slice, args.slice, args.overlap, args.overlap,
                verbose=0, batch_size=batch_size,
            )
            found = result.object_prediction_list
            return Boxes(
                np.array([p.bbox.to_xyxy() for p in found], np.float64).reshape(-1, 4),
                np.array([p.category.id for p in found], np.int64),
            )

        # SAHI's best batch size, on the still.
        by_batch = {}
        for batch_size in batch_sizes:
            seconds, _ = timed(lambda: sahi_boxes(still, batch_size), 3)
            by_batch[batch_size] = statistics.median(seconds)
        best = min(by_batch, key=by_batch.get)
        print(f"{name}: SAHI seconds per still by batch_size: "
              + ", ".join(f"{b}: {s:.3f}" for b, s in by_batch.items()) + f" -> {best}")

        for label, frames in images.items():
            height, width = frames[0].shape[:2]
            slices = sahi_slices(width, height, args.slice, args.overlap)
            grid = f"{len({s[1] for s in slices})}x{len({s[0] for s in slices})}"
            settings = ScanConfig(
                weights=str(weights), conf=CONF, iou=NMS_IOU, agnostic_nms=False, tile=grid,
                tile_overlap=args.overlap, tile_full_frame=True,
            )
            # cvtriage's own RxC tiles, and the same Detector on SAHI's very slices (same pixels in,
            # so any difference in boxes is the inference's and the merge's, not the layout's).
            tiled = Detector.for_model(model, settings, None, device, width, height)
            on_slices = Detector.for_model(model, settings, None, device, width, height)
            on_slices.windows = [(0, 0, width, height)] + slices
            tile_w, tile_h = tiled.windows[1][2] - tiled.windows[1][0], tiled.windows[1][3] - tiled.windows[1][1]
            variants = {
                f"--tile {grid} + whole ({tile_w}x{tile_h})": tiled,
                f"SAHI's {len(slices)} slices + whole ({args.slice}x{args.slice})": on_slices,
            }
            if args.small_input and tiled.backend.any_size:
                smaller = Detector.for_model(model, settings, None, device, width, height)
                smaller.windows, smaller.input_size = on_slices.windows, args.small_input
                variants[f"SAHI's slices + whole, all at {args.small_input} px"] = smaller

            def ours(detector: Detector, image: np.ndarray) -> Boxes:
                [found] = detector.detect([(0, 0.0, image)])
                found = found.at_least(CONF)
                return Boxes(found.boxes_xyxy.astype(np.float64), found.class_ids)

            times = {key: [] for key in ["sahi", *variants]}
            found = {key: [] for key in times}
            for image in frames:
                for _ in range(args.repeats):  # in turn, one run each
                    seconds, sahi_found = timed(lambda: sahi_boxes(image, best), 1)
                    times["sahi"] += seconds
                    for key, detector in variants.items():
                        seconds, ours_found = timed(lambda: ours(detector, image), 1)
                        times[key] += seconds
                found["sahi"].append(sahi_found)
                for key, detector in variants.items():
                    found[key].append(ours(detector, image))
            sahi_s = statistics.median(times["sahi"])
            for key in variants:
                pairs = list(zip(found["sahi"], found[key]))
                matched, largest = agreement(pairs)
                ours_s = statistics.median(times[key])
                rows.append([
                    name, f"{label} ({width}x{height})", key,
                    f"{sahi_s:.3f} (batch_size {best})", f"{ours_s:.3f}", f"{sahi_s / ours_s:.2f}x",
                    f"{sum(len(a.classes) for a, _ in pairs)} / {sum(len(b.classes) for _, b in pairs)}",
                    f"{sum(int((a.classes == CAR).sum()) for a, _ in pairs)} / "
                    f"{sum(int((b.classes == CAR).sum()) for _, b in pairs)}",
                    f"{matched / largest:.1%} ({matched}/{largest})" if largest else "- (no boxes)",
                ])
                print(f"  {label}, cvtriage {key}: SAHI {sahi_s:.3f} s, cvtriage {ours_s:.3f} s, "
                      f"agreement {rows[-1][-1]}", flush=True)
    header = ["model", "images", "cvtriage's tiles", "SAHI s/image", "cvtriage s/image", "speed-up",
              "boxes SAHI / cvtriage", "cars SAHI / cvtriage", "agreement"]
    print(f"\nload at the end {os.getloadavg()[0]:.1f}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
