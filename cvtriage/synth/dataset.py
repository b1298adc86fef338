"""Synthetic YOLO datasets: aerial images with exact boxes, for training and for measuring audits.

Each image is one scene seen from straight above (nadir) or at an angle (oblique: the ground
plane seen through a tilted pinhole camera, so far things are smaller and hazier). Its random
numbers come from (seed, index) alone, so images are the same whichever worker renders them.

A box is the tight axis-aligned bound of the pixels of an object that stay visible (alpha >=
scene.VISIBLE_ALPHA) after the camera warp, occluders and the image edge, in image pixels.

Each object's long side is drawn log-uniformly between --min-size and --max-size pixels,
whatever its class (so every class is seen at every scale; an extinguisher may be as large as a
ladder). In oblique views the size holds at the object's centre, through the local scale of the
warp, so a box may come out somewhat larger or smaller; rotation makes boxes differ too.
Look-alikes (red cylinders without hose or nozzle, pallets and benches, bare poles and rakes,
rocks and tyres) are drawn at the same sizes and never labelled.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cvtriage.boxes import xyxy_to_cxcywh
from cvtriage.errors import CvtriageError
from cvtriage.labels.yolo import LabelBox, write_data_yaml
from cvtriage.progress import ProgressCallback, no_progress
from cvtriage.synth.camera_effects import relight, sensor
from cvtriage.synth.ground import make_ground, make_street_ground
from cvtriage.synth.objects import (
    CLUTTER_DRAWERS,
    LOOKALIKE_DRAWERS,
    OBJECT_DRAWERS,
    draw_bush,
    draw_car,
    draw_debris,
    log_uniform,
    pick,
)
from cvtriage.synth.scene import VISIBLE_ALPHA, Patch, Scene, random_sun

DEFAULT_CLASSES = ("ladder", "fire extinguisher", "bag", "antenna")
OBLIQUE_SHARE = 0.4
# Objects per image and how often; a few empty images teach the detector what is not an object.
OBJECT_COUNTS, OBJECT_COUNT_WEIGHTS = np.arange(9), np.array([0.06, 0.14, 0.16, 0.16, 0.14, 0.12, 0.1, 0.07, 0.05])
MIN_INSIDE = 0.6  # at least this much of an object lies inside the image
OCCLUDED_SHARE, MAX_COVERED = 0.2, 0.55  # how often a bush or tree hides part of an object, and how much at most
# Grounds: "plain" (grass, asphalt, roofs, gravel, dirt; what the demo model was trained on) or
# "street" (the same with kerbs, lane markings, drains, roof edges, shadows and parked cars).
GROUNDS = ("plain", "street")
# Street scenes park this many more cars (long side in image px) as clutter.
PARKED_CARS, PARKED_CAR_SIZE = (1, 6), (40, 160)


def resolve_class_names(names: str | list[str] | tuple[str, ...]) -> list[str]:
    """Class names to draw, in order; a name that cannot be drawn is a CvtriageError listing those that can."""
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n).strip() for n in names]
    wanted = [n for n in wanted if n]
    if not wanted:
        raise CvtriageError(f"no class names given; drawable classes: {', '.join(OBJECT_DRAWERS)}")
    unknown = [n for n in wanted if n.lower() not in OBJECT_DRAWERS]
    if unknown:
        raise CvtriageError(f"cannot draw class {', '.join(repr(n) for n in unknown)}; drawable classes: {', '.join(OBJECT_DRAWERS)}")
    duplicated = sorted({n for n in wanted if [w.lower() for w in wanted].count(n.lower()) > 1})
    if duplicated:
        raise CvtriageError(f"class {', '.join(repr(n) for n in duplicated)} listed twice")
    return [n.lower() for n in wanted]


class GroundCamera:
    """Maps the ground canvas (where things are painted) to the image by a homography.

    Nadir: the ground canvas is the image. Oblique: a pinhole camera tilted forward; the canvas
    covers the trapezoid of ground it sees, at about one canvas px per image px at the near edge.
    """

    def __init__(self, homography: np.ndarray, ground_size: tuple[int, int], image_size: int):
        self.homography = homography
        self.ground_size = ground_size  # (width, height) of the ground canvas
        self.image_size = image_size
        self.is_identity = bool(np.allclose(homography, np.eye(3)))

    @classmethod
    def nadir(cls, size: int) -> "GroundCamera":
        return cls(np.eye(3), (size, size), size)

    @classmethod
    def oblique(cls, size: int, rng: np.random.Generator) -> "GroundCamera":
        hfov = np.radians(rng.uniform(55, 75))
        focal = size / 2 / np.tan(hfov / 2)
        corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
        for tilt in np.radians(np.linspace(rng.uniform(20, 40), 10, 6)):  # flatter until the canvas is affordable
            a, b = (corners[:, 0] - size / 2) / focal, (corners[:, 1] - size / 2) / focal
            distance = 1 / (b * np.sin(tilt) + np.cos(tilt))
            ground = np.stack([distance * a, -distance * (np.sin(tilt) - b * np.cos(tilt))], 1)
            near_px_per_unit = focal / distance[2]  # image px per ground unit at the near edge
            ground = (ground - ground.min(0)) * near_px_per_unit
            width, height = (int(np.ceil(v)) + 1 for v in ground.max(0))
            if width * height <= 2.5 * size * size:
                break
        homography = cv2.getPerspectiveTransform(ground.astype(np.float32), corners.astype(np.float32))
        return cls(homography, (width, height), size)

    def to_image(self, points: np.ndarray) -> np.ndarray:
        return cv2.perspectiveTransform(np.asarray(points, np.float64).reshape(-1, 1, 2), self.homography).reshape(-1, 2)

    def to_ground(self, u: float, v: float) -> tuple[float, float]:
        x, y = cv2.perspectiveTransform(np.array([[[u, v]]], np.float64), np.linalg.inv(self.homography))[0, 0]
        return float(x), float(y)

    def scale_at(self, x: float, y: float) -> float:
        """Image px per ground px around (x, y) (geometric mean of the two directions)."""
        p = self.to_image(np.array([[x, y], [x + 1, y], [x, y + 1]]))
        (ax, ay), (bx, by) = p[1] - p[0], p[2] - p[0]
        return float(np.sqrt(abs(ax * by - ay * bx)))

    def render(self, canvas: np.ndarray) -> np.ndarray:
        if self.is_identity:
            return canvas
        size = self.image_size
        return cv2.warpPerspective(canvas, self.homography, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def image_patch(self, patch: Patch) -> Patch | None:
        """A ground-canvas patch as seen in the image (cropped to the image), or None when outside it."""
        size = self.image_size
        h, w = patch.alpha.shape
        if self.is_identity:
            x0, y0, x1, y1 = max(patch.x0, 0), max(patch.y0, 0), min(patch.x0 + w, size), min(patch.y0 + h, size)
            if x1 <= x0 or y1 <= y0:
                return None
            return Patch(x0, y0, patch.alpha[y0 - patch.y0 : y1 - patch.y0, x0 - patch.x0 : x1 - patch.x0])
        corners = self.to_image(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64) + (patch.x0, patch.y0))
        x0, y0 = np.floor(corners.min(0)).astype(int).clip(0, size)
        x1, y1 = np.ceil(corners.max(0)).astype(int).clip(0, size)
        if x1 <= x0 or y1 <= y0:
            return None
        shift_in = np.array([[1, 0, patch.x0], [0, 1, patch.y0], [0, 0, 1]], np.float64)
        shift_out = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
        warped = cv2.warpPerspective(patch.alpha, shift_out @ self.homography @ shift_in, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR)
        return Patch(int(x0), int(y0), warped)

    def inside_fraction(self, patch: Patch) -> float:
        """Share of a patch's opaque pixels that land inside the image."""
        ys, xs = np.nonzero(patch.alpha >= VISIBLE_ALPHA)
        if not len(xs):
            return 0.0
        points = self.to_image(np.stack([xs + patch.x0 + 0.5, ys + patch.y0 + 0.5], 1))
        inside = (points >= 0).all(1) & (points < self.image_size).all(1)
        return float(inside.mean())


@dataclass
class RenderedImage:
    image: np.ndarray  # (size, size, 3) uint8 RGB
    boxes: list[tuple[int, int, int, int, int]]  # class id, x1, y1, x2, y2 (px, exclusive ends)
    view: str  # "nadir" or "oblique"
    jpeg_quality: int


@dataclass(frozen=True)
class ImageSpec:
    """What every image of a dataset shares."""

    names: tuple[str, ...] = DEFAULT_CLASSES
    imgsz: int = 640
    seed: int = 0
    min_size: float = 8.0
    max_size: float = 150.0
    ground: str = "plain"


def render_image(spec: ImageSpec, index: int, hide_objects: bool = False) -> RenderedImage:
    """Image `index` of the dataset `spec` describes. hide_objects renders the same scene with its
    labelled objects (and their shadows) left out, everything else identical."""
    rng = np.random.default_rng([spec.seed, index])
    size = spec.imgsz
    view = "oblique" if rng.random() < OBLIQUE_SHARE else "nadir"
    camera = GroundCamera.oblique(size, rng) if view == "oblique" else GroundCamera.nadir(size)
    ground_w, ground_h = camera.ground_size
    sun, shadow_strength = random_sun(rng)
    draw_ground = make_street_ground if spec.ground == "street" else make_ground
    scene = Scene(draw_ground(ground_h, ground_w, rng), sun, shadow_strength, hide_objects)
    # Every thing is sized in image px (the range the user asked for), then converted to ground px.
    footprints: list[tuple[float, float, float]] = []  # image-space (u, v, radius) of placed things

    def place(drawing, target: float, margin: float, avoid: bool, inside: float):
        for _ in range(12):
            u, v = rng.uniform(-margin, size + margin, 2)
            if avoid and any(np.hypot(u - fu, v - fv) < (target / 2 + fr) * 1.1 for fu, fv, fr in footprints):
                continue
            x, y = camera.to_ground(u, v)
            if not (0 <= x < ground_w and 0 <= y < ground_h):
                continue
            sprite = scene.sprite(drawing, (x, y), target / camera.scale_at(x, y), rng.uniform(0, 2 * np.pi))
            if camera.inside_fraction(sprite.patch) < inside:
                continue
            footprints.append((u, v, target / 2))
            return sprite
        return None

    for _ in range(int(rng.integers(2, 14))):  # clutter on the ground
        drawer = pick(rng, CLUTTER_DRAWERS)
        relative = 0.25 if drawer is draw_debris else 1.0
        sprite = place(drawer(rng), log_uniform(rng, 6, 160) * relative, size * 0.1, drawer is not draw_debris, 0.0)
        if sprite is not None:
            scene.paint(sprite)
    if spec.ground == "street":  # parked cars
        for _ in range(int(rng.integers(*PARKED_CARS))):
            sprite = place(draw_car(rng), log_uniform(rng, *PARKED_CAR_SIZE), size * 0.1, True, 0.0)
            if sprite is not None:
                scene.paint(sprite)
    for _ in range(int(rng.integers(0, 6))):  # look-alikes, at object sizes
        drawer = LOOKALIKE_DRAWERS[rng.integers(len(LOOKALIKE_DRAWERS))]
        sprite = place(drawer(rng), log_uniform(rng, spec.min_size, spec.max_size), 0.0, True, 0.0)
        if sprite is not None:
            scene.paint(sprite)
    object_sprites = []
    for _ in range(int(rng.choice(OBJECT_COUNTS, p=OBJECT_COUNT_WEIGHTS))):
        class_id = int(rng.integers(len(spec.names)))
        target = log_uniform(rng, spec.min_size, spec.max_size)
        sprite = place(OBJECT_DRAWERS[spec.names[class_id]](rng), target, target * 0.3, True, MIN_INSIDE)
        if sprite is not None:
            scene.paint(sprite, class_id)
            object_sprites.append(sprite)
    for sprite in object_sprites:  # bushes and tree crowns hiding part of some objects
        if rng.random() >= OCCLUDED_SHARE:
            continue
        object_size = max(sprite.alpha.shape)
        bush = draw_bush(rng)
        for _ in range(4):
            reach = object_size * rng.uniform(0.3, 0.6)
            direction = rng.uniform(0, 2 * np.pi)
            centre = sprite.x0 + sprite.alpha.shape[1] / 2 + np.cos(direction) * reach, sprite.y0 + sprite.alpha.shape[0] / 2 + np.sin(direction) * reach
            occluder = scene.sprite(bush, centre, object_size * rng.uniform(0.5, 1.1), rng.uniform(0, 2 * np.pi))
            if 0.08 <= scene.coverage(occluder) <= MAX_COVERED:
                scene.paint(occluder)
                break

    image = camera.render(scene.canvas)
    if view == "oblique":  # haze thickens towards the horizon
        haze = (rng.uniform(0.05, 0.3) * np.linspace(1, 0, size, dtype=np.float32) ** 2)[:, None, None]
        image = (image * (1 - haze) + np.float32([205, 210, 220]) * haze).astype(np.uint8)
    image = sensor(relight(image, rng), rng)
    boxes = []
    for placed in scene.objects:
        seen = camera.image_patch(placed.visible)
        box = seen.box() if seen is not None else None
        if box is not None:
            boxes.append((placed.class_id, *box))
    return RenderedImage(image, boxes, view, int(rng.integers(70, 96)))


def yolo_boxes(rendered: RenderedImage) -> list[LabelBox]:
    size = rendered.image.shape[1], rendered.image.shape[0]
    return [
        LabelBox(class_id, *(xyxy_to_cxcywh(box) / (*size, *size)).tolist(), line)
        for line, (class_id, *box) in enumerate(rendered.boxes, start=1)
    ]


# ----------------------------------------------------------------------------------------------
# Writing a dataset


@dataclass
class DatasetSummary:
    out: Path
    yaml_path: Path
    names: list[str]
    images: Counter = field(default_factory=Counter)  # split -> images
    boxes: dict[str, Counter] = field(default_factory=dict)  # split -> class name -> boxes
    views: Counter = field(default_factory=Counter)
    long_sides: list[int] = field(default_factory=list)  # every box's long side, px
    seconds: float = 0.0


def _write_image(job: tuple[ImageSpec, int, str, Path]) -> tuple[str, str, list[tuple[int, int]]]:
    spec, index, split, root = job
    rendered = render_image(spec, index)
    stem = f"{index:06d}"
    ok = cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), cv2.cvtColor(rendered.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, rendered.jpeg_quality])
    if not ok:
        raise CvtriageError(f"{root}: cannot write images (disk full or not writable?)")
    lines = [box.to_line() for box in yolo_boxes(rendered)]
    (root / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    return split, rendered.view, [(class_id, max(x2 - x1, y2 - y1)) for class_id, x1, y1, x2, y2 in rendered.boxes]


def _quiet_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would fight them


def check_output_folder(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CvtriageError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CvtriageError(f"{out}: folder is not empty (pass --force to replace it)")


def generate_dataset(
    out: Path,
    names: str | list[str] | tuple[str, ...] = DEFAULT_CLASSES,
    images: int = 1000,
    imgsz: int = 640,
    seed: int = 0,
    val_fraction: float = 0.2,
    min_size: float = 8.0,
    max_size: float = 150.0,
    force: bool = False,
    workers: int | None = None,
    ground: str = "plain",
    on_progress: ProgressCallback = no_progress,
) -> DatasetSummary:
    """Write a YOLO dataset to `out` (data.yaml, images/{train,val}, labels/{train,val}).

    It is built in a hidden sibling folder and renamed into place when complete.
    on_progress(done, total) is called after each image.
    """
    out = Path(out)
    class_names = resolve_class_names(names)
    if images < 2:
        raise CvtriageError(f"--images {images}: need at least 2 (one train and one val image)")
    if not 64 <= imgsz <= 4096:
        raise CvtriageError(f"--imgsz {imgsz}: must be between 64 and 4096")
    if not 0 < val_fraction < 1:
        raise CvtriageError(f"--val-fraction {val_fraction}: must be between 0 and 1 (exclusive)")
    if not 4 <= min_size <= max_size <= imgsz / 2:
        raise CvtriageError(f"--min-size {min_size:g} / --max-size {max_size:g}: need 4 <= min <= max <= imgsz/2 ({imgsz / 2:g})")
    if ground not in GROUNDS:
        raise CvtriageError(f"--ground {ground}: choose from {', '.join(GROUNDS)}")
    check_output_folder(out, force)

    start = time.perf_counter()
    spec = ImageSpec(tuple(class_names), imgsz, seed, float(min_size), float(max_size), ground)
    val_count = min(images - 1, max(1, round(images * val_fraction)))
    val_indices = set(np.random.default_rng([seed, images]).permutation(images)[:val_count].tolist())
    splits = ["val" if index in val_indices else "train" for index in range(images)]

    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for split in ("train", "val"):
        (staging / "images" / split).mkdir(parents=True)
        (staging / "labels" / split).mkdir(parents=True)
    summary = DatasetSummary(out, out / "data.yaml", class_names, boxes={"train": Counter(), "val": Counter()})
    jobs = [(spec, index, splits[index], staging) for index in range(images)]
    workers = max(1, min(workers or os.cpu_count() or 1, images))
    try:
        if workers == 1:
            _record(summary, map(_write_image, jobs), class_names, images, on_progress)
        else:
            # spawn, not fork: a forked child inherits OpenCV's thread pool in whatever state the
            # parent's threads left it, and can hang in its first cv2 call.
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet_worker)
            try:
                _record(summary, pool.map(_write_image, jobs, chunksize=4), class_names, images, on_progress)
            finally:  # on an error or Ctrl-C, drop the images not yet started
                pool.shutdown(wait=True, cancel_futures=True)
        write_data_yaml(staging, class_names, {"train": "images/train", "val": "images/val"})
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _record(summary: DatasetSummary, results, class_names: list[str], total: int, on_progress: ProgressCallback) -> None:
    for done, (split, view, boxes) in enumerate(results, start=1):
        summary.images[split] += 1
        summary.views[view] += 1
        for class_id, long_side in boxes:
            summary.boxes[split][class_names[class_id]] += 1
            summary.long_sides.append(long_side)
        on_progress(done, total)
