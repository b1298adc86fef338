"""What a reviewer sees in the review queue: how much of each event's patch its object covers.

The queue (saved view `review-queue`) shows each undecided event as a patch: the event's own box
grown by 20% of its size on each side, clipped to the frame. Coverage = the area of the event's own
box inside the patch over the patch's area (target: >= 25%). Measured on

- the README's 30 s demo flyover (`cvtriage synth video demo.mp4 --seconds 30`), scanned with
  `--weights demo`;
- the real football clip (../shared/data/video/drone_soccer_field.mp4), scanned with the COCO model
  (../shared/data/weights/yolov8n-coco.pt) at --conf 0.1 --tile 4x6; skipped without --shared-data
  (or ../shared/data beside the project).

Each clip's results folder is also stored again the way `cvtriage store` does (store_results_folder),
into a second dataset, whose queue must hold the same patches.

It runs on a MongoDB of its own (FiftyOne's mongod, in a temporary folder, on a free port), so
neither an open App nor another command's database is touched, nor can either take it away mid-run.

    python benchmarks/review_patches.py [--shared-data DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from own_database import start_own_database

WORK = start_own_database("cvtriage-review-patches-")
os.environ.setdefault("YOLO_OFFLINE", "1")

from cvtriage.cli import prepare_environment  # noqa: E402

prepare_environment()

from cvtriage.config import load_scan_config  # noqa: E402
from cvtriage.database import connect_database  # noqa: E402
from cvtriage.scan.pipeline import run_scan, store_results_folder  # noqa: E402
from cvtriage.scan.priority import REVIEW_QUEUE_VIEW  # noqa: E402
from cvtriage.scan.store import EVENT_BOX_TAG  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared" / "data"
TARGET = 0.25


def coverage(view) -> list[float]:
    """Per patch of a queue: the event's own box's area inside the patch over the patch's area."""
    own_boxes = {}
    for sample_id, labels in zip(*view._root_dataset.values(["id", "detections.detections"])):
        own = [label for label in labels or [] if EVENT_BOX_TAG in (label.tags or [])]
        own_boxes[sample_id] = own[0].bounding_box
    figures = []
    for sample_id, patch in zip(*view.values(["sample_id", "event_patch"])):
        px, py, pw, ph = patch.bounding_box
        bx, by, bw, bh = own_boxes[str(sample_id)]
        inside_w = max(0.0, min(px + pw, bx + bw) - max(px, bx))
        inside_h = max(0.0, min(py + ph, by + bh) - max(py, by))
        figures.append(inside_w * inside_h / (pw * ph))
    return figures


def patch_boxes(queue) -> dict[int, list[float]]:
    return {event_id: patch.bounding_box for event_id, patch in zip(*queue.values(["event_id", "event_patch"]))}


def largest_difference(a: dict[int, list[float]], b: dict[int, list[float]]) -> float | None:
    """The largest difference between two queues' patches (fractions of the frame), None when
    they hold different events."""
    if a.keys() != b.keys():
        return None
    return max((abs(x - y) for key in a for x, y in zip(a[key], b[key])), default=0.0)


def measure(name: str, video: Path, weights: str, **settings_given) -> None:
    import fiftyone as fo

    dataset = f"bench-patches-{video.stem}"
    started = time.monotonic()
    settings = load_scan_config(weights=weights, out=str(WORK / "scans"), **settings_given)
    settings.dataset = dataset
    result = run_scan(video, settings)
    queue = fo.load_dataset(dataset).load_saved_view(REVIEW_QUEUE_VIEW)
    figures = coverage(queue)
    stored = store_results_folder(result.out_dir, f"{dataset}-stored")
    stored_queue = fo.load_dataset(f"{dataset}-stored").load_saved_view(REVIEW_QUEUE_VIEW)
    difference = largest_difference(patch_boxes(queue), patch_boxes(stored_queue))
    # events.json keeps boxes to 0.1 px: the same patches to within a fraction of a pixel.
    side = max(result.video.width, result.video.height)
    if stored == len(result.events) and difference is not None and difference * side < 0.5:
        store_note = f"the same {stored} patches (to {difference * side:.2f} px)"
    else:
        store_note = f"DIFFERENT patches ({stored} stored of {len(result.events)} events, largest difference {difference})"
    low, median = min(figures), statistics.median(figures)
    verdict = "met" if low >= TARGET else "not met"
    print(f"{name}: {len(figures)} patches in the queue ({len(result.events)} events, scan + store "
          f"{time.monotonic() - started:.0f} s); object covers min {low:.1%}, median {median:.1%} of its patch "
          f"(target >= {TARGET:.0%}: {verdict}); `cvtriage store` of the folder: "
          f"{store_note}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-data", type=Path, default=SHARED if SHARED.is_dir() else None)
    args = parser.parse_args()
    connect_database()
    try:
        demo = WORK / "demo.mp4"
        subprocess.run([sys.executable, "-m", "cvtriage.cli", "synth", "video", str(demo), "--seconds", "30"],
                       check=True, capture_output=True)  # fmt: skip
        measure("demo flyover (30 s, --weights demo)", demo, "demo")
        if args.shared_data is None:
            print("football clip: skipped (no --shared-data)")
        else:
            clip = args.shared_data / "video" / "drone_soccer_field.mp4"
            # As the cold-start figures were taken before --propose: conf 0.1, 4x6 tiles for 10-20 px players.
            weights = str(args.shared_data / "weights" / "yolov8n-coco.pt")
            measure("football clip (COCO yolov8n, --conf 0.1 --tile 4x6)", clip, weights, conf=0.1, tile="4x6")
    finally:
        from fiftyone.core.odm.database import drop_database

        drop_database()  # its mongod and folder go at exit


if __name__ == "__main__":
    main()
