"""Events: tracked objects across frames, one reviewable event per tracked object."""

from __future__ import annotations

from dataclasses import dataclass


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
