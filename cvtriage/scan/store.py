"""A scan's results in FiftyOne: one sample per event, its saved views, and the guards that keep a
scan from writing over someone else's samples or replacing reviewers' decisions.

The FiftyOne half of a scan, for a results folder already written (cvtriage.scan.outputs): the
pipeline calls it after writing, and a batch's driver for what its workers wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2

from cvtriage.config import ScanConfig
from cvtriage.decision_tags import EVENT_PATCH_FIELD, decided_by_another_sighting, undecided_filter
from cvtriage.errors import CvtriageError
from cvtriage.scan.keyframes import event_box_index, keyframe_name
from cvtriage.scan.looks import index_looks, look_embedding
from cvtriage.scan.priority import REVIEW_QUEUE_VIEW, TeachingValue
from cvtriage.scan.results import CLEAN_KEYFRAMES_DIR, EVENTS_JSON
from cvtriage.scan.similar import FEATURES_FIELD, index_features, read_event_features
from cvtriage.scan.timeline import best_time_s, format_timecode
from cvtriage.telemetry.placement import sample_locations
from cvtriage.types import Event, FrameDetections, VideoInfo

if TYPE_CHECKING:
    import fiftyone as fo

FLAGGED_TAG = "flagged"
FLAGGED_VIEW = "flagged-events"
EVENT_BOX_TAG = "event"  # label tag of the box an event sample is about (the others are context)
# The event's own box with some of the ground around it: the patch the review queue shows. A
# reviewer judges an object by its outline against its surroundings; the whole keyframe shows it
# at a few screen pixels among other boxes.
EVENT_PATCH_MARGIN = 0.2  # of the box's width and height, on each side (clipped to the frame)
LOOKS_QUEUE_VIEW = "review-by-look"
# What a queue's patches carry from their event sample: what the App's sidebar and sort need.
PATCH_FIELDS = ["event_id", "class_name", "source_video", "review_priority", "look", "timecode", "peak_confidence"]


def store_results_in_fiftyone(
    dataset_name: str,
    out_dir: Path,
    video: VideoInfo,
    events: list[Event],
    detections: list[FrameDetections],
    class_names: dict[int, str],
    teaching: dict[int, TeachingValue],
) -> "fo.Dataset":
    """A results folder's events (written by cvtriage.scan.outputs) as samples of `dataset_name`,
    their keyframes the folder's clean ones. One writer per dataset at a time."""
    from cvtriage.database import dataset_write_lock

    out_dir = Path(out_dir).resolve()
    detections_by_frame = {frame.frame_index: frame for frame in detections}
    clean_paths = {
        event.event_id: out_dir / CLEAN_KEYFRAMES_DIR / keyframe_name(event, best_time_s(event, video, detections_by_frame))
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

    features = read_event_features(results_folder)  # the detector's, per event (cvtriage.scan.similar)
    samples = []
    for event in events:
        filepath = Path(keyframe_paths[event.event_id]).resolve()
        keyframe = cv2.imread(str(filepath))
        frame = detections_by_frame.get(event.best_frame)
        time_s = best_time_s(event, video, detections_by_frame)
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
                **{EVENT_PATCH_FIELD: event_patch(event, video)},
                event_id=event.event_id,
                class_name=event.class_name,
                timestamp=time_s,
                timecode=format_timecode(time_s),
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
                **{FEATURES_FIELD: features.get(event.event_id)},
                **({"cues": list(event.cues)} if event.cues else {}),  # a proposal's (cvtriage.scan.proposals)
            )
        )
    # `location`: the event's object on the ground (the drone's position where it has none), as the
    # results folder placed it (cvtriage.telemetry.placement); the drone's kept beside it.
    located = sample_locations(Path(results_folder) / EVENTS_JSON)
    for event, sample in zip(events, samples):
        where = located.get(event.event_id)
        if where is not None:
            sample["location"] = fo.GeoLocation(point=where["location"])  # [longitude, latitude]
            if where["drone_location"] is not None:
                sample["drone_location"] = fo.GeoLocation(point=where["drone_location"])
            sample["ground_uncertainty_m"] = where["ground_uncertainty_m"]
            sample["object_id"] = where["object_id"]
    # Add the new samples before deleting the old ones: a failure leaves the previous scan visible.
    previous_ids = dataset.match(F("source_video") == source_video).values("id")
    if samples:
        dataset.add_samples(samples, progress=False)
    dataset.delete_samples(previous_ids)
    index_looks(dataset)
    index_features(dataset)
    dataset.save_view(
        FLAGGED_VIEW,
        dataset.match_tags(FLAGGED_TAG).sort_by("peak_confidence", reverse=True),
        description="Scan events, highest peak confidence first",
        overwrite=True,
    )
    save_review_queues(dataset)
    return dataset


def save_review_queues(dataset: "fo.Dataset") -> None:
    """The saved views a reviewer works through: one patch per undecided event (its own box with
    EVENT_PATCH_MARGIN of context), by teaching value, and the same grouped by look; an event whose
    object's other sightings are decided is not asked again. Saved again after decisions: a saved
    patches view keeps the patches it was saved with."""
    from fiftyone import ViewField as F

    events = dataset.match_tags(FLAGGED_TAG)
    undecided = events.match(undecided_filter()).exclude(decided_by_another_sighting(events))
    schema = dataset.get_field_schema()
    fields = [name for name in PATCH_FIELDS if name in schema]
    if dataset.media_type and EVENT_PATCH_FIELD in schema:
        patches = undecided.match(F(EVENT_PATCH_FIELD) != None).to_patches(EVENT_PATCH_FIELD, other_fields=fields)  # noqa: E711
    else:
        # FiftyOne makes patches of images only: a dataset with no sample yet (a scan that found
        # nothing), or only events stored by cvtriage 0.1, gets its queues as plain views.
        patches = undecided
    dataset.save_view(
        REVIEW_QUEUE_VIEW,
        patches.sort_by("review_priority", reverse=True),
        description="Each undecided event's object with some context, the ones a decision teaches the model most first",
        overwrite=True,
    )
    by_look = [("look", 1), ("review_priority", -1)] if "look" in fields else [("review_priority", -1)]
    dataset.save_view(
        LOOKS_QUEUE_VIEW,
        patches.sort_by(by_look),
        description="The undecided events' patches, alike ones together (look 1 the largest group)",
        overwrite=True,
    )


def review_queue(dataset: "fo.Dataset"):
    """The review queue as the decisions stand now: a saved patches view keeps the patches it was
    saved with (tags put on since in the App's tag menu included) until it is made again."""
    queue = dataset.load_saved_view(REVIEW_QUEUE_VIEW)
    queue.reload()
    return queue


def event_patch(event: Event, video: VideoInfo) -> "fo.Detections":
    """The patch the review queue shows of an event: its box grown by EVENT_PATCH_MARGIN of its size
    on each side, clipped to the frame, as one relative [x, y, w, h] Detection carrying `event_id`."""
    import fiftyone as fo

    x1, y1, x2, y2 = (float(value) for value in event.best_box_xyxy)
    pad_x, pad_y = EVENT_PATCH_MARGIN * (x2 - x1), EVENT_PATCH_MARGIN * (y2 - y1)
    left, top = max(0.0, x1 - pad_x), max(0.0, y1 - pad_y)
    right, bottom = min(float(video.width), x2 + pad_x), min(float(video.height), y2 + pad_y)
    box = [left / video.width, top / video.height, (right - left) / video.width, (bottom - top) / video.height]
    patch = fo.Detection(label=event.class_name, bounding_box=box, confidence=float(event.peak_confidence), event_id=event.event_id)
    return fo.Detections(detections=[patch])


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


def check_decisions_kept(settings: ScanConfig, sources: list[Path]) -> None:
    """Refuse, before any work, a scan that would replace event samples reviewers have decided on
    (a new scan of a video replaces its samples, tags and all) unless `replace_decisions` is set."""
    if settings.dataset is None or settings.replace_decisions:
        return  # before importing FiftyOne: that alone takes seconds, a scan's fixed cost
    import fiftyone as fo

    if not fo.dataset_exists(settings.dataset):
        return
    dataset = fo.load_dataset(settings.dataset)
    if "source_video" not in dataset.get_field_schema():
        return
    videos = [str(Path(source).resolve()) for source in sources]
    decided = dataset.match({"source_video": {"$in": videos}}).match(~undecided_filter())
    if len(decided):
        names = ", ".join(sorted({Path(video).name for video in decided.values("source_video")}))
        raise CvtriageError(
            f"{settings.dataset}: {len(decided)} events of {names} carry review decisions that a new scan would "
            "replace: harvest them first (cvtriage harvest), scan into another --dataset, or pass --replace-decisions"
        )


def _fiftyone_detections(
    event: Event, frame: FrameDetections | None, video: VideoInfo, class_names: dict[int, str]
) -> "fo.Detections":
    """The keyframe's detections in FiftyOne's relative [x, y, w, h]; the event's own box carries `event_id`."""
    import fiftyone as fo

    def relative(box) -> list[float]:
        x1, y1, x2, y2 = (float(value) for value in box)
        return [x1 / video.width, y1 / video.height, (x2 - x1) / video.width, (y2 - y1) / video.height]

    own_index = event_box_index(event, frame)
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
