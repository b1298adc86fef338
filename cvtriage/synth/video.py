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
from typing import Callable

import cv2
import numpy as np

from cvtriage.errors import CvtriageError
from cvtriage.files import replaced_on_success
from cvtriage.synth.dataset import DEFAULT_CLASSES, resolve_class_names
from cvtriage.synth.scene import CLUTTER_DRAWERS, LOOKALIKE_DRAWERS, OBJECT_DRAWERS, Scene, log_uniform, make_ground, pick, random_sun, relight

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

    @property
    def frame_count(self) -> int:
        return len(self.zoom)

    def origin(self, frame: int) -> tuple[float, float]:
        z = self.zoom[frame]
        return self.centre_x[frame] - self.width / 2 / z, self.centre_y[frame] - self.height / 2 / z

    def render(self, frame: int) -> np.ndarray:
        """Frame `frame` (BGR uint8)."""
        z = self.zoom[frame]
        ox, oy = self.origin(frame)
        ox %= self.world.shape[1]  # on a later lap; BORDER_WRAP joins the world's ends
        matrix = np.array([[z, 0, -ox * z], [0, z, -oy * z]], np.float64)
        return cv2.warpAffine(self.world, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)

    def box_in_frame(self, obj: WorldObject, frame: int) -> tuple[float, float, float, float] | None:
        """The object's box in the frame (clipped), or None when less than half of it is inside."""
        z = self.zoom[frame]
        ox, oy = self.origin(frame)
        x1, y1, x2, y2 = ((obj.box[0] - ox) * z, (obj.box[1] - oy) * z, (obj.box[2] - ox) * z, (obj.box[3] - oy) * z)
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

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(resolve_class_names(self.names)))
        if not (1 <= self.seconds <= 3600 and 1 <= self.fps <= 120):
            raise CvtriageError(f"--seconds {self.seconds:g} / --fps {self.fps:g}: need 1..3600 s and 1..120 fps")
        if not (64 <= self.width <= 7680 and 64 <= self.height <= 4320 and self.width % 2 == 0 and self.height % 2 == 0):
            raise CvtriageError(f"--width {self.width} / --height {self.height}: need even sizes, 64..7680 x 64..4320")
        if self.objects is not None and self.objects < 0:
            raise CvtriageError(f"--objects {self.objects}: must be 0 or more")


def build_flyover(spec: FlyoverSpec, hide_objects: bool = False, max_world_width: int = MAX_WORLD_WIDTH) -> Flyover:
    """Paint the world and plan the camera. hide_objects paints the same world without the objects.
    A flight that needs a world wider than `max_world_width` flies laps over one that wide."""
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
    scene = Scene(_long_ground(world_h, world_w, rng, k, wraps=laps > 1), sun, shadow_strength, hide_objects)
    keep_clear = [(x, y, OBJECT_SIZES[1] * k) for x, y in zip(xs, ys)]

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
        sprite = scene.sprite(OBJECT_DRAWERS[names[class_id]](rng), (float(x), float(y)), size, rng.uniform(0, 2 * np.pi))
        scene.paint(sprite, class_id)
        box = sprite.patch.box()
        if box is not None:
            placed.append(WorldObject(index, class_id, tuple(float(v) for v in box)))
    # Each lap passes the same objects again, a world's width further along the flight.
    passes = [
        WorldObject(lap * len(xs) + obj.id, obj.class_id, (obj.box[0] + lap * world_w, obj.box[1], obj.box[2] + lap * world_w, obj.box[3]))
        for lap in range(laps)
        for obj in placed
    ]
    # The lens's softness; it also spares mp4v (whose bit rate OpenCV cannot set) pixel-level grain
    # that would triple the file's size.
    world = cv2.GaussianBlur(cv2.cvtColor(relight(scene.canvas, rng), cv2.COLOR_RGB2BGR), (0, 0), 0.6)
    return Flyover(world, passes, centre_x, centre_y, zoom, width, height, fps)


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


def ground_truth(flyover: Flyover, names: list[str], video_file: str, seed: int) -> dict:
    """The sidecar document (schema in the module docstring)."""
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
        records.append(
            {
                "id": obj.id, "class_id": obj.class_id, "class_name": names[obj.class_id],
                "first_frame": first, "last_frame": last,
                "first_time_s": round(first / flyover.fps, 3), "last_time_s": round(last / flyover.fps, 3),
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


def truth_path_for(video: Path) -> Path:
    return video.with_name(video.stem + ".truth.json")


def generate_video(out: Path, spec: FlyoverSpec, force: bool = False, on_progress: Callable[[int, int], None] | None = None) -> VideoSummary:
    """Write the flyover to `out` (.mp4, OpenCV mp4v) and its ground truth beside it.

    Both are written under temporary names and renamed when complete.
    on_progress(done, total) is called after each frame.
    """
    out = Path(out)
    truth = truth_path_for(out)
    if out.suffix.lower() != ".mp4":
        raise CvtriageError(f"{out}: the flyover is written as .mp4 (OpenCV's mp4v codec)")
    for path in (out, truth):
        if path.exists() and not force:
            raise CvtriageError(f"{path}: already exists (pass --force to replace it)")

    start = time.perf_counter()
    flyover = build_flyover(spec)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # as Ultralytics and most tools do
    except OSError as error:
        raise CvtriageError(f"{out.parent}: cannot make this folder ({error.strerror})") from None
    with replaced_on_success(out) as partial_video, replaced_on_success(truth) as partial_truth:
        writer = cv2.VideoWriter(str(partial_video), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, (spec.width, spec.height))
        try:
            if not writer.isOpened():
                raise CvtriageError(f"{out}: OpenCV cannot open an mp4v writer here")
            for frame in range(flyover.frame_count):
                writer.write(flyover.render(frame))
                if on_progress:
                    on_progress(frame + 1, flyover.frame_count)
        finally:
            writer.release()
        document = ground_truth(flyover, list(spec.names), out.name, spec.seed)
        partial_truth.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    per_class = {name: sum(1 for o in document["objects"] if o["class_name"] == name) for name in spec.names}
    visible = [o["last_time_s"] - o["first_time_s"] for o in document["objects"]]
    return VideoSummary(out, truth, flyover.frame_count, len(document["objects"]), per_class, visible, time.perf_counter() - start)


def summary_table(summary: VideoSummary):
    from rich.table import Table

    table = Table(title=f"Synthetic flyover {summary.video} ({summary.seconds:.1f} s)")
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("frames", str(summary.frames))
    for name, count in summary.per_class.items():
        table.add_row(f"objects: {name}", str(count))
    if summary.visible_seconds:
        table.add_row("seconds in view (min / median / max)", " / ".join(f"{v:.1f}" for v in np.percentile(summary.visible_seconds, [0, 50, 100])))
    table.add_row("ground truth", str(summary.truth))
    return table
