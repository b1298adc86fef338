"""Tiling: small objects in large frames.

Small objects vanish when a large frame is shrunk to the model's input size, so large frames are
cut into overlapping tiles (as SAHI does). Boxes from different tiles are then merged the way
SAHI's default GREEDYNMM does: same class, intersection over the smaller box above a threshold,
keep the union, so an object seen twice in an overlap, or cut in two at a seam, becomes one box.

A model that accepts any input size (PyTorch weights) needs no tiles for a frame of moderate size:
with `tile: auto` it sees the whole frame at a larger input instead, which keeps the same detail
for about half the pixels of tiles (no overlaps, and Ultralytics letterboxes to the frame's own
aspect where square tiles are padded). Models of a fixed input size get tiles.
"""

from __future__ import annotations

import math

import numpy as np

from cvtriage.boxes import ios_matrix
from cvtriage.scan.crops import STRIDE

# Frames whose long side is at most this many times the model's input size are not tiled:
# shrinking them loses little, and tiles would multiply the cost.
AUTO_TILE_MAX_SCALE = 1.5
# With `tile: auto` and a model that accepts any input size, the whole frame goes in at an input
# up to this many times imgsz (memory grows with it); larger frames are tiled.
AUTO_INPUT_MAX_SCALE = 2.0
# SAHI's default merge threshold (intersection over the smaller box).
MERGE_IOS = 0.5


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


def _ceil_stride(pixels: float) -> int:
    return math.ceil(pixels / STRIDE - 1e-9) * STRIDE


def input_pixels(width: int, height: int, imgsz: int, fixed: bool) -> int:
    """Pixels the model takes for a width x height image at `imgsz`: a fixed-size model pads it to
    imgsz x imgsz; otherwise Ultralytics scales the long side to imgsz and pads the other to STRIDE."""
    if fixed:
        return imgsz * imgsz
    ratio = imgsz / max(width, height)
    return _ceil_stride(round(width * ratio)) * _ceil_stride(round(height * ratio))


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Greedy non-maximum merging: the best box absorbs same-class (`agnostic`: any-class) boxes
    from OTHER tiles whose intersection over the smaller box exceeds `threshold` (boxes within one
    tile were already separated by the model's NMS); the merged box is their union, its score and
    class the best's. The fourth array: which input box each merged one's best is (its index)."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, class_ids, sources = boxes[order], scores[order], class_ids[order], sources[order]
    absorbed = np.zeros(len(boxes), bool)
    kept_boxes, kept_scores, kept_classes, kept = [], [], [], []
    for i in range(len(boxes)):
        if absorbed[i]:
            continue
        absorbed[i] = True
        same_class = True if agnostic else class_ids == class_ids[i]
        candidates = np.flatnonzero(~absorbed & same_class & (sources != sources[i]))
        merged = boxes[i].copy()
        if len(candidates):
            matches = candidates[ios_matrix(boxes[i], boxes[candidates])[0] > threshold]
            absorbed[matches] = True
            group = boxes[np.append(matches, i)]
            merged = np.concatenate([group[:, :2].min(0), group[:, 2:].max(0)])
        kept_boxes.append(merged)
        kept_scores.append(scores[i])
        kept_classes.append(class_ids[i])
        kept.append(order[i])
    if not kept_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (
        np.asarray(kept_boxes, np.float32), np.asarray(kept_scores, np.float32), np.asarray(kept_classes, np.int64),
        np.asarray(kept, np.int64),
    )  # fmt: skip
