"""Core types every workflow shares: a frame's detections, a video, a tracked event and its track.

Plain data and their arithmetic only: no model, no I/O, no FiftyOne.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from cvtriage.boxes import Box


@dataclass
class FrameDetections:
    """The model's boxes on one frame, in the frame's own pixel coordinates."""

    frame_index: int
    time_s: float
    boxes_xyxy: np.ndarray  # (N, 4) float32, pixels
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64
    # None: the whole frame was inferred. A crop (refinement, see Detector.crop_for): (x0, y0, x1,
    # y1), the area whose objects these detections cover (those with their centre inside it).
    region: tuple[int, int, int, int] | None = None
    # The detector's own features at each box (N, D) float16 (cvtriage.scan.features); None where
    # the model gives none (an export) or for refinement crops.
    features: np.ndarray | None = None

    @classmethod
    def empty(cls, frame_index: int, time_s: float) -> "FrameDetections":
        return cls(frame_index, time_s, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)

    def at_least(self, min_score: float) -> "FrameDetections":
        """The detections scored at least `min_score`."""
        keep = self.scores >= min_score
        if keep.all():
            return self
        features = self.features[keep] if self.features is not None else None
        return FrameDetections(
            self.frame_index, self.time_s, self.boxes_xyxy[keep], self.scores[keep], self.class_ids[keep], self.region, features
        )


@dataclass(frozen=True, eq=False)
class FrameTimes:
    """A video's presentation timestamps (in its stream's time base) in the order decoding yields
    its frames: frame index -> timestamp and timestamp -> frame index, both exact."""

    pts: np.ndarray  # int64, strictly increasing
    time_base: Fraction

    def __len__(self) -> int:
        return len(self.pts)

    def seconds(self, index: int) -> float:
        """Seconds from the first frame (a stream may start at any timestamp; players show 0 there)."""
        return float((int(self.pts[index]) - int(self.pts[0])) * self.time_base)

    def index_of(self, pts: int | None) -> int | None:
        """The index of the frame with this timestamp; None when no frame has it."""
        if pts is None:
            return None
        position = int(np.searchsorted(self.pts, pts))
        return position if position < len(self.pts) and self.pts[position] == pts else None


@dataclass(frozen=True)
class VideoInfo:
    """What is known of a source before and after decoding it."""

    path: Path
    kind: str  # "video" or "images"
    width: int
    height: int
    fps: float  # average frames per second of video time (images: 1.0 unless configured)
    frame_count: int  # frames actually decodable (after a scan), or the container's claim before
    duration_s: float
    # None: times at the rate `fps` (image folders, and streams whose container keeps no timestamps).
    frame_times: FrameTimes | None = field(default=None, compare=False, repr=False)

    def time_of(self, frame_index: int) -> float:
        """Seconds from the first frame to this one; past the last timestamped frame, at `fps`."""
        times = self.frame_times
        if times is None:
            return frame_index / self.fps
        last = len(times) - 1
        if frame_index <= last:
            return times.seconds(frame_index)
        return times.seconds(last) + (frame_index - last) / self.fps

    def with_frame_count(self, frame_count: int) -> "VideoInfo":
        """The same source, known to hold `frame_count` frames (learnt by decoding it)."""
        return dataclasses.replace(self, frame_count=frame_count, duration_s=self.time_of(frame_count))


@dataclass(frozen=True)
class BadRange:
    """Frames the source claims but that could not be decoded (inclusive range)."""

    first: int
    last: int
    reason: str

    def __str__(self) -> str:
        span = f"frame {self.first}" if self.first == self.last else f"frames {self.first}-{self.last}"
        return f"{span}: {self.reason}"


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """Where a tracked object was in one frame inferred whole: its box (x1 y1 x2 y2, frame pixels)
    and the model's confidence in it."""

    frame: int
    box: Box
    confidence: float


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
    # The object in each of those frames inferred whole (not refinement crops), in frame order.
    # A reviewer's decision on the event labels all of them (cvtriage.review.harvest).
    track: list[TrackPoint] = field(default_factory=list)
    # What proposed a proposal scan's event (cvtriage.scan.proposals: detector, motion, contrast);
    # empty for a model's detections.
    cues: tuple[str, ...] = ()
