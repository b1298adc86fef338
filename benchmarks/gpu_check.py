"""Issue 21's GPU figures, each against its target, on one GPU machine, in one run of a few minutes.

Two parts, since PyAV and polars do not travel together to an offline GPU machine (docs/benchmarks.md
says which wheels each needs, and how to install them there):

  --part train  2,000 synthetic images at 416 px (the demo model's recipe, weights/README.md);
                `cvtriage train` at its defaults from the COCO YOLOv8n (--coco-weights), 30 epochs:
                the whole command's wall time (target <= 60 s) and the model's mAP50 on
                demo_model_map.py's fresh val split (>= 0.88); the training summary's batch,
                images per second, GPU utilisation and peak GPU memory.
  --part scan   a 60 s 1920x1080 flyover (12 objects): the dense scan's decoding alone; the
                model's load (a program that loads it, sets it up on the GPU and runs one batch);
                `cvtriage scan` at its defaults (the whole command) within 1.5x of the two; its
                event recall against Ultralytics' every-frame loop through the same tracker (>= 99%)
                and against the ground truth (12/12); the flyover three times over (180 s) at >= 30x
                real time; 4 flyovers on Ray against one after another in one process (>= 2x the
                throughput; where Ray is installed); the decoders (benchmarks/gpu_decoders.py).

Without a CUDA GPU it prints one line and exits 0. `--cpu-smoke` runs the same code on tiny inputs
on the CPU in seconds, and makes the scan dense there: its figures mean nothing, it is how the
tests check that the script runs and prints every figure line.

    python benchmarks/gpu_check.py --part train [--coco-weights yolov8n-coco.pt] [--out DIR]
    python benchmarks/gpu_check.py --part scan [--weights W] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_decoders import compare_decoders, cvtriage_decode_fps
from scoring import TRUTH_MIN_IOU, EventSpan, match_spans, recall

from cvtriage.paths import DEMO_WEIGHTS

# Every figure each part prints, one line each, "NAME: value  (target ...: met)".
FIGURES = {
    "train": ["train batch", "train wall time", "train fresh-val mAP50", "train images/s", "train GPU utilisation",
              "train peak GPU memory"],
    "scan": ["scan decode only", "scan model load", "scan 60 s flyover", "scan vs decode + load",
             "scan recall vs every frame", "scan ground truth", "scan 180 s flyover", "scan GPU utilisation",
             "ray 4 flyovers", "decoders"],
}  # fmt: skip
LOAD_PROGRAM = """
import sys
import numpy as np
from cvtriage.config import load_scan_config
from cvtriage.models import load_model, resolve_device
from cvtriage.scan.detector import Detector
from cvtriage.scan.export import model_to_run
settings = load_scan_config(weights=sys.argv[1], dataset=None, strategy=sys.argv[3])
device = resolve_device(settings.device)
model, _ = model_to_run(settings, device, load_model(settings.weights))
detector = Detector.for_model(model, settings, None, device, 1920, 1080, dense=True)
detector.detect([(0, 0.0, np.zeros((1080, 1920, 3), np.uint8))] * int(sys.argv[2]))
"""


def figure(name: str, value: str, target: str = "", met: bool | None = None) -> None:
    verdict = f"  (target {target}: {'met' if met else 'NOT met'})" if target else ""
    print(f"{name}: {value}{verdict}", flush=True)


def timed(command: list[str], log: Path) -> float:
    """A whole program's wall time; its output in `log`. A failure stops the check."""
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: see {log}")
    return time.perf_counter() - started


def cvtriage_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cvtriage.cli", *args]


# --- training -----------------------------------------------------------------------------------


def train_part(args: argparse.Namespace, out: Path) -> None:
    from demo_model_map import fresh_val_metrics

    from cvtriage.synth.dataset import generate_dataset

    smoke = args.cpu_smoke
    images, imgsz, epochs = (24, 256, 1) if smoke else (2000, 416, 30)  # 256: the smallest for objects of 10-120 px
    generate_dataset(out / "data", images=images, imgsz=imgsz, seed=0, min_size=10, max_size=120)
    weights = "yolov8n.yaml" if smoke else str(Path(args.coco_weights).resolve())
    flags = ["--device", "cpu"] if smoke else []
    wall = timed(cvtriage_command("train", str(out / "data"), "--weights", weights, "--imgsz", str(imgsz), "--epochs",
                                  str(epochs), "--out", str(out / "runs"), "--name", "defaults", *flags), out / "train.log")  # fmt: skip
    run = json.loads((out / "runs" / "defaults" / "metrics.json").read_text())
    summary = fresh_val_metrics(run["best_weights"], 16 if smoke else 300, imgsz, say=lambda line: None)
    map50 = summary["overall"]["map50"]
    figure("train batch", f"{run['batch']} ({run['train_images']} training images, {run['epochs_run']} epochs)")
    figure("train wall time", f"{wall:.1f} s (the whole command)", "<= 60 s", wall <= 60)
    figure("train fresh-val mAP50", f"{map50:.3f} ({summary['val_images']} fresh images)", ">= 0.88", map50 >= 0.88)
    usage = run.get("hardware_usage", {})
    figure("train images/s", f"{usage.get('images_per_second', 'n/a')}")
    figure("train GPU utilisation", f"{usage.get('gpu_utilisation', 'n/a')}")
    figure("train peak GPU memory", f"{usage.get('peak_gpu_memory', 'n/a')}")


# --- scanning -----------------------------------------------------------------------------------


def repeated_video(video: Path, laps: int, out: Path) -> Path:
    """`video` played `laps` times over in one file (its packets copied, their timestamps shifted):
    a long flight without drawing one."""
    import av

    from cvtriage.scan.frames import probe_source

    pts = probe_source(video).frame_times.pts
    span = int(pts[-1] - pts[0] + (pts[1] - pts[0]))
    with av.open(str(out), "w") as target:
        for lap in range(laps):
            with av.open(str(video)) as source:
                stream = source.streams.video[0]
                if lap == 0:
                    written = target.add_stream_from_template(stream)
                for packet in source.demux(stream):
                    if packet.dts is None:  # the flushing packet at the end
                        continue
                    packet.pts, packet.dts = packet.pts + lap * span, packet.dts + lap * span
                    packet.stream = written
                    target.mux(packet)
    return out


def h264_clip(video: Path, frames: int, out: Path) -> Path:
    """The first `frames` frames of `video` in h264 with B-frames (as drones record; the flyover is
    OpenCV's MPEG-4, which not every GPU decodes), for the decoders."""
    import av

    from cvtriage.scan.frames import FrameSource, probe_source

    info = probe_source(video)
    with av.open(str(out), "w") as target:
        stream = target.add_stream("libx264", rate=round(info.fps))
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, "yuv420p"
        stream.options = {"preset": "veryfast", "bf": "2"}
        for index, image in FrameSource(info).frames(lambda index: index < frames):
            if index >= frames:
                break
            target.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        target.mux(stream.encode())
    return out


def scan_command(video: Path, weights: str, out: Path, smoke: bool, *more: str) -> tuple[float, dict]:
    flags = ["--strategy", "dense", "--imgsz", "64"] if smoke else []
    wall = timed(cvtriage_command("scan", str(video), "--weights", weights, "--no-dataset", "--out", str(out), *flags, *more),
                 out.with_suffix(".log"))  # fmt: skip
    return wall, json.loads((out / video.stem / "events.json").read_text())


def scan_part(args: argparse.Namespace, out: Path) -> None:
    from scan_speed import every_frame_program, read_every_frame

    from cvtriage.config import ScanConfig
    from cvtriage.scan.dense import DENSE_GPU_BATCH, conversion_threads
    from cvtriage.scan.tracking import track_events
    from cvtriage.synth.video import FlyoverSpec, generate_video, truth_path_for
    from cvtriage.train.gpu_usage import GpuUsage

    smoke = args.cpu_smoke
    spec = FlyoverSpec(seconds=3, fps=10, width=320, height=192) if smoke else FlyoverSpec(seconds=60, width=1920, height=1080)
    video = out / "flyover.mp4"
    generate_video(video, spec)
    frames = round(spec.seconds * spec.fps)

    converters = conversion_threads()
    decode_s = frames / cvtriage_decode_fps(video, converters)
    figure("scan decode only", f"{decode_s:.2f} s ({frames / decode_s:.0f} frames/s; PyAV, {converters} conversion threads)")
    batch = 1 if smoke else DENSE_GPU_BATCH
    load_s = timed([sys.executable, "-c", LOAD_PROGRAM, args.weights, str(batch), "dense"], out / "load.log")
    figure("scan model load", f"{load_s:.2f} s (a program: imports, the model on the device, one batch of {batch})")

    with GpuUsage() as usage:
        scan_s, document = scan_command(video, args.weights, out / "scan", smoke)
    stats = document["stats"]
    figure("scan 60 s flyover", f"{scan_s:.2f} s (the whole command; {stats['strategy']}, 1 frame in {stats['sample_step']}, "
           f"batches of {stats['batch']}, {stats['frames_inferred']} of {stats['frames_total']} frames inferred)")  # fmt: skip
    bound = 1.5 * (decode_s + load_s)
    figure("scan vs decode + load", f"{scan_s / (decode_s + load_s):.2f}x", "<= 1.5x", scan_s <= bound)
    figure("scan GPU utilisation", f"{usage.utilisation_text()} while the 60 s flyover was scanned")

    settings = ScanConfig.model_validate(document["settings"])
    # Ultralytics' every-frame loop (scan_speed.py's, here in this process: its time is not a figure).
    every_frame_program(video, args.weights, stats["imgsz"], settings.conf, settings.iou, settings.agnostic_nms,
                        out / "every-frame.json")  # fmt: skip
    per_frame, fps, names, _ = read_every_frame(video, out / "every-frame.json")
    loop_events = [EventSpan.of_event(event) for event in track_events(per_frame, fps, names, settings)]
    scanned = [EventSpan.of_record(record) for record in document["events"]]
    matches = match_spans(loop_events, scanned, one_to_one=False)
    found = sum(match is not None for match in matches)
    share = found / max(len(loop_events), 1)
    figure("scan recall vs every frame", f"{recall(matches)} of Ultralytics' every-frame loop's events", ">= 99%", share >= 0.99)
    truth = [EventSpan.of_truth(record) for record in json.loads(truth_path_for(video).read_text())["objects"]]
    truth_found = sum(match is not None for match in match_spans(truth, scanned, TRUTH_MIN_IOU))
    figure("scan ground truth", f"{truth_found}/{len(truth)} objects", "all", truth_found == len(truth))

    long_video = repeated_video(video, 3, out / "flyover-x3.mp4")
    long_s, _ = scan_command(long_video, args.weights, out / "long", smoke)
    speed = 3 * spec.seconds / long_s
    figure("scan 180 s flyover", f"{long_s:.2f} s, {speed:.1f}x real time", ">= 30x", speed >= 30)

    ray_part(video, args.weights, out, smoke)
    clip = h264_clip(video, frames if smoke else 300, out / "clip-h264.mp4")
    results = compare_decoders(clip)
    fastest = max((r for r in results if r.fps and r.frames_right and r.seeks_right), key=lambda r: r.fps, default=None)
    figure("decoders", f"fastest with exact frames and seeks: {fastest.name if fastest else 'none'} "
           f"(h264 1 s clip x{len(results)} decoders, below)")  # fmt: skip
    for result in results:
        print(f"  {result.line()}")
    for threads in sorted({0, converters, 2 * converters}):
        print(f"  cvtriage's dense decoding, {threads} conversion threads: {cvtriage_decode_fps(clip, threads):.0f} frames/s")


def ray_part(video: Path, weights: str, out: Path, smoke: bool) -> None:
    """4 copies of the flyover: one after another in this process, then on Ray (gpus_per_video: auto)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        figure("ray 4 flyovers", "unmeasured (Ray is not installed here)")
        return
    from cvtriage.batch.runner import run_batch
    from cvtriage.batch.sources import expand_sources
    from cvtriage.config import load_scan_config

    copies = [out / f"flight{number}.mp4" for number in range(4)]
    for copy in copies:  # links of their own names (a symbolic link would resolve to one results folder)
        os.link(video, copy)
    rates = {}
    for how, address in (("one after another", None), ("on Ray", "auto")):
        flags = {"strategy": "dense", "imgsz": 64} if smoke else {}
        settings = load_scan_config(weights=weights, dataset=None, out=str(out / f"batch-{address}"), **flags)
        started = time.perf_counter()
        report = run_batch(expand_sources(copies), settings, ray_address=address)
        if report.failed:
            sys.exit(f"the batch {how} failed: {report.failed[0].reason}")
        rates[how] = sum(o.frames_total for o in report.outcomes) / (time.perf_counter() - started)
    gain = rates["on Ray"] / rates["one after another"]
    figure("ray 4 flyovers", f"{gain:.2f}x the frames/s of one after another ({rates['on Ray']:.0f} vs "
           f"{rates['one after another']:.0f})", ">= 2x", gain >= 2)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("train", "scan"), required=True)
    parser.add_argument("--weights", default=str(DEMO_WEIGHTS), help="the scan's model (default: the demo model)")
    parser.add_argument("--coco-weights", default="yolov8n-coco.pt", help="training's starting weights")
    parser.add_argument("--out", type=Path, help="keep the data, runs and logs here (default: a temporary folder)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny inputs on the CPU: the code path, not figures")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("gpu_check: skipped, no CUDA GPU here (torch.cuda.is_available() is False)")
        return
    device = "CPU smoke run" if args.cpu_smoke else torch.cuda.get_device_name(0)
    print(f"gpu_check --part {args.part} on {device}, torch {torch.__version__}", flush=True)
    scratch = None if args.out else tempfile.mkdtemp(prefix="cvtriage-gpu-check-")
    out = Path(args.out or scratch)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        (train_part if args.part == "train" else scan_part)(args, out)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"gpu_check --part {args.part}: {time.perf_counter() - started:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
