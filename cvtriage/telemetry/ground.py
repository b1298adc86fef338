"""Where on the ground an event's object lies: its boxes projected from the camera's pose, with an
uncertainty radius from the telemetry's errors.

The camera is a pinhole (cvtriage.telemetry.camera) at the drone's logged position and height
above the ground (the take-off point's height: the ground is taken as flat), pointing where the
gimbal points: its yaw, pitch and roll where the log has them, else straight down (pitch -90) with
the image's top towards the drone's heading, and, where the log has no heading either, towards its
course over the ground. A box's centre (its bottom centre when the camera looks more than 30
degrees off straight down: objects stand on the ground) is cast as a ray onto the ground.

An event is placed from up to MAX_FRAMES of its track's frames (those whose box does not touch the
frame's edge, where a cut box would move its centre): the median of their ground points.

Uncertainty: first-order propagation. The ground point's Jacobian with respect to the height,
yaw, pitch, roll and the box centre (by finite differences) carries each one's standard deviation
into a 2x2 covariance, the GPS error (each of east and north) is added to it, and the radius is the
circle that holds 90% of that Gaussian. The errors are biases more than noise (GPS and barometer
drift over minutes, a compass's error holds for a flight), so averaging frames does not shrink them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvtriage.telemetry.camera import Intrinsics
from cvtriage.telemetry.local_frame import LocalFrame
from cvtriage.telemetry.types import Position, Positions

MAX_FRAMES = 15
OBLIQUE_DEG = 30.0  # off straight down, beyond which a box's bottom centre is where its object stands
MIN_HEIGHT_M = 2.0  # below this the drone is on the ground, or its height is wrong
COURSE_SPAN_S = 1.0  # the course over the ground is measured over this long either side
MIN_COURSE_M = 1.5  # moved less than this over 2 x COURSE_SPAN_S: hovering, no course
COVERAGE_S = 1.0  # one footprint of the frame on the ground per this many seconds of video
# 90% of a 2D Gaussian's mass: quantile of its radius, computed on fixed samples (4,096 draws).
_UNIT_SAMPLES = np.random.default_rng(0).standard_normal((4096, 2))


@dataclass(frozen=True)
class TelemetryErrors:
    """Standard deviations of the telemetry's errors, and of a box's centre as a share of its size."""

    gps_m: float = 1.5
    altitude_m: float = 1.0
    heading_deg: float = 2.0
    gimbal_deg: float = 1.0
    nadir_assumed_deg: float = 3.0  # how far off straight down a gimbal without angles in the log may point
    course_deg: float = 15.0  # a heading taken from the course: drones also fly sideways and crab in wind
    box_share: float = 0.05


@dataclass(frozen=True)
class Pose:
    """The camera for one frame, in the site's frame: metres east, north, above the ground; degrees."""

    east: float
    north: float
    height: float
    yaw: float | None  # where the image's top points, clockwise from north; None: unknown
    pitch: float  # -90: straight down
    roll: float
    assumed: tuple[str, ...]
    yaw_error_deg: float
    pitch_error_deg: float


def ray_to_ground(intr: Intrinsics, pose: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ground offsets (east, north) from the camera of pixels (u, v), for poses given as rows of
    (height, yaw, pitch, roll) in metres and degrees; NaN where the ray misses the ground."""
    height, yaw, pitch, roll = (np.radians(pose[..., i]) if i else pose[..., 0] for i in range(4))
    forward = np.stack([np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), np.sin(pitch)], -1)
    right = np.stack([np.cos(yaw), -np.sin(yaw), np.zeros_like(yaw)], -1)
    down = np.cross(forward, right)
    right, down = (right * np.cos(roll)[..., None] + down * np.sin(roll)[..., None],
                   down * np.cos(roll)[..., None] - right * np.sin(roll)[..., None])  # fmt: skip
    cx, cy = intr.centre
    ray = forward + ((u - cx) / intr.focal_px)[..., None] * right + ((v - cy) / intr.focal_px)[..., None] * down
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(ray[..., 2] < -1e-6, height / -ray[..., 2], np.nan)
    return ray[..., 0] * scale, ray[..., 1] * scale


def radius_90(covariance: np.ndarray) -> float:
    """The radius of the circle around the mean that holds 90% of a 2D Gaussian."""
    values = np.clip(np.linalg.eigvalsh(covariance), 0.0, None)
    return float(np.quantile(np.sqrt((_UNIT_SAMPLES**2) @ values), 0.9))


def course_deg(positions: Positions, frame: LocalFrame, time_s: float) -> float | None:
    """The drone's direction over the ground around `time_s` (degrees from north), None when hovering."""
    before, after = positions.at(-1, time_s - COURSE_SPAN_S), positions.at(-1, time_s + COURSE_SPAN_S)
    if before is None or after is None:
        return None
    east, north = frame.metres([before.latitude, after.latitude], [before.longitude, after.longitude])
    de, dn = float(east[1] - east[0]), float(north[1] - north[0])
    return math.degrees(math.atan2(de, dn)) % 360 if math.hypot(de, dn) >= MIN_COURSE_M else None


def pose_of(
    where: Position, frame: LocalFrame, errors: TelemetryErrors, ground_altitude_m: float | None, course: float | None
) -> Pose | str:
    """The camera's pose at one logged position, or the reason there is none."""
    if where.height is not None:
        height = where.height
    elif where.altitude is not None and ground_altitude_m is not None:
        height = where.altitude - ground_altitude_m
    else:
        return "no height above the ground in the log (give the ground's altitude: positions.ground_altitude_m)"
    if height < MIN_HEIGHT_M:
        return f"the drone is {height:.1f} m above its take-off point: on the ground, or its height is wrong"
    assumed = []
    if where.gimbal_pitch is not None:
        pitch, roll, pitch_error = where.gimbal_pitch, where.gimbal_roll or 0.0, errors.gimbal_deg
    else:
        pitch, roll, pitch_error = -90.0, 0.0, errors.nadir_assumed_deg
        assumed.append("camera pointing straight down (the log has no gimbal angles)")
    yaw, yaw_error = where.gimbal_yaw, errors.heading_deg
    if yaw is None and where.heading is not None:
        yaw = where.heading
        if where.gimbal_pitch is None:
            assumed.append("image top towards the drone's heading")
    if yaw is None and course is not None:
        yaw, yaw_error = course, errors.course_deg
        assumed.append("image top towards the drone's course (the log has no heading)")
    if yaw is None:
        assumed.append("heading unknown (no heading in the log, drone hovering): placed under the drone")
    east, north = frame.metres(where.latitude, where.longitude)
    return Pose(float(east), float(north), height, yaw, pitch, roll, tuple(assumed), yaw_error, pitch_error)


@dataclass(frozen=True)
class GroundFix:
    east: float
    north: float
    uncertainty_m: float
    frames: int
    assumed: tuple[str, ...]


def _pixel(box, pitch: float) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y2 if abs(pitch + 90) > OBLIQUE_DEG else (y1 + y2) / 2)


def _inside(box, intr: Intrinsics) -> bool:
    x1, y1, x2, y2 = box
    return x1 > 1 and y1 > 1 and x2 < intr.width - 1 and y2 < intr.height - 1


def place_track(
    track: list[tuple[int, float, tuple[float, float, float, float]]],
    poses: "PoseSource",
    intr: Intrinsics,
    errors: TelemetryErrors,
) -> GroundFix | str:
    """An event's ground position from its track's (frame, time, box) rows, or the reason there is none."""
    inside = [row for row in track if _inside(row[2], intr)] or track
    chosen = [inside[i] for i in np.unique(np.linspace(0, len(inside) - 1, min(MAX_FRAMES, len(inside))).round().astype(int))]
    fixes, reasons = [], []
    for frame_index, time_s, box in chosen:
        pose = poses.at(frame_index, time_s)
        if isinstance(pose, str):
            reasons.append(pose)
            continue
        fixes.append((pose, box))
    if not fixes:
        return reasons[0] if reasons else "no position logged at its frames"
    rows = np.array([[p.height, p.yaw if p.yaw is not None else 0.0, p.pitch, p.roll] for p, _ in fixes])
    pixels = np.array([_pixel(box, p.pitch) for p, box in fixes])
    de, dn = ray_to_ground(intr, rows, pixels[:, 0], pixels[:, 1])
    hit = np.isfinite(de)
    if not hit.any():
        return "its box lies above the horizon"
    known_yaw = np.array([p.yaw is not None for p, _ in fixes])
    offsets = np.hypot(de, dn)
    east = np.array([p.east for p, _ in fixes]) + np.where(known_yaw, de, 0.0)
    north = np.array([p.north for p, _ in fixes]) + np.where(known_yaw, dn, 0.0)
    east, north, offsets = east[hit], north[hit], offsets[hit]
    centre_e, centre_n = float(np.median(east)), float(np.median(north))
    nearest = int(np.argmin(np.hypot(east - centre_e, north - centre_n)))
    pose, box = [fix for fix, ok in zip(fixes, hit) if ok][nearest]
    radius = _uncertainty(intr, pose, box, errors)
    if pose.yaw is None:  # placed under the drone: the object is anywhere as far away as the box's offset
        radius += float(offsets[nearest])
    return GroundFix(centre_e, centre_n, radius, int(hit.sum()), pose.assumed)


def _uncertainty(intr: Intrinsics, pose: Pose, box, errors: TelemetryErrors) -> float:
    """The 90% radius of one frame's ground point (module docstring)."""
    u, v = _pixel(box, pose.pitch)
    box_px = errors.box_share * max(box[2] - box[0], box[3] - box[1])
    base = np.array([pose.height, pose.yaw or 0.0, pose.pitch, pose.roll, u, v])
    sigmas = np.array([errors.altitude_m, pose.yaw_error_deg, pose.pitch_error_deg, pose.pitch_error_deg, box_px, box_px])
    steps = np.array([0.1, 0.1, 0.1, 0.1, 1.0, 1.0])
    varied = np.repeat(base[None], 2 * len(base) + 1, 0)
    for i, step in enumerate(steps):
        varied[1 + 2 * i, i] += step
        varied[2 + 2 * i, i] -= step
    de, dn = ray_to_ground(intr, varied[:, :4], varied[:, 4], varied[:, 5])
    if not np.isfinite(de).all():  # near the horizon a small error moves the point without bound
        return float("inf")
    jacobian = np.stack([(de[1::2] - de[2::2]) / (2 * steps), (dn[1::2] - dn[2::2]) / (2 * steps)])
    covariance = jacobian @ np.diag(sigmas**2) @ jacobian.T + np.eye(2) * errors.gps_m**2
    return radius_90(covariance)


class PoseSource:
    """Poses of a scan's frames from its positions (cached per frame; courses where headings lack)."""

    def __init__(self, positions: Positions, frame: LocalFrame, errors: TelemetryErrors, ground_altitude_m: float | None):
        self.positions, self.frame, self.errors, self.ground_altitude_m = positions, frame, errors, ground_altitude_m
        self._cache: dict[tuple[int, float], Pose | str] = {}

    def at(self, frame_index: int, time_s: float) -> Pose | str:
        key = (frame_index, round(time_s, 4))
        if key not in self._cache:
            where = self.positions.at(frame_index, time_s)
            if where is None:
                self._cache[key] = "no position logged at its frames"
            else:
                needs_course = where.gimbal_yaw is None and where.heading is None
                course = course_deg(self.positions, self.frame, time_s) if needs_course else None
                self._cache[key] = pose_of(where, self.frame, self.errors, self.ground_altitude_m, course)
        return self._cache[key]
