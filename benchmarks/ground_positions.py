"""Ground positions, one object across passes, and change between flights, on synthetic flyovers
whose truth knows every object's place on the ground; and what positions cost a scan.

    python benchmarks/ground_positions.py [--flights 20] [--scans 3 [--scan-seconds 30]] [--targets error,sightings,changes]

Each target's figure is printed with whether it is met:
- ground position error: each flight's objects as events (their true boxes, so the figure is the
  telemetry's and the projection's, not the detector's), placed from the flight's SRT, against
  their true place: exact telemetry (median <= 0.5 m, worst <= 2 m) and realistic noise (GPS
  1.5 m, altitude 1 m, heading 2 degrees: median <= 3 m); the uncertainty radius holds the truth
  for >= 90% of events. With --scans N, the same from the demo model's events on N rendered
  flights (events matched to the truth object they overlap in time and class);
- one object, many sightings: flyovers that fly two laps of their world (each object passed
  twice), realistic noise: >= 95% of objects one object with both sightings, <= 2% of distinct
  objects merged;
- change between flights: two flights over one site, 20% of the objects added, removed or moved
  (5-8 m), realistic noise plus a 3 m offset between flights: >= 95% of changes found, <= 5% of
  unchanged objects reported changed;
- cost (with --scans): the scan's own timings, `positions_s` over `wall_time_s`, and paired runs
  of the same scan with and without its SRT (medians): <= 5%.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cvtriage.config import load_scan_config  # noqa: E402
from cvtriage.synth.flight_log import TelemetryNoise  # noqa: E402
from cvtriage.synth.site import SiteSpec  # noqa: E402
from cvtriage.synth.video import (  # noqa: E402
    FlyoverSpec,
    build_flyover,
    ground_truth,
    write_flight_log,
)
from cvtriage.telemetry.local_frame import LocalFrame  # noqa: E402
from cvtriage.telemetry.placement import place_events  # noqa: E402
from cvtriage.telemetry.positions import SourcePositions, srt_positions  # noqa: E402
from cvtriage.telemetry.sites import compare_pair, load_site_scan  # noqa: E402
from cvtriage.types import VideoInfo  # noqa: E402

REALISTIC = TelemetryNoise(gps_m=1.5, altitude_m=1.0, heading_deg=2.0)
SIZE = {"width": 640, "height": 360, "fps": 10.0}


def flight_files(folder: Path, spec: FlyoverSpec, site: SiteSpec | None = None, max_world_width: int | None = None):
    """A flight's SRT and truth without rendering its video: (srt path, truth document, flyover)."""
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"max_world_width": max_world_width} if max_world_width else {}
    flyover = build_flyover(spec, site=site, **extra)
    name = f"flight-{spec.seed}-{flyover.flight}"
    srt = folder / f"{name}.SRT"
    write_flight_log(srt, flyover, spec)
    return srt, ground_truth(flyover, list(spec.names), f"{name}.mp4", spec.seed, spec), flyover


def oracle_records(truth: dict) -> list[dict]:
    """Each truth object as a scan's event record (its true boxes as its track)."""
    fps = truth["video"]["fps"]
    records = []
    for number, obj in enumerate(truth["objects"], start=1):
        best = obj["boxes"][len(obj["boxes"]) // 2][0]
        records.append({
            "id": number, "class": obj["class_name"], "track": [[*box, 1.0] for box in obj["boxes"]],
            "best_frame": best, "best_time_s": best / fps, "first_frame": obj["first_frame"],
            "first_time_s": obj["first_time_s"], "last_frame": obj["last_frame"], "last_time_s": obj["last_time_s"],
            "peak_confidence": 1.0, "truth": obj,
        })  # fmt: skip
    return records


def place_oracle(srt: Path, truth: dict, folder: Path | None = None):
    """The oracle events placed from the SRT (records completed in place); objects.json in `folder`."""
    from cvtriage.telemetry.placement import write_placement

    video = truth["video"]
    records = oracle_records(truth)
    positions, log = srt_positions(srt)
    info = VideoInfo(srt.with_suffix(".mp4"), "video", video["width"], video["height"], video["fps"],
                     video["frame_count"], video["duration_s"])  # fmt: skip
    placement = place_events(records, info, SourcePositions(positions, [], None, log), load_scan_config().positions)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        write_placement(folder, srt.stem, placement)
    return records, placement


def errors_m(records: list[dict]) -> tuple[list[float], list[bool]]:
    """Each placed event's distance to its object's true place, and whether its radius holds it."""
    distances, held = [], []
    frame = LocalFrame(records[0]["truth"]["ground_position"]["latitude"], records[0]["truth"]["ground_position"]["longitude"])
    for record in records:
        ground, true = record["ground_position"], record["truth"]["ground_position"]
        east, north = np.subtract(frame.metres(ground["latitude"], ground["longitude"]),
                                  frame.metres(true["latitude"], true["longitude"]))  # fmt: skip
        distances.append(float(np.hypot(east, north)))
        held.append(distances[-1] <= ground["uncertainty_m"])
    return distances, held


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def position_error(work: Path, flights: int) -> None:
    for label, noise in (("exact telemetry", TelemetryNoise()), ("realistic noise", REALISTIC)):
        distances, held = [], []
        for seed in range(flights):
            srt, truth, _ = flight_files(work / "error", FlyoverSpec(seconds=60, seed=seed, noise=noise, **SIZE))
            records, _ = place_oracle(srt, truth)
            found, inside = errors_m(records)
            distances += found
            held += inside
        median, worst, share = statistics.median(distances), max(distances), float(np.mean(held))
        target = (median <= 0.5 and worst <= 2.0) if noise == TelemetryNoise() else median <= 3.0
        print(f"ground position error, {label}, {len(distances)} events on {flights} flights: median {median:.3f} m, "
              f"worst {worst:.3f} m, 90th percentile {np.percentile(distances, 90):.3f} m -> {_verdict(target)}; "
              f"radius holds the truth for {share:.1%} -> {_verdict(share >= 0.9)}")  # fmt: skip


def sightings(work: Path, flights: int) -> None:
    """Two laps of each world: every object passed twice."""
    whole = merged = distinct = total = 0
    for seed in range(flights):
        spec = FlyoverSpec(seconds=60, seed=seed, noise=REALISTIC, **SIZE)
        lap = int(build_flyover(spec, hide_objects=True).world.shape[1] / 2) + 1
        srt, truth, _ = flight_files(work / "laps", spec, max_world_width=lap)
        records, placement = place_oracle(srt, truth)
        passes: dict[int, set[int]] = {}  # true object -> the objects its passes became
        for record in records:
            passes.setdefault(record["truth"]["object"], set()).add(record["object_id"])
        owners: dict[int, set[int]] = {}  # placed object -> the true objects in it
        for record in records:
            owners.setdefault(record["object_id"], set()).add(record["truth"]["object"])
        twice = {obj for obj, found in passes.items() if sum(r["truth"]["object"] == obj for r in records) >= 2}
        whole += sum(len(passes[obj]) == 1 and owners[next(iter(passes[obj]))] == {obj} for obj in twice)
        distinct += len(twice)
        merged += sum(any(len(owners[o]) > 1 for o in passes[obj]) for obj in passes)
        total += len(passes)
    print(f"one object, many sightings, {distinct} objects passed twice on {flights} two-lap flights: "
          f"{whole / distinct:.1%} one object with all their sightings -> {_verdict(whole / distinct >= 0.95)}; "
          f"{merged}/{total} = {merged / total:.1%} distinct objects merged with another -> {_verdict(merged / total <= 0.02)}")  # fmt: skip


def changes(work: Path, flights: int) -> None:
    """Two flights over each site: changes found, unchanged objects reported changed."""
    found = wanted = false = unchanged = 0
    offsets, kinds = [], {}
    for seed in range(flights):
        spec = FlyoverSpec(seconds=60, seed=seed, noise=TelemetryNoise(1.5, 1.0, 2.0, offset_m=3.0), **SIZE)
        folders, slots = [], []
        for flight in (0, 1):
            srt, truth, flyover = flight_files(work / "site", spec, site=SiteSpec(2, flight, 0.2))
            folder = work / "site" / f"{seed}-{flight}"
            records, _ = place_oracle(srt, truth, folder)
            folders.append(folder)
            slots.append({record["id"]: record["truth"]["object"] for record in records})  # event -> true object
        plan = flyover.plan
        frame = None
        scans = []
        for folder in folders:
            scan, frame = load_site_scan(folder, frame)
            scans.append(scan)
        comparison = compare_pair(*scans)
        offsets.append(float(np.hypot(*comparison.offset)))
        reported = {}
        for change in comparison.changes:
            slot = slots[0][change.earlier["event_ids"][0]] if change.earlier else slots[1][change.later["event_ids"][0]]
            reported[slot] = change.status
        truly = {c["slot"]: c["change"] for c in plan.changes}
        expected = {"added": "new", "removed": "gone", "moved": "moved"}
        for slot, change in truly.items():
            wanted += 1
            found += reported.get(slot) == expected[change]
            kinds[change] = kinds.get(change, 0) + 1
        for slot in set(reported) - set(truly):
            unchanged += 1
            false += reported[slot] not in ("present", "not covered")
    print(f"change between flights, {flights} sites (noise 1.5 m / 1 m / 2 deg, 3 m offset; offset found median "
          f"{statistics.median(offsets):.1f} m; changes {kinds}): {found}/{wanted} = {found / wanted:.1%} changes found -> "
          f"{_verdict(found / wanted >= 0.95)}; {false}/{unchanged} = {false / unchanged:.1%} unchanged objects reported "
          f"changed -> {_verdict(false / unchanged <= 0.05)}")  # fmt: skip


def scan_cost(work: Path, scans: int, seconds: float) -> None:
    """Scans of rendered flights with the demo model: their events' ground error, and what positions cost."""
    from cvtriage.scan.pipeline import run_scan
    from cvtriage.synth.video import generate_video

    ratios, with_log, without_log, distances = [], [], [], []
    for seed in range(scans):
        video = work / "scans" / f"scan-{seed}.mp4"
        generate_video(video, FlyoverSpec(seconds=seconds, seed=100 + seed, noise=REALISTIC), force=True)
        settings = load_scan_config(weights="demo", out=str(work / "scans" / "runs"), device="cpu")
        settings.dataset = None  # files only: the cost measured is the scan's and its positions'
        srt = video.with_suffix(".SRT")
        for run in range(2):  # paired: with the log, then without, twice
            for has_log in (True, False):
                if not has_log:
                    srt.rename(srt.with_suffix(".off"))
                result = run_scan(video, settings)
                if not has_log:
                    srt.with_suffix(".off").rename(srt)
                (with_log if has_log else without_log).append(result.stats["wall_time_s"])
                if has_log:
                    document = json.loads(result.outputs["events_json"].read_text())
                    ratios.append(document["stats"]["positions_s"] / document["stats"]["wall_time_s"])
        truth = json.loads(video.with_suffix("").with_suffix(".truth.json").read_text())
        distances += _scan_errors(document["events"], truth)
    print(f"ground position error of the demo model's events, {scans} rendered flights (realistic noise), "
          f"{len(distances)} events matched: median {statistics.median(distances):.2f} m, 90th percentile "
          f"{np.percentile(distances, 90):.2f} m")  # fmt: skip
    print(f"cost: positions {statistics.median(ratios):.2%} of the scan's wall time (median of {len(ratios)} scans, "
          f"max {max(ratios):.2%}) -> {_verdict(statistics.median(ratios) <= 0.05)}; paired scans with / without the SRT: "
          f"median {statistics.median(with_log):.1f} s / {statistics.median(without_log):.1f} s "
          f"({statistics.median(with_log) / statistics.median(without_log) - 1:+.1%})")  # fmt: skip


def _scan_errors(events: list[dict], truth: dict) -> list[float]:
    out = []
    for event in events:
        if event.get("ground_position") is None:
            continue
        overlapping = [o for o in truth["objects"] if o["class_name"] == event["class"]
                       and o["first_time_s"] <= event["last_time_s"] and event["first_time_s"] <= o["last_time_s"]]  # fmt: skip
        if not overlapping:
            continue
        frame = LocalFrame(event["ground_position"]["latitude"], event["ground_position"]["longitude"])  # PROJ: cached per origin
        out.append(min(float(np.hypot(*frame.metres(o["ground_position"]["latitude"], o["ground_position"]["longitude"])))
                       for o in overlapping))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flights", type=int, default=20, help="Synthetic flights (or sites) per target.")
    parser.add_argument("--scans", type=int, default=0, help="Rendered flights scanned with the demo model (cost, detector error).")
    parser.add_argument("--scan-seconds", type=float, default=30.0, help="Length of the scanned flights (1280x720, 30 fps).")
    parser.add_argument("--targets", default="error,sightings,changes", help="Which of error, sightings, changes to measure.")
    parser.add_argument("--out", type=Path, default=None, help="Work folder (default: a temporary one, removed after).")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-ground-"))
    try:
        targets = {"error": position_error, "sightings": sightings, "changes": changes}
        for name in args.targets.split(","):
            if name:
                targets[name](work, args.flights)
        if args.scans:
            scan_cost(work, args.scans, args.scan_seconds)
    finally:
        if args.out is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
