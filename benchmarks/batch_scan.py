"""Many videos: one command per video vs one batch command vs the batch on Ray, and Ray's scaling.

Six generated 20 s 1280x720 flyovers, the demo model, the scan's default settings, --no-dataset
(so no figure includes FiftyOne's database), all measured in one run:
  1. serial: `cvtriage scan VIDEO` once per video (imports and model load paid six times);
  2. batch: `cvtriage scan V1 ... V6` in one process (paid once; videos one after another);
  3. ray: `cvtriage scan V1 ... V6 --ray auto` (a local Ray runtime with this machine's cores,
     one task per video with 1 CPU each, so as many videos at once as cores);
  4. Ray with 1 and with 2 workers (`ray.init(num_cpus=N)`, then the same batch function).
Wall time, and CPU time of the whole process tree (sampled with psutil: Ray's workers are not
the command's children). Every run starts from empty results folders, and the events each found
per video are checked to be the same in every run.

Target on a 2-core machine: the Ray batch >= 1.5x the serial throughput.

    python benchmarks/batch_scan.py [--videos 6] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

import psutil

from cvtriage.paths import DEMO_WEIGHTS

BENCH_DIR = PROJECT_ROOT / "runs" / "bench" / "batch"
TARGET = 1.5
RAY_DRIVER = """
import sys, ray
from cvtriage.batch.runner import run_batch
from cvtriage.batch.sources import expand_sources
from cvtriage.config import load_scan_config
ray.init(num_cpus={workers}, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
settings = load_scan_config(weights={weights!r}, out={out!r}, dataset=None)
report = run_batch(expand_sources({videos!r}), settings, ray_address="auto")
sys.exit(1 if report.failed else 0)
"""


@dataclass
class Run:
    what: str
    wall_s: float
    cpu_s: float
    frames: int

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s


def timed_tree(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a command and every process under it (polled every 0.2 s)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    cpu: dict[int, float] = {}
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in tree:
            try:
                times = member.cpu_times()
                cpu[member.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.2)
    _, errors = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {' '.join(command)}\n{errors[-2000:]}")
    return wall, sum(cpu.values())


def events_per_video(out: Path, videos: list[Path]) -> list[int]:
    return [len(json.loads((out / video.stem / "events.json").read_text())["events"]) for video in videos]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--weights", default=str(DEMO_WEIGHTS))
    args = parser.parse_args()
    cvtriage = [sys.executable, "-m", "cvtriage.cli"]
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    videos = []
    for seed in range(args.videos):
        video = BENCH_DIR / f"flyover-{seed}.mp4"
        if not video.exists():
            subprocess.run([*cvtriage, "synth", "video", str(video), "--seconds", str(args.seconds), "--seed", str(seed)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        videos.append(video)
    import cv2

    frames = sum(int(cv2.VideoCapture(str(v)).get(cv2.CAP_PROP_FRAME_COUNT)) for v in videos)
    scan = ["--weights", args.weights, "--no-dataset"]
    print(f"{len(videos)} flyovers of {args.seconds:g} s (1280x720, 30 fps, {frames} frames), {Path(args.weights).name}; "
          f"load before: {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}", flush=True)  # fmt: skip

    def fresh(name: str) -> Path:
        out = BENCH_DIR / "runs" / name
        shutil.rmtree(out, ignore_errors=True)
        return out

    runs: list[Run] = []
    found: dict[str, list[int]] = {}
    out = fresh("serial")
    wall = cpu = 0.0
    for video in videos:
        w, c = timed_tree([*cvtriage, "scan", str(video), *scan, "--out", str(out)])
        wall, cpu = wall + w, cpu + c
    runs.append(Run("serial: one command per video", wall, cpu, frames))
    found["serial"] = events_per_video(out, videos)
    print(f"  {runs[-1].what}: {wall:.1f} s", flush=True)

    out = fresh("batch")
    runs.append(Run("one batch command", *timed_tree([*cvtriage, "scan", *map(str, videos), *scan, "--out", str(out)]), frames))
    found["batch"] = events_per_video(out, videos)
    print(f"  {runs[-1].what}: {runs[-1].wall_s:.1f} s", flush=True)

    out = fresh("ray")
    runs.append(Run("--ray auto", *timed_tree([*cvtriage, "scan", *map(str, videos), *scan, "--ray", "auto", "--out", str(out)]), frames))
    found["ray"] = events_per_video(out, videos)
    print(f"  {runs[-1].what}: {runs[-1].wall_s:.1f} s", flush=True)

    scaling = []
    for workers in (1, 2):
        out = fresh(f"ray-{workers}")
        driver = RAY_DRIVER.format(workers=workers, weights=args.weights, out=str(out), videos=list(map(str, videos)))
        scaling.append(Run(f"Ray, {workers} worker{'s' if workers > 1 else ''}", *timed_tree([sys.executable, "-c", driver]), frames))
        found[f"ray-{workers}"] = events_per_video(out, videos)
        print(f"  {scaling[-1].what}: {scaling[-1].wall_s:.1f} s", flush=True)

    serial = runs[0]
    print(f"\n{'run':<32} {'wall s':>8} {'CPU s':>8} {'frames/s':>9} {'vs serial':>10}")
    for run in runs + scaling:
        print(f"{run.what:<32} {run.wall_s:8.1f} {run.cpu_s:8.1f} {run.fps:9.1f} {serial.wall_s / run.wall_s:9.2f}x")
    ray = runs[2]
    met = "met" if serial.wall_s / ray.wall_s >= TARGET else "NOT met"
    print(f"target: --ray auto >= {TARGET}x serial throughput: {serial.wall_s / ray.wall_s:.2f}x, {met}")
    one, two = scaling
    print(f"scaling: 2 workers {one.wall_s / two.wall_s:.2f}x the throughput of 1 on {psutil.cpu_count()} cores")
    same = len({tuple(events) for events in found.values()}) == 1
    print(f"events per video: {found['serial']} in every run" if same else f"events per video DIFFER: {found}")
    print(f"load after: {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")


if __name__ == "__main__":
    main()
