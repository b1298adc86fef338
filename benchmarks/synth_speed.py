"""How fast the synthetic data generator is: 1,000 dataset images at 640 px, and a 60 s flyover.

Targets (2-core CPU): the images in under 2 minutes, the flyover in well under a minute.
Usage: python benchmarks/synth_speed.py [--images 1000] [--imgsz 640] [--seconds 60] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from cvtriage.synth.dataset import generate_dataset
from cvtriage.synth.video import FlyoverSpec, generate_video


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the dataset's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU core")
    args = parser.parse_args()

    print(f"CPU cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f} (a busy machine is slower)")
    with tempfile.TemporaryDirectory(prefix="synth-speed-") as folder:
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        summary = generate_dataset(Path(folder) / "dataset", images=args.images, imgsz=args.imgsz, workers=args.workers)
        elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        boxes = sum(sum(counts.values()) for counts in summary.boxes.values())
        print(f"dataset: {args.images} images at {args.imgsz} px, {boxes} boxes: {elapsed:.1f} s "
              f"({args.images / elapsed:.1f} images/s; target < 120 s for 1,000 at 640)")
        # CPU time does not depend on how busy the machine is: what an idle 2-core machine would take.
        print(f"         {cpu / args.images * 1000:.0f} ms CPU per image: 1,000 would take about "
              f"{cpu / args.images * 1000 / 2:.0f} s on an idle 2-core machine")

        start, cpu_start = time.perf_counter(), _cpu_seconds()
        video = generate_video(Path(folder) / "flyover.mp4", FlyoverSpec(seconds=args.seconds, objects=max(1, int(args.seconds // 5))))
        elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        size_mb = video.video.stat().st_size / 1e6
        print(f"flyover: {args.seconds:g} s at 1280x720, 30 fps, {video.objects} objects, {size_mb:.0f} MB: {elapsed:.1f} s "
              f"({video.frames / elapsed:.0f} frames/s; target well under 60 s); {cpu:.1f} s of CPU")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
