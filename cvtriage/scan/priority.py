"""The review queue: scan events ordered by how much a reviewer's decision on each would teach
the model.

A decision labels every distinct frame of an event's track (cvtriage.review.harvest), so an
event is worth more the more the model is unsure of it and the more frames it labels:

    priority = yield x (uncertainty + rival + fragment + BASE) / (3 + BASE)

- uncertainty: the track's median confidence, 1 at the scan's threshold and 0 at 1.0: a
  decision on an object the model is sure of confirms what it knows. A proposal (`--propose`,
  class `object`) counts the other way, its certainty (1 - uncertainty): nothing about it is
  known yet, and a decision teaches a class only where there is an object, which its cues'
  strength says (on the cold-start benchmark's review flyovers, the queue's first 50 proposals
  held 3 objects by uncertainty, 17 by certainty);
- rival (0 or 1): another event of another class overlaps this one in some frame: the model
  flips between two classes on one object, and a decision settles which;
- fragment (0 or 1): an event of the same class starts within FRAGMENT_GAP_S of this one's end
  (or ends before its start) where the object would be by then: it flickers in and out of the
  model's sight;
- yield = 1 - exp(-views / YIELD_FRAMES), views being the track's distinct frames as harvest
  thins them (`thin_track`): a decision on a 2-frame blip teaches less than one on a long pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvtriage.boxes import boxes_overlap
from cvtriage.config import HarvestConfig, load_harvest_config
from cvtriage.decision_tags import PROPOSAL_CLASS
from cvtriage.tracks import overlapping_in_frames, thin_track
from cvtriage.types import Event

REVIEW_QUEUE_VIEW = "review-queue"
# Every event keeps some priority: one the model is sure of still adds labelled frames.
BASE = 0.25
# Distinct views at which a decision yields 1 - 1/e of what a long track gives.
YIELD_FRAMES = 4.0
# Boxes overlapping this much in a shared frame are on the same object (a class flip).
RIVAL_IOU = 0.3
# A same-class event starting this many seconds after another ended, where the first one's box
# would have moved to, is the same object lost and found again.
FRAGMENT_GAP_S = 2.0


@dataclass(frozen=True)
class TeachingValue:
    priority: float
    uncertainty: float
    rival: bool
    fragment: bool
    views: int  # distinct frames a decision would label


def teaching_values(
    events: list[Event], conf: float, fps: float, frame_size: tuple[int, int], views: HarvestConfig | None = None
) -> dict[int, TeachingValue]:
    """Each event's teaching value (by event id), from the scan's own tracks. `views` holds the
    thinning settings a harvest would use (config/harvest.yaml when None)."""
    views = views or load_harvest_config()
    values = {}
    for event in events:
        confidences = np.array([point.confidence for point in event.track] or [event.peak_confidence])
        uncertainty = float(np.clip(1 - (np.median(confidences) - conf) / (1 - conf), 0, 1))
        rival = any(
            other.class_id != event.class_id and _overlap_in_time(event, other) and overlapping_in_frames(event, other, RIVAL_IOU)
            for other in events
        )
        fragment = any(other.class_id == event.class_id and _continues(event, other, fps) for other in events if other is not event)
        distinct = len(thin_track(event, views, frame_size)) if event.track else 1
        doubt = 1 - uncertainty if event.class_name == PROPOSAL_CLASS else uncertainty
        worth = (doubt + rival + fragment + BASE) / (3 + BASE)
        values[event.event_id] = TeachingValue(
            round((1 - math.exp(-distinct / YIELD_FRAMES)) * worth, 4), round(uncertainty, 4), rival, fragment, distinct
        )
    return values


def _overlap_in_time(a: Event, b: Event) -> bool:
    return a.first_frame <= b.last_frame and b.first_frame <= a.last_frame


def _continues(a: Event, b: Event, fps: float) -> bool:
    """Whether one of the two events picks up where the other was lost: soon after, where the first
    one's box would be by then, moving on as it moved along its track."""
    first, second = (a, b) if a.last_frame <= b.first_frame else (b, a)
    gap = second.first_frame - first.last_frame
    if second.first_frame < first.last_frame or gap > FRAGMENT_GAP_S * fps or not first.track or not second.track:
        return False
    start, end = first.track[0], first.track[-1]
    velocity = (np.array(end.box) - np.array(start.box)) / max(end.frame - start.frame, 1)
    expected = np.array(end.box) + velocity * gap
    return boxes_overlap(tuple(expected), second.track[0].box, 1e-6)
