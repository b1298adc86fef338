"""A scan's events placed on the ground: each event's `position` (the drone's, at its keyframe,
start and end) and `ground_position` (its object's, with an uncertainty radius), its `object_id`
(events of one object across passes), and the flight's objects and camera footprints.

Called by the scan's outputs with the event records of events.json; the records are completed in
place, the rest is returned for objects.json, objects.csv and map.png.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvtriage.config import PositionsConfig
from cvtriage.telemetry.camera import Intrinsics, camera_named, intrinsics
from cvtriage.telemetry.geomap import MapPoint, write_map
from cvtriage.telemetry.ground import (
    COVERAGE_S,
    PoseSource,
    TelemetryErrors,
    place_track,
    ray_to_ground,
)
from cvtriage.telemetry.local_frame import LocalFrame
from cvtriage.telemetry.objects import (
    OBJECTS_JSON,
    OBJECTS_SCHEMA,
    Sighting,
    group_sightings,
    object_record,
    write_objects,
)
from cvtriage.telemetry.positions import SourcePositions
from cvtriage.telemetry.types import Position, Positions
from cvtriage.types import VideoInfo

logger = logging.getLogger(__name__)

# events.csv columns: the keyframe's drone position, where the track started and ended, then the
# object's ground position.
EVENT_POSITION_COLUMNS = [
    "latitude", "longitude", "altitude", "start_latitude", "start_longitude", "end_latitude", "end_longitude",
    "ground_latitude", "ground_longitude", "ground_uncertainty_m", "object_id",
]  # fmt: skip
EVENT_MAP_PNG = "map.png"


@dataclass
class Placement:
    """What placing a scan's events gave, beyond the records completed in place."""

    document: dict  # objects.json: schema, video, assumed, objects, coverage, path
    points: list[MapPoint]
    path: list[Position]
    seconds: float  # time spent placing (the scan's cost of positions)
    warnings: list[str] = field(default_factory=list)


def place_events(
    records: list[dict], video: VideoInfo, source: SourcePositions, settings: PositionsConfig
) -> Placement | None:
    """Complete each event record with its positions (module docstring); None without positions."""
    positions = source.positions
    if positions is None:
        return None
    started = time.perf_counter()
    path = positions.path()
    frame = LocalFrame(path[0].latitude, path[0].longitude)
    camera = camera_named(settings.camera) if settings.camera else source.camera
    focal = settings.focal_35mm or next((p.focal_35mm for p in path if p.focal_35mm), None)
    intr = intrinsics(video.width, video.height, focal, camera)
    errors = TelemetryErrors(**settings.errors.model_dump())
    poses = PoseSource(positions, frame, errors, settings.ground_altitude_m)
    reasons: Counter = Counter()
    sightings, assumed = [], set(intr.assumed)
    for record in records:
        _drone_positions(record, positions)
        track = [(int(row[0]), video.time_of(int(row[0])), tuple(row[1:5])) for row in record["track"]]
        if not track:  # seen only in refinement crops, whose boxes are not the track's: its best one
            best = int(record["best_frame"])
            track = [(best, video.time_of(best), tuple(record["best_box_xyxy"]))]
        fix = place_track(track, poses, intr, errors)
        if isinstance(fix, str):
            record["ground_position"] = None
            reasons[fix] += 1
            continue
        assumed.update(fix.assumed)
        latitude, longitude = frame.degrees(fix.east, fix.north)
        record["ground_position"] = {
            "latitude": round(float(latitude), 7), "longitude": round(float(longitude), 7),
            "uncertainty_m": round(fix.uncertainty_m, 2), "frames": fix.frames, "assumed": list(fix.assumed),
        }  # fmt: skip
        sightings.append(Sighting(record["id"], record["class"], fix.east, fix.north, fix.uncertainty_m,
                                  record["first_time_s"], record["last_time_s"], record["peak_confidence"]))  # fmt: skip
    objects = []
    for object_id, members in enumerate(group_sightings(sightings, settings.same_object_share), start=1):
        objects.append(_in_degrees(object_record(object_id, members), frame))
    by_event = {event_id: record["id"] for record in objects for event_id in record["event_ids"]}
    for record in records:
        record["object_id"] = by_event.get(record["id"])
    warnings = [
        f"{positions.description}: {count} event{'s' if count > 1 else ''} without a ground position: {reason}"
        for reason, count in reasons.items()
    ]
    document = {
        "schema": OBJECTS_SCHEMA,
        "video": {"path": str(Path(video.path).resolve()), "name": Path(video.path).name},
        "telemetry": positions.description,
        "focal_px": round(intr.focal_px, 2),
        "assumed": sorted(assumed),
        "objects": objects,
        "coverage": _coverage(video, poses, intr, frame),
        "path": [[round(p.latitude, 7), round(p.longitude, 7)] for p in path[:: max(1, len(path) // 2000)]],
    }
    points = [MapPoint(f"O{o['id']}" + (f" x{len(o['event_ids'])}" if len(o["event_ids"]) > 1 else ""), o["class"],
                       Position(o["latitude"], o["longitude"]), o["uncertainty_m"]) for o in objects]  # fmt: skip
    points += [
        MapPoint(f"#{r['id']} (drone)", r["class"], Position(**r["position"]["keyframe"]))
        for r in records
        if r["ground_position"] is None and r["position"]["keyframe"] is not None
    ]
    return Placement(document, points, path, time.perf_counter() - started, warnings)


def _drone_positions(record: dict, positions: Positions) -> None:
    """The drone's positions at the event's keyframe, start and end (`position`)."""
    found = {
        "keyframe": positions.at(record["best_frame"], record["best_time_s"]),
        "start": positions.at(record["first_frame"], record["first_time_s"]),
        "end": positions.at(record["last_frame"], record["last_time_s"]),
    }
    record["position"] = {name: where.as_dict() if where else None for name, where in found.items()}


def _in_degrees(record: dict, frame: LocalFrame) -> dict:
    latitude, longitude = frame.degrees(record.pop("east"), record.pop("north"))
    return {"id": record.pop("id"), "class": record.pop("class"), "latitude": round(float(latitude), 7),
            "longitude": round(float(longitude), 7), **record}  # fmt: skip


def _coverage(video: VideoInfo, poses: PoseSource, intr: Intrinsics, frame: LocalFrame) -> list[list[list[float]]]:
    """The frame's footprint on the ground every COVERAGE_S seconds: four corners (latitude,
    longitude). Footprints reaching above the horizon are left out (their far side is unbounded)."""
    corners_u = np.array([0.0, intr.width, intr.width, 0.0])
    corners_v = np.array([0.0, 0.0, intr.height, intr.height])
    footprints = []
    for time_s in np.arange(0.0, max(video.duration_s, 0.0) + 1e-9, COVERAGE_S):
        pose = poses.at(int(round(time_s * video.fps)), float(time_s))  # by time (logs) or frame (sidecars)
        if isinstance(pose, str) or pose.yaw is None:
            continue
        row = np.array([[pose.height, pose.yaw, pose.pitch, pose.roll]] * 4)
        east, north = ray_to_ground(intr, row, corners_u, corners_v)
        if not np.isfinite(east).all():
            continue
        latitude, longitude = frame.degrees(pose.east + east, pose.north + north)
        footprints.append([[round(float(a), 7), round(float(b), 7)] for a, b in zip(latitude, longitude)])
    return footprints


def write_placement(folder: Path, title: str, placement: Placement) -> dict[str, Path]:
    """objects.json, objects.csv and map.png (the flight path and the objects, with their radii)."""
    paths = write_objects(folder, placement.document)
    if placement.points or placement.path:
        write_map(folder / EVENT_MAP_PNG, title, placement.points, placement.path)
        paths["map"] = folder / EVENT_MAP_PNG
    return paths


def event_position_cells(record: dict) -> list:
    """The EVENT_POSITION_COLUMNS of one event record (empty cells where unknown)."""
    position = record.get("position") or {}
    ground = record.get("ground_position") or {}

    def get(name: str, key: str):
        return (position.get(name) or {}).get(key, "")

    return [
        get("keyframe", "latitude"), get("keyframe", "longitude"), get("keyframe", "altitude"),
        get("start", "latitude"), get("start", "longitude"), get("end", "latitude"), get("end", "longitude"),
        ground.get("latitude", ""), ground.get("longitude", ""), ground.get("uncertainty_m", ""),
        record.get("object_id") or "",
    ]  # fmt: skip


def sample_locations(events_json: Path) -> dict[int, dict]:
    """For each event of a results folder (its events.json, and objects.json beside it), what its
    FiftyOne sample shows: `location` its object's place on the ground ([longitude, latitude]; the
    drone's where the event has no ground position), `drone_location`, `ground_uncertainty_m` and
    `object_id`. Events without positions are left out."""
    events_json = Path(events_json)
    records = json.loads(events_json.read_text(encoding="utf-8"))["events"]
    objects_json = events_json.with_name(OBJECTS_JSON)
    objects = {}
    if objects_json.is_file():
        objects = {o["id"]: o for o in json.loads(objects_json.read_text(encoding="utf-8"))["objects"]}
    found = {}
    for record in records:
        drone = (record.get("position") or {}).get("keyframe")
        ground = record.get("ground_position")
        place = objects.get(record.get("object_id")) or ground
        if drone is None and place is None:
            continue
        found[record["id"]] = {
            "location": [place["longitude"], place["latitude"]] if place else [drone["longitude"], drone["latitude"]],
            "drone_location": [drone["longitude"], drone["latitude"]] if drone else None,
            "ground_uncertainty_m": place["uncertainty_m"] if place else None,
            "object_id": record.get("object_id"),
        }
    return found
