"""Events: tracked objects across frames, one reviewable event per tracked object.

Ultralytics' ByteTrack, fed the inferred frames in frame order, links detections into tracks;
each confirmed track becomes an Event. A pure function of the per-frame detections, so a resumed
scan that replays its detection log gets the same events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cvtriage.boxes import centred_in
from cvtriage.config import ScanConfig
from cvtriage.types import Event, FrameDetections, TrackPoint

# 95% quantile of chi-square with 2 degrees of freedom: ByteTrack's gate for a box centre.
CHI2_95_2DOF = 5.9915


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
        - matching is class-aware, so an event has one class (by name: a proposal scan gives
          the class `object` several ids, cvtriage.scan.proposals).
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
            names = self.args.class_names  # by name: ids of one name are one class (a proposal's cues)
            same_class = np.array([[names.get(int(t.cls)) == names.get(int(d.cls)) for d in detections] for t in tracks])
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
    points: list[TrackPoint]
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
            class_names=class_names,
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
        points = [TrackPoint(frame.frame_index, box, score)] if whole else []
        record = self.tracks.get(track_id)
        if record is None:
            self.tracks[track_id] = _TrackRecord(
                int(frame.class_ids[index]), frame.frame_index, frame.frame_index, frame.time_s, frame.time_s, 1,
                score, frame.frame_index, box, points, confirmed, whole,
            )  # fmt: skip
            return
        record.points += points
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
                track=list(record.points),
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
