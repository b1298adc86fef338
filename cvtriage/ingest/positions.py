"""Positions of a scan's frames: from a DJI `.SRT` beside a video (same stem), or from the JSON
sidecars beside the images of a folder; and the positions of an event (keyframe, start, end).

Found automatically for every scan, so `cvtriage scan flight.mp4` with `flight.SRT` beside it
puts positions on its events. A telemetry file that cannot be used is a warning: the scan's
events are still worth having without positions.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field
from pathlib import Path

from cvtriage.errors import CvtriageError
from cvtriage.frames import VideoInfo, image_files
from cvtriage.ingest.geomap import MapPoint
from cvtriage.ingest.sidecar import SIDECAR_SUFFIX, read_sidecar
from cvtriage.ingest.srt import parse_srt
from cvtriage.ingest.types import Position, Positions


@dataclass
class TimedPositions:
    """Positions logged along a video's time (one per subtitle), interpolated between two logged
    ones; a time further than one logging interval from any logged position has none."""

    description: str
    times: list[float]
    positions: list[Position]
    interval_s: float  # the log's usual spacing

    def at(self, frame_index: int, time_s: float) -> Position | None:
        after = bisect.bisect_right(self.times, time_s)
        if after == 0 or after == len(self.times):
            nearest = 0 if after == 0 else len(self.times) - 1
            return self.positions[nearest] if abs(self.times[nearest] - time_s) <= self.interval_s else None
        t0, t1 = self.times[after - 1], self.times[after]
        p0, p1 = self.positions[after - 1], self.positions[after]
        if t1 - t0 > 2 * self.interval_s:  # a gap in the log (no fix): only close to either end
            nearest, distance = min(((p0, time_s - t0), (p1, t1 - time_s)), key=lambda pair: pair[1])
            return nearest if distance <= self.interval_s else None
        share = (time_s - t0) / (t1 - t0) if t1 > t0 else 0.0

        def mix(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a + (b - a) * share

        nearer = p0 if share < 0.5 else p1
        return Position(
            mix(p0.latitude, p1.latitude), mix(p0.longitude, p1.longitude), mix(p0.altitude, p1.altitude),
            mix(p0.height, p1.height), nearer.heading, nearer.time,
        )  # fmt: skip

    def path(self) -> list[Position]:
        return self.positions


@dataclass
class FramePositions:
    """Positions by frame index: an image folder's sidecars."""

    description: str
    by_frame: dict[int, Position]

    def at(self, frame_index: int, time_s: float) -> Position | None:
        return self.by_frame.get(frame_index)

    def path(self) -> list[Position]:
        return [self.by_frame[index] for index in sorted(self.by_frame)]


@dataclass
class SourcePositions:
    positions: Positions | None
    warnings: list[str] = field(default_factory=list)


def telemetry_file(video: Path) -> Path | None:
    """The DJI `.SRT` beside a video: same stem, suffix in any case."""
    video = Path(video)
    if not video.parent.is_dir():
        return None
    return next(
        (p for p in sorted(video.parent.iterdir()) if p.stem == video.stem and p.suffix.lower() == ".srt"), None
    )


def srt_positions(path: Path) -> tuple[TimedPositions, list[str]]:
    log = parse_srt(path)
    records = log.positioned
    spans = sorted(record.end_s - record.start_s for record in records if record.end_s > record.start_s)
    interval = spans[len(spans) // 2] if spans else 1.0
    positions = TimedPositions(
        f"{path.name} ({len(records)} positions)",
        [record.start_s for record in records],
        [record.position for record in records],
        interval,
    )
    return positions, log.warnings


@functools.lru_cache(maxsize=8)
def _cached_source_positions(path: Path, kind: str, stamp: tuple) -> SourcePositions:
    from cvtriage.config import load_ingest_config

    if kind == "video":
        srt = telemetry_file(path)
        if srt is None:
            return SourcePositions(None)
        try:
            positions, warnings = srt_positions(srt)
        except CvtriageError as error:
            return SourcePositions(None, [f"{error}; events get no positions"])
        return SourcePositions(positions, warnings)
    settings = load_ingest_config()
    by_frame: dict[int, Position] = {}
    warnings = []
    for index, image in enumerate(image_files(path)):
        sidecar = image.with_suffix(SIDECAR_SUFFIX)
        if not sidecar.is_file():
            continue
        try:
            found = read_sidecar(sidecar, settings.sidecar_keys, settings.max_sidecar_bytes).position
        except CvtriageError as error:
            warnings.append(f"{path}/{error}; that image gets no position")
            continue
        if found is not None:
            by_frame[index] = found
    if not by_frame:
        return SourcePositions(None, warnings)
    return SourcePositions(FramePositions(f"{len(by_frame)} sidecars", by_frame), warnings)


def source_positions(video: VideoInfo) -> SourcePositions:
    """The positions of a scan source's frames (and what was wrong with its telemetry), read once
    per source and state of its files."""
    path = Path(video.path).resolve()
    srt = telemetry_file(path) if video.kind == "video" else None
    watched = srt if srt is not None else path
    stat = watched.stat() if watched.exists() else None
    stamp = (str(watched), stat.st_size if stat else 0, stat.st_mtime_ns if stat else 0)
    return _cached_source_positions(path, video.kind, stamp)


# events.csv columns: the keyframe's position, then where the track started and ended.
EVENT_POSITION_COLUMNS = [
    "latitude", "longitude", "altitude", "start_latitude", "start_longitude", "end_latitude", "end_longitude",
]  # fmt: skip
EVENT_MAP_PNG = "map.png"


def locate_events(records: list[dict], positions: Positions) -> list[MapPoint]:
    """Give each event record (events.json) its `position`: at its keyframe, start and end (null
    where unknown); returns the map points of the events located at their keyframe."""
    points = []
    for record in records:
        found = {
            "keyframe": positions.at(record["best_frame"], record["best_time_s"]),
            "start": positions.at(record["first_frame"], record["first_time_s"]),
            "end": positions.at(record["last_frame"], record["last_time_s"]),
        }
        record["position"] = {name: where.as_dict() if where else None for name, where in found.items()}
        if found["keyframe"] is not None:
            points.append(MapPoint(f"#{record['id']}", record["class"], found["keyframe"]))
    return points


def event_position_cells(record: dict) -> list:
    """The EVENT_POSITION_COLUMNS of one event record (empty cells where unknown)."""
    position = record.get("position") or {}

    def get(name: str, key: str):
        return (position.get(name) or {}).get(key, "")

    return [
        get("keyframe", "latitude"), get("keyframe", "longitude"), get("keyframe", "altitude"),
        get("start", "latitude"), get("start", "longitude"), get("end", "latitude"), get("end", "longitude"),
    ]  # fmt: skip
