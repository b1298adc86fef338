"""The review queue's teaching value and the grouping of events by look."""

from __future__ import annotations

import dataclasses

import numpy as np

from cvtriage.scan.looks import group_looks, look_embedding
from cvtriage.scan.priority import teaching_values
from cvtriage.types import Event, TrackPoint

FPS = 30.0
FRAME = (640, 360)


def event(event_id: int, class_id: int, frames: range, x: float, confidence: float, speed: float = 5.0) -> Event:
    track = [TrackPoint(f, (x + speed * (f - frames[0]), 100.0, x + speed * (f - frames[0]) + 30, 130.0), confidence) for f in frames]
    return Event(event_id, event_id, class_id, f"class {class_id}", frames[0], frames[-1], frames[0] / FPS,
                 frames[-1] / FPS, confidence, frames[0], track[0].box, len(track), track)  # fmt: skip


def test_unsure_long_conflicting_and_broken_tracks_teach_more():
    sure = event(1, 0, range(0, 120, 2), 10, 0.95)
    unsure = event(2, 0, range(0, 120, 2), 300, 0.35)
    blip = event(3, 0, range(200, 204), 300, 0.35)
    rival_a = event(4, 0, range(300, 360, 2), 10, 0.6)
    rival_b = event(5, 1, range(300, 360, 2), 12, 0.6)  # the same object read as another class
    first_half = event(6, 0, range(400, 440, 2), 10, 0.6)
    second_half = event(7, 0, range(460, 500, 2), 10 + 5 * 60, 0.6)  # picked up again 0.7 s later, there
    values = teaching_values([sure, unsure, blip, rival_a, rival_b, first_half, second_half], conf=0.3, fps=FPS,
                             frame_size=FRAME)  # fmt: skip

    assert values[2].priority > values[1].priority  # unsure beats sure
    assert values[2].priority > values[3].priority  # a long pass beats a blip
    assert values[2].views > values[3].views == 1
    assert values[4].rival and values[5].rival and not values[1].rival
    assert values[6].fragment and values[7].fragment and not values[4].fragment
    alone = teaching_values([rival_a], conf=0.3, fps=FPS, frame_size=FRAME)[4]
    assert values[4].priority > alone.priority  # a class flip is worth settling
    assert all(0 <= value.priority <= 1 and 0 <= value.uncertainty <= 1 for value in values.values())


def test_a_proposal_its_cues_are_sure_of_comes_before_one_they_barely_see():
    """A proposal (class `object`, no class known yet) teaches a class only where there is an
    object: its cues' strength, not the model's doubt, puts it first. With `uncertainty` kept
    for proposals as for model classes, the faint one would come first and this fails."""
    strong, faint = (dataclasses.replace(event(i, 0, range(0, 60, 2), 10 + 300 * (i - 1), c), class_name="object")
                     for i, c in ((1, 0.9), (2, 0.35)))  # fmt: skip
    values = teaching_values([strong, faint], conf=0.3, fps=FPS, frame_size=FRAME)
    assert values[1].priority > values[2].priority
    assert values[2].uncertainty > values[1].uncertainty  # what the model's doubt alone would rank by


def test_events_that_look_alike_share_a_look():
    import cv2

    rng = np.random.default_rng(0)

    def ground() -> np.ndarray:
        return np.clip(rng.normal(120, 6, (120, 120, 3)), 0, 255).astype(np.uint8)

    embeddings = []
    for _ in range(4):  # red disks
        image = ground()
        cv2.circle(image, (60, 60), int(rng.integers(14, 20)), (30, 30, 200), -1)
        embeddings.append(look_embedding(image, (40.0, 40.0, 80.0, 80.0)))
    for _ in range(3):  # dark bars
        image = ground()
        cv2.rectangle(image, (35, 55), (85, 65 + int(rng.integers(0, 4))), (40, 40, 40), -1)
        embeddings.append(look_embedding(image, (35.0, 50.0, 85.0, 70.0)))
    assert all(abs(np.linalg.norm(e) - 1) < 1e-5 for e in embeddings)
    assert group_looks(np.array(embeddings)) == [1, 1, 1, 1, 2, 2, 2]
    assert group_looks(np.array(embeddings[:1])) == [1]
