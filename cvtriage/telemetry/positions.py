"""Positions of a scan's frames: from a DJI `.SRT` beside a video (same stem), or from the JSON
sidecars beside the images of a folder (cvtriage.telemetry.placement puts them on events).

Found automatically for every scan, so `cvtriage scan flight.mp4` with `flight.SRT` beside it
puts positions on its events. A telemetry file that cannot be used, or one that disagrees with its
video (cvtriage.telemetry.log_checks), is a warning: the scan's events are still worth having.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cvtriage.errors import CvtriageError
from cvtriage.image_files import image_files
from cvtriage.telemetry.camera import DjiCamera, camera_in_metadata
from cvtriage.telemetry.geomap import METRES_PER_DEGREE
from cvtriage.telemetry.log_checks import log_disagreements, recorded_at, video_metadata
from cvtriage.telemetry.sidecar import SIDECAR_SUFFIX, read_sidecar
from cvtriage.telemetry.srt import SrtLog, parse_srt
from cvtriage.telemetry.types import Position, Positions
from cvtriage.types import VideoInfo

# Far faster than any multirotor flies (DJI's fastest about 25 m/s, racing drones about 50): two
# logged positions further apart than this over their interval are a jump in the log (a new fix, a
# synthetic flight's lap), not a path to interpolate along.
MAX_SPEED_M_S = 300.0


def metres_between(a: Position, b: Position) -> float:
    """Ground distance between two positions (equirectangular: exact enough over one log interval)."""
    north = (b.latitude - a.latitude) * METRES_PER_DEGREE
    east = (b.longitude - a.longitude) * METRES_PER_DEGREE * math.cos(math.radians((a.latitude + b.latitude) / 2))
    return math.hypot(north, east)


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
        if metres_between(p0, p1) > MAX_SPEED_M_S * max(t1 - t0, self.interval_s):
            return p0 if share < 0.5 else p1  # a jump in the log (a new fix, a relocation): no path between
        return interpolated(p0, p1, share)

    def path(self) -> list[Position]:
        return self.positions


def interpolated(p0: Position, p1: Position, share: float) -> Position:
    """The position `share` of the way from p0 to p1: angles the short way round, the clock and
    focal length those of the nearer one."""

    def mix(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a + (b - a) * share

    def mix_angle(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else (a + ((b - a + 180) % 360 - 180) * share) % 360

    nearer = p0 if share < 0.5 else p1
    return Position(
        mix(p0.latitude, p1.latitude), mix(p0.longitude, p1.longitude), mix(p0.altitude, p1.altitude),
        mix(p0.height, p1.height), mix_angle(p0.heading, p1.heading), nearer.time,
        gimbal_pitch=mix(p0.gimbal_pitch, p1.gimbal_pitch), gimbal_yaw=mix_angle(p0.gimbal_yaw, p1.gimbal_yaw),
        gimbal_roll=mix(p0.gimbal_roll, p1.gimbal_roll), focal_35mm=nearer.focal_35mm,
    )  # fmt: skip


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
    camera: DjiCamera | None = None  # the camera the video file's metadata names
    log: SrtLog | None = None  # the flight log the positions come from, when a DJI SRT


def telemetry_file(video: Path) -> Path | None:
    """The DJI `.SRT` beside a video: same stem, suffix in any case."""
    video = Path(video)
    if not video.parent.is_dir():
        return None
    return next(
        (p for p in sorted(video.parent.iterdir()) if p.stem == video.stem and p.suffix.lower() == ".srt"), None
    )


def srt_positions(path: Path, video_start: datetime | None = None) -> tuple[TimedPositions, SrtLog]:
    log = parse_srt(path, video_start)
    records = log.positioned
    positions = TimedPositions(
        f"{path.name} ({len(records)} positions)",
        [record.start_s for record in records],
        [record.position for record in records],
        log.interval_s,
    )
    return positions, log


@functools.lru_cache(maxsize=8)
def _cached_source_positions(path: Path, kind: str, stamp: tuple) -> SourcePositions:
    from cvtriage.config import load_ingest_config

    if kind == "video":
        srt = telemetry_file(path)
        if srt is None:
            return SourcePositions(None)
        metadata = video_metadata(path)
        try:
            positions, log = srt_positions(srt, recorded_at(metadata))
        except CvtriageError as error:
            return SourcePositions(None, [f"{error}; events get no positions"])
        return SourcePositions(positions, log.warnings, camera_in_metadata(metadata), log)
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
    """The positions of a scan source's frames and what was wrong with its telemetry (its own
    problems, and where it disagrees with the video), the file read once per state of its files."""
    path = Path(video.path).resolve()
    srt = telemetry_file(path) if video.kind == "video" else None
    watched = srt if srt is not None else path
    stat = watched.stat() if watched.exists() else None
    stamp = (str(watched), stat.st_size if stat else 0, stat.st_mtime_ns if stat else 0)
    found = _cached_source_positions(path, video.kind, stamp)
    if found.log is None:
        return found
    disagreements = log_disagreements(found.log, video, video_metadata(path), found.camera)
    return dataclasses.replace(found, warnings=[*found.warnings, *disagreements])
