"""How much faster `cvtriage scan` is than running the model on every frame, and what it misses.

One clip, one model, three timings:
  1. `cvtriage scan` at its defaults (the whole command, as a user runs it; --no-dataset, so the
     figure does not include starting FiftyOne's database);
  2. Ultralytics' every-frame loop, `YOLO.predict(source, stream=True)`;
  3. decoding alone (`cv2.VideoCapture.read()` over every frame).
Then the event recall of the scan relative to the every-frame run: the every-frame detections go
through the same tracker, and an every-frame event counts as found when a scan event has the
same class and overlaps it in time. With a synthetic flyover (OUT.truth.json beside it) both
runs are also scored against the ground truth.

Targets: scan >= 5x faster than the every-frame loop at >= 95% event recall, and <= 3x decode.

    python benchmarks/scan_speed.py                      # synthetic flyover + demo model if present
    python benchmarks/scan_speed.py --video ../shared/data/video/drone_soccer_field.mp4 \
        --weights ../shared/data/weights/yolov8n-coco-int8_openvino_model
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from cvtriage.config import load_scan_config
from cvtriage.detect import FrameDetections
from cvtriage.events import track_events
from cvtriage.paths import DEMO_WEIGHTS, PROJECT_ROOT

DEFAULT_VIDEO = PROJECT_ROOT / "runs" / "bench" / "flyover.mp4"


def decode_only(video: Path) -> tuple[float, int]:
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    return time.perf_counter() - started, frames


def every_frame(video: Path, weights: str, imgsz: int, conf: float) -> tuple[float, list[FrameDetections], float, dict]:
    from ultralytics import YOLO

    from cvtriage.model import class_names, resolve_device

    device = resolve_device("auto")  # every core, as the scan uses
    model = YOLO(weights, task="detect")
    fps = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS)
    started = time.perf_counter()
    frames = []
    for index, result in enumerate(model.predict(str(video), stream=True, imgsz=imgsz, conf=conf, device=device, verbose=False)):
        boxes = result.boxes.cpu().numpy()
        frames.append(FrameDetections(index, index / fps, boxes.xyxy, boxes.conf, boxes.cls.astype(int)))
    return time.perf_counter() - started, frames, fps, class_names(model)


def run_scan_command(video: Path, weights: str, out: Path) -> tuple[float, dict]:
    command = [sys.executable, "-m", "cvtriage.cli", "scan", str(video), "--weights", weights, "--out", str(out), "--no-dataset"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    return elapsed, json.loads((out / video.stem / "events.json").read_text())


def recall(reference: list[tuple[str, float, float]], found: list[tuple[str, float, float]]) -> float:
    """Share of reference intervals matched one-to-one by a found interval of the same class overlapping it."""
    unused = list(found)
    hits = 0
    for name, first, last in sorted(reference, key=lambda r: r[1]):
        match = next((f for f in unused if f[0] == name and f[1] <= last and f[2] >= first), None)
        if match is not None:
            unused.remove(match)
            hits += 1
    return hits / len(reference) if reference else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--weights", default=str(DEMO_WEIGHTS))
    args = parser.parse_args()
    if args.video == DEFAULT_VIDEO and not DEFAULT_VIDEO.exists():
        subprocess.run([sys.executable, "-m", "cvtriage.cli", "synth", "video", str(DEFAULT_VIDEO)], check=True)
    settings = load_scan_config()  # the scan's defaults: the every-frame run uses the same size and threshold

    with tempfile.TemporaryDirectory() as scratch:
        scan_s, document = run_scan_command(args.video, args.weights, Path(scratch))
    loop_s, per_frame, fps, names = every_frame(args.video, args.weights, settings.imgsz, settings.conf)
    decode_s, frame_count = decode_only(args.video)

    reference_events = track_events(per_frame, fps, names, settings)
    reference = [(e.class_name, e.first_time_s, e.last_time_s) for e in reference_events]
    scanned = [(e["class"], e["first_time_s"], e["last_time_s"]) for e in document["events"]]
    stats = document["stats"]

    print(f"clip: {args.video} ({frame_count} frames, {fps:g} fps); model: {args.weights}")
    print(f"scan defaults: sample 1 in {stats['sample_step']}, tiles {stats['tiles']}, imgsz {settings.imgsz}")
    print(f"decode only              {decode_s:8.1f} s  ({frame_count / decode_s:.0f} fps)")
    print(f"every-frame predict      {loop_s:8.1f} s  ({frame_count / loop_s:.1f} fps)  {len(reference)} events")
    print(
        f"cvtriage scan (command)  {scan_s:8.1f} s  (in-process {stats['wall_time_s']:.1f} s; "
        f"{stats['frames_inferred']} of {stats['frames_total']} frames inferred)  {len(scanned)} events"
    )
    print(f"speed-up vs every-frame  {loop_s / scan_s:8.1f} x   (target >= 5)")
    print(f"scan / decode-only       {scan_s / decode_s:8.1f} x   (target <= 3)")
    print(f"event recall vs every-frame {recall(reference, scanned):.1%}  (target >= 95%)")
    truth_path = args.video.with_suffix(".truth.json")
    if truth_path.exists():
        truth = json.loads(truth_path.read_text())
        objects = [(o["class_name"], o["first_time_s"], o["last_time_s"]) for o in truth["objects"]]
        print(f"ground-truth recall: scan {recall(objects, scanned):.1%}, every-frame {recall(objects, reference):.1%} "
              f"of {len(objects)} objects")  # fmt: skip


if __name__ == "__main__":
    main()
