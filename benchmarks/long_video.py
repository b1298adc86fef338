"""Memory and speed over a long flight: RSS and wall time of `cvtriage scan` per minute of video.

Generates a synthetic flyover (10 minutes of 1920x1080 at 30 fps by default: longer than one
synthetic world, so it flies laps) unless it exists, then runs `cvtriage scan` on it as a user
does (the whole command, with --no-dataset so FiftyOne's database is not part of the figure) and
watches it: the scan's position is the latest frame in its detection log, its memory the
process's resident set (RSS), sampled several times a second. Printed per minute of video: RSS
when the scan reaches the minute's end, the peak RSS during the minute, and the wall time the
minute took; then the peak while writing the results.

Target: the peak after the first minute stays within 10% of the RSS at minute one (memory flat
whatever the length).

With --vs-every-frame, Ultralytics' every-frame loop then runs on the same video as a whole
program (benchmarks/scan_speed.py's, same model and input size as the scan ran): the speed-up of
the scan command over it and the scan's event recall against it (targets on a 10-minute flight:
>= 8x at >= 95%). On 2 CPU cores the loop takes about half an hour per 10 video-minutes of 1080p.

    python benchmarks/long_video.py                                  # 10 min 1080p + the demo model
    python benchmarks/long_video.py --seconds 180 --scan-flags "--fps 1"
    python benchmarks/long_video.py --video flight.mp4 --weights yolo11n.pt
    python benchmarks/long_video.py --seconds 180 --vs-every-frame
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

import psutil

from cvtriage.paths import DEMO_WEIGHTS
from cvtriage.scan.frames import probe_source
from cvtriage.synth.video import FlyoverSpec, generate_video

BENCH_DIR = PROJECT_ROOT / "runs" / "bench" / "long_video"
POLL_S = 0.2
TARGET_GROWTH = 0.10  # peak after minute one over RSS at minute one


def latest_frame(log: Path, state: dict) -> int:
    """The highest frame index in the scan's detection log, reading only what was appended."""
    if not log.exists():
        return -1
    with log.open("rb") as handle:
        handle.seek(state.get("offset", 0))
        chunk = handle.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
    state["offset"] = state.get("offset", 0) + len(complete)
    for line in complete.splitlines():
        record = json.loads(line)
        if "frame" in record:
            state["latest"] = max(state.get("latest", -1), record["frame"])
    return state.get("latest", -1)


def watch_scan(command: list[str], log: Path, minute_of, last_minute: int) -> tuple[list[dict], float, float]:
    """Run the scan; per video-minute RSS figures, the peak RSS after the last frame, and wall time."""
    log.unlink(missing_ok=True)  # a fresh scan, not a resumed one
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    minutes: list[dict] = []
    state: dict = {}
    current = {"minute": 1, "peak_mb": 0.0, "started": started}
    writing_peak_mb = 0.0
    while process.poll() is None:
        try:
            rss_mb = watched.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            break
        minute = minute_of(latest_frame(log, state))
        reached = minute if minute is not None else last_minute + 1  # past the last frame: writing results
        while current["minute"] <= last_minute and reached > current["minute"]:  # the scan passed a minute's end
            now = time.perf_counter()
            current["peak_mb"] = max(current["peak_mb"], rss_mb)
            minutes.append({**current, "rss_mb": rss_mb, "wall_s": now - current["started"]})
            current = {"minute": current["minute"] + 1, "peak_mb": rss_mb, "started": now}
        if minute is None:
            writing_peak_mb = max(writing_peak_mb, rss_mb)
        else:
            current["peak_mb"] = max(current["peak_mb"], rss_mb)
        time.sleep(POLL_S)
    if process.wait() != 0:
        sys.exit(f"scan failed ({shlex.join(command)}):\n{process.stderr.read()}")
    return minutes, writing_peak_mb, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, help="scan this video instead of a generated flyover")
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the generated flyover")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--weights", default=str(DEMO_WEIGHTS))
    parser.add_argument("--scan-flags", default="", help="more `cvtriage scan` flags, quoted")
    parser.add_argument("--vs-every-frame", action="store_true", help="then time Ultralytics' every-frame loop on it too")
    args = parser.parse_args()

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    video = args.video
    if video is None:
        video = BENCH_DIR / f"flyover-{args.seconds:g}s-{args.width}x{args.height}.mp4"
        if video.exists():
            print(f"flyover: {video} (made earlier)")
        else:
            summary = generate_video(video, FlyoverSpec(seconds=args.seconds, width=args.width, height=args.height))
            print(f"flyover: {video}, {summary.frames} frames, {summary.objects} object passes, made in {summary.seconds:.0f} s")
    info = probe_source(video)
    last_frame = info.frame_count - 1

    def minute_of(frame: int) -> int | None:
        """The video-minute (1-based) the scan is in; None once it reached the last frame."""
        return None if frame >= last_frame else int(info.time_of(max(frame, 0)) // 60) + 1

    out = BENCH_DIR / "scan"
    command = [
        sys.executable, "-m", "cvtriage.cli", "scan", str(video), "--weights", args.weights,
        "--out", str(out), "--no-dataset", *shlex.split(args.scan_flags),
    ]  # fmt: skip
    log = out / f".{video.stem}.scan-log.jsonl"
    print(f"scan: {shlex.join(command)}")
    minutes, writing_peak_mb, wall_s = watch_scan(command, log, minute_of, minute_of(last_frame - 1))

    print(f"\n{'minute':>6} {'RSS at end':>11} {'peak':>9} {'wall':>8}")
    for row in minutes:
        print(f"{row['minute']:>6} {row['rss_mb']:>8.0f} MB {row['peak_mb']:>6.0f} MB {row['wall_s']:>6.1f} s")
    print(f"writing results: peak {writing_peak_mb:.0f} MB; whole scan {wall_s:.0f} s for {info.duration_s / 60:.1f} video-minutes "
          f"({wall_s / (info.duration_s / 60):.0f} s per video-minute)")
    if len(minutes) >= 2:
        at_one = minutes[0]["rss_mb"]
        scanning = max(row["peak_mb"] for row in minutes[1:])
        for what, peak in (("scanning after minute one", scanning), ("writing results", writing_peak_mb)):
            growth = peak / at_one - 1
            verdict = "met" if growth <= TARGET_GROWTH else "NOT met"
            print(f"peak {what}: {peak:.0f} MB vs {at_one:.0f} MB at minute one, {growth:+.1%} "
                  f"(target <= {TARGET_GROWTH:+.0%}: {verdict})")

    if args.vs_every_frame:
        compare_with_every_frame(video, args.weights, out / video.stem / "events.json", wall_s)


def compare_with_every_frame(video: Path, weights: str, events_json: Path, scan_wall_s: float) -> None:
    """The every-frame loop on the same video: speed-up of the scan over it, and event recall."""
    import tempfile

    from scan_speed import every_frame, print_inferred, print_missed
    from scoring import EventSpan, match_spans, recall, span_seconds

    from cvtriage.config import ScanConfig
    from cvtriage.scan.tracking import track_events

    document = json.loads(events_json.read_text())
    stats, settings = document["stats"], ScanConfig.model_validate(document["settings"])
    loop_weights = stats.get("export") or weights  # what the scan ran (an OpenVINO export on the CPU)
    print(f"\nevery-frame loop: {loop_weights} at {stats['imgsz']} px ...", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        loop_time, _, per_frame, fps, names = every_frame(
            video, loop_weights, stats["imgsz"], settings.conf, settings.iou, settings.agnostic_nms, Path(scratch)
        )
    print_inferred(stats, "scan")
    print(f"every-frame loop (program) {loop_time}; cvtriage scan (command) wall {scan_wall_s:7.1f} s: "
          f"scan {loop_time.wall_s / scan_wall_s:.1f}x faster (target >= 8)")  # fmt: skip
    reference = [EventSpan.of_event(event) for event in track_events(per_frame, fps, names, settings)]
    scanned = [EventSpan.of_record(record) for record in document["events"]]
    matches = match_spans(reference, scanned, one_to_one=False)
    lasting = [match for span, match in zip(reference, matches) if span_seconds(span, fps) >= 1.0]
    print(f"event recall of the scan vs the every-frame loop: {recall(matches)} (target >= 95%); "
          f"of its events lasting >= 1 s {recall(lasting)}")  # fmt: skip
    print_missed(reference, matches, fps)


if __name__ == "__main__":
    main()
