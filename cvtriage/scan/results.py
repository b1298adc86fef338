"""A scan's results folder: its file names, and the reader that gives it back (events with their
tracks, every inferred frame's detections).

Read from the folder, never from FiftyOne: the dataset holds one keyframe per event, the folder
holds every inferred frame.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from cvtriage.boxes import Box
from cvtriage.errors import CvtriageError
from cvtriage.types import Event, TrackPoint

EVENTS_JSON = "events.json"
EVENTS_CSV = "events.csv"
DETECTIONS_CSV = "detections.csv"
TIMELINE_PNG = "timeline.png"
KEYFRAMES_DIR = "keyframes"
CLEAN_KEYFRAMES_DIR = "keyframes/clean"  # the same frames without boxes, for the FiftyOne App
# The detector's features of each event (cvtriage.scan.features): one row per event of events.json,
# in its order; absent when the model gave none (an export).
EVENT_FEATURES_NPY = "event_features.npy"
# How those features vary along each event's track (cvtriage.scan.features.ScanFeatures.residuals).
TRACK_RESIDUALS_NPY = "track_residuals.npy"


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
    track = [TrackPoint(int(row[0]), tuple(map(float, row[1:5])), float(row[5])) for row in record["track"]]
    return Event(
        event_id=int(record["id"]), track_id=int(record["track_id"]), class_id=int(record["class_id"]),
        class_name=record["class"], first_frame=int(record["first_frame"]), last_frame=int(record["last_frame"]),
        first_time_s=float(record["first_time_s"]), last_time_s=float(record["last_time_s"]),
        peak_confidence=float(record["peak_confidence"]), best_frame=int(record["best_frame"]),
        best_box_xyxy=tuple(record["best_box_xyxy"]), frames_seen=int(record["frames_seen"]), track=track,
        cues=tuple(record.get("cues", ())),
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
