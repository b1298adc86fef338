"""Box maths on (N, 4) arrays of x1 y1 x2 y2 pixels: overlaps, centres, conversions.
"""

from __future__ import annotations

import numpy as np

# One box, x1 y1 x2 y2 pixels.
Box = tuple[float, float, float, float]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), both x1 y1 x2 y2. Scaling x and y
    by different factors leaves IoU unchanged, so normalised coordinates give pixel IoU."""
    a, b, intersection = _intersections(a, b)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def box_centres(boxes: np.ndarray) -> np.ndarray:
    """The (N, 2) centres of boxes (N, 4) x1 y1 x2 y2."""
    boxes = np.asarray(boxes)
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def centred_in(boxes: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """Which boxes (N, 4) have their centre inside `region` (x0, y0, x1, y1)."""
    centres = box_centres(boxes)
    x0, y0, x1, y1 = region
    return (centres[:, 0] >= x0) & (centres[:, 0] < x1) & (centres[:, 1] >= y0) & (centres[:, 1] < y1)


def boxes_overlap(a: Box, b: Box, min_iou: float) -> bool:
    return bool(iou_matrix([a], [b])[0, 0] >= min_iou)


def ios_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area, of every box in a (N, 4) with every box in b
    (M, 4): 1 where one box lies inside the other, however different their sizes (SAHI's measure
    for merging an object's pieces seen in overlapping tiles). 0 against an empty box."""
    a, b, intersection = _intersections(a, b)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.divide(intersection, smaller, out=np.zeros_like(intersection), where=smaller > 0)


def _intersections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b) as float64 (N, 4) and (M, 4) arrays, and the (N, M) areas of their intersections."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return a, b, np.clip(bottom_right - top_left, 0, None).prod(axis=2)


# --- conversions between box formats ----------------------------------------------------------
# xyxy: corners x1 y1 x2 y2; xywh: top-left corner and size (FiftyOne's, COCO's); cxcywh: centre
# and size (YOLO's label files). Each takes one box (4,) or many (N, 4), in pixels or normalised,
# and returns a float64 array of the same shape (an empty sequence is no boxes: (0, 4)).


def _as_boxes(boxes) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    return array if array.shape == (4,) else array.reshape(-1, 4)


def xywh_to_xyxy(boxes) -> np.ndarray:
    boxes = _as_boxes(boxes)
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)


def xyxy_to_xywh(boxes) -> np.ndarray:
    boxes = _as_boxes(boxes)
    return np.concatenate([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], axis=-1)


def xyxy_to_cxcywh(boxes) -> np.ndarray:
    boxes = _as_boxes(boxes)
    return np.concatenate([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], axis=-1)


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    boxes = _as_boxes(boxes)
    return np.concatenate([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], axis=-1)


def cxcywh_to_xywh(boxes) -> np.ndarray:
    boxes = _as_boxes(boxes)
    return np.concatenate([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., 2:]], axis=-1)
