"""Detections: batched (and tiled) inference of sampled frames.

Small objects in large frames vanish when the whole frame is shrunk to the model's input size,
so large frames are cut into overlapping tiles (as SAHI does) and every tile of every frame in
a batch goes through the model in ONE call. Boxes from different tiles are then merged the way
SAHI's default GREEDYNMM does: same class, intersection over the smaller box above a threshold,
keep the union, so an object seen twice in an overlap, or cut in two at a seam, becomes one box.

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


@dataclass
class FrameDetections:
    """The model's boxes on one frame, in the frame's own pixel coordinates."""

    frame_index: int
    time_s: float
    boxes_xyxy: np.ndarray  # (N, 4) float32, pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64

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
        return FrameDetections(self.frame_index, self.time_s, self.boxes_xyxy[keep], self.scores[keep], self.class_ids[keep])


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


def accepts_any_input_size(model) -> bool:
    """PyTorch weights run at any input size; exported models (OpenVINO, ONNX, ...) are taken to be
    fixed to their export size (Ultralytics pads every input to it)."""
    import torch

    return isinstance(getattr(model, "model", None), torch.nn.Module)


def exported_input_size(model) -> int | None:
    """The fixed input side of an exported model (OpenVINO, ONNX, ... exported without `dynamic`),
    which Ultralytics reads from the export's metadata once the model's predictor is set up; None
    when the model takes any size or does not say."""
    backend = getattr(getattr(model, "predictor", None), "model", None)
    imgsz = getattr(backend, "imgsz", None)
    if imgsz is None or getattr(backend, "dynamic", False):
        return None
    return int(max(imgsz)) if isinstance(imgsz, (list, tuple)) else int(imgsz)


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
    """Runs an Ultralytics model on batches of frames (all tiles of all frames in one call)."""

    def __init__(self, model, settings: ScanConfig, class_ids: list[int] | None, device: str, width: int, height: int):
        self.model = model
        self.settings = settings
        self.class_ids = class_ids
        self.device = device
        any_size = accepts_any_input_size(model)
        # An exported model sees every input padded to its export size, whatever imgsz says: plan
        # the tiles for that size (an 864-px export takes a 1280x720 frame whole, not in 2 tiles).
        imgsz = settings.imgsz if any_size else exported_input_size(model) or settings.imgsz
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

    @property
    def images_per_frame(self) -> int:
        return len(self.windows)

    def describe_tiling(self) -> str:
        if not self.tiled:
            return "off"
        rows, cols = self.grid
        return f"{rows}x{cols}" + (" + full frame" if self.settings.tile_full_frame else "")

    def detect(self, frames: list[tuple[int, float, np.ndarray]]) -> list[FrameDetections]:
        """Detections for each (frame_index, time_s, BGR image), down to WEAK_CONF_SHARE x conf (see
        cvtriage.events.changed_classes); one model call for the whole batch."""
        if not frames:
            return []
        crops = [
            np.ascontiguousarray(image[y0:y1, x0:x1]) for _, _, image in frames for x0, y0, x1, y1 in self.windows
        ]
        results = self.model.predict(
            crops,
            imgsz=self.input_size,
            conf=self.settings.conf * WEAK_CONF_SHARE,
            iou=self.settings.iou,
            agnostic_nms=self.settings.agnostic_nms,
            classes=self.class_ids,
            device=self.device,
            max_det=MAX_DETECTIONS,
            verbose=False,
        )
        per_frame = len(self.windows)
        detections = []
        for number, (frame_index, time_s, _) in enumerate(frames):
            boxes, scores, classes, sources = [], [], [], []
            for source, (result, (x0, y0, _, _)) in enumerate(
                zip(results[number * per_frame : (number + 1) * per_frame], self.windows)
            ):
                found = result.boxes.cpu().numpy()
                boxes.append(found.xyxy.astype(np.float32) + np.array([x0, y0, x0, y0], np.float32))
                scores.append(found.conf.astype(np.float32))
                classes.append(found.cls.astype(np.int64))
                sources.append(np.full(len(found.conf), source))
            merged = (np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes))
            if per_frame > 1:
                merged = merge_across_tiles(*merged, np.concatenate(sources), agnostic=self.settings.agnostic_nms)
            detections.append(FrameDetections(frame_index, time_s, *merged))
        return detections
