"""Detections: batched (and tiled) inference of sampled frames.

Small objects in large frames vanish when the whole frame is shrunk to the model's input size,
so large frames are cut into overlapping tiles (as SAHI does). On a GPU every tile of every frame
in a batch goes through the model in ONE call; on the CPU, where batches cost more per image, one
tile per call, and an OpenVINO export runs the tiles side by side (cvtriage.openvino_crops).
Boxes from different tiles are then merged the way SAHI's default GREEDYNMM does: same class,
intersection over the smaller box above a threshold, keep the union, so an object seen twice in
an overlap, or cut in two at a seam, becomes one box.

A model that accepts any input size (PyTorch weights) needs no tiles for a frame of moderate size:
with `tile: auto` it sees the whole frame at a larger input instead, which keeps the same detail
for about half the pixels of tiles (no overlaps, and Ultralytics letterboxes to the frame's own
aspect where square tiles are padded). Exported models have a fixed input size: they get tiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvtriage.config import ScanConfig
from cvtriage.openvino_crops import OpenVinoCrops

# Detections down to this share of `conf` are kept, so the scan can tell an object that left from
# one whose score dipped below the threshold for a frame (events use only those at `conf`).
WEAK_CONF_SHARE = 0.8
# Frames whose long side is at most this many times the model's input size are not tiled:
# shrinking them loses little, and tiles would multiply the cost.
AUTO_TILE_MAX_SCALE = 1.5
# With `tile: auto` and a model that accepts any input size, the whole frame goes in at an input
# up to this many times imgsz (memory grows with it); larger frames are tiled.
AUTO_INPUT_MAX_SCALE = 2.0
# Input sizes are multiples of the model's largest stride.
STRIDE = 32
# SAHI's default merge threshold (intersection over the smaller box).
MERGE_IOS = 0.5
MAX_DETECTIONS = 300
# Refinement crops (Detector.crop_for), in model pixels at the scan's scale: the objects' boxes
# grow by CROP_MARGIN (their motion between the two frames compared, box jitter) into the region
# the crop answers for, and the window inferred adds CROP_CONTEXT more, so an object at the
# region's edge is seen whole and with its surroundings.
CROP_MARGIN = 32
CROP_CONTEXT = 96
# A crop larger than this share of the frame saves too little: the whole frame is inferred.
CROP_MAX_SHARE = 0.5
# Crops are squares of these sides (input pixels): an OpenVINO export with dynamic shapes prepares
# itself anew for every new input shape (~100 ms here, more than a crop's inference), so a few
# sizes are used over and over.
CROP_SIDES = (256, 320, 384, 448)


@dataclass
class FrameDetections:
    """The model's boxes on one frame, in the frame's own pixel coordinates."""

    frame_index: int
    time_s: float
    boxes_xyxy: np.ndarray  # (N, 4) float32, pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64
    # None: the whole frame was inferred. A crop (refinement, see Detector.crop_for): (x0, y0, x1,
    # y1), the area whose objects these detections cover (those with their centre inside it).
    region: tuple[int, int, int, int] | None = None

    @classmethod
    def empty(cls, frame_index: int, time_s: float) -> "FrameDetections":
        return cls(frame_index, time_s, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)

    def at_least(self, min_score: float) -> "FrameDetections":
        """The detections scored at least `min_score`."""
        keep = self.scores >= min_score
        if keep.all():
            return self
        return FrameDetections(
            self.frame_index, self.time_s, self.boxes_xyxy[keep], self.scores[keep], self.class_ids[keep], self.region
        )


def tile_grid(width: int, height: int, imgsz: int, tile: str, overlap: float) -> tuple[int, int]:
    """(rows, cols) for a frame: `off` is 1x1, `RxC` as given, `auto` the fewest tiles no side of
    which exceeds AUTO_TILE_MAX_SCALE x imgsz (so a frame up to that size is not tiled)."""
    if tile == "off":
        return 1, 1
    if tile != "auto":
        rows, cols = (int(part) for part in tile.split("x"))
        return max(rows, 1), max(cols, 1)
    limit = AUTO_TILE_MAX_SCALE * imgsz

    def count(side: int) -> int:
        n = 1
        while side / (n - (n - 1) * overlap) > limit:
            n += 1
        return n

    return count(height), count(width)


def whole_frame_input(width: int, height: int, imgsz: int) -> int | None:
    """For `tile: auto` and a model that accepts any input size: the input size (at least imgsz,
    a multiple of STRIDE) at which the whole frame shrinks by at most AUTO_TILE_MAX_SCALE, or None
    when that exceeds AUTO_INPUT_MAX_SCALE x imgsz (the frame is tiled instead)."""
    needed = max(imgsz, math.ceil(max(width, height) / AUTO_TILE_MAX_SCALE / STRIDE) * STRIDE)
    return needed if needed <= AUTO_INPUT_MAX_SCALE * imgsz else None


def runs_pytorch(model) -> bool:
    """Whether an Ultralytics model runs with PyTorch (.pt weights; not an export such as OpenVINO)."""
    import torch

    return isinstance(getattr(model, "model", None), torch.nn.Module)


def accepts_any_input_size(model) -> bool:
    """PyTorch weights run at any input size, and so do exports with dynamic shapes (the scan's
    own OpenVINO export, see cvtriage.export; known once the model's predictor is set up); other
    exported models (OpenVINO, ONNX, ...) are fixed to their export size (Ultralytics pads every
    input to it)."""
    backend = getattr(getattr(model, "predictor", None), "model", None)
    return runs_pytorch(model) or bool(getattr(backend, "dynamic", False))


def exported_input_size(model) -> int | None:
    """The fixed input side of an exported model (OpenVINO, ONNX, ... exported without `dynamic`),
    which Ultralytics reads from the export's metadata once the model's predictor is set up; None
    when the model takes any size or does not say."""
    backend = getattr(getattr(model, "predictor", None), "model", None)
    imgsz = getattr(backend, "imgsz", None)
    if imgsz is None or getattr(backend, "dynamic", False):
        return None
    return int(max(imgsz)) if isinstance(imgsz, (list, tuple)) else int(imgsz)


def _ceil_stride(pixels: float) -> int:
    return math.ceil(pixels / STRIDE - 1e-9) * STRIDE


def input_pixels(width: int, height: int, imgsz: int, fixed: bool) -> int:
    """Pixels the model takes for a width x height image at `imgsz`: a fixed-size model pads it to
    imgsz x imgsz; otherwise Ultralytics scales the long side to imgsz and pads the other to STRIDE."""
    if fixed:
        return imgsz * imgsz
    ratio = imgsz / max(width, height)
    return _ceil_stride(round(width * ratio)) * _ceil_stride(round(height * ratio))


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """The (N, 2) centres of boxes (N, 4) x1 y1 x2 y2."""
    boxes = np.asarray(boxes)
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def centred_in(boxes: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """Which boxes (N, 4) have their centre inside `region` (x0, y0, x1, y1)."""
    centres = box_centres(boxes)
    x0, y0, x1, y1 = region
    return (centres[:, 0] >= x0) & (centres[:, 0] < x1) & (centres[:, 1] >= y0) & (centres[:, 1] < y1)


@dataclass(frozen=True)
class Letterbox:
    """Where a frame lands in the model's input when inferred whole (Ultralytics' LetterBox):
    frame pixel (x, y) is input pixel (x * ratio + left, y * ratio + top) of a width x height input."""

    ratio: float
    left: int
    top: int
    width: int
    height: int
    frame_width: int
    frame_height: int

    @classmethod
    def of_frame(cls, width: int, height: int, imgsz: int) -> "Letterbox":
        from ultralytics.data.augment import LetterBox

        params = LetterBox((imgsz, imgsz), auto=True, stride=STRIDE).get_params({"img": np.empty((height, width, 0))})
        new_width, new_height = params["new_unpad"]
        return cls(
            params["ratio"][0], params["left"], params["top"], new_width + params["left"] + params["right"],
            new_height + params["top"] + params["bottom"], width, height,
        )  # fmt: skip


@dataclass(frozen=True)
class Crop:
    """A refinement crop: `window` (x0, y0, x1, y1) is a piece of the whole frame's model input
    (see Letterbox), its sides and corner on the model's stride grid, so the model sees exactly
    the pixels, at the same scale and grid phase, that it sees there in the whole frame; objects
    whose box centre lies in `region` (frame pixels) are the ones it answers for."""

    window: tuple[int, int, int, int]
    region: tuple[int, int, int, int]

    @property
    def imgsz(self) -> int:
        x0, y0, x1, y1 = self.window
        return max(x1 - x0, y1 - y0)


def crop_around(boxes: np.ndarray, letterbox: Letterbox) -> Crop | None:
    """The crop around `boxes` (frame pixels), or None when it would cover most of the frame."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return None
    lb = letterbox
    offset = np.array([lb.left, lb.top])
    low = boxes[:, :2].min(0) * lb.ratio + offset - CROP_MARGIN
    high = boxes[:, 2:].max(0) * lb.ratio + offset + CROP_MARGIN
    limits = np.array([lb.width, lb.height])
    start = np.clip(np.floor((low - CROP_CONTEXT) / STRIDE) * STRIDE, 0, limits).astype(int)
    stop = np.clip(np.ceil((high + CROP_CONTEXT) / STRIDE) * STRIDE, 0, limits).astype(int)
    side = next((side for side in CROP_SIDES if side >= (stop - start).max()), None)
    if side is None:
        return None
    # Grown to the square (as far as the input reaches), on the grid, still covering start-stop.
    size = np.minimum(side, limits)
    start = np.clip(start - (size - (stop - start)) // 2 // STRIDE * STRIDE, 0, limits - size)
    stop = start + size
    if np.prod(stop - start) > CROP_MAX_SHARE * lb.width * lb.height:
        return None
    frame_low = np.maximum(np.floor((low - offset) / lb.ratio), 0).astype(int)
    frame_high = np.minimum(np.ceil((high - offset) / lb.ratio), [lb.frame_width, lb.frame_height]).astype(int)
    return Crop((*map(int, start), *map(int, stop)), (*map(int, frame_low), *map(int, frame_high)))


def tile_windows(width: int, height: int, rows: int, cols: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Equal-size, overlapping (x0, y0, x1, y1) windows covering the frame, row by row."""

    def spans(side: int, n: int) -> list[tuple[int, int]]:
        if n == 1:
            return [(0, side)]
        length = min(side, math.ceil(side / (n - (n - 1) * overlap)))
        stride = (side - length) / (n - 1)
        return [(round(i * stride), round(i * stride) + length) for i in range(n)]

    return [(x0, y0, x1, y1) for y0, y1 in spans(height, rows) for x0, x1 in spans(width, cols)]


def merge_across_tiles(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    sources: np.ndarray,
    threshold: float = MERGE_IOS,
    agnostic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy non-maximum merging: the best box absorbs same-class (`agnostic`: any-class) boxes
    from OTHER tiles whose intersection over the smaller box exceeds `threshold` (boxes within one
    tile were already separated by the model's NMS); the merged box is their union, its score and
    class the best's."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, class_ids, sources = boxes[order], scores[order], class_ids[order], sources[order]
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    absorbed = np.zeros(len(boxes), bool)
    kept_boxes, kept_scores, kept_classes = [], [], []
    for i in range(len(boxes)):
        if absorbed[i]:
            continue
        absorbed[i] = True
        same_class = True if agnostic else class_ids == class_ids[i]
        candidates = np.flatnonzero(~absorbed & same_class & (sources != sources[i]))
        merged = boxes[i].copy()
        if len(candidates):
            top_left = np.maximum(boxes[i, :2], boxes[candidates, :2])
            bottom_right = np.minimum(boxes[i, 2:], boxes[candidates, 2:])
            inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
            smaller = np.minimum(areas[i], areas[candidates])
            matches = candidates[inter > threshold * np.maximum(smaller, 1e-9)]
            absorbed[matches] = True
            group = boxes[np.append(matches, i)]
            merged = np.concatenate([group[:, :2].min(0), group[:, 2:].max(0)])
        kept_boxes.append(merged)
        kept_scores.append(scores[i])
        kept_classes.append(class_ids[i])
    if not kept_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.asarray(kept_boxes, np.float32), np.asarray(kept_scores, np.float32), np.asarray(kept_classes, np.int64)


class Detector:
    """Runs an Ultralytics model on batches of frames (on a GPU, all tiles of all frames in one call)."""

    def __init__(self, model, settings: ScanConfig, class_ids: list[int] | None, device: str, width: int, height: int):
        self.model = model
        self.settings = settings
        self.class_ids = class_ids
        self.device = device
        # OpenVINO exports on the CPU run their crops side by side, bypassing `predict`.
        self.openvino = OpenVinoCrops.for_model(model, device)
        any_size = accepts_any_input_size(model)
        # An exported model sees every input padded to its export size, whatever imgsz says: plan
        # the tiles for that size (an 864-px export takes a 1280x720 frame whole, not in 2 tiles).
        fixed = exported_input_size(model) or (self.openvino.fixed_size if self.openvino else None)
        imgsz = settings.imgsz if any_size else fixed or settings.imgsz
        whole = whole_frame_input(width, height, imgsz) if settings.tile == "auto" else None
        if whole is not None and any_size:
            self.grid, self.input_size = (1, 1), whole
        else:
            self.grid = tile_grid(width, height, imgsz, settings.tile, settings.tile_overlap)
            self.input_size = imgsz
        self.tiled = self.grid != (1, 1)
        self.windows = tile_windows(width, height, *self.grid, settings.tile_overlap) if self.tiled else []
        # SAHI's "standard prediction": the whole frame too, for objects larger than a tile.
        if not self.tiled or settings.tile_full_frame:
            self.windows = [(0, 0, width, height)] + self.windows
        # Refinement crops are pieces of the whole frame's input: a model of a fixed input size
        # would pad each to its full size and gain nothing, and tiles are not cropped (yet).
        self.fixed_size = not any_size
        self.letterbox = None
        if settings.refine_crop and any_size and not self.tiled:
            self.letterbox = Letterbox.of_frame(width, height, self.input_size)
        self.pixels_inferred = 0  # model input pixels so far (letterboxed), whole frames and crops
        self.pixels_per_frame = sum(
            input_pixels(x1 - x0, y1 - y0, self.input_size, self.fixed_size) for x0, y0, x1, y1 in self.windows
        )

    def crop_for(self, boxes: np.ndarray) -> Crop | None:
        """The crop of the frame's input that shows `boxes`, or None: infer the whole frame."""
        return crop_around(boxes, self.letterbox) if self.letterbox is not None else None

    def region_for(self, boxes: np.ndarray) -> tuple[int, int, int, int] | None:
        """The region `crop_for(boxes)` answers for (see cvtriage.events.refine_gap)."""
        crop = self.crop_for(boxes)
        return crop.region if crop is not None else None

    @property
    def images_per_frame(self) -> int:
        return len(self.windows)

    def describe_tiling(self) -> str:
        if not self.tiled:
            return "off"
        rows, cols = self.grid
        return f"{rows}x{cols}" + (" + full frame" if self.settings.tile_full_frame else "")

    def detect(self, frames: list[tuple[int, float, np.ndarray]], crop: Crop | None = None) -> list[FrameDetections]:
        """Detections for each (frame_index, time_s, BGR image), down to WEAK_CONF_SHARE x conf (see
        cvtriage.events.changed_classes); see `_predict` for the model calls. With `crop`, only its
        window is inferred, and only the objects of its region are kept."""
        if not frames:
            return []
        if crop is not None:
            return [self._detect_crop(index, time_s, image, crop) for index, time_s, image in frames]
        windows = self.windows
        crops = [np.ascontiguousarray(image[y0:y1, x0:x1]) for _, _, image in frames for x0, y0, x1, y1 in windows]
        self.pixels_inferred += len(frames) * self.pixels_per_frame
        found = self._predict(crops, self.input_size)
        per_frame = len(windows)
        detections = []
        for number, (frame_index, time_s, _) in enumerate(frames):
            boxes, scores, classes, sources = [], [], [], []
            frame_found = found[number * per_frame : (number + 1) * per_frame]
            for source, (rows, (x0, y0, _, _)) in enumerate(zip(frame_found, windows)):
                boxes.append(rows[:, :4] + np.array([x0, y0, x0, y0], np.float32))
                scores.append(rows[:, 4])
                classes.append(rows[:, 5].astype(np.int64))
                sources.append(np.full(len(rows), source))
            merged = (np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes))
            if per_frame > 1:
                merged = merge_across_tiles(*merged, np.concatenate(sources), agnostic=self.settings.agnostic_nms)
            detections.append(FrameDetections(frame_index, time_s, *merged))
        return detections

    def _detect_crop(self, frame_index: int, time_s: float, image: np.ndarray, crop: Crop) -> FrameDetections:
        """One frame's detections within a refinement crop: the piece `crop.window` of the frame's
        letterboxed input goes to the model as it is (its sides are multiples of the stride: no
        resize, no padding); the objects centred in `crop.region` are kept."""
        from ultralytics.data.augment import LetterBox

        lb = self.letterbox
        x0, y0, x1, y1 = crop.window
        whole = LetterBox((self.input_size, self.input_size), auto=True, stride=STRIDE)(image=image)
        self.pixels_inferred += (x1 - x0) * (y1 - y0)
        [rows] = self._predict([np.ascontiguousarray(whole[y0:y1, x0:x1])], crop.imgsz)
        shift = np.array([x0 - lb.left, y0 - lb.top] * 2, np.float32)
        boxes = (rows[:, :4] + shift) / lb.ratio
        boxes = np.clip(boxes, 0, np.array([lb.frame_width, lb.frame_height] * 2, np.float32))
        keep = centred_in(boxes, crop.region)
        return FrameDetections(
            frame_index, time_s, boxes[keep], rows[keep, 4], rows[keep, 5].astype(np.int64), crop.region
        )

    def _predict(self, crops: list[np.ndarray], imgsz: int) -> list[np.ndarray]:
        """Per crop, an (N, 6) float32 array: x1 y1 x2 y2 (crop pixels), score, class."""
        settings = dict(conf=self.settings.conf * WEAK_CONF_SHARE, iou=self.settings.iou, max_det=MAX_DETECTIONS)
        if self.openvino is not None:
            agnostic = self.settings.agnostic_nms
            return self.openvino.predict(crops, imgsz, classes=self.class_ids, agnostic=agnostic, **settings)
        # On the CPU (batch: auto) one crop per call: a batch costs more per image there, tiles too
        # (see model.inference_batch), and a crop alone keeps Ultralytics' rectangular letterbox
        # where a batch of mixed shapes is padded to squares. A GPU, or a batch asked for, takes
        # them all at once.
        chunk = 1 if self.device == "cpu" and self.settings.batch == "auto" else max(len(crops), 1)
        results = [
            result
            for start in range(0, len(crops), chunk)
            for result in self.model.predict(
                crops[start : start + chunk],
                imgsz=imgsz,
                agnostic_nms=self.settings.agnostic_nms,
                classes=self.class_ids,
                device=self.device,
                verbose=False,
                **settings,
            )
        ]
        return [result.boxes.data.cpu().numpy().astype(np.float32, copy=False) for result in results]
