"""A scan's events as the review loop reads them back: each event's track (its box in every
inferred frame), the frame's other detections, and the source the frames come from.

Read from a scan's results folder (events.json, detections.csv), never from FiftyOne: the
dataset holds one keyframe per event, the folder holds every inferred frame.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvtriage.config import HarvestConfig
from cvtriage.dataset import iou_matrix
from cvtriage.errors import CvtriageError
from cvtriage.events import Event

Box = tuple[float, float, float, float]
# A box this close to the frame's edge touches it (detectors clip boxes to the frame).
EDGE_PX = 1.0


@dataclass(frozen=True)
class ScanRun:
    """One scan's results folder, read back."""

    folder: Path
    video: dict  # events.json's `video`: path, kind, width, height, fps, frame_count, identity
    settings: dict
    classes: list[str]  # the scan model's class names, in its class-id order
    events: dict[int, Event]  # by event id
    detections: dict[int, list[tuple[str, Box, float]]]  # frame -> (class, box, confidence) at the scan's conf

    @property
    def source(self) -> Path:
        return Path(self.video["path"])


def read_scan_run(folder: Path) -> ScanRun:
    """A scan's events (with tracks) and detections; a folder that is not a whole scan raises."""
    from cvtriage.outputs import DETECTIONS_CSV, EVENTS_JSON

    folder = Path(folder)
    events_json = folder / EVENTS_JSON
    if not events_json.is_file():
        raise CvtriageError(f"{folder}: not a scan results folder (no {EVENTS_JSON})")
    try:
        document = json.loads(events_json.read_text(encoding="utf-8"))
        records = document["events"]
        events = {record["id"]: _event_of(record) for record in records}
        classes = [name for _, name in sorted(document["classes"].items(), key=lambda item: int(item[0]))]
        video, settings = document["video"], document["settings"]
    except (OSError, ValueError) as error:
        raise CvtriageError(f"{events_json}: cannot read it ({error})") from None
    except KeyError as error:
        raise CvtriageError(
            f"{events_json}: has no {error} (written by an older cvtriage: run the scan again)"
        ) from None
    return ScanRun(folder.resolve(), video, settings, classes, events, _read_detections(folder / DETECTIONS_CSV))


def _event_of(record: dict) -> Event:
    track = [(int(row[0]), *map(float, row[1:6])) for row in record["track"]]
    return Event(
        event_id=int(record["id"]), track_id=int(record["track_id"]), class_id=int(record["class_id"]),
        class_name=record["class"], first_frame=int(record["first_frame"]), last_frame=int(record["last_frame"]),
        first_time_s=float(record["first_time_s"]), last_time_s=float(record["last_time_s"]),
        peak_confidence=float(record["peak_confidence"]), best_frame=int(record["best_frame"]),
        best_box_xyxy=tuple(record["best_box_xyxy"]), frames_seen=int(record["frames_seen"]), track=track,
    )  # fmt: skip


def _read_detections(path: Path) -> dict[int, list[tuple[str, Box, float]]]:
    if not path.is_file():
        raise CvtriageError(f"{path}: missing (the scan results folder is incomplete: run the scan again)")
    frames: dict[int, list[tuple[str, Box, float]]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                box = (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"]))
                frames.setdefault(int(row["frame"]), []).append((row["class_name"], box, float(row["confidence"])))
    except (OSError, KeyError, ValueError) as error:
        raise CvtriageError(f"{path}: cannot read it ({error})") from None
    return frames


def boxes_by_frame(event: Event) -> dict[int, Box]:
    """The event's box in each frame the tracker matched it in."""
    return {row[0]: tuple(row[1:5]) for row in event.track}


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
    for frame, x1, y1, x2, y2, _ in event.track:
        if frame in partial:
            continue
        centre, side = np.array([(x1 + x2) / 2, (y1 + y2) / 2]), np.sqrt(max((x2 - x1) * (y2 - y1), 1e-6))
        if last is None or np.hypot(*(centre - last[0])) >= min_shift_px or max(side / last[1], last[1] / side) >= min_scale:
            kept.append(frame)
            last = (centre, side)
    return kept


def partial_views(event: Event, settings: HarvestConfig, frame_size: tuple[int, int]) -> set[int]:
    """Frames where the event's box touches the frame's edge and covers less than
    `partial_view_area` of its median area: a sliver of the object entering or leaving the picture
    (on drone footage, most boxes a track ends with)."""
    if not event.track or not settings.partial_view_area:
        return set()
    width, height = frame_size
    boxes = np.array([row[1:5] for row in event.track], float)
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    at_edge = (boxes[:, :2].min(1) <= EDGE_PX) | (boxes[:, 2] >= width - EDGE_PX) | (boxes[:, 3] >= height - EDGE_PX)
    small = areas < settings.partial_view_area * np.median(areas)
    return {row[0] for row, partial in zip(event.track, at_edge & small) if partial}


def boxes_overlap(a: Box, b: Box, min_iou: float) -> bool:
    return bool(iou_matrix([a], [b])[0, 0] >= min_iou)


def overlapping_in_frames(a: Event, b: Event, min_iou: float) -> bool:
    """Whether the two events' boxes overlap by `min_iou` in some frame both were seen in."""
    frames_b = boxes_by_frame(b)
    shared = [(row[1:5], frames_b[row[0]]) for row in a.track if row[0] in frames_b]
    if not shared:
        return False
    ious = iou_matrix(np.array([pair[0] for pair in shared]), np.array([pair[1] for pair in shared]))
    return bool(np.diag(ious).max() >= min_iou)
