"""Events: tracked objects across frames, one reviewable event per tracked object.

Two jobs, both pure functions of the per-frame detections (so a resumed scan that replays its
detection log gets the same events):
- coarse-to-fine: where two consecutive sampled frames disagree (an object appeared or left
  between them, not merely scored a little under the threshold), probe the frames in between
  and bisect down to the exact frame of the change;
- tracking: Ultralytics' ByteTrack, fed the inferred frames in frame order, links detections into
  tracks; each confirmed track becomes an Event.
And one yardstick, `match_spans`: which events of a reference (every-frame inference, or a
synthetic flyover's ground truth) a scan found, for the benchmark and the end-to-end tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from cvtriage.config import ScanConfig
from cvtriage.dataset import iou_matrix
from cvtriage.detect import FrameDetections, box_centres, centred_in

# Probes inside a gap are this many frames apart; the frame reader keeps that many decoded
# frames so the bisection between two probes needs no second decode.
MAX_PROBE_SPACING = 8
# Between two probes (at most MAX_PROBE_SPACING frames apart) an object moves less than this many
# times its size: what refinement crops allow for (see _crop_around_change).
MOTION_SIDES = 2.0
# 95% quantile of chi-square with 2 degrees of freedom: ByteTrack's gate for a box centre.
CHI2_95_2DOF = 5.9915


@dataclass
class Event:
    """One tracked object from the frame it first appears to the frame it was last seen."""

    event_id: int  # 1-based, in order of first appearance
    track_id: int
    class_id: int
    class_name: str
    first_frame: int
    last_frame: int
    first_time_s: float
    last_time_s: float
    peak_confidence: float
    best_frame: int  # the keyframe: the frame of peak confidence
    best_box_xyxy: tuple[float, float, float, float]
    frames_seen: int  # inferred frames in which the tracker matched the object
    # The object's box in each of those frames inferred whole (not refinement crops): (frame, x1,
    # y1, x2, y2, confidence), in frame order. A reviewer's decision on the event labels all of
    # them (cvtriage.teach.harvest).
    track: list[tuple[int, float, float, float, float, float]] = field(default_factory=list)


# --- coarse-to-fine -----------------------------------------------------------------------------


def class_counts(frame: FrameDetections, min_score: float = 0.0, region: tuple[int, int, int, int] | None = None) -> Counter:
    """Objects per class scored at least `min_score` (with `region`: centred inside it)."""
    keep = frame.scores >= min_score
    if region is not None:
        keep &= centred_in(frame.boxes_xyxy, region)
    return Counter(frame.class_ids[keep].tolist())


def changed_classes(a: FrameDetections, b: FrameDetections, conf: float) -> list[int]:
    """Classes of which one frame shows more objects at `conf` than the other shows at all.

    Frames hold detections down to detect.WEAK_CONF_SHARE x conf: an object whose score dips a
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


# --- tracking ------------------------------------------------------------------------------------


def _sparse_byte_tracker_class():
    """ByteTrack for frames that are not evenly spaced (imported lazily: Ultralytics is slow to import)."""
    from ultralytics.trackers import BYTETracker
    from ultralytics.trackers.basetrack import TrackState
    from ultralytics.trackers.utils import matching
    from ultralytics.trackers.utils.kalman_filter import KalmanFilterXYAH

    class SparseByteTracker(BYTETracker):
        """Ultralytics' BYTETracker, adapted to sampled frames.

        - `frame_id` is the video frame number, so the lost-track buffer counts video frames
          whatever the sampling;
        - the Kalman filter predicts one step per video frame elapsed (not one per update), so
          its constant-velocity motion and its growing uncertainty match real time, and its
          velocity uncertainty comes from the expected object speed;
        - a detection also matches a track when its centre lies inside the track's Kalman gate
          (squared Mahalanobis distance), not only when the boxes overlap: between two samples
          half a second apart a small object moves further than its own size;
        - matching is class-aware, so an event has one class.
        """

        def __init__(self, args):
            super().__init__(args)
            self.steps = 1

        def get_kalmanfilter(self):
            kalman_filter = KalmanFilterXYAH()
            # Velocity uncertainty (per frame, relative to box height) from the expected speed:
            # ByteTrack's default suits every-frame tracking of pedestrians, not sampled flyovers.
            kalman_filter._std_weight_velocity = self.args.velocity_weight
            return kalman_filter

        def advance_to(self, frame_index: int) -> None:
            # update() adds 1 to frame_id: frame index i is ByteTrack frame i + 1 (frame 0 is its frame 1).
            self.steps = max(1, frame_index + 1 - self.frame_id)
            self.frame_id = frame_index

        def multi_predict(self, tracks):
            """STrack.multi_predict with this tracker's filter, one step per video frame elapsed."""
            if not tracks:
                return
            means = np.asarray([track.mean for track in tracks])
            covariances = np.asarray([track.covariance for track in tracks])
            means[[track.state != TrackState.Tracked for track in tracks], 7] = 0  # as STrack does
            for _ in range(self.steps):
                means, covariances = self.kalman_filter.multi_predict(means, covariances)
            for track, mean, covariance in zip(tracks, means, covariances):
                track.mean, track.covariance = mean, covariance

        def _pre_first_associate(self, strack_pool, unconfirmed, img, results_high):
            # Unconfirmed (one-frame) tracks are not in the pool ByteTrack predicts; move them too.
            self.multi_predict(unconfirmed)

        def update_within(self, results, region: tuple[int, int, int, int] | None):
            """update() for a frame of which only `region` was inferred (a refinement crop): the
            tracks centred outside it were not looked for there, so they are only moved on, as
            ByteTrack predicts every track, neither lost nor dropped for want of a match."""
            if region is None:
                return self.update(results)
            pools = (self.tracked_stracks, self.lost_stracks)
            held = [t for pool in pools for t in pool if not centred_in(t.xyxy[None], region)[0]]
            self.tracked_stracks, self.lost_stracks = ([t for t in pool if t not in held] for pool in pools)
            self.update(results)
            self.multi_predict(held)
            self.tracked_stracks += [t for t in held if t.state == TrackState.Tracked]
            self.lost_stracks += [t for t in held if t.state == TrackState.Lost]

        def get_dists(self, tracks, detections):
            overlap = matching.iou_distance(tracks, detections)
            if self.args.fuse_score:
                overlap = matching.fuse_score(overlap, detections)
            if not tracks or not detections:
                return overlap
            measured = np.asarray([det.tlwh_to_xyah(det.tlwh) for det in detections])
            gate = np.stack(
                [self.kalman_filter.gating_distance(t.mean, t.covariance, measured, only_position=True) for t in tracks]
            )
            dists = np.minimum(overlap, gate / CHI2_95_2DOF)
            same_class = np.array([[t.cls == d.cls for d in detections] for t in tracks])
            return np.where(same_class, dists, 1.0)

    return SparseByteTracker


@dataclass
class _TrackRecord:
    class_id: int
    first_frame: int
    last_frame: int
    first_time_s: float
    last_time_s: float
    frames_seen: int
    peak_confidence: float
    best_frame: int
    best_box: tuple[float, float, float, float]
    boxes: list[tuple[int, float, float, float, float, float]]
    confirmed: bool = False
    best_whole: bool = True  # the best frame was inferred whole


class EventTracker:
    """Feeds inferred frames, in frame order, to ByteTrack and collects one record per track.

    Event times are the frames' own times (the container's timestamps); `fps`, the average rate,
    only turns the settings given in seconds into frames for ByteTrack.
    """

    def __init__(self, fps: float, class_names: dict[int, str], settings: ScanConfig):
        from ultralytics.utils import IterableSimpleNamespace

        self.class_names = class_names
        self.min_event_frames = settings.min_event_frames
        self.conf = settings.conf
        args = IterableSimpleNamespace(
            # Every detection already passed the scan's confidence threshold: all are "high" for ByteTrack.
            track_high_thresh=settings.conf,
            track_low_thresh=settings.conf,
            new_track_thresh=settings.conf,
            track_buffer=max(1, round(settings.track_gap_seconds * fps)),
            match_thresh=0.8,
            fuse_score=True,
            # Two standard deviations of the initial velocity = `track_speed` heights per second.
            velocity_weight=settings.track_speed / fps / 20,
        )
        self.tracker = _sparse_byte_tracker_class()(args)
        self.tracks: dict[int, _TrackRecord] = {}
        self.last_frame = -1

    def add(self, frame: FrameDetections) -> None:
        from ultralytics.engine.results import Boxes

        if frame.frame_index <= self.last_frame:
            raise ValueError(f"frames must arrive in order: {frame.frame_index} after {self.last_frame}")
        self.last_frame = frame.frame_index
        self.tracker.advance_to(frame.frame_index)
        frame = frame.at_least(self.conf)
        data = np.concatenate(
            [frame.boxes_xyxy, frame.scores[:, None], frame.class_ids[:, None].astype(np.float32)], axis=1
        )
        self.tracker.update_within(Boxes(data, orig_shape=(1, 1)), frame.region)
        for track in self.tracker.tracked_stracks:
            if track.frame_id != self.tracker.frame_id:
                continue  # not matched in this frame
            self._record(track.track_id, bool(track.is_activated), frame, int(track.idx))

    def _record(self, track_id: int, confirmed: bool, frame: FrameDetections, index: int) -> None:
        # A crop (refinement) counts for the event's first and last frame, but its box is not in
        # the track, nor its frame the keyframe unless no whole frame saw the object: the frame's
        # other objects were not looked for, so it must not be labelled or shown as a whole.
        score = float(frame.scores[index])
        box = tuple(float(v) for v in frame.boxes_xyxy[index])
        whole = frame.region is None
        boxes = [(frame.frame_index, *box, score)] if whole else []
        record = self.tracks.get(track_id)
        if record is None:
            self.tracks[track_id] = _TrackRecord(
                int(frame.class_ids[index]), frame.frame_index, frame.frame_index, frame.time_s, frame.time_s, 1,
                score, frame.frame_index, box, boxes, confirmed, whole,
            )  # fmt: skip
            return
        record.boxes += boxes
        record.last_frame, record.last_time_s = frame.frame_index, frame.time_s
        record.frames_seen += 1
        record.confirmed |= confirmed
        if (whole, score) > (record.best_whole, record.peak_confidence):
            record.peak_confidence, record.best_frame, record.best_box, record.best_whole = score, frame.frame_index, box, whole

    def _kept(self) -> list[tuple[int, _TrackRecord]]:
        return [
            (track_id, record)
            for track_id, record in self.tracks.items()
            if record.confirmed and record.frames_seen >= self.min_event_frames
        ]

    @property
    def event_count(self) -> int:
        return len(self._kept())

    def events(self) -> list[Event]:
        kept = sorted(self._kept(), key=lambda item: (item[1].first_frame, item[0]))
        return [
            Event(
                event_id=number,
                track_id=track_id,
                class_id=record.class_id,
                class_name=self.class_names.get(record.class_id, str(record.class_id)),
                first_frame=record.first_frame,
                last_frame=record.last_frame,
                first_time_s=record.first_time_s,
                last_time_s=record.last_time_s,
                peak_confidence=record.peak_confidence,
                best_frame=record.best_frame,
                best_box_xyxy=record.best_box,
                frames_seen=record.frames_seen,
                track=list(record.boxes),
            )
            for number, (track_id, record) in enumerate(kept, start=1)
        ]


def track_events(
    frames: Iterable[FrameDetections], fps: float, class_names: dict[int, str], settings: ScanConfig
) -> list[Event]:
    """Events from per-frame detections (any order; tracked in frame order)."""
    tracker = EventTracker(fps, class_names, settings)
    for frame in sorted(frames, key=lambda f: f.frame_index):
        tracker.add(frame)
    return tracker.events()


# --- matching against a reference ------------------------------------------------------------------


@dataclass(frozen=True)
class EventSpan:
    """An event reduced to what matching compares: a class over inclusive frames, and known boxes
    by frame (a found event: its keyframe's box; ground truth: every frame's box)."""

    class_name: str
    first_frame: int
    last_frame: int
    boxes: dict[int, tuple[float, float, float, float]]

    @classmethod
    def of_event(cls, event: Event) -> "EventSpan":
        return cls(event.class_name, event.first_frame, event.last_frame, {event.best_frame: event.best_box_xyxy})

    @classmethod
    def of_record(cls, record: dict) -> "EventSpan":
        """An event of a scan's events.json."""
        box = tuple(record["best_box_xyxy"])
        return cls(record["class"], record["first_frame"], record["last_frame"], {record["best_frame"]: box})

    @classmethod
    def of_truth(cls, record: dict) -> "EventSpan":
        """An object of a synthetic flyover's ground truth (cvtriage.synth.video)."""
        boxes = {int(row[0]): tuple(row[1:5]) for row in record["boxes"]}
        return cls(record["class_name"], record["first_frame"], record["last_frame"], boxes)

    def overlap(self, other: "EventSpan") -> int:
        """Frames the two spans share."""
        return max(0, min(self.last_frame, other.last_frame) - max(self.first_frame, other.first_frame) + 1)


def match_spans(
    reference: list[EventSpan], found: list[EventSpan], min_iou: float = 0.0, one_to_one: bool = True
) -> list[EventSpan | None]:
    """For each reference span (in order), the found span matched to it, or None.

    A found span matches when it has the same class and shares frames with the reference span;
    with `min_iou` > 0 its keyframe box must also overlap the reference's box in that frame by at
    least `min_iou` (so a hit elsewhere in the frame does not count). A keyframe just outside the
    reference span (an object entering, not yet counted as in view) is compared with the
    reference's nearest frame. Greedy, earliest reference first, each taking the unused candidate
    it shares most frames with. With `one_to_one` False a found span may answer several reference
    spans (a reference that splits one flickering object into fragments).
    """

    def box_fits(ref: EventSpan, frame: int, box: tuple[float, ...]) -> bool:
        nearest = min(max(frame, ref.first_frame), ref.last_frame)
        return nearest in ref.boxes and iou_matrix([box], [ref.boxes[nearest]])[0, 0] >= min_iou

    def fits(ref: EventSpan, candidate: EventSpan) -> bool:
        if candidate.class_name != ref.class_name or not ref.overlap(candidate):
            return False
        return min_iou <= 0 or any(box_fits(ref, frame, box) for frame, box in candidate.boxes.items())

    unused = list(found)
    matches: dict[int, EventSpan | None] = {}
    for number in sorted(range(len(reference)), key=lambda n: reference[n].first_frame):
        ref = reference[number]
        candidates = [candidate for candidate in unused if fits(ref, candidate)]
        best = max(candidates, key=ref.overlap, default=None)
        if best is not None and one_to_one:
            unused.remove(best)
        matches[number] = best
    return [matches[number] for number in range(len(reference))]
