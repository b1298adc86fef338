"""Outputs: a scan's results on disk (JSON, CSV, keyframes, timeline) and in FiftyOne.

Everything under the results folder is written into a hidden sibling folder first and renamed
into place only when complete, so a folder named after a video always holds one whole scan:
the previous one until the new one has been fully written.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cvtriage import __version__
from cvtriage.config import ScanConfig
from cvtriage.dataset import iou_matrix
from cvtriage.detect import FrameDetections
from cvtriage.errors import CvtriageError
from cvtriage.events import Event
from cvtriage.files import replace_dir
from cvtriage.frames import VideoInfo, source_identity
from cvtriage.ingest.geomap import write_map
from cvtriage.ingest.positions import EVENT_MAP_PNG, EVENT_POSITION_COLUMNS, event_position_cells, locate_events, source_positions
from cvtriage.teach.decisions import undecided_filter
from cvtriage.teach.looks import index_looks, look_embedding
from cvtriage.teach.queue import REVIEW_QUEUE_VIEW, TeachingValue, teaching_values

if TYPE_CHECKING:
    import fiftyone as fo

EVENTS_JSON = "events.json"
EVENTS_CSV = "events.csv"
DETECTIONS_CSV = "detections.csv"
TIMELINE_PNG = "timeline.png"
KEYFRAMES_DIR = "keyframes"
CLEAN_KEYFRAMES_DIR = "keyframes/clean"  # the same frames without boxes, for the FiftyOne App
FLAGGED_TAG = "flagged"
FLAGGED_VIEW = "flagged-events"
EVENT_BOX_TAG = "event"  # label tag of the box an event sample is about (the others are context)
SAME_BOX_IOU = 0.5  # a detection overlapping an event's box this much is that box

EVENT_COLUMNS = [
    "event_id", "class_id", "class_name", "track_id",
    "first_frame", "last_frame", "first_time_s", "first_timecode", "last_time_s", "last_timecode",
    "duration_s", "peak_confidence", "best_frame", "best_time_s", "best_timecode",
    "x1", "y1", "x2", "y2", "frames_seen", "review_priority", "keyframe",
    *EVENT_POSITION_COLUMNS,
]  # fmt: skip
DETECTION_COLUMNS = [
    "frame", "time_s", "timecode", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2",
]  # fmt: skip


def format_timecode(seconds: float) -> str:
    """`HH:MM:SS.mmm`, rounded to the millisecond (62.3454 -> 00:01:02.345)."""
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{ms:03d}"


def write_scan_outputs(
    out_dir: Path,
    video: VideoInfo,
    settings: ScanConfig,
    events: list[Event],
    detections: list[FrameDetections],
    class_names: dict[int, str],
    keyframes: Mapping[int, np.ndarray],
    stats: dict,
    store_in_fiftyone: bool = True,
) -> dict[str, Path]:
    """Write a scan's results folder, then (unless settings.dataset is None or `store_in_fiftyone`
    is False) its FiftyOne samples.

    `keyframes` maps each event id to the BGR image of that event's best frame. `stats` holds
    frames_total, frames_inferred, wall_time_s and bad_ranges ((first, last) frame ranges that
    failed to decode). Returns the paths written, by name: out_dir, events_json, events_csv,
    detections_csv, timeline, keyframes.
    """
    out_dir = Path(out_dir).resolve()
    missing = sorted(event.event_id for event in events if event.event_id not in keyframes)
    if missing:
        raise ValueError(f"no keyframe image for event(s) {missing}")
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    detections_by_frame = {frame.frame_index: frame for frame in detections}
    teaching = teaching_values(events, settings.conf, video.fps, (video.width, video.height))

    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        keyframe_names = _write_keyframes(
            staging, video, events, detections_by_frame, class_names, keyframes, settings.jpeg_quality
        )
        rows = [
            _event_record(event, video, detections_by_frame, keyframe_names[event.event_id], teaching[event.event_id])
            for event in events
        ]
        located = source_positions(video).positions  # a DJI .SRT beside the video, or image sidecars
        if located is not None:
            points = locate_events(rows, located)
            if points or located.path():
                write_map(staging / EVENT_MAP_PNG, f"{Path(video.path).name}: {len(points)} events located",
                          points, located.path())  # fmt: skip
        detection_count = sum(len(frame.scores) for frame in detections)
        _write_events_json(staging / EVENTS_JSON, rows, video, settings, class_names, stats, detection_count)
        write_csv(staging / EVENTS_CSV, EVENT_COLUMNS, (_event_csv_row(row) for row in rows))
        write_csv(staging / DETECTIONS_CSV, DETECTION_COLUMNS, _detection_rows(detections, class_names))
        write_timeline(staging / TIMELINE_PNG, video, events, detections_by_frame, stats.get("bad_ranges", []))
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
    if (out_dir / EVENT_MAP_PNG).is_file():
        paths["map"] = out_dir / EVENT_MAP_PNG
    if settings.dataset is not None and store_in_fiftyone:
        store_results_in_fiftyone(settings.dataset, out_dir, video, settings, events, detections, class_names, teaching)
    return paths


def store_results_in_fiftyone(
    dataset_name: str,
    out_dir: Path,
    video: VideoInfo,
    settings: ScanConfig,
    events: list[Event],
    detections: list[FrameDetections],
    class_names: dict[int, str],
    teaching: dict[int, TeachingValue] | None = None,
) -> "fo.Dataset":
    """The FiftyOne half of write_scan_outputs, for a results folder already written (by it, or
    by a batch worker that leaves FiftyOne to its driver). One writer per dataset at a time.
    `teaching`: the events' teaching values, when the caller has them already."""
    from cvtriage.database import dataset_write_lock

    out_dir = Path(out_dir).resolve()
    detections_by_frame = {frame.frame_index: frame for frame in detections}
    if teaching is None:
        teaching = teaching_values(events, settings.conf, video.fps, (video.width, video.height))
    clean_paths = {
        event.event_id: out_dir / CLEAN_KEYFRAMES_DIR / _keyframe_name(event, _best_time_s(event, video, detections_by_frame))
        for event in events
    }
    with dataset_write_lock(dataset_name):
        return store_scan_in_fiftyone(
            dataset_name, video, events, clean_paths, detections_by_frame, class_names, out_dir, teaching
        )


def store_scan_in_fiftyone(
    dataset_name: str,
    video: VideoInfo,
    events: list[Event],
    keyframe_paths: dict[int, Path],
    detections_by_frame: dict[int, FrameDetections],
    class_names: dict[int, str],
    results_folder: Path,
    teaching: dict[int, TeachingValue],
) -> "fo.Dataset":
    """One sample per event keyframe in a persistent dataset; re-scanning a video replaces its samples.

    `keyframe_paths` are the clean keyframes (no boxes drawn: the App draws `detections`).
    `results_folder` (events.json, every inferred frame's boxes) is where harvesting reads each
    event's track. Samples of other videos in the same dataset are kept.
    """
    import fiftyone as fo
    from fiftyone import ViewField as F

    check_scan_dataset(dataset_name)
    # Persistent from the start: FiftyOne deletes non-persistent datasets when a process exits.
    dataset = fo.load_dataset(dataset_name) if fo.dataset_exists(dataset_name) else fo.Dataset(dataset_name, persistent=True)
    dataset.persistent = True
    source_video = str(Path(video.path).resolve())

    samples = []
    for event in events:
        filepath = Path(keyframe_paths[event.event_id]).resolve()
        keyframe = cv2.imread(str(filepath))
        frame = detections_by_frame.get(event.best_frame)
        best_time_s = _best_time_s(event, video, detections_by_frame)
        samples.append(
            fo.Sample(
                filepath=str(filepath),
                tags=[FLAGGED_TAG],
                metadata=fo.ImageMetadata(
                    size_bytes=filepath.stat().st_size,
                    mime_type="image/jpeg",
                    width=video.width,
                    height=video.height,
                    num_channels=3,
                ),
                detections=_fiftyone_detections(event, frame, video, class_names),
                event_id=event.event_id,
                class_name=event.class_name,
                timestamp=best_time_s,
                timecode=format_timecode(best_time_s),
                frame_number=event.best_frame,
                first_time_s=event.first_time_s,
                last_time_s=event.last_time_s,
                peak_confidence=event.peak_confidence,
                source_video=source_video,
                scan_results=str(Path(results_folder).resolve()),
                review_priority=teaching[event.event_id].priority,
                uncertainty=teaching[event.event_id].uncertainty,
                rival_class=teaching[event.event_id].rival,
                fragment=teaching[event.event_id].fragment,
                views=teaching[event.event_id].views,
                look_embedding=look_embedding(keyframe, event.best_box_xyxy) if keyframe is not None else None,
            )
        )
    located = source_positions(video).positions
    if located is not None:
        for event, sample in zip(events, samples):
            where = located.at(event.best_frame, sample["timestamp"])
            if where is not None:
                sample["location"] = fo.GeoLocation(point=where.geo_point())  # [longitude, latitude]
    # Add the new samples before deleting the old ones: a failure leaves the previous scan visible.
    previous_ids = dataset.match(F("source_video") == source_video).values("id")
    if samples:
        dataset.add_samples(samples, progress=False)
    dataset.delete_samples(previous_ids)
    index_looks(dataset)
    dataset.save_view(
        FLAGGED_VIEW,
        dataset.match_tags(FLAGGED_TAG).sort_by("peak_confidence", reverse=True),
        description="Scan events, highest peak confidence first",
        overwrite=True,
    )
    dataset.save_view(
        REVIEW_QUEUE_VIEW,
        dataset.match_tags(FLAGGED_TAG).match(undecided_filter()).sort_by("review_priority", reverse=True),
        description="Events nobody has decided on yet, the ones a decision teaches the model most first",
        overwrite=True,
    )
    return dataset


def check_scan_dataset(dataset_name: str) -> None:
    """Refuse a dataset that exists and holds something other than scan events (another user's
    labels, an audit): a scan would add its samples to it and delete some of its own."""
    import fiftyone as fo

    if not fo.dataset_exists(dataset_name):
        return
    dataset = fo.load_dataset(dataset_name)
    if len(dataset) and "source_video" not in dataset.get_field_schema():
        raise CvtriageError(
            f"FiftyOne dataset '{dataset_name}' exists and holds no scan events ({len(dataset)} samples of "
            "something else): scan into another --dataset"
        )


def _fiftyone_detections(
    event: Event, frame: FrameDetections | None, video: VideoInfo, class_names: dict[int, str]
) -> "fo.Detections":
    """The keyframe's detections in FiftyOne's relative [x, y, w, h]; the event's own box carries `event_id`."""
    import fiftyone as fo

    def relative(box) -> list[float]:
        x1, y1, x2, y2 = (float(value) for value in box)
        return [x1 / video.width, y1 / video.height, (x2 - x1) / video.width, (y2 - y1) / video.height]

    own_index = _event_box_index(event, frame)
    labels = []
    if frame is not None:
        for index, (box, score, class_id) in enumerate(zip(frame.boxes_xyxy, frame.scores, frame.class_ids)):
            label = fo.Detection(
                label=class_names.get(int(class_id), str(class_id)), bounding_box=relative(box), confidence=float(score)
            )
            if index == own_index:
                label.tags = [EVENT_BOX_TAG]
                label["event_id"] = event.event_id
            labels.append(label)
    if own_index is None:
        # The tracker's box matched none of the frame's detections: show it as the event's box.
        labels.append(
            fo.Detection(
                label=event.class_name,
                bounding_box=relative(event.best_box_xyxy),
                confidence=float(event.peak_confidence),
                tags=[EVENT_BOX_TAG],
                event_id=event.event_id,
            )
        )
    return fo.Detections(detections=labels)


def write_timeline(
    path: Path,
    video: VideoInfo,
    events: list[Event],
    detections_by_frame: dict[int, FrameDetections],
    bad_ranges: Iterable[tuple[int, int]] = (),
) -> None:
    """A PNG of events along the video: one row per class, a bar per event, a marker at its keyframe."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    end_s = max([video.duration_s, 1.0, *(event.last_time_s for event in events)])
    classes = sorted({(event.class_id, event.class_name) for event in events})
    fig = Figure(figsize=(12, 1.6 + 0.45 * max(len(classes), 1)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    # One-frame events would be invisible as zero-width bars.
    min_width = end_s / 400
    for row, (class_id, class_name) in enumerate(classes):
        class_events = [event for event in events if event.class_id == class_id]
        color = f"C{row % 10}"
        spans = [(e.first_time_s, max(e.last_time_s - e.first_time_s, min_width)) for e in class_events]
        ax.broken_barh(spans, (row - 0.3, 0.6), facecolors=color, alpha=0.55, edgecolor=color, linewidth=0.8)
        best_times = [_best_time_s(e, video, detections_by_frame) for e in class_events]
        ax.plot(best_times, [row] * len(best_times), linestyle="none", marker="|", markersize=11, color="black")
    undecodable = {"facecolor": "0.8", "edgecolor": "0.5", "hatch": "//", "linewidth": 0}
    for first, last in bad_ranges:
        ax.axvspan(video.time_of(first), video.time_of(last + 1), **undecodable)
    if bad_ranges:
        ax.legend(handles=[Patch(**undecodable, label="undecodable frames")], loc="upper right", fontsize=8)

    ax.set_yticks(range(len(classes)), [f"{name} ({sum(e.class_id == cid for e in events)})" for cid, name in classes])
    ax.set_ylim(-0.6, max(len(classes), 1) - 0.4)
    ax.invert_yaxis()
    ax.set_xlim(0, end_s)
    ax.xaxis.set_major_locator(MultipleLocator(tick_step(end_s)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: clock(seconds, long=end_s >= 3600)))
    ax.set_xlabel("video time (h:mm:ss)" if end_s >= 3600 else "video time (mm:ss)")
    ax.grid(axis="x", alpha=0.3)
    if not events:
        ax.text(0.5, 0.5, "no events", transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=12)
    count = f"{len(events)} event" + ("" if len(events) == 1 else "s")
    ax.set_title(f"{Path(video.path).name}: {count} in {clock(video.duration_s, long=end_s >= 3600)}")
    fig.savefig(path)


def tick_step(end_s: float) -> float:
    """A round tick interval (1 s .. 1 h) giving at most about 12 ticks."""
    steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]
    return next((step for step in steps if end_s / step <= 12), end_s / 12)


def clock(seconds: float, long: bool = False) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if long else f"{minutes + 60 * hours:02d}:{secs:02d}"


def _best_time_s(event: Event, video: VideoInfo, detections_by_frame: dict[int, FrameDetections]) -> float:
    frame = detections_by_frame.get(event.best_frame)
    return frame.time_s if frame is not None else video.time_of(event.best_frame)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "object"


def _keyframe_name(event: Event, best_time_s: float) -> str:
    # Colons are not allowed in Windows file names.
    return f"event_{event.event_id:04d}_{_slug(event.class_name)}_{format_timecode(best_time_s).replace(':', '-')}.jpg"


def _event_box_index(event: Event, frame: FrameDetections | None) -> int | None:
    """Which of the keyframe's detections is the event's own box (the tracker's box may differ slightly)."""
    if frame is None:
        return None
    overlaps = [
        iou_matrix([box], [event.best_box_xyxy])[0, 0] if class_id == event.class_id else 0.0
        for box, class_id in zip(frame.boxes_xyxy, frame.class_ids)
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
    own_index = _event_box_index(event, frame)
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


def _write_keyframes(
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
        name = _keyframe_name(event, _best_time_s(event, video, detections_by_frame))
        image = keyframes[event.event_id]
        frame = detections_by_frame.get(event.best_frame)
        _write_jpeg(folder / KEYFRAMES_DIR / name, draw_keyframe(image, event, frame, class_names), quality)
        _write_jpeg(folder / CLEAN_KEYFRAMES_DIR / name, image, quality)
        names[event.event_id] = name
    return names


def _event_record(
    event: Event,
    video: VideoInfo,
    detections_by_frame: dict[int, FrameDetections],
    keyframe_name: str,
    teaching: TeachingValue,
) -> dict[str, Any]:
    best_time_s = _best_time_s(event, video, detections_by_frame)
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
        "best_time_s": round(best_time_s, 3),
        "best_timecode": format_timecode(best_time_s),
        "best_box_xyxy": [round(float(value), 1) for value in event.best_box_xyxy],
        "frames_seen": event.frames_seen,
        "review_priority": teaching.priority,
        "keyframe": f"{KEYFRAMES_DIR}/{keyframe_name}",
        "keyframe_clean": f"{CLEAN_KEYFRAMES_DIR}/{keyframe_name}",
        "track": [[frame, *(round(float(v), 1) for v in box), round(float(score), 4)] for frame, *box, score in event.track],
    }


def _event_csv_row(record: dict[str, Any]) -> list[Any]:
    x1, y1, x2, y2 = record["best_box_xyxy"]
    return [
        record["id"], record["class_id"], record["class"], record["track_id"],
        record["first_frame"], record["last_frame"], record["first_time_s"], record["first_timecode"],
        record["last_time_s"], record["last_timecode"], record["duration_s"], record["peak_confidence"],
        record["best_frame"], record["best_time_s"], record["best_timecode"],
        x1, y1, x2, y2, record["frames_seen"], record["review_priority"], record["keyframe"],
        *event_position_cells(record),
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
    if not out_dir.exists():
        return
    if not (out_dir.is_dir() and ((out_dir / EVENTS_JSON).is_file() or not any(out_dir.iterdir()))):
        raise CvtriageError(f"{out_dir}: exists and is not a cvtriage scan folder; choose another output folder")
