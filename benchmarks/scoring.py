"""The benchmarks' yardstick: which events of a reference (every-frame inference, or a synthetic
flyover's ground truth) a scan found, and the recall that makes. The tests that check a scan's
events against a known answer use it too (tests/conftest.py puts this folder on their path).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from cvtriage.boxes import iou_matrix
from cvtriage.decision_tags import CLASS_PREFIX, CONFIRMED, NOT_OBJECT
from cvtriage.tracks import shared_frames
from cvtriage.types import Event

# A found event is on a ground-truth object when its keyframe box overlaps the object's box in
# that frame this much.
TRUTH_MIN_IOU = 0.3
# A simulated reviewer takes an event for a truth object when its track follows the object this
# closely (median IoU over the frames both exist).
REVIEWER_IOU = 0.5


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
        return shared_frames(self, other)


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


def recall(matches: list) -> str:
    """The share of reference events matched (match_spans' answer), as "NN.N% (hits/all)"."""
    hits = sum(match is not None for match in matches)
    return f"{hits / len(matches):6.1%} ({hits}/{len(matches)})" if matches else "   n/a"


def span_seconds(span: EventSpan, fps: float) -> float:
    return (span.last_frame - span.first_frame + 1) / fps


def track_ious(event: Event, truth: dict) -> dict[int, float]:
    """Median IoU of the event's track with each truth object (a synthetic flyover's) it shares
    frames with, by object id."""
    medians = {}
    for record in truth["objects"]:
        boxes = {int(row[0]): row[1:5] for row in record["boxes"]}
        shared = [(point.box, boxes[point.frame]) for point in event.track if point.frame in boxes]
        if shared:
            medians[record["id"]] = statistics.median(float(iou_matrix([a], [b])[0, 0]) for a, b in shared)
    return medians


def followed_object(event: Event, truth: dict) -> tuple[float, dict | None]:
    """(median IoU, object) of the truth object the event's track follows best."""
    return best_followed(track_ious(event, truth), truth)


def best_followed(medians: dict[int, float], truth: dict) -> tuple[float, dict | None]:
    """followed_object from a track's `track_ious`."""
    best = max(medians, key=medians.get, default=None)
    if best is None or medians[best] <= 0:
        return 0.0, None
    return medians[best], next(record for record in truth["objects"] if record["id"] == best)


def reviewer_tag(event: Event, truth: dict) -> str:
    """What a reviewer who knows the truth tags this event: `confirmed` on an object of its class,
    `class:<truth class>` on an object of another, `not-object` on anything else."""
    iou, record = followed_object(event, truth)
    if iou < REVIEWER_IOU:
        return NOT_OBJECT
    return CONFIRMED if record["class_name"] == event.class_name else f"{CLASS_PREFIX}{record['class_name']}"
