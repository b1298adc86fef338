"""Events: coarse-to-fine refinement between samples, and sparse-frame tracking into events."""

import numpy as np
import pytest
from scoring import EventSpan, match_spans
from square_video import Square

from cvtriage.boxes import centred_in
from cvtriage.config import load_scan_config
from cvtriage.scan.refine import changed_boxes, refine_gap
from cvtriage.scan.tracking import track_events
from cvtriage.types import FrameDetections

FPS = 30.0
SETTINGS = load_scan_config(conf=0.3, track_gap_seconds=1.0, min_event_frames=2)


def frame_of(squares: list[Square], index: int, score: float = 0.8) -> FrameDetections:
    present = [s for s in squares if s.first_frame <= index <= s.last_frame]
    return FrameDetections(
        index,
        index / FPS,
        np.array([s.box_at(index) for s in present], np.float32).reshape(-1, 4),
        np.full(len(present), score, np.float32),
        np.array([s.class_id for s in present], np.int64),
    )


class Oracle:
    """detect_frame for refine_gap, answering from ground truth and recording what was asked."""

    def __init__(self, squares):
        self.squares = squares
        self.asked: list[int] = []

    def __call__(self, index, around=None):
        self.asked.append(index)
        return frame_of(self.squares, index)


@pytest.mark.parametrize("appears", [31, 44, 59])
def test_refinement_finds_the_exact_frame_an_object_appears(appears):
    squares = [Square(0, appears, 200, 10, 10)]
    oracle = Oracle(squares)
    refine_gap(frame_of(squares, 30), frame_of(squares, 60), oracle, SETTINGS.conf)
    assert appears in oracle.asked and (appears - 1 in oracle.asked or appears - 1 == 30)
    assert len(oracle.asked) <= 6  # probes every 8 frames, then a bisection: not all 29
    assert oracle.asked == sorted(oracle.asked) or max(oracle.asked[:-3]) - min(oracle.asked[-3:]) < 8


def test_refinement_finds_both_ends_of_a_short_visit_and_skips_unchanged_gaps():
    squares = [Square(1, 100, 130, 10, 10), Square(0, 0, 500, 50, 50)]
    oracle = Oracle(squares)
    refine_gap(frame_of(squares, 90), frame_of(squares, 120), oracle, SETTINGS.conf)
    refine_gap(frame_of(squares, 120), frame_of(squares, 150), oracle, SETTINGS.conf)
    assert {99, 100, 130, 131} <= set(oracle.asked)
    before = len(oracle.asked)
    refine_gap(frame_of(squares, 150), frame_of(squares, 180), oracle, SETTINGS.conf)  # nothing changes: no work
    assert len(oracle.asked) == before


def test_a_score_dipping_below_conf_is_not_refined_and_makes_no_event_but_leaving_is_refined():
    squares = [Square(0, 0, 140, 10, 10)]
    oracle = Oracle(squares)
    dipped = frame_of(squares, 120, score=0.25)  # still seen, below conf 0.3 but above 0.8 x conf
    refine_gap(frame_of(squares, 90), dipped, oracle, SETTINGS.conf)
    assert oracle.asked == []
    refine_gap(frame_of(squares, 120), frame_of(squares, 150), oracle, SETTINGS.conf)  # gone at 141
    assert {140, 141} <= set(oracle.asked)
    weak = [frame_of(squares, index, score=0.25) for index in range(0, 140, 10)]
    assert track_events(weak, FPS, {0: "car"}, SETTINGS) == []


class CropOracle(Oracle):
    """Oracle answering a probe asked `around` boxes with a crop: only the squares centred in the
    region `region_for` gives (their boxes grown by 40 px), as Detector.crop_for does."""

    def __init__(self, squares):
        super().__init__(squares)
        self.cropped: list[int] = []

    @staticmethod
    def region_for(boxes):
        return (*(boxes[:, :2].min(0) - 40).astype(int), *(boxes[:, 2:].max(0) + 40).astype(int))

    def __call__(self, index, around=None):
        frame = super().__call__(index)
        if around is None:
            return frame
        self.cropped.append(index)
        region = self.region_for(around)
        keep = centred_in(frame.boxes_xyxy, region)
        return FrameDetections(index, frame.time_s, frame.boxes_xyxy[keep], frame.scores[keep], frame.class_ids[keep], region)


def test_bisection_on_crops_around_the_object_that_changed_finds_the_same_frame():
    # One car leaves at 47; another car and a person stay in view far from it.
    squares = [Square(0, 0, 47, 300, 100), Square(0, 0, 200, 20, 20), Square(1, 0, 200, 200, 200)]
    whole, crops = Oracle(squares), CropOracle(squares)
    refine_gap(frame_of(squares, 30), frame_of(squares, 60), whole, SETTINGS.conf)
    refine_gap(frame_of(squares, 30), frame_of(squares, 60), crops, SETTINGS.conf, CropOracle.region_for)
    assert crops.asked == whole.asked and {47, 48} <= set(crops.asked)
    assert crops.cropped == [index for index in crops.asked if index % 8 != 6]  # all but the probes at 38, 46, 54
    boxes, unmatched = changed_boxes(frame_of(squares, 46), frame_of(squares, 54), [0])
    assert boxes[unmatched].tolist() == [[300, 100, 316, 116]] and len(boxes) == 3


def test_a_crop_takes_in_objects_moving_across_its_edge_and_falls_back_to_whole_frames_when_too_large():
    # A car leaves at 47 while another drives into the crop's area (x 240 at frame 46, 304 at 54):
    # counting inside a crop around the first car alone would find the other's arrival.
    squares = [Square(0, 0, 47, 300, 100), Square(0, 0, 200, -128, 108, vx=8.0)]
    crops = CropOracle(squares)
    refine_gap(frame_of(squares, 30), frame_of(squares, 60), crops, SETTINGS.conf, CropOracle.region_for)
    assert {47, 48} <= set(crops.asked) and crops.cropped == [50, 48, 47]
    # A car and a person leaving far apart: a crop holding both would be most of the frame (None here).
    squares = [Square(0, 0, 47, 20, 100), Square(1, 0, 50, 600, 300)]
    crops = CropOracle(squares)
    small = lambda boxes: None if np.ptp(boxes[:, [0, 2]]) > 300 else CropOracle.region_for(boxes)  # noqa: E731
    refine_gap(frame_of(squares, 30), frame_of(squares, 60), crops, SETTINGS.conf, small)
    assert {47, 48, 50, 51} <= set(crops.asked) and crops.cropped == []


def sampled(squares, total, step, extra=()):
    return [frame_of(squares, index) for index in sorted(set(range(0, total, step)) | set(extra))]


def test_one_fast_object_seen_every_15th_frame_is_one_event():
    # 4 px/frame: 60 px between samples, three times its own size: boxes never overlap.
    squares = [Square(0, 10, 140, 0, 40, vx=4.0, vy=0.5, side=20)]
    events = track_events(sampled(squares, 150, 15, extra=[10, 140]), FPS, {0: "car"}, SETTINGS)
    assert len(events) == 1
    [event] = events
    assert (event.class_name, event.first_frame, event.last_frame, event.frames_seen) == ("car", 10, 140, 11)
    assert event.first_time_s == pytest.approx(10 / FPS)


def test_objects_of_two_classes_side_by_side_are_two_events():
    squares = [Square(0, 0, 89, 10, 10, vx=2), Square(1, 0, 89, 12, 14, vx=2)]
    events = track_events(sampled(squares, 90, 10), FPS, {0: "car", 1: "person"}, SETTINGS)
    assert sorted(e.class_name for e in events) == ["car", "person"]


def test_a_gap_longer_than_the_track_buffer_splits_an_object_into_two_events():
    squares = [Square(0, 0, 40, 10, 10), Square(0, 120, 200, 10, 10)]
    short = track_events(sampled(squares, 200, 10), FPS, {0: "car"}, SETTINGS)
    assert [(e.first_frame, e.last_frame) for e in short] == [(0, 40), (120, 190)]
    long = track_events(sampled(squares, 200, 10), FPS, {0: "car"}, load_scan_config(conf=0.3, track_gap_seconds=5.0))
    assert len(long) == 1


def test_keyframe_is_the_peak_confidence_frame_and_flickers_are_dropped():
    squares = [Square(0, 0, 100, 10, 10)]
    frames = sampled(squares, 101, 10)
    frames[4].scores[:] = 0.95  # frame 40
    frames.append(FrameDetections(55, 55 / FPS, np.array([[200, 100, 220, 120]], np.float32),
                                  np.array([0.9], np.float32), np.array([0])))  # a one-frame false hit
    [event] = track_events(frames, FPS, {0: "car"}, SETTINGS)
    assert (event.best_frame, event.peak_confidence) == (40, pytest.approx(0.95))
    assert event.best_box_xyxy == (10.0, 10.0, 26.0, 26.0)


def test_events_are_numbered_by_first_appearance():
    squares = [Square(1, 50, 100, 200, 10), Square(0, 0, 100, 10, 10)]
    events = track_events(sampled(squares, 101, 5), FPS, {0: "car", 1: "person"}, SETTINGS)
    assert [(e.event_id, e.class_name, e.first_frame) for e in events] == [(1, "car", 0), (2, "person", 50)]


def test_matching_is_one_to_one_by_class_shared_frames_and_box_overlap():
    truth = [
        EventSpan("car", 0, 50, {f: (10.0 + f, 10.0, 30.0 + f, 30.0) for f in range(51)}),
        EventSpan("car", 40, 90, {f: (200.0, 10.0, 220.0, 30.0) for f in range(40, 91)}),
        EventSpan("person", 0, 90, {f: (100.0, 100.0, 120.0, 120.0) for f in range(91)}),
    ]
    found = [
        EventSpan("car", 45, 95, {60: (201.0, 11.0, 221.0, 31.0)}),  # the second car
        EventSpan("car", 5, 48, {20: (31.0, 11.0, 51.0, 31.0)}),  # the first car, seen where it was at frame 20
        EventSpan("car", 0, 90, {10: (100.0, 100.0, 120.0, 120.0)}),  # right place and time, wrong class
    ]
    assert match_spans(truth, found, min_iou=0.3) == [found[1], found[0], None]
    elsewhere = EventSpan("car", 0, 50, {20: (300.0, 300.0, 320.0, 320.0)})  # a hit elsewhere in the frame
    assert match_spans(truth[:1], [elsewhere], min_iou=0.3) == [None]
    assert match_spans(truth[:1], [elsewhere]) == [elsewhere]  # time and class only
    entering = EventSpan("car", 40, 90, {38: (200.0, 10.0, 220.0, 30.0)})  # keyframe 2 frames before "in view"
    assert match_spans(truth[1:2], [entering], min_iou=0.3) == [entering]
    both = EventSpan("car", 0, 90, {})
    assert match_spans(truth[:2], [both]) == [both, None]  # one found event answers one reference event
    assert match_spans(truth[:2], [both], one_to_one=False) == [both, both]
