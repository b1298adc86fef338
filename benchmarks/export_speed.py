"""What the scan's automatic OpenVINO export (cvtriage/scan/export.py) buys on the CPU, and what it changes.

On one clip (default: the synthetic 1280x720 flyover scan_speed.py uses, made once), one run:
  1. the export's one-time cost: exporting a copy of the weights in a fresh folder;
  2. ms per inferred frame, PyTorch vs the export, on frames of the clip at the input size the scan
     uses (the same model calls the scan makes, one frame at a time), in alternating rounds;
  3. `cvtriage scan` (whole commands, --no-dataset) with the export vs `--no-export`, in
     alternating pairs: wall time, and the events of each matched against the other's (same class,
     shared frames) and against the flyover's ground truth.

    python benchmarks/export_speed.py
    python benchmarks/export_speed.py --seconds 60 --pairs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

from cvtriage.config import load_scan_config
from cvtriage.models import load_model, resolve_device
from cvtriage.paths import DEMO_WEIGHTS
from cvtriage.scan.detector import Detector
from cvtriage.scan.export import (
    NO_EXPORT_ENV,
    cached_export,
    export_planned,
    load_export,
)
from cvtriage.synth.video import truth_path_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scan_speed import flyover, run_scan_command  # noqa: E402
from scoring import TRUTH_MIN_IOU, EventSpan, match_spans, recall  # noqa: E402


def sample_frames(video: Path, count: int) -> list:
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for index in range(0, total, max(total // count, 1))[:count]:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, image = capture.read()
        if ok:
            frames.append((index, 0.0, image))
    capture.release()
    return frames


def listed(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values)


def ms_per_frame(detector: Detector, frames: list) -> float:
    started = time.perf_counter()
    for frame in frames:
        detector.detect([frame])
    return (time.perf_counter() - started) / len(frames) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, help="a video to measure on (default: a synthetic flyover, made once)")
    parser.add_argument("--weights", default=str(DEMO_WEIGHTS), help="PyTorch .pt weights")
    parser.add_argument("--seconds", type=float, default=20.0, help="flyover length")
    parser.add_argument("--width", type=int, default=1280, help="flyover frame width")
    parser.add_argument("--height", type=int, default=720, help="flyover frame height")
    parser.add_argument("--seed", type=int, default=0, help="flyover seed")
    parser.add_argument("--objects", type=int, help="flyover objects (default: the generator's)")
    parser.add_argument("--frames", type=int, default=24, help="frames timed per round (step 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of step 2")
    parser.add_argument("--pairs", type=int, default=2, help="alternating pairs of scans (step 3)")
    args = parser.parse_args()
    os.environ.pop(NO_EXPORT_ENV, None)  # this benchmark compares both ways, whatever the environment says
    settings = load_scan_config(weights=args.weights, dataset=None)
    device = resolve_device(settings.device)
    if not export_planned(settings, device):
        sys.exit(f"no OpenVINO export here for {args.weights} on {device}: needs .pt weights, the CPU, and `openvino`")
    video = args.video or flyover(args)

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / Path(args.weights).name
        shutil.copyfile(args.weights, copy)
        started = time.perf_counter()
        cached_export(copy)
        export_s = time.perf_counter() - started
    export = cached_export(args.weights)  # the scans' cache (made now if absent)

    width, height = int(cv2.VideoCapture(str(video)).get(3)), int(cv2.VideoCapture(str(video)).get(4))
    pytorch = Detector.for_model(load_model(args.weights), settings, None, device, width, height)
    exported = Detector.for_model(load_export(str(export), device), settings, None, device, width, height)
    assert (exported.grid, exported.input_size) == (pytorch.grid, pytorch.input_size), "the export changed the plan"
    frames = sample_frames(video, args.frames)
    for detector in (pytorch, exported):
        detector.detect(frames[:1])  # set up, outside the timing
    timings: dict[str, list[float]] = {"PyTorch": [], "OpenVINO export": []}
    for _ in range(args.rounds):
        timings["PyTorch"].append(ms_per_frame(pytorch, frames))
        timings["OpenVINO export"].append(ms_per_frame(exported, frames))

    scans: dict[str, list[float]] = {"export": [], "--no-export": []}
    documents = {}
    with tempfile.TemporaryDirectory() as scratch:
        for pair in range(args.pairs):
            for label, flags in (("export", []), ("--no-export", ["--no-export"])):
                out = Path(scratch) / f"{label.strip('-')}-{pair}"
                timing, documents[label] = run_scan_command(video, args.weights, out, flags)
                scans[label].append(timing.wall_s)

    print(f"clip: {video}; weights: {args.weights}; device {device}")
    print(f"export: {export} (made once: {export_s:.1f} s in a fresh folder)")
    tiles = "whole frame" if pytorch.grid == (1, 1) else f"{pytorch.grid[0]}x{pytorch.grid[1]} tiles"
    print(f"ms per inferred frame ({len(frames)} frames of the clip, {tiles} at {pytorch.input_size} px, "
          f"{args.rounds} alternating rounds):")  # fmt: skip
    for label, values in timings.items():
        print(f"  {label:16s} median {statistics.median(values):6.1f} ms   rounds {listed(values)}")
    ratio = statistics.median(timings["PyTorch"]) / statistics.median(timings["OpenVINO export"])
    print(f"  the export is {ratio:.2f}x as fast")
    print(f"cvtriage scan, whole command ({args.pairs} alternating pairs):")
    for label, values in scans.items():
        stats = documents[label]["stats"]
        print(f"  {label:12s} median wall {statistics.median(values):6.1f} s   runs {listed(values)}   "
              f"{len(documents[label]['events'])} events, {stats['frames_inferred']} frames inferred")  # fmt: skip
    slower = statistics.median(scans["--no-export"]) / statistics.median(scans["export"])
    print(f"  --no-export / export wall time: {slower:.2f}x")

    spans = {label: [EventSpan.of_record(event) for event in document["events"]] for label, document in documents.items()}
    for reference, found in (("--no-export", "export"), ("export", "--no-export")):
        matches = match_spans(spans[reference], spans[found])
        print(f"events of the {reference} scan matched by the {found} scan (one-to-one): {recall(matches)}")
    truth_path = truth_path_for(video)
    if truth_path.exists():
        truth = [EventSpan.of_truth(record) for record in json.loads(truth_path.read_text())["objects"]]
        for label, found in spans.items():
            print(f"ground truth recall, {label:12s}: {recall(match_spans(truth, found, TRUTH_MIN_IOU))}")


if __name__ == "__main__":
    main()
