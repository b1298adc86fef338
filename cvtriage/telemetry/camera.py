"""The camera that filmed a flight: its focal length in pixels, from what the log and the video say.

DJI SRTs of newer firmware write `focal_len`, the lens's 35 mm-equivalent focal length: with the
sensor's shape that gives the focal length in pixels, whatever the video's resolution. Older logs
write none; then the camera comes from a small table of DJI cameras, found by a name in the video
file's metadata or given by the user (`positions.camera` in scan.yaml, `cvtriage scan --camera`).

Assumptions, said in each event's `ground_position.assumed` when they are made: the video frame is
the largest crop of the sensor with the video's shape (DJI's 16:9 modes use the sensor's whole
width); a camera found nowhere is taken for the commonest DJI one, a 24 mm-equivalent lens on a
4:3 sensor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from cvtriage.errors import CvtriageError

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # what "35 mm-equivalent" focal lengths refer to


@dataclass(frozen=True)
class DjiCamera:
    name: str
    names: tuple[str, ...]  # how logs, file metadata and users name it (matched without case, spaces or dashes)
    sensor_mm: tuple[float, float]  # width, height
    focal_35mm: float  # at its widest


# Sensor sizes and 35 mm-equivalent focal lengths from DJI's published specifications.
DJI_CAMERAS = (
    DjiCamera("Mavic 3 / Mavic 3 Classic (Hasselblad L2D-20c)", ("Mavic 3", "Mavic3", "L2D-20c", "Mavic 3 Classic"), (17.3, 13.0), 24.0),
    DjiCamera("Mavic 3 Enterprise (M3E)", ("M3E", "Mavic 3 Enterprise", "Mavic3E"), (17.3, 13.0), 24.0),
    DjiCamera("Mavic 3 Thermal (M3T), wide camera", ("M3T", "Mavic 3 Thermal"), (6.4, 4.8), 24.0),
    DjiCamera("Air 2S", ("Air 2S", "FC3411"), (13.2, 8.8), 22.0),
    DjiCamera("Mavic Air 2", ("Mavic Air 2", "Air 2", "FC3170"), (6.4, 4.8), 24.0),
    DjiCamera("Mavic 2 Pro (Hasselblad L1D-20c)", ("Mavic 2 Pro", "L1D-20c"), (13.2, 8.8), 28.0),
    DjiCamera("Mavic 2 Zoom", ("Mavic 2 Zoom", "FC2204"), (6.17, 4.55), 24.0),
    DjiCamera("Mavic Pro", ("Mavic Pro", "FC220"), (6.17, 4.55), 26.0),
    DjiCamera("Mavic Mini / Mini 2", ("Mavic Mini", "Mini 2", "FC7203", "FC7303"), (6.17, 4.55), 24.0),
    DjiCamera("Mini 3 Pro / Mini 4 Pro", ("Mini 3 Pro", "Mini 4 Pro", "FC3582", "FC8482"), (9.6, 7.2), 24.0),
    DjiCamera("Phantom 4 Pro / Phantom 4 RTK", ("Phantom 4 Pro", "Phantom 4 RTK", "P4 RTK", "P4P", "FC6310", "FC6310R"), (13.2, 8.8), 24.0),
    DjiCamera("Phantom 3", ("Phantom 3", "FC300X", "FC300S"), (6.17, 4.55), 20.0),
    DjiCamera("Matrice 30, wide camera", ("M30", "Matrice 30"), (6.4, 4.8), 24.0),
    DjiCamera("Zenmuse H20 / H20T, wide camera", ("H20", "H20T", "Matrice 300", "M300"), (6.17, 4.55), 24.0),
    DjiCamera("Zenmuse P1 (35 mm lens)", ("P1", "Zenmuse P1"), (35.9, 24.0), 35.0),
)
ASSUMED_SENSOR_MM = (17.3, 13.0)  # a 4:3 sensor, as on most DJI drones
ASSUMED_FOCAL_35MM = 24.0


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def camera_named(name: str) -> DjiCamera:
    """The table's camera of that name (any of its names, any case); a CvtriageError lists them."""
    wanted = _key(name)
    for camera in DJI_CAMERAS:
        if wanted in {_key(alias) for alias in camera.names}:
            return camera
    known = ", ".join(camera.names[0] for camera in DJI_CAMERAS)
    raise CvtriageError(f"camera '{name}': not in the table of DJI cameras ({known})")


def camera_in_metadata(metadata: dict[str, str]) -> DjiCamera | None:
    """The camera a video file's metadata names (DJI writes its model into some tags), if any:
    the longest name found wins, so `Mavic 3 Enterprise` is not taken for `Mavic 3`."""
    text = _key(" ".join(str(value) for value in metadata.values()))
    found = [(len(_key(alias)), camera) for camera in DJI_CAMERAS for alias in camera.names if len(_key(alias)) >= 3 and _key(alias) in text]
    return max(found, key=lambda pair: pair[0])[1] if found else None


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: focal length in pixels, principal point at the frame's centre."""

    focal_px: float
    width: int
    height: int
    assumed: tuple[str, ...]  # what was assumed rather than known

    @property
    def centre(self) -> tuple[float, float]:
        return self.width / 2, self.height / 2


def intrinsics(width: int, height: int, focal_35mm: float | None, camera: DjiCamera | None) -> Intrinsics:
    """The focal length in pixels of a `width` x `height` frame: from the log's 35 mm-equivalent
    focal length where it has one, else the camera's; the sensor's shape from the camera."""
    assumed = []
    if camera is None:
        sensor = ASSUMED_SENSOR_MM
        if focal_35mm is None:
            assumed.append(f"camera unknown: a {ASSUMED_FOCAL_35MM:g} mm-equivalent lens on a 4:3 sensor")
        else:
            assumed.append("a 4:3 sensor (camera unknown)")
    else:
        sensor = camera.sensor_mm
    focal_35mm = focal_35mm or (camera.focal_35mm if camera else ASSUMED_FOCAL_35MM)
    focal_mm = focal_35mm * math.hypot(*sensor) / FULL_FRAME_DIAGONAL_MM
    # The frame is the largest crop of the sensor with the frame's shape.
    pixels_per_mm = width / sensor[0] if width / height >= sensor[0] / sensor[1] else height / sensor[1]
    return Intrinsics(focal_mm * pixels_per_mm, width, height, tuple(assumed))
