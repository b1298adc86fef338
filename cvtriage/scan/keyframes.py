"""Keyframes: each event's best frame as two JPEGs, one with the boxes drawn for people, one
clean for the FiftyOne App (which draws the boxes itself)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from cvtriage.boxes import iou_matrix
from cvtriage.errors import CvtriageError
from cvtriage.scan.results import CLEAN_KEYFRAMES_DIR, KEYFRAMES_DIR
from cvtriage.scan.timeline import best_time_s, format_timecode
from cvtriage.types import Event, FrameDetections, VideoInfo

SAME_BOX_IOU = 0.5  # a detection overlapping an event's box this much is that box


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "object"


def keyframe_name(event: Event, time_s: float) -> str:
    """The file name of the event's keyframe, taken at `time_s`."""
    # Colons are not allowed in Windows file names.
    return f"event_{event.event_id:04d}_{_slug(event.class_name)}_{format_timecode(time_s).replace(':', '-')}.jpg"


def event_box_index(event: Event, frame: FrameDetections | None) -> int | None:
    """Which of the keyframe's detections is the event's own box (the tracker's box may differ slightly)."""
    return matching_box_index(frame, event.best_box_xyxy, event.class_id)


def matching_box_index(frame: FrameDetections | None, box, class_id: int) -> int | None:
    """Which of the frame's detections of `class_id` is `box` (a track's box), or None."""
    if frame is None:
        return None
    overlaps = [
        iou_matrix([found], [box])[0, 0] if found_class == class_id else 0.0
        for found, found_class in zip(frame.boxes_xyxy, frame.class_ids)
    ]
    best = int(np.argmax(overlaps)) if overlaps else None
    return best if best is not None and overlaps[best] >= SAME_BOX_IOU else None


def _class_color(class_id: int) -> tuple[int, int, int]:
    # Ultralytics' palette, so keyframes look like the model's own plots.
    from ultralytics.utils.plotting import colors

    return tuple(int(channel) for channel in colors(int(class_id), bgr=True))


def _draw_box(image: np.ndarray, box, color, label: str, thickness: int, font_scale: float) -> None:
    x1, y1, x2, y2 = (int(round(value)) for value in box)
    cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    font_thickness = max(1, thickness // 2)
    (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thickness)
    # Label above the box, or inside it when the box touches the top edge; never past the right edge.
    above = y1 - text_h - baseline - 2 >= 0
    top = y1 - text_h - baseline - 2 if above else y1
    x1 = max(0, min(x1, image.shape[1] - text_w - 4))
    cv2.rectangle(image, (x1, top), (x1 + text_w + 4, top + text_h + baseline + 2), color, -1)
    brightness = 0.299 * color[2] + 0.587 * color[1] + 0.114 * color[0]
    text_color = (0, 0, 0) if brightness > 150 else (255, 255, 255)
    cv2.putText(image, label, (x1 + 2, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color,
                font_thickness, cv2.LINE_AA)  # fmt: skip


def draw_keyframe(
    image: np.ndarray, event: Event, frame: FrameDetections | None, class_names: dict[int, str]
) -> np.ndarray:
    """A copy of `image` with the event's box highlighted and the frame's other detections thinner."""
    drawn = image.copy()
    thick = max(2, round(min(image.shape[:2]) / 250))
    font_scale = max(0.4, min(image.shape[:2]) / 900)
    own_index = event_box_index(event, frame)
    if frame is not None:
        for index, (box, score, class_id) in enumerate(zip(frame.boxes_xyxy, frame.scores, frame.class_ids)):
            if index != own_index:
                label = f"{class_names.get(int(class_id), str(class_id))} {score:.2f}"
                _draw_box(drawn, box, _class_color(class_id), label, max(1, thick // 2), font_scale * 0.7)
    own_score = frame.scores[own_index] if own_index is not None else event.peak_confidence
    label = f"#{event.event_id} {event.class_name} {own_score:.2f}"
    _draw_box(drawn, event.best_box_xyxy, _class_color(event.class_id), label, thick, font_scale)
    return drawn


def _write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    # imencode + write_bytes raises on failure (cv2.imwrite only returns False) and handles any path.
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise CvtriageError(f"{path}: could not encode the keyframe as JPEG")
    path.write_bytes(encoded.tobytes())


def write_keyframes(
    folder: Path,
    video: VideoInfo,
    events: list[Event],
    detections_by_frame: dict[int, FrameDetections],
    class_names: dict[int, str],
    keyframes: Mapping[int, np.ndarray],
    quality: int,
) -> dict[int, str]:
    """Drawn and clean JPEGs of each event's best frame; returns each event's file name."""
    (folder / CLEAN_KEYFRAMES_DIR).mkdir(parents=True)
    names = {}
    for event in sorted(events, key=lambda e: e.best_frame):  # a lazy source reads them in one pass
        name = keyframe_name(event, best_time_s(event, video, detections_by_frame))
        image = keyframes[event.event_id]
        frame = detections_by_frame.get(event.best_frame)
        _write_jpeg(folder / KEYFRAMES_DIR / name, draw_keyframe(image, event, frame, class_names), quality)
        _write_jpeg(folder / CLEAN_KEYFRAMES_DIR / name, image, quality)
        names[event.event_id] = name
    return names
