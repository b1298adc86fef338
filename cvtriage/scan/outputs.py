"""Outputs: a scan's results folder, written whole: events.json, events.csv, detections.csv,
beside the keyframes (cvtriage.scan.keyframes), the timeline (cvtriage.scan.timeline) and, where
the footage has positions, the map.

Everything under the results folder is written into a hidden sibling folder first and renamed
into place only when complete, so a folder named after a video always holds one whole scan:
the previous one until the new one has been fully written.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cvtriage import __version__
from cvtriage.config import ScanConfig
from cvtriage.errors import CvtriageError
from cvtriage.files import replace_dir, replaceable_dir
from cvtriage.scan.features import ScanFeatures
from cvtriage.scan.frames import source_identity
from cvtriage.scan.keyframes import write_keyframes
from cvtriage.scan.priority import TeachingValue
from cvtriage.scan.results import (
    CLEAN_KEYFRAMES_DIR,
    DETECTIONS_CSV,
    EVENT_FEATURES_NPY,
    EVENTS_CSV,
    EVENTS_JSON,
    KEYFRAMES_DIR,
    TIMELINE_PNG,
    TRACK_RESIDUALS_NPY,
)
from cvtriage.scan.timeline import best_time_s, format_timecode, write_timeline
from cvtriage.telemetry.objects import OBJECTS_CSV, OBJECTS_JSON
from cvtriage.telemetry.placement import (
    EVENT_MAP_PNG,
    EVENT_POSITION_COLUMNS,
    event_position_cells,
    place_events,
    write_placement,
)
from cvtriage.telemetry.positions import source_positions
from cvtriage.types import Event, FrameDetections, VideoInfo

logger = logging.getLogger(__name__)

EVENT_COLUMNS = [
    "event_id", "class_id", "class_name", "track_id",
    "first_frame", "last_frame", "first_time_s", "first_timecode", "last_time_s", "last_timecode",
    "duration_s", "peak_confidence", "best_frame", "best_time_s", "best_timecode",
    "x1", "y1", "x2", "y2", "frames_seen", "review_priority", "keyframe",
    *EVENT_POSITION_COLUMNS, "cues",
]  # fmt: skip
DETECTION_COLUMNS = [
    "frame", "time_s", "timecode", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2",
]  # fmt: skip


def write_scan_outputs(
    out_dir: Path,
    video: VideoInfo,
    settings: ScanConfig,
    events: list[Event],
    detections: list[FrameDetections],
    class_names: dict[int, str],
    keyframes: Mapping[int, np.ndarray],
    stats: dict,
    teaching: dict[int, TeachingValue],
    features: ScanFeatures | None = None,
) -> dict[str, Path]:
    """Write a scan's results folder.

    `keyframes` maps each event id to the BGR image of that event's best frame, `teaching` to its
    review priority (cvtriage.scan.priority); `features` (the detector's, cvtriage.scan.features)
    go to event_features.npy and track_residuals.npy. `stats` holds frames_total, frames_inferred,
    wall_time_s and bad_ranges ((first, last) frame ranges that failed to decode). Returns the
    paths written, by name: out_dir, events_json, events_csv, detections_csv, timeline, keyframes
    (and map, where the events have positions).
    """
    out_dir = Path(out_dir).resolve()
    missing = sorted(event.event_id for event in events if event.event_id not in keyframes)
    if missing:
        raise ValueError(f"no keyframe image for event(s) {missing}")
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    detections_by_frame = {frame.frame_index: frame for frame in detections}

    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        keyframe_names = write_keyframes(
            staging, video, events, detections_by_frame, class_names, keyframes, settings.jpeg_quality
        )
        rows = [
            _event_record(event, video, detections_by_frame, keyframe_names[event.event_id], teaching[event.event_id])
            for event in events
        ]
        # Positions (a DJI .SRT beside the video, or image sidecars): the drone's, and each event's object on
        # the ground; objects.json/csv and map.png. Its time is the scan's cost of positions.
        placement = place_events(rows, video, source_positions(video), settings.positions)
        if placement is not None:
            for warning in placement.warnings:
                logger.warning(warning)
            placement.document["dataset"] = settings.dataset  # where `cvtriage sites` marks the changes
            title = f"{Path(video.path).name}: {len(placement.document['objects'])} objects on the ground"
            write_placement(staging, title, placement)
            stats = {**stats, "positions_s": round(placement.seconds, 4)}
        detection_count = sum(len(frame.scores) for frame in detections)
        _write_events_json(staging / EVENTS_JSON, rows, video, settings, class_names, stats, detection_count)
        write_csv(staging / EVENTS_CSV, EVENT_COLUMNS, (_event_csv_row(row) for row in rows))
        write_csv(staging / DETECTIONS_CSV, DETECTION_COLUMNS, _detection_rows(detections, class_names))
        write_timeline(staging / TIMELINE_PNG, video, events, detections_by_frame, stats.get("bad_ranges", []))
        if features is not None:
            np.save(staging / EVENT_FEATURES_NPY, features.means)
            np.save(staging / TRACK_RESIDUALS_NPY, features.residuals)
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    paths = {
        "out_dir": out_dir,
        "events_json": out_dir / EVENTS_JSON,
        "events_csv": out_dir / EVENTS_CSV,
        "detections_csv": out_dir / DETECTIONS_CSV,
        "timeline": out_dir / TIMELINE_PNG,
        "keyframes": out_dir / KEYFRAMES_DIR,
    }
    for name, file in (("map", EVENT_MAP_PNG), ("objects_json", OBJECTS_JSON), ("objects_csv", OBJECTS_CSV)):
        if (out_dir / file).is_file():
            paths[name] = out_dir / file
    return paths


def _event_record(
    event: Event,
    video: VideoInfo,
    detections_by_frame: dict[int, FrameDetections],
    keyframe_name: str,
    teaching: TeachingValue,
) -> dict[str, Any]:
    time_s = best_time_s(event, video, detections_by_frame)
    return {
        "id": event.event_id,
        "class": event.class_name,
        "class_id": event.class_id,
        "track_id": event.track_id,
        "first_frame": event.first_frame,
        "last_frame": event.last_frame,
        "first_time_s": round(event.first_time_s, 3),
        "first_timecode": format_timecode(event.first_time_s),
        "last_time_s": round(event.last_time_s, 3),
        "last_timecode": format_timecode(event.last_time_s),
        "duration_s": round(event.last_time_s - event.first_time_s, 3),
        "peak_confidence": round(float(event.peak_confidence), 4),
        "best_frame": event.best_frame,
        "best_time_s": round(time_s, 3),
        "best_timecode": format_timecode(time_s),
        "best_box_xyxy": [round(float(value), 1) for value in event.best_box_xyxy],
        "frames_seen": event.frames_seen,
        "review_priority": teaching.priority,
        "keyframe": f"{KEYFRAMES_DIR}/{keyframe_name}",
        "keyframe_clean": f"{CLEAN_KEYFRAMES_DIR}/{keyframe_name}",
        "cues": list(event.cues),
        "track": [
            [point.frame, *(round(float(v), 1) for v in point.box), round(float(point.confidence), 4)]
            for point in event.track
        ],
    }


def _event_csv_row(record: dict[str, Any]) -> list[Any]:
    x1, y1, x2, y2 = record["best_box_xyxy"]
    return [
        record["id"], record["class_id"], record["class"], record["track_id"],
        record["first_frame"], record["last_frame"], record["first_time_s"], record["first_timecode"],
        record["last_time_s"], record["last_timecode"], record["duration_s"], record["peak_confidence"],
        record["best_frame"], record["best_time_s"], record["best_timecode"],
        x1, y1, x2, y2, record["frames_seen"], record["review_priority"], record["keyframe"],
        *event_position_cells(record), "+".join(record["cues"]),
    ]  # fmt: skip


def _detection_rows(detections: list[FrameDetections], class_names: dict[int, str]) -> Iterable[list[Any]]:
    for frame in sorted(detections, key=lambda frame: frame.frame_index):
        timecode = format_timecode(frame.time_s)
        for box, score, class_id in zip(frame.boxes_xyxy, frame.scores, frame.class_ids):
            yield [
                frame.frame_index, round(frame.time_s, 3), timecode, int(class_id),
                class_names.get(int(class_id), str(class_id)), round(float(score), 4),
                *(round(float(value), 1) for value in box),
            ]  # fmt: skip


def write_csv(path: Path, columns: list[str], rows: Iterable[list[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        writer.writerows(rows)


def _write_events_json(
    path: Path,
    records: list[dict[str, Any]],
    video: VideoInfo,
    settings: ScanConfig,
    class_names: dict[int, str],
    stats: dict,
    detection_count: int,
) -> None:
    document = {
        "cvtriage_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "video": {
            "path": str(Path(video.path).resolve()),
            "name": Path(video.path).name,
            "kind": video.kind,
            "width": video.width,
            "height": video.height,
            "fps": video.fps,
            "frame_count": video.frame_count,
            "duration_s": round(video.duration_s, 3),
            "duration_timecode": format_timecode(video.duration_s),
            # Harvesting decodes the event frames again: this tells whether the file is still the one scanned.
            "identity": source_identity(video),
        },
        "settings": settings.model_dump(mode="json"),
        "classes": {str(class_id): name for class_id, name in sorted(class_names.items())},
        "stats": {
            **stats,
            "bad_ranges": [[int(first), int(last)] for first, last in stats.get("bad_ranges", [])],
            "detections": detection_count,
            "events": len(records),
        },
        "events": records,
    }
    path.write_text(json.dumps(document, indent=2, default=_json_scalar) + "\n", encoding="utf-8")


def _json_scalar(value: Any) -> Any:
    # numpy numbers in stats become numbers; anything else JSON lacks (a Path, ...) its text, so an
    # unexpected stats value never fails a finished scan at its last step.
    return value.item() if isinstance(value, np.generic) else str(value)


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace a folder that is not a previous scan's results (it may hold a user's files)."""
    if not replaceable_dir(out_dir, EVENTS_JSON):
        raise CvtriageError(f"{out_dir}: exists and is not a cvtriage scan folder; choose another output folder")
