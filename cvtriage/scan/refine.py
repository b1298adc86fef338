"""Coarse-to-fine: where two consecutive sampled frames disagree (an object appeared or left
between them, not merely scored a little under the threshold), probe the frames in between
and bisect down to the exact frame of the change.

A pure function of the per-frame detections, so a resumed scan that replays its detection log
refines the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from cvtriage.boxes import box_centres, centred_in
from cvtriage.types import FrameDetections

# Probes inside a gap are this many frames apart; the frame reader keeps that many decoded
# frames so the bisection between two probes needs no second decode.
MAX_PROBE_SPACING = 8


# Between two probes (at most MAX_PROBE_SPACING frames apart) an object moves less than this many
# times its size: what refinement crops allow for (see _crop_around_change).
MOTION_SIDES = 2.0


def class_counts(frame: FrameDetections, min_score: float = 0.0, region: tuple[int, int, int, int] | None = None) -> Counter:
    """Objects per class scored at least `min_score` (with `region`: centred inside it)."""
    keep = frame.scores >= min_score
    if region is not None:
        keep &= centred_in(frame.boxes_xyxy, region)
    return Counter(frame.class_ids[keep].tolist())


def changed_classes(a: FrameDetections, b: FrameDetections, conf: float) -> list[int]:
    """Classes of which one frame shows more objects at `conf` than the other shows at all.

    Frames hold detections down to detector.WEAK_CONF_SHARE x conf: an object whose score dips a
    little below `conf` in one frame is still there, not a change worth refining. (Such a class
    also differs in its count at `conf`, which is what the bisection narrows down.)
    """
    strong_a, strong_b, all_a, all_b = class_counts(a, conf), class_counts(b, conf), class_counts(a), class_counts(b)
    return sorted(c for c in set(strong_a) | set(strong_b) if strong_a[c] > all_b[c] or strong_b[c] > all_a[c])


def changed_boxes(a: FrameDetections, b: FrameDetections, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The boxes (N, 4) of `classes` in both frames, and which of them have no counterpart of
    their class in the other frame: pairs are matched nearest centres first, up to MOTION_SIDES
    times the larger box's side apart. (A class whose boxes all found one, a score that crossed
    conf, has all of them marked.)"""
    boxes, unmatched = [], []
    for class_id in classes:
        boxes_a, boxes_b = a.boxes_xyxy[a.class_ids == class_id], b.boxes_xyxy[b.class_ids == class_id]
        distance = np.linalg.norm(box_centres(boxes_a)[:, None] - box_centres(boxes_b)[None], axis=2)
        reach = MOTION_SIDES * np.maximum(_sides(boxes_a)[:, None], _sides(boxes_b)[None])
        free_a, free_b = np.ones(len(boxes_a), bool), np.ones(len(boxes_b), bool)
        for i, j in zip(*np.unravel_index(np.argsort(distance, axis=None, kind="stable"), distance.shape)):
            if distance[i, j] <= reach[i, j] and free_a[i] and free_b[j]:
                free_a[i] = free_b[j] = False
        free = np.concatenate([free_a, free_b])
        boxes.append(np.concatenate([boxes_a, boxes_b]))
        unmatched.append(free if free.any() else ~free)
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, bool)
    return np.concatenate(boxes), np.concatenate(unmatched)


def _sides(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2:] - boxes[:, :2]).max(1)


def _crop_around_change(
    low: FrameDetections, high: FrameDetections, classes: list[int], conf: float, region_for
) -> np.ndarray | None:
    """The boxes a bisection between `low` and `high` may crop around (None: whole frames): the
    changed objects (`changed_boxes`), joined by every box of their classes within reach of the
    crop's region (an object moving across its edge would change the count inside it), as long as
    the region's change in count is the frame's, class by class."""
    boxes, chosen = changed_boxes(low, high, classes)
    if not chosen.any():
        return None
    reach = MOTION_SIDES * _sides(boxes).max()
    while True:
        region = region_for(boxes[chosen])
        if region is None:
            return None
        x0, y0, x1, y1 = region
        near = centred_in(boxes, (x0 - reach, y0 - reach, x1 + reach, y1 + reach)) & ~chosen
        if not near.any():
            break
        chosen |= near
    change = lambda c, region: class_counts(low, conf, region)[c] - class_counts(high, conf, region)[c]  # noqa: E731
    return boxes[chosen] if all(change(c, region) == change(c, None) for c in classes) else None


def refine_gap(
    before: FrameDetections,
    after: FrameDetections,
    detect_frame: Callable[..., FrameDetections | None],
    conf: float,
    region_for: Callable[[np.ndarray], tuple[int, int, int, int] | None] | None = None,
) -> None:
    """Find the exact frames where what is seen at `conf` changes between two sampled frames.

    `detect_frame(index, around=None)` returns the frame's detections (inferring it if need be)
    or None when the frame cannot be decoded; with `around`, boxes (N, 4), it infers only a crop
    around them where `region_for(around)` gives the region such a crop answers for (objects
    centred in it), and the whole frame where it gives None. Probes every MAX_PROBE_SPACING
    frames, whole frames, find which stretches changed (`changed_classes`), also by objects no
    sampled frame saw; then, for each class that changed across a stretch, a bisection narrows the
    change of its count at `conf` down to two adjacent frames. The bisection's probes are one crop
    around the objects that changed (`changed_boxes`), compared within its region, when that
    region holds the stretch's whole change in count (else whole frames: _crop_around_change).
    One boundary per class and stretch: a detection that flickers near the change is not chased
    frame by frame. Frames are asked for in increasing order, except during a bisection, which
    stays within the last probe spacing (the reader's cache).
    """
    if after.frame_index - before.frame_index <= 1 or not changed_classes(before, after, conf):
        return
    previous = before
    for index in [*range(before.frame_index + MAX_PROBE_SPACING, after.frame_index, MAX_PROBE_SPACING), after.frame_index]:
        probe = after if index == after.frame_index else detect_frame(index)
        if probe is None:
            continue
        changed = changed_classes(previous, probe, conf)
        ask = detect_frame
        around = _crop_around_change(previous, probe, changed, conf, region_for) if changed and region_for else None
        if around is not None:
            ask = lambda index, around=around: detect_frame(index, around)  # noqa: E731
        for class_id in changed:
            _bisect(previous, probe, class_id, conf, ask)
        previous = probe


def _bisect(low: FrameDetections, high: FrameDetections, class_id: int, conf: float, detect_frame) -> None:
    """Infer frames between two frames until a change of the count of `class_id` at `conf` sits
    between adjacent frames. Where a probe is a crop, frames are compared within its region only."""
    count = lambda frame, region: class_counts(frame, conf, region)[class_id]  # noqa: E731
    while high.frame_index - low.frame_index > 1:
        middle = detect_frame((low.frame_index + high.frame_index) // 2)
        if middle is None:
            return
        region = middle.region or low.region  # the bisection's crop (None: whole frames)
        if count(middle, region) != count(low, region):
            high = middle
        else:
            low = middle
