"""A synthetic flyover's flight log: the DJI-style `.SRT` its camera path would write, placed on Earth.

The flyover looks straight down on a flat world, so the world's pixels are metres on the ground:
`metres_per_px` at 720 p (scaled with the frame's height, so objects keep their size in metres).
The world lies at a latitude and longitude, its x axis along `bearing_deg`; the camera's image top
points 90 degrees to the left of that (the flight runs to the image's right), or the other way
on a reversed flight. The camera is a DJI 24 mm-equivalent lens (cvtriage.telemetry.camera) and
its height above the ground follows from the zoom: height = metres per px x focal px / zoom.

The log is written as enterprise DJI firmware writes it, one subtitle per frame: `FrameCnt`, a
date-time, `[focal_len: 24.00]`, position, `rel_alt`/`abs_alt` and `[gb_yaw gb_pitch gb_roll]`.

`TelemetryNoise` makes it as imperfect as a real one: each error is a bias drifting over minutes
(an Ornstein-Uhlenbeck process with that standard deviation and a 300 s correlation time, as GNSS,
barometer and compass errors drift) plus jitter of a fifth of it from subtitle to subtitle;
`offset_m` shifts each later flight of a site's GPS by that much in a random direction (GPS drift
between days).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from cvtriage.telemetry.camera import intrinsics
from cvtriage.telemetry.local_frame import LocalFrame

FOCAL_35MM = 24.0
METRES_PER_PX = 0.04  # at 720 p: a 1280 px frame at zoom 1 spans 51 m of ground, from 36 m up
GROUND_ALTITUDE_M = 400.0  # above sea level, for `abs_alt`
CORRELATION_S = 300.0
JITTER_SHARE = 0.2
START = datetime(2024, 5, 14, 10, 0, 0)


@dataclass(frozen=True)
class TelemetryNoise:
    gps_m: float = 0.0
    altitude_m: float = 0.0
    heading_deg: float = 0.0
    offset_m: float = 0.0

    def as_dict(self) -> dict:
        return {"gps_m": self.gps_m, "altitude_m": self.altitude_m, "heading_deg": self.heading_deg, "offset_m": self.offset_m}


@dataclass(frozen=True)
class WorldOnEarth:
    """Where a synthetic world lies: its pixel (0, 0) at a latitude and longitude, x along a bearing."""

    latitude: float = 46.2044
    longitude: float = 6.1432
    bearing_deg: float = 90.0
    metres_per_px: float = METRES_PER_PX  # at this flyover's resolution

    def metres(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(east, north) metres from the origin of world pixels (x, y): y runs 90 degrees right of x."""
        x, y = np.asarray(x, float) * self.metres_per_px, np.asarray(y, float) * self.metres_per_px
        along, across = np.radians(self.bearing_deg), np.radians(self.bearing_deg + 90)
        return x * np.sin(along) + y * np.sin(across), x * np.cos(along) + y * np.cos(across)

    def degrees(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        east, north = self.metres(x, y)
        return LocalFrame(self.latitude, self.longitude).degrees(east, north)


def ou_process(rng: np.random.Generator, times: np.ndarray, sigma: float) -> np.ndarray:
    """A stationary Ornstein-Uhlenbeck process with standard deviation `sigma`, sampled at `times`."""
    out = np.empty(len(times))
    value = rng.normal(0.0, sigma)
    previous = times[0] if len(times) else 0.0
    for index, time_s in enumerate(times):
        keep = np.exp(-(time_s - previous) / CORRELATION_S)
        value = value * keep + rng.normal(0.0, sigma * np.sqrt(max(1 - keep**2, 0.0)))
        out[index], previous = value, time_s
    return out


def drifting_error(rng: np.random.Generator, times: np.ndarray, sigma: float) -> np.ndarray:
    """A bias drifting over minutes plus jitter (module docstring); zeros when sigma is 0."""
    if sigma <= 0:
        return np.zeros(len(times))
    return ou_process(rng, times, sigma) + rng.normal(0.0, JITTER_SHARE * sigma, len(times))


@dataclass
class CameraTrack:
    """The logged camera per frame: its ground point (east, north from the world's origin), height,
    and where the image's top points."""

    east: np.ndarray
    north: np.ndarray
    height: np.ndarray
    heading: np.ndarray


def camera_track(centre_x, centre_y, zoom, width: int, height: int, world: WorldOnEarth, reverse: bool) -> CameraTrack:
    """The true camera over the world for each frame (centre in world px; zoom, screen px per world px)."""
    focal_px = intrinsics(width, height, FOCAL_35MM, None).focal_px
    east, north = world.metres(centre_x, centre_y)
    heading = (world.bearing_deg - 90 + (180 if reverse else 0)) % 360
    return CameraTrack(east, north, world.metres_per_px * focal_px / np.asarray(zoom, float), np.full(len(zoom), heading))


def write_srt(path: Path, track: CameraTrack, world: WorldOnEarth, fps: float, noise: TelemetryNoise, seed: int,
              flight: int = 0) -> None:  # fmt: skip
    """The flight log, one subtitle per frame, with the noise's errors added. A site's later flights
    are flown a week apart each, three hours later in the day."""
    rng = np.random.default_rng([seed, flight, 0x5A7])
    start = START + timedelta(days=7 * flight, hours=3 * flight)
    count = len(track.height)
    times = np.arange(count) / fps
    angle = rng.uniform(0, 2 * np.pi)
    offset = noise.offset_m if flight > 0 else 0.0  # later flights' GPS off from the first's
    east = track.east + drifting_error(rng, times, noise.gps_m) + offset * np.sin(angle)
    north = track.north + drifting_error(rng, times, noise.gps_m) + offset * np.cos(angle)
    height = track.height + drifting_error(rng, times, noise.altitude_m)
    heading = (track.heading + drifting_error(rng, times, noise.heading_deg)) % 360
    latitude, longitude = LocalFrame(world.latitude, world.longitude).degrees(east, north)
    gimbal_yaw = (heading + 180) % 360 - 180  # DJI writes -180..180
    blocks = []
    for index in range(count):
        begin, end = times[index], (index + 1) / fps
        clock = start + timedelta(seconds=float(begin))
        blocks.append(
            f"{index + 1}\n{_timecode(begin)} --> {_timecode(end)}\n"
            f'<font size="28">FrameCnt: {index + 1}, DiffTime: {round(1000 / fps)}ms\n'
            f"{clock:%Y-%m-%d %H:%M:%S}.{clock.microsecond // 1000:03d}\n"
            f"[iso: 100] [shutter: 1/1000.0] [fnum: 2.8] [ev: 0] [color_md: default] [focal_len: {FOCAL_35MM:.2f}] "
            f"[dzoom_ratio: 10000, delta:0] [latitude: {latitude[index]:.7f}] [longitude: {longitude[index]:.7f}] "
            f"[rel_alt: {height[index]:.3f} abs_alt: {height[index] + GROUND_ALTITUDE_M:.3f}] "
            f"[gb_yaw: {gimbal_yaw[index]:.1f} gb_pitch: -90.0 gb_roll: 0.0] </font>\n"
        )
    Path(path).write_text("\n".join(blocks), encoding="utf-8")


def _timecode(seconds: float) -> str:
    millis = int(round(seconds * 1000))
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"
