"""A scan's events as the review loop reads them back: each event's track (its box in every
inferred frame), the frame's other detections, and the source the frames come from.

Read from a scan's results folder (events.json, detections.csv), never from FiftyOne: the
dataset holds one keyframe per event, the folder holds every inferred frame.
"""

from __future__ import annotations

import numpy as np

from cvtriage.boxes import Box, box_centres, iou_matrix
from cvtriage.config import HarvestConfig
from cvtriage.types import Event

# A box this close to the frame's edge touches it (detectors clip boxes to the frame).
EDGE_PX = 1.0


def boxes_by_frame(event: Event) -> dict[int, Box]:
    """The event's box in each frame the tracker matched it in."""
    return {point.frame: point.box for point in event.track}


def thin_track(
    event: Event, settings: HarvestConfig, frame_size: tuple[int, int], partial: set[int] | None = None
) -> list[int]:
    """The frames of an event worth labelling: the first whole view, then each frame in which the
    object has moved at least `view_shift` of the frame's diagonal in the picture, or grown or
    shrunk by `view_scale` (a ratio of sides), since the last frame kept. A hovering drone over a
    still object gives one frame, a pass over it a handful, not the dozens of near-identical frames
    refinement inferred. Partial views (`partial_views`, or `partial` when the caller has them)
    are not views."""
    min_shift_px, min_scale = settings.view_shift * float(np.hypot(*frame_size)), settings.view_scale
    if partial is None:
        partial = partial_views(event, settings, frame_size)
    kept: list[int] = []
    last = None
    for point in event.track:
        if point.frame in partial:
            continue
        x1, y1, x2, y2 = point.box
        centre, side = box_centres([point.box])[0], np.sqrt(max((x2 - x1) * (y2 - y1), 1e-6))
        if last is None or np.hypot(*(centre - last[0])) >= min_shift_px or max(side / last[1], last[1] / side) >= min_scale:
            kept.append(point.frame)
            last = (centre, side)
    return kept


def partial_views(event: Event, settings: HarvestConfig, frame_size: tuple[int, int]) -> set[int]:
    """Frames where the event's box touches the frame's edge and covers less than
    `partial_view_area` of its median area: a sliver of the object entering or leaving the picture
    (on drone footage, most boxes a track ends with)."""
    if not event.track or not settings.partial_view_area:
        return set()
    width, height = frame_size
    boxes = np.array([point.box for point in event.track], float)
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    at_edge = (boxes[:, :2].min(1) <= EDGE_PX) | (boxes[:, 2] >= width - EDGE_PX) | (boxes[:, 3] >= height - EDGE_PX)
    small = areas < settings.partial_view_area * np.median(areas)
    return {point.frame for point, partial in zip(event.track, at_edge & small) if partial}


def overlapping_in_frames(a: Event, b: Event, min_iou: float) -> bool:
    """Whether the two events' boxes overlap by `min_iou` in some frame both were seen in."""
    frames_b = boxes_by_frame(b)
    shared = [(point.box, frames_b[point.frame]) for point in a.track if point.frame in frames_b]
    if not shared:
        return False
    ious = iou_matrix(np.array([pair[0] for pair in shared]), np.array([pair[1] for pair in shared]))
    return bool(np.diag(ious).max() >= min_iou)


def shared_frames(a, b) -> int:
    """How many frames two spans share: anything with inclusive `first_frame` and `last_frame`
    (events, or what matching reduces them to)."""
    return max(0, min(a.last_frame, b.last_frame) - max(a.first_frame, b.first_frame) + 1)
