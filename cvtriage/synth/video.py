"""Synthetic drone flyovers with exact ground truth: the yardstick for `scan`'s event recall.

The camera looks straight down on one long synthetic scene (the dataset's ground and drawing
code) and flies along it, drifting sideways and slowly zooming in and out. It always moves
forward faster than zooming moves the frame's edges, and every object lies in the band the frame
always covers vertically, so each object enters once and leaves once: one object, one visible
interval, one event to find. Objects are kept well apart, never covered by anything, and about
16-120 px on the long side at 1280x720 (sizes and speeds scale with the frame height).

A flight longer than a world OpenCV can warp (MAX_WORLD_WIDTH px wide: about 216 s at 720p,
140 s at 1080p) flies laps over a world whose ends join (along a blended seam, as its stretches
of ground do): it passes the same objects again, and each pass is one object of the truth (ids
count on across laps; the last pass may end with objects still in view). Memory stays that of
one world whatever the flight's length.

Ground truth sidecar (`OUT.truth.json` next to `OUT.mp4`), schema "cvtriage-synth-flyover/1":

    {
      "schema": "cvtriage-synth-flyover/1",
      "video": {"file": "OUT.mp4", "width": 1280, "height": 720, "fps": 30.0,
                "frame_count": 1800, "duration_s": 60.0, "seed": 0},
      "classes": ["ladder", "fire extinguisher", "bag", "antenna"],   # class_id = index
      "visible_when": "at least 50% of the object's box inside the frame",
      "objects": [
        {"id": 0, "class_id": 2, "class_name": "bag",
         "first_frame": 112, "last_frame": 431,          # inclusive; frame n is at n / fps seconds
         "first_time_s": 3.733, "last_time_s": 14.367,
         "boxes": [[112, x1, y1, x2, y2], ...]}          # one row per frame first..last, pixels,
      ]                                                  # tight around the drawn object, clipped
    }                                                    # to the frame
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cvtriage.errors import CvtriageError
from cvtriage.files import replaced_on_success
from cvtriage.progress import ProgressCallback, no_progress
from cvtriage.synth.camera_effects import relight
from cvtriage.synth.dataset import DEFAULT_CLASSES, resolve_class_names
from cvtriage.synth.flight_log import (
    FOCAL_35MM,
    METRES_PER_PX,
    TelemetryNoise,
    WorldOnEarth,
    camera_track,
    write_srt,
)
from cvtriage.synth.ground import make_ground
from cvtriage.synth.objects import (
    CLUTTER_DRAWERS,
    LOOKALIKE_DRAWERS,
    OBJECT_DRAWERS,
    log_uniform,
    pick,
)
from cvtriage.synth.scene import Scene, random_sun
from cvtriage.synth.site import SitePlan, SiteSpec, plan_site

SCHEMA = "cvtriage-synth-flyover/1"
VISIBLE_SHARE = 0.5
# At 720 px frame height (everything scales with height / 720):
OBJECT_SIZES = (20.0, 100.0)  # world px; zoom 0.85..1.2 makes them about 17..120 px on screen
CLUTTER_SIZES = (8.0, 140.0)  # world px: rocks, bushes, cars, debris
ZOOM_MID, ZOOM_SWING, ZOOM_PERIOD_S = 1.025, 0.175, 25.0
SPEED = 140.0  # world px per second, +-30%
SWAY, SWAY_PERIOD_S = 60.0, 17.0  # sideways drift
# Objects in a flyover when not given: about one every 5 s of a 60 s flight.
DEFAULT_OBJECTS = 12
MIN_GAP = 300.0  # world px between object centres, so nearby objects are never one event
# OpenCV's warpAffine takes images up to 32,767 px a side; a world this wide is the longest strip
# one flight paints, and a longer flight flies laps over it.
MAX_WORLD_WIDTH = 32000


@dataclass
class WorldObject:
    id: int
    class_id: int
    box: tuple[float, float, float, float]  # tight box in world px (x1, y1, x2, y2)
    object_id: int = 0  # the object on the ground: the same for each lap's pass of it


@dataclass
class Flyover:
    """A rendered world and the camera path over it: everything needed to draw any frame."""

    world: np.ndarray  # BGR uint8
    objects: list[WorldObject]
    centre_x: np.ndarray  # per frame, world px
    centre_y: np.ndarray
    zoom: np.ndarray  # screen px per world px
    width: int
    height: int
    fps: float
    reverse: bool = False  # flown the other way: the frame shows the world turned half round
    world_width: int = 0  # of one lap (the painted world)
    flight: int = 0  # its number among a site's flights (cvtriage.synth.site)
    plan: SitePlan | None = None  # that site's objects in each flight

    @property
    def frame_count(self) -> int:
        return len(self.zoom)

    def _to_screen(self, frame: int, x: float, y: float) -> tuple[float, float]:
        sign = -1.0 if self.reverse else 1.0
        z = sign * self.zoom[frame]
        return (x - self.centre_x[frame]) * z + self.width / 2, (y - self.centre_y[frame]) * z + self.height / 2

    def render(self, frame: int) -> np.ndarray:
        """Frame `frame` (BGR uint8)."""
        z = (-1.0 if self.reverse else 1.0) * self.zoom[frame]
        cx = self.centre_x[frame] % self.world.shape[1]  # on a later lap; BORDER_WRAP joins the world's ends
        matrix = np.array([[z, 0, self.width / 2 - cx * z], [0, z, self.height / 2 - self.centre_y[frame] * z]], np.float64)
        return cv2.warpAffine(self.world, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)

    def box_in_frame(self, obj: WorldObject, frame: int) -> tuple[float, float, float, float] | None:
        """The object's box in the frame (clipped), or None when less than half of it is inside."""
        (ax, ay), (bx, by) = self._to_screen(frame, obj.box[0], obj.box[1]), self._to_screen(frame, obj.box[2], obj.box[3])
        x1, y1, x2, y2 = min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)
        cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(self.width)), min(y2, float(self.height))
        if cx2 <= cx1 or cy2 <= cy1 or (cx2 - cx1) * (cy2 - cy1) < VISIBLE_SHARE * (x2 - x1) * (y2 - y1):
            return None
        return cx1, cy1, cx2, cy2


@dataclass(frozen=True)
class FlyoverSpec:
    """What a flyover shows; checked when made (a CvtriageError names the bad setting)."""

    seconds: float = 60.0
    fps: float = 30.0
    width: int = 1280
    height: int = 720
    seed: int = 0
    objects: int | None = None  # None: as many as fit well apart, at most DEFAULT_OBJECTS
    names: tuple[str, ...] = DEFAULT_CLASSES
    latitude: float = 46.2044  # where the world lies (cvtriage.synth.flight_log)
    longitude: float = 6.1432
    noise: TelemetryNoise = TelemetryNoise()  # the flight log's errors

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(resolve_class_names(self.names)))
        if not (1 <= self.seconds <= 3600 and 1 <= self.fps <= 120):
            raise CvtriageError(f"--seconds {self.seconds:g} / --fps {self.fps:g}: need 1..3600 s and 1..120 fps")
        if not (64 <= self.width <= 7680 and 64 <= self.height <= 4320 and self.width % 2 == 0 and self.height % 2 == 0):
            raise CvtriageError(f"--width {self.width} / --height {self.height}: need even sizes, 64..7680 x 64..4320")
        if self.objects is not None and self.objects < 0:
            raise CvtriageError(f"--objects {self.objects}: must be 0 or more")
        if not (-85 <= self.latitude <= 85 and -180 <= self.longitude <= 180):
            raise CvtriageError(f"--where {self.latitude:g},{self.longitude:g}: need a latitude within 85 degrees of the equator and a longitude")
        if min(self.noise.gps_m, self.noise.altitude_m, self.noise.heading_deg, self.noise.offset_m) < 0:
            raise CvtriageError("--telemetry-noise: errors are 0 or more")

    def world_on_earth(self) -> WorldOnEarth:
        """Where the world lies: its bearing drawn from the seed, metres per px scaled with the height."""
        bearing = float(np.random.default_rng([self.seed, 0xBE]).uniform(0, 360))
        return WorldOnEarth(self.latitude, self.longitude, bearing, METRES_PER_PX * 720 / self.height)


def build_flyover(
    spec: FlyoverSpec, hide_objects: bool = False, max_world_width: int = MAX_WORLD_WIDTH, site: SiteSpec | None = None
) -> Flyover:
    """Paint the world and plan the camera. hide_objects paints the same world without the objects.
    A flight that needs a world wider than `max_world_width` flies laps over one that wide. `site`:
    one of several flights over the same world (cvtriage.synth.site), with its objects and path."""
    seconds, fps, width, height, objects, names = spec.seconds, spec.fps, spec.width, spec.height, spec.objects, spec.names
    rng = np.random.default_rng([spec.seed, 0xF1])
    k = height / 720
    frames = int(round(seconds * fps))
    t = np.arange(frames) / fps
    speed = SPEED * k * (1 + 0.3 * np.sin(2 * np.pi * t / rng.uniform(15, 30) + rng.uniform(0, 2 * np.pi)))
    zoom = ZOOM_MID + ZOOM_SWING * np.sin(2 * np.pi * t / ZOOM_PERIOD_S + rng.uniform(0, 2 * np.pi))
    view_w, view_h = width / (ZOOM_MID - ZOOM_SWING), height / (ZOOM_MID - ZOOM_SWING)
    margin = 64 * k
    centre_x = view_w / 2 + margin + np.concatenate([[0.0], np.cumsum(speed[:-1] / fps)])
    world_w = min(int(np.ceil(centre_x[-1] + view_w / 2 + margin)), max_world_width)
    laps = int(np.ceil((centre_x[-1] + view_w / 2) / world_w))
    # Nothing is painted where it would be cut by the seam joining a lapped world's ends.
    seam_clear = 2 * CLUTTER_SIZES[1] * k if laps > 1 else 0.0
    world_h = int(np.ceil(view_h + 2 * SWAY * k + 2 * margin))
    centre_y = world_h / 2 + SWAY * k * np.sin(2 * np.pi * t / SWAY_PERIOD_S + rng.uniform(0, 2 * np.pi))

    # Objects lie where the frame always reaches vertically, and along the path where the camera
    # passes over them entirely (they enter after the start and leave before the end); a short
    # flyover has no such stretch, so there they lie under the path (some in view at the start or end).
    band = height / 2 / (ZOOM_MID + ZOOM_SWING) - SWAY * k - OBJECT_SIZES[1] * k / 2 - 4 * k
    gap = MIN_GAP * k
    first_x, last_x = centre_x[0] + view_w / 2 + OBJECT_SIZES[1] * k, centre_x[-1] - view_w / 2 - OBJECT_SIZES[1] * k
    if laps > 1:  # one lap's objects; the next lap's first one comes more than `gap` after its last
        last_x = world_w - seam_clear
    if objects is None:
        span = last_x - first_x if last_x - first_x >= gap else centre_x[-1] - centre_x[0]
        objects = min(DEFAULT_OBJECTS, int(span // gap) + 1)
    if last_x - first_x < gap * max(objects - 1, 0):
        first_x, last_x = centre_x[0], centre_x[-1]
    if objects > 1 and last_x - first_x < gap * (objects - 1):
        raise CvtriageError(f"--objects {objects}: at most {int((last_x - first_x) // gap) + 1} fit well apart in a {seconds:g} s flyover (lengthen --seconds)")
    if objects == 1:
        xs = np.array([(first_x + last_x) / 2])
    else:  # evenly spread, jittered as far as the gap allows
        spacing = (last_x - first_x) / (objects - 1)
        jitter_share = min(0.25, (1 - gap / spacing) / 2)
        xs = first_x + spacing * (np.arange(objects) + rng.uniform(-jitter_share, jitter_share, objects))
        xs = np.clip(xs, first_x, last_x)
    ys = world_h / 2 + rng.uniform(-band, band, objects)

    sun, shadow_strength = random_sun(rng)
    plan = None
    if site is not None:  # the same world and objects, its own path, time of day and changes
        if laps > 1:
            raise CvtriageError(f"--site: flights over one site are at most {max_world_width / (SPEED * k):.0f} s long")
        plan = plan_site(site, spec.seed, xs, ys, world_h / 2, band, gap, spec.world_on_earth().metres_per_px)
        if site.flight > 0:
            path_rng = np.random.default_rng([spec.seed, 0xF1, site.flight])
            sun, shadow_strength = random_sun(path_rng)
            zoom = ZOOM_MID + ZOOM_SWING * np.sin(2 * np.pi * t / ZOOM_PERIOD_S + path_rng.uniform(0, 2 * np.pi))
            centre_y = world_h / 2 + SWAY * k * np.sin(2 * np.pi * t / SWAY_PERIOD_S + path_rng.uniform(0, 2 * np.pi))
            if site.flight % 2:  # flown back the other way
                centre_x = centre_x[::-1].copy()
    scene = Scene(_long_ground(world_h, world_w, rng, k, wraps=laps > 1), sun, shadow_strength, hide_objects)
    keep_clear = [(x, y, OBJECT_SIZES[1] * k) for x, y in zip(xs, ys)]
    if plan is not None:
        keep_clear += [(x + dx, y + dy, OBJECT_SIZES[1] * k) for x, y, moves in zip(xs, ys, plan.shifts()) for dx, dy in moves]

    def clear_of_objects(x: float, y: float, size: float) -> bool:
        return all(np.hypot(x - ox, y - oy) > (size + clear) * 0.75 for ox, oy, clear in keep_clear)

    for count, drawers, size_range in ((int(world_w / (150 * k)), CLUTTER_DRAWERS, CLUTTER_SIZES), (int(world_w / (900 * k)), None, OBJECT_SIZES)):
        for _ in range(count):
            drawer = pick(rng, drawers) if drawers else LOOKALIKE_DRAWERS[rng.integers(len(LOOKALIKE_DRAWERS))]
            size = log_uniform(rng, *size_range) * k
            x, y = rng.uniform(seam_clear, world_w - seam_clear), rng.uniform(0, world_h)
            drawing = drawer(rng)
            if clear_of_objects(x, y, size):
                scene.paint(scene.sprite(drawing, (x, y), size, rng.uniform(0, 2 * np.pi)))
    placed = []
    for index, (x, y) in enumerate(zip(xs, ys)):
        class_id = int(rng.integers(len(names)))
        size = log_uniform(rng, *OBJECT_SIZES) * k
        drawing, angle = OBJECT_DRAWERS[names[class_id]](rng), rng.uniform(0, 2 * np.pi)
        if plan is not None:
            if not plan.present[site.flight, index]:
                continue
            x, y = x + plan.shift[site.flight, index, 0], y + plan.shift[site.flight, index, 1]
        sprite = scene.sprite(drawing, (float(x), float(y)), size, angle)
        scene.paint(sprite, class_id)
        box = sprite.patch.box()
        if box is not None:
            placed.append(WorldObject(index, class_id, tuple(float(v) for v in box), index))
    # Each lap passes the same objects again, a world's width further along the flight.
    passes = [
        WorldObject(lap * len(xs) + obj.id, obj.class_id, (obj.box[0] + lap * world_w, obj.box[1], obj.box[2] + lap * world_w, obj.box[3]), obj.id)
        for lap in range(laps)
        for obj in placed
    ]
    # The lens's softness; it also spares mp4v (whose bit rate OpenCV cannot set) pixel-level grain
    # that would triple the file's size.
    world = cv2.GaussianBlur(cv2.cvtColor(relight(scene.canvas, rng), cv2.COLOR_RGB2BGR), (0, 0), 0.6)
    flight = site.flight if site is not None else 0
    return Flyover(world, passes, centre_x, centre_y, zoom, width, height, fps, bool(flight % 2), world_w, flight, plan)


def _long_ground(height: int, width: int, rng: np.random.Generator, k: float, wraps: bool = False) -> np.ndarray:
    """Ground for a long strip: stretches of different surfaces blended into each other. A strip
    that wraps also blends its end into its start, so laps over it show no edge."""
    blend = max(2, int(12 * k))  # surfaces meet along a short seam, as kerbs and roof edges do
    painted = width + blend if wraps else width
    world = np.empty((height, painted, 3), np.uint8)
    detail = float(rng.uniform(0.8, 1.3))
    x = 0
    while x < painted:
        end = min(painted, x + int(rng.uniform(1200, 3000) * k))
        stop = min(painted, end + blend)
        tile = make_ground(height, stop - x, rng, detail)
        if x > 0:
            seam = min(blend, stop - x)  # the last stretch can be narrower than a seam
            ramp = np.linspace(0, 1, seam, dtype=np.float32)[None, :, None]
            tile[:, :seam] = (world[:, x : x + seam] * (1 - ramp) + tile[:, :seam] * ramp).astype(np.uint8)
        world[:, x:stop] = tile
        x = end
    if wraps:  # the columns past the end become the start's first, fading into it
        ramp = np.linspace(0, 1, blend, dtype=np.float32)[None, :, None]
        world[:, :blend] = (world[:, width:] * (1 - ramp) + world[:, :blend] * ramp).astype(np.uint8)
        world = np.ascontiguousarray(world[:, :width])
    return world


def ground_truth(flyover: Flyover, names: list[str], video_file: str, seed: int, spec: FlyoverSpec | None = None) -> dict:
    """The sidecar document (schema in the module docstring)."""
    world = (spec or FlyoverSpec(height=flyover.height, seed=seed)).world_on_earth()
    records = []
    for obj in flyover.objects:
        rows = []
        for frame in range(flyover.frame_count):
            box = flyover.box_in_frame(obj, frame)
            if box is not None:
                rows.append([frame, *(round(v, 1) for v in box)])
        if not rows:
            continue
        first, last = rows[0][0], rows[-1][0]
        latitude, longitude = world.degrees(((obj.box[0] + obj.box[2]) / 2) % flyover.world_width, (obj.box[1] + obj.box[3]) / 2)
        records.append(
            {
                "id": obj.id, "class_id": obj.class_id, "class_name": names[obj.class_id],
                "first_frame": first, "last_frame": last,
                "first_time_s": round(first / flyover.fps, 3), "last_time_s": round(last / flyover.fps, 3),
                "object": obj.object_id,
                "ground_position": {"latitude": round(float(latitude), 8), "longitude": round(float(longitude), 8)},
                "boxes": rows,
            }
        )
    return {
        "schema": SCHEMA,
        "video": {
            "file": video_file, "width": flyover.width, "height": flyover.height, "fps": flyover.fps,
            "frame_count": flyover.frame_count, "duration_s": round(flyover.frame_count / flyover.fps, 3), "seed": seed,
        },
        "classes": names,
        "visible_when": f"at least {VISIBLE_SHARE:.0%} of the object's box inside the frame",
        "telemetry": {
            "srt": Path(video_file).with_suffix(".SRT").name, "flight": flyover.flight, "reverse": flyover.reverse,
            "world": {"latitude": world.latitude, "longitude": world.longitude, "bearing_deg": round(world.bearing_deg, 4),
                      "metres_per_px": world.metres_per_px},
            "focal_35mm": FOCAL_35MM, "noise": (spec.noise if spec else TelemetryNoise()).as_dict(),
        },  # fmt: skip
        "objects": records,
    }


@dataclass
class VideoSummary:
    video: Path
    truth: Path
    frames: int
    objects: int
    per_class: dict[str, int]
    visible_seconds: list[float]
    seconds: float
    srt: Path | None = None


def truth_path_for(video: Path) -> Path:
    return video.with_name(video.stem + ".truth.json")


def write_flight_log(path: Path, flyover: Flyover, spec: FlyoverSpec) -> None:
    """The flyover's DJI-style flight log (cvtriage.synth.flight_log); a lap's jump back is one subtitle's step."""
    world = spec.world_on_earth()
    track = camera_track(flyover.centre_x % flyover.world_width, flyover.centre_y, flyover.zoom, spec.width, spec.height,
                         world, flyover.reverse)  # fmt: skip
    write_srt(path, track, world, spec.fps, spec.noise, spec.seed, flyover.flight)


def srt_path_for(video: Path) -> Path:
    return video.with_suffix(".SRT")


def generate_video(
    out: Path, spec: FlyoverSpec, force: bool = False, on_progress: ProgressCallback = no_progress, site: SiteSpec | None = None
) -> VideoSummary:
    """Write the flyover to `out` (.mp4, OpenCV mp4v), its flight log (OUT.SRT) and its ground
    truth beside it; `site`: as one of several flights over one world (cvtriage.synth.site).

    All are written under temporary names and renamed when complete.
    on_progress(done, total) is called after each frame.
    """
    out = Path(out)
    truth, srt = truth_path_for(out), srt_path_for(out)
    if out.suffix.lower() != ".mp4":
        raise CvtriageError(f"{out}: the flyover is written as .mp4 (OpenCV's mp4v codec)")
    for path in (out, truth, srt):
        if path.exists() and not force:
            raise CvtriageError(f"{path}: already exists (pass --force to replace it)")

    start = time.perf_counter()
    flyover = build_flyover(spec, site=site)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # as Ultralytics and most tools do
    except OSError as error:
        raise CvtriageError(f"{out.parent}: cannot make this folder ({error.strerror})") from None
    with (
        replaced_on_success(out) as partial_video,
        replaced_on_success(truth) as partial_truth,
        replaced_on_success(srt) as partial_srt,
    ):
        writer = cv2.VideoWriter(str(partial_video), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, (spec.width, spec.height))
        try:
            if not writer.isOpened():
                raise CvtriageError(f"{out}: OpenCV cannot open an mp4v writer here")
            for frame in range(flyover.frame_count):
                writer.write(flyover.render(frame))
                on_progress(frame + 1, flyover.frame_count)
        finally:
            writer.release()
        write_flight_log(partial_srt, flyover, spec)
        document = ground_truth(flyover, list(spec.names), out.name, spec.seed, spec)
        partial_truth.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    per_class = {name: sum(1 for o in document["objects"] if o["class_name"] == name) for name in spec.names}
    visible = [o["last_time_s"] - o["first_time_s"] for o in document["objects"]]
    return VideoSummary(out, truth, flyover.frame_count, len(document["objects"]), per_class, visible,
                        time.perf_counter() - start, srt)  # fmt: skip
