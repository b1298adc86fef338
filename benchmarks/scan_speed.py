"""How much faster `cvtriage scan` is than running the model on every frame, and what it misses.

One clip, one model, measured in one run (wall time AND CPU time of each process: on a shared
machine the wall time depends on the other load, the CPU time much less):
  1. `cvtriage scan` at its defaults (the whole command, as a user runs it, with --no-dataset so
     the figure does not include starting FiftyOne's database);
  2. Ultralytics' every-frame loop, `YOLO.predict(source, stream=True)` at the scan's conf, iou,
     agnostic_nms and model input size (with `tile: auto`, PyTorch weights see a large frame whole at a larger
     input, see cvtriage/detect.py: the loop gets that size too, so both see the same pixels),
     as a whole program in its own process too (imports, model load, loop), like the command;
  3. decoding alone (`cv2.VideoCapture.read()` over every frame);
  4. when the scan tiles the frame: `cvtriage scan --every 1`, the scan's own detector (same
     tiles) on every frame, so the recall below isolates what sampling + refinement lose;
  5. when the scan refined on crops: the scan again with `refine_crop: false` (refinement on
     whole frames), to compare event bounds (--no-whole-refinement skips it).
Inferred frames are printed split into sampling and refinement (whole frames and crops), with the
model input pixels against every frame's. Frame times and counts are the container's (PyAV).
Event recall: every-frame detections go through the same tracker; an every-frame event counts
as found when a scan event has the same class and shares frames with it. (One scan event may
answer several every-frame events: every frame of a flickering detection splits one object into
fragments there. The one-to-one figure, and the recall of every-frame events lasting >= 1 s,
are printed too.) With a synthetic flyover (OUT.truth.json beside it), every run is also scored
against the ground truth, one-to-one: class, shared frames, and box IoU >= 0.3 at the found
event's keyframe.

Targets: scan >= 5x faster than the every-frame loop at >= 95% event recall, and <= 3x decode.

    python benchmarks/scan_speed.py                      # 20 s 1280x720 flyover + the demo model
    python benchmarks/scan_speed.py --seconds 60 --scan-flags "--fps 1"
    python benchmarks/scan_speed.py --video ../shared/data/video/drone_soccer_field.mp4 \
        --weights ../shared/data/weights/yolov8n-coco-int8_openvino_model
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

import cv2
import numpy as np
from scoring import TRUTH_MIN_IOU, EventSpan, match_spans, recall, span_seconds

from cvtriage.config import ScanConfig
from cvtriage.paths import DEMO_WEIGHTS
from cvtriage.scan.frames import probe_source
from cvtriage.scan.tracking import track_events
from cvtriage.synth.video import truth_path_for
from cvtriage.types import FrameDetections

BENCH_DIR = PROJECT_ROOT / "runs" / "bench"
TILED = "every frame, scan's tiles"
WHOLE = "scan, whole-frame refinement"


@dataclass
class Timing:
    wall_s: float
    cpu_s: float

    def __str__(self) -> str:
        return f"wall {self.wall_s:7.1f} s   cpu {self.cpu_s:7.1f} s"


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_program(command: list[str], what: str) -> Timing:
    """Run a whole program in a child process; its wall and CPU time. Stop the benchmark if it fails."""
    wall, cpu = time.perf_counter(), children_cpu_s()
    finished = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    timing = Timing(time.perf_counter() - wall, children_cpu_s() - cpu)
    if finished.returncode != 0:
        sys.exit(f"{what} failed ({' '.join(command)}):\n{finished.stderr}")
    return timing


def decode_only(video: Path) -> tuple[Timing, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while capture.grab() and capture.retrieve()[0]:
        frames += 1
    capture.release()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), frames


def every_frame_program(video: Path, weights: str, imgsz: int, conf: float, iou: float, agnostic: bool, out: Path) -> None:
    """Ultralytics' every-frame loop as a user would write it: a whole program (imports, model
    load, the loop), run in its own process so that its time is measured like the scan command's.
    Writes every frame's detections, the class names and the loop's own time."""
    started = time.perf_counter()
    from ultralytics import YOLO

    from cvtriage.models import class_names, resolve_device

    device = resolve_device("auto")  # every core, as the scan uses
    model = YOLO(weights, task="detect")
    loop_started = time.perf_counter()
    frames = []
    results = model.predict(str(video), stream=True, imgsz=imgsz, conf=conf, iou=iou, agnostic_nms=agnostic,
                            device=device, verbose=False)  # fmt: skip
    for result in results:
        boxes = result.boxes.cpu().numpy()
        frames.append([boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.astype(int).tolist()])
    finished = time.perf_counter()
    document = {"names": class_names(model), "frames": frames,
                "loop_wall_s": finished - loop_started, "program_wall_s": finished - started}  # fmt: skip
    out.write_text(json.dumps(document))


def every_frame(
    video: Path, weights: str, imgsz: int, conf: float, iou: float, agnostic: bool, scratch: Path
) -> tuple[Timing, float, list[FrameDetections], float, dict]:
    """Run every_frame_program in a child process: (its Timing, the loop's own wall time, frames, the
    average fps, names). Frame times are the container's timestamps, as the scan's are."""
    out = scratch / "every-frame.json"
    command = [sys.executable, __file__, "--every-frame-program",
               json.dumps([str(video), weights, imgsz, conf, iou, agnostic, str(out)])]  # fmt: skip
    timing = timed_program(command, "every-frame loop")
    frames, fps, names, loop_wall_s = read_every_frame(video, out)
    return timing, loop_wall_s, frames, fps, names


def read_every_frame(video: Path, out: Path) -> tuple[list[FrameDetections], float, dict, float]:
    """What every_frame_program wrote: (frames, the average fps, names, the loop's own wall time)."""
    document = json.loads(out.read_text())
    info = probe_source(video)
    fps = info.fps
    frames = [
        FrameDetections(index, info.time_of(index), np.array(xyxy, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                        np.array(classes, int))  # fmt: skip
        for index, (xyxy, scores, classes) in enumerate(document["frames"])
    ]
    names = {int(key): value for key, value in document["names"].items()}
    return frames, fps, names, document["loop_wall_s"]


def run_scan_command(video: Path, weights: str, out: Path, flags: list[str]) -> tuple[Timing, dict]:
    command = [sys.executable, "-m", "cvtriage.cli", "scan", str(video), "--weights", weights,
               "--out", str(out), "--no-dataset", *flags]  # fmt: skip
    timing = timed_program(command, "scan")
    return timing, json.loads((out / video.stem / "events.json").read_text())


def without_sampling(flags: list[str]) -> list[str]:
    """The scan flags minus --fps/--every and their values."""
    kept, skip = [], False
    for flag in flags:
        if not skip and flag not in ("--fps", "--every"):
            kept.append(flag)
        skip = not skip and flag in ("--fps", "--every")
    return kept


def print_missed(reference: list[EventSpan], matches: list, fps: float) -> None:
    for span, match in zip(reference, matches):
        if match is None:
            print(f"      missed: {span.class_name} frames {span.first_frame}-{span.last_frame} "
                  f"({span_seconds(span, fps):.2f} s)")  # fmt: skip


def print_inferred(stats: dict, label: str) -> None:
    """Inferred frames split into sampling and refinement (whole frames, crops), and model input pixels."""
    inferred, sampled, cropped = stats["frames_inferred"], stats["frames_sampled"], stats.get("frames_cropped", 0)
    every = stats["frames_total"] * stats["pixels_per_frame"]
    print(f"  {label}: inferred {inferred} frames = {sampled} sampling + {inferred - sampled} refinement "
          f"({inferred - sampled - cropped} whole, {cropped} crops); model input {stats['pixels_inferred'] / 1e6:.1f} "
          f"Mpx vs {every / 1e6:.1f} Mpx for every frame ({every / max(stats['pixels_inferred'], 1):.1f}x fewer)")  # fmt: skip


def print_same_bounds(whole: list[EventSpan], cropped: list[EventSpan]) -> None:
    """Event bounds of crop refinement against whole-frame refinement (events paired one to one)."""
    pairs = [(w, c) for w, c in zip(whole, match_spans(whole, cropped)) if c is not None]
    shifts = [max(abs(w.first_frame - c.first_frame), abs(w.last_frame - c.last_frame)) for w, c in pairs]
    same = shifts.count(0)
    print(f"crop vs whole-frame refinement: {same} of {len(whole)} events with identical first and last frames "
          f"({same / max(len(whole), 1):.0%}), max difference {max(shifts, default=0)} frames; "
          f"{len(whole) - len(pairs)} whole-refinement events without a crop-refinement event, "
          f"{len(cropped) - len(pairs)} the other way")  # fmt: skip
    for w, c in pairs:
        if (w.first_frame, w.last_frame) != (c.first_frame, c.last_frame):
            print(f"      {w.class_name}: frames {w.first_frame}-{w.last_frame} whole, {c.first_frame}-{c.last_frame} crops")


def flyover(args: argparse.Namespace) -> Path:
    video = BENCH_DIR / f"flyover-{args.width}x{args.height}-{args.seconds:g}s-seed{args.seed}.mp4"
    if not video.exists():
        command = [sys.executable, "-m", "cvtriage.cli", "synth", "video", str(video), "--seconds", str(args.seconds),
                   "--width", str(args.width), "--height", str(args.height), "--seed", str(args.seed)]  # fmt: skip
        if args.objects is not None:
            command += ["--objects", str(args.objects)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return video


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--every-frame-program":
        video, weights, imgsz, conf, iou, agnostic, out = json.loads(sys.argv[2])
        every_frame_program(Path(video), weights, imgsz, conf, iou, agnostic, Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", type=Path, help="a video to measure on (default: a synthetic flyover, made once)")
    parser.add_argument("--weights", default=str(DEMO_WEIGHTS))
    parser.add_argument("--seconds", type=float, default=20.0, help="flyover length")
    parser.add_argument("--width", type=int, default=1280, help="flyover frame width")
    parser.add_argument("--height", type=int, default=720, help="flyover frame height")
    parser.add_argument("--seed", type=int, default=0, help="flyover seed")
    parser.add_argument("--objects", type=int, help="flyover objects (default: the generator's)")
    parser.add_argument("--scan-flags", default="", help='extra `cvtriage scan` flags for both scan runs, e.g. "--fps 1"')
    parser.add_argument("--no-whole-refinement", action="store_true",
                        help="skip the second scan that refines on whole frames (to compare event bounds with the crops')")  # fmt: skip
    args = parser.parse_args()
    video = args.video or flyover(args)
    flags = shlex.split(args.scan_flags)

    with tempfile.TemporaryDirectory() as scratch:
        scan_time, document = run_scan_command(video, args.weights, Path(scratch) / "scan", flags)
        stats = document["stats"]
        tiled_time = tiled_document = None
        if stats["tiles"] != "off":
            every_flags = [*without_sampling(flags), "--every", "1"]
            tiled_time, tiled_document = run_scan_command(video, args.weights, Path(scratch) / "every", every_flags)
        whole_time = whole_document = None
        if stats.get("frames_cropped") and not args.no_whole_refinement:
            config = Path(scratch) / "whole-refinement.yaml"
            config.write_text("refine_crop: false\n")
            whole_time, whole_document = run_scan_command(
                video, args.weights, Path(scratch) / "whole", [*flags, "--config", str(config)]
            )
        settings = ScanConfig.model_validate(document["settings"])  # as the scan ran: tracker, conf, iou
        imgsz = stats["imgsz"]
        # The loop runs what the scan ran: on the CPU, the weights' cached OpenVINO export (cvtriage/scan/export.py).
        loop_weights = stats.get("export") or args.weights
        loop_time, loop_alone_s, per_frame, fps, names = every_frame(
            video, loop_weights, imgsz, settings.conf, settings.iou, settings.agnostic_nms, Path(scratch)
        )
    decode_time, frame_count = decode_only(video)

    scanned = [EventSpan.of_record(record) for record in document["events"]]
    loop_events = [EventSpan.of_event(event) for event in track_events(per_frame, fps, names, settings)]
    runs = {"cvtriage scan": scanned, "every-frame loop": loop_events}
    if tiled_document is not None:
        runs["every frame, scan's tiles"] = [EventSpan.of_record(record) for record in tiled_document["events"]]
    if whole_document is not None:
        runs[WHOLE] = [EventSpan.of_record(record) for record in whole_document["events"]]

    inferred, sampled = stats["frames_inferred"], stats["frames_sampled"]
    print(f"clip: {video} ({frame_count} frames, {fps:g} fps); model: {args.weights}"
          + (f", run through its OpenVINO export {loop_weights}" if stats.get("export") else ""))  # fmt: skip
    print(f"scan: {' '.join(flags) or 'defaults'}; sample 1 frame in {stats['sample_step']}, tiles {stats['tiles']}, "
          f"input {imgsz} px; inferred {inferred} of {stats['frames_total']} frames "
          f"({sampled} sampled + {inferred - sampled} refining)")  # fmt: skip
    print_inferred(stats, "scan")
    if whole_document is not None:
        print_inferred(whole_document["stats"], "scan, whole-frame refinement")
    print(f"decode only                {decode_time}   ({frame_count / decode_time.wall_s:.0f} fps)")
    print(f"every-frame loop (program) {loop_time}   ({frame_count / loop_time.wall_s:.1f} fps)   "
          f"{len(loop_events)} events; the loop alone (no imports, no model load) {loop_alone_s:.1f} s")  # fmt: skip
    if tiled_time is not None:
        print(f"every frame, scan's tiles  {tiled_time}   (the command)   {len(runs[TILED])} events")
    print(f"cvtriage scan (command)    {scan_time}   {len(scanned)} events")
    if whole_time is not None:
        print(f"  the same, whole-frame refinement {whole_time}   {len(runs[WHOLE])} events")
    for clock in ("wall_s", "cpu_s"):
        loop, taken, decode = getattr(loop_time, clock), getattr(scan_time, clock), getattr(decode_time, clock)
        print(f"  {clock[:-2]:4s}: scan {loop / taken:5.1f}x faster than the every-frame loop (target >= 5), "
              f"{taken / decode:5.1f}x decode-only (target <= 3)")  # fmt: skip

    if whole_document is not None:
        print_same_bounds(runs[WHOLE], scanned)
    for label, reference in (("the every-frame loop", loop_events), ("every frame, scan's tiles", runs.get(TILED))):
        if reference is None:
            continue
        if whole_document is not None:
            whole_matches = match_spans(reference, runs[WHOLE], one_to_one=False)
            print(f"event recall of the scan with whole-frame refinement vs {label}: {recall(whole_matches)}")
            print_missed(reference, whole_matches, fps)
        matches = match_spans(reference, scanned, one_to_one=False)
        lasting = [(span, match) for span, match in zip(reference, matches) if span_seconds(span, fps) >= 1.0]
        print(f"event recall of the scan vs {label}: {recall(matches)} (target >= 95%); "
              f"one-to-one {recall(match_spans(reference, scanned))}; "
              f"of its events lasting >= 1 s {recall([match for _, match in lasting])}")  # fmt: skip
        print_missed(reference, matches, fps)

    truth_path = truth_path_for(video)
    if truth_path.exists():
        truth = [EventSpan.of_truth(record) for record in json.loads(truth_path.read_text())["objects"]]
        print(f"ground truth: {len(truth)} objects (matched by class, shared frames, keyframe box IoU >= {TRUTH_MIN_IOU})")
        for label, spans in runs.items():
            matches = match_spans(truth, spans, TRUTH_MIN_IOU)
            errors = [(abs(m.first_frame - t.first_frame) / fps, abs(m.last_frame - t.last_frame) / fps)
                      for t, m in zip(truth, matches) if m is not None]  # fmt: skip
            timing = ""
            if errors:
                starts, ends = zip(*errors)
                timing = (f"; |start error| median {statistics.median(starts):.2f} s max {max(starts):.2f} s, "
                          f"|end error| median {statistics.median(ends):.2f} s max {max(ends):.2f} s")  # fmt: skip
            print(f"  recall {label:26s} {recall(matches)}  from {len(spans)} events{timing}")


if __name__ == "__main__":
    main()
