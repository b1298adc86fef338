"""Which frames a harvest labels, and how (cvtriage.review.harvest).

One decision labels every distinct view of its event: the frames the scan inferred while the
tracker followed the object (events.json's `track`), thinned so that near-identical views are
not repeated. A frame is labelled with every decided event seen in it. An object the scan saw
there that nobody decided on (a detection overlapping no decided event's box) must not become
background: with `undecided: mask` (the default) its box is painted over in the frame's median
colour, so the model sees neither object nor background there (the frame is left out when such
a box touches a decided one); with `undecided: skip` the whole frame is left out. Objects the
scan never proposed are in no detection list, so with `context` (the default) only a window
around each decided object is kept and the rest of the frame painted over too; and a view
showing only a sliver of a decided object at the frame's edge (`partial_view_area`) is painted
over rather than labelled.

Splits keep events whole: the decided events of each `split_seconds` stretch of video go to train
or val together (by a hash of the video and the stretch, so a re-harvest puts them where they
were), and a frame showing events of both sides is left out; with --split-by video (the default
from MIN_VIDEOS_TO_SPLIT_BY_VIDEO videos on) whole videos do.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from cvtriage.boxes import Box, boxes_overlap
from cvtriage.config import HarvestConfig
from cvtriage.decision_tags import NOT_OBJECT
from cvtriage.labels.yolo import YoloDataset
from cvtriage.review.decisions import Decision
from cvtriage.scan.results import ScanRun
from cvtriage.tracks import boxes_by_frame, partial_views, thin_track

# Undecided detections are painted over with this much of their size around them (a detector's
# box can be a little tight).
MASK_MARGIN = 0.1
# From this many videos on, `split_by: auto` keeps whole videos on one side.
MIN_VIDEOS_TO_SPLIT_BY_VIDEO = 5


@dataclass
class HarvestedFrame:
    """One frame of a scanned video a harvest writes: its labels, and what is painted over in it."""

    video: str
    frame: int
    image_name: str
    boxes: list[tuple[str, Box, int, str]] = field(default_factory=list)  # class, box (px), event id, verdict
    negatives: list[int] = field(default_factory=list)  # not-object events in view
    masked: list[Box] = field(default_factory=list)  # undecided detections and slivers, painted over (px)
    visible: list[Box] | None = None  # windows around decided objects; the rest is painted over (None: whole frame)
    events: set[int] = field(default_factory=set)  # the decided events this frame was harvested for
    split: str = "train"


def frames_of(run: ScanRun, decided: dict[int, Decision], settings: HarvestConfig, left_out: Counter) -> list[HarvestedFrame]:
    """The frames one video's decisions label, each with every decided event seen in it."""
    video = str(run.source)
    short_hash = run.video["identity"]["sha256"][:8]
    frame_size = (run.video["width"], run.video["height"])
    wanted: dict[int, set[int]] = {}
    partial: dict[int, set[int]] = {}  # event -> frames where only a sliver of it is in the picture
    for event_id in decided:
        event = run.events[event_id]
        partial[event_id] = partial_views(event, settings, frame_size)
        views = thin_track(event, settings, frame_size, partial[event_id])
        left_out["near-identical view"] += len(event.track) - len(views) - len(partial[event_id])
        left_out["object only partly in the picture"] += len(partial[event_id])
        for frame in views:
            wanted.setdefault(frame, set()).add(event_id)
    tracks = {event_id: boxes_by_frame(run.events[event_id]) for event_id in decided}
    frames = []
    for index, for_events in sorted(wanted.items()):
        frame = HarvestedFrame(video, index, f"{run.source.stem}-{short_hash}-f{index:06d}.jpg", events=for_events)
        in_view = {event_id: track[index] for event_id, track in tracks.items() if index in track}
        undecided = [
            box for _, box, _ in run.detections.get(index, [])
            if not any(boxes_overlap(box, decided_box, settings.decided_iou) for decided_box in in_view.values())
        ]  # fmt: skip
        touching = any(boxes_overlap(box, decided_box, 1e-6) for box in undecided for decided_box in in_view.values())
        if undecided and (settings.undecided == "skip" or touching):
            left_out["undecided object in view"] += 1
            continue
        frame.masked = [_grown(box, MASK_MARGIN) for box in undecided]
        for event_id, box in sorted(in_view.items()):
            decision = decided[event_id]
            if index in partial[event_id]:
                frame.masked.append(_grown(box, MASK_MARGIN))
            elif decision.verdict == NOT_OBJECT:
                frame.negatives.append(event_id)
            else:
                frame.boxes.append((decision.class_name, box, event_id, decision.verdict))
        if settings.context:
            frame.visible = [
                _grown(box, settings.context, square=True) for event_id, box in in_view.items() if index not in partial[event_id]
            ]  # fmt: skip
        frames.append(frame)
    return frames


def _grown(box: Box, margin: float, square: bool = False) -> Box:
    """The box grown by `margin` times its size on every side (`square`: times its longer side)."""
    x1, y1, x2, y2 = box
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    if square:
        dx = dy = max(dx, dy)
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) / 2
        x1, y1, x2, y2 = cx - half, cy - half, cx + half, cy + half
    return x1 - dx, y1 - dy, x2 + dx, y2 + dy


def not_in_target(frames: list[HarvestedFrame], target: YoloDataset, left_out: Counter) -> list[HarvestedFrame]:
    present = {image.image_path.name for image in target.images()}
    kept = [frame for frame in frames if frame.image_name not in present]
    left_out["already in the merge target"] += len(frames) - len(kept)
    return kept


def assign_splits(
    frames: list[HarvestedFrame], runs: dict[str, ScanRun], settings: HarvestConfig, left_out: Counter
) -> list[HarvestedFrame]:
    """Train or val by whole decided events (or whole videos), never by frame.

    Events go in blocks of `split_seconds` of video time (by their middle frame): objects of a
    flyover overlap in time, so a block keeps neighbours together and only frames near a block's
    edge show events of both sides. Each block (video) goes to val with probability
    `val_fraction`, by a hash of its video's identity and its number, so a re-harvest or a later
    merge puts it where it was. A frame showing events of both sides is left out: its pixels
    would teach train what val tests.
    """
    by_video = settings.split_by == "video" or (
        settings.split_by == "auto" and len({frame.video for frame in frames}) >= MIN_VIDEOS_TO_SPLIT_BY_VIDEO
    )

    def unit(video: str, event_id: int) -> tuple[str, int]:
        if by_video:
            return video, 0
        event, fps = runs[video].events[event_id], runs[video].video["fps"] or 1.0
        return video, int((event.first_frame + event.last_frame) / 2 // (settings.split_seconds * fps))

    def units_of(frame: HarvestedFrame) -> set[tuple[str, int]]:
        in_view = {event_id for _, _, event_id, _ in frame.boxes} | set(frame.negatives) | frame.events
        return {unit(frame.video, event_id) for event_id in in_view}

    def draw(block: tuple[str, int]) -> float:
        sha = runs[block[0]].video["identity"]["sha256"]
        return int(hashlib.sha256(f"{sha}:{block[1]}".encode()).hexdigest()[:12], 16) / 16**12

    units = sorted(set().union(*(units_of(frame) for frame in frames)))
    val = {block for block in units if draw(block) < settings.val_fraction}
    if settings.val_fraction > 0 and len(units) > 1 and not val:
        val = {min(units, key=draw)}  # a short harvest: still one block on the val side
    if val == set(units):
        val = set()  # train must not be empty
    kept = []
    for frame in frames:
        sides = {block in val for block in units_of(frame)}
        if len(sides) > 1:
            left_out["events of both splits in view"] += 1
            continue
        frame.split = "val" if sides.pop() else "train"
        kept.append(frame)
    return kept
