"""Scan outputs: events.json/CSV, keyframes, timeline, FiftyOne samples, and replace-only-when-complete."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvtriage.config import ScanConfig
from cvtriage.errors import CvtriageError
from cvtriage.scan import keyframes, outputs
from cvtriage.scan.outputs import write_scan_outputs
from cvtriage.scan.priority import teaching_values
from cvtriage.scan.store import store_results_in_fiftyone, store_scan_in_fiftyone
from cvtriage.scan.timeline import draw_timeline, format_timecode
from cvtriage.types import Event, FrameDetections, VideoInfo

CLASS_NAMES = {0: "person", 1: "ladder", 2: "fire extinguisher"}
FPS = 30.0
LADDER_BOX = (40.0, 50.0, 120.0, 200.0)
PERSON_BOX = (180.0, 80.0, 240.0, 170.0)


def _video(path: Path) -> VideoInfo:
    return VideoInfo(path=path, kind="video", width=320, height=240, fps=FPS, frame_count=300, duration_s=10.0)


def _frame_image(seed: int) -> np.ndarray:
    """A textured 320x240 BGR frame (a flat one would hide drawing bugs behind JPEG smoothing)."""
    rng = np.random.default_rng(seed)
    gradient = np.linspace(40, 200, 320, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 8, (240, 320, 3))
    return np.clip(gradient + noise, 0, 255).astype(np.uint8)


def _detections() -> list[FrameDetections]:
    """2 fps sampling of a 10 s, 30 fps video: a ladder around 1 s, a person around 6.5 s."""
    frames = []
    for frame_index in range(0, 300, 15):
        boxes, scores, class_ids = [], [], []
        if 15 <= frame_index <= 60:
            boxes.append(LADDER_BOX)
            scores.append(0.9 if frame_index == 30 else 0.7)
            class_ids.append(1)
        if frame_index == 30:  # a second, unrelated object on the ladder's keyframe
            boxes.append((200.0, 60.0, 260.0, 150.0))
            scores.append(0.45)
            class_ids.append(0)
        if 150 <= frame_index <= 225:
            boxes.append(PERSON_BOX)
            scores.append(0.8 if frame_index == 195 else 0.6)
            class_ids.append(0)
        frames.append(
            FrameDetections(
                frame_index=frame_index,
                time_s=frame_index / FPS,
                boxes_xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
                scores=np.array(scores, dtype=np.float32),
                class_ids=np.array(class_ids, dtype=np.int64),
            )
        )
    return frames


def _events() -> list[Event]:
    return [
        # The tracker's box is slightly off the detection's: the outputs must still pair them.
        Event(1, 7, 1, "ladder", 15, 60, 0.5, 2.0, 0.9, 30, (41.0, 51.0, 119.0, 198.0), 4),
        Event(2, 9, 0, "person", 150, 225, 5.0, 7.5, 0.8, 195, PERSON_BOX, 6),
    ]


# As the scan hands them over: numpy counts, tuples, whatever else it reports (a Path here).
STATS = {
    "frames_total": 300, "frames_inferred": np.int64(20), "wall_time_s": 1.25, "bad_ranges": [(100, 104)],
    "weights": Path("weights/demo.pt"),
}  # fmt: skip


def _write(out_dir: Path, video: VideoInfo, dataset: str | None = None, events: list[Event] | None = None):
    """The results folder, then (with `dataset`) its FiftyOne samples, as the scan pipeline writes them."""
    events = _events() if events is None else events
    images = {event.event_id: _frame_image(event.event_id) for event in events}
    settings = ScanConfig(dataset=dataset)
    teaching = teaching_values(events, settings.conf, FPS, (video.width, video.height))
    paths = write_scan_outputs(out_dir, video, settings, events, _detections(), CLASS_NAMES, images, dict(STATS), teaching)
    if dataset is not None:
        store_results_in_fiftyone(dataset, out_dir, video, events, _detections(), CLASS_NAMES, teaching)
    return paths


@pytest.fixture
def scan(tmp_path):
    video = _video(tmp_path / "survey.mp4")
    paths = _write(tmp_path / "runs" / "scan" / "survey", video)
    return video, paths


@pytest.fixture
def dataset_name():
    import fiftyone as fo

    name = f"test-scan-{uuid.uuid4().hex[:8]}"
    yield name
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


@pytest.mark.parametrize(
    ("seconds", "timecode"),
    [(0, "00:00:00.000"), (62.345, "00:01:02.345"), (59.9996, "00:01:00.000"), (3725.5, "01:02:05.500")],
)
def test_format_timecode(seconds, timecode):
    assert format_timecode(seconds) == timecode


def test_events_json_describes_each_event_and_the_run(scan):
    video, paths = scan
    document = json.loads(paths["events_json"].read_text())

    assert document["cvtriage_version"]
    assert document["created"].endswith("+00:00")
    assert document["video"]["path"] == str(video.path.resolve())
    assert document["video"]["width"] == 320 and document["video"]["fps"] == FPS
    assert document["settings"] == ScanConfig(dataset=None).model_dump(mode="json")
    assert document["stats"]["bad_ranges"] == [[100, 104]]
    assert document["stats"]["frames_inferred"] == 20
    assert document["stats"]["weights"] == "weights/demo.pt"
    assert document["stats"]["events"] == 2

    ladder, person = document["events"]
    assert ladder["id"] == 1 and ladder["class"] == "ladder" and ladder["track_id"] == 7
    assert (ladder["first_frame"], ladder["last_frame"], ladder["best_frame"]) == (15, 60, 30)
    assert ladder["first_timecode"] == "00:00:00.500" and ladder["last_timecode"] == "00:00:02.000"
    assert ladder["duration_s"] == 1.5
    assert ladder["best_time_s"] == 1.0 and ladder["best_timecode"] == "00:00:01.000"
    assert ladder["peak_confidence"] == pytest.approx(0.9)
    assert ladder["best_box_xyxy"] == [41.0, 51.0, 119.0, 198.0]
    assert ladder["frames_seen"] == 4
    assert ladder["keyframe"] == "keyframes/event_0001_ladder_00-00-01.000.jpg"
    assert person["keyframe"] == "keyframes/event_0002_person_00-00-06.500.jpg"
    for event in document["events"]:
        assert (paths["out_dir"] / event["keyframe"]).is_file()
        assert (paths["out_dir"] / event["keyframe_clean"]).is_file()


def test_csv_files_hold_events_and_every_detection(scan):
    _, paths = scan
    with paths["events_csv"].open() as file:
        events = list(csv.DictReader(file))
    assert [row["event_id"] for row in events] == ["1", "2"]
    assert events[1]["class_name"] == "person"
    assert events[1]["first_time_s"] == "5.0" and events[1]["first_timecode"] == "00:00:05.000"
    assert events[1]["last_timecode"] == "00:00:07.500" and events[1]["best_timecode"] == "00:00:06.500"
    assert [events[1][key] for key in ("x1", "y1", "x2", "y2")] == ["180.0", "80.0", "240.0", "170.0"]

    with paths["detections_csv"].open() as file:
        detections = list(csv.DictReader(file))
    expected = sum(len(frame.scores) for frame in _detections())
    assert len(detections) == expected == 4 + 1 + 6
    assert list(detections[0]) == outputs.DETECTION_COLUMNS
    second_object = [row for row in detections if row["frame"] == "30" and row["class_name"] == "person"]
    assert len(second_object) == 1
    assert second_object[0]["timecode"] == "00:00:01.000"
    assert float(second_object[0]["confidence"]) == pytest.approx(0.45)
    assert [float(second_object[0][key]) for key in ("x1", "y1", "x2", "y2")] == [200, 60, 260, 150]


def test_keyframes_show_boxes_and_clean_copies_do_not(scan):
    _, paths = scan
    name = "event_0001_ladder_00-00-01.000.jpg"
    drawn = cv2.imread(str(paths["keyframes"] / name)).astype(np.int16)
    clean = cv2.imread(str(paths["keyframes"] / "clean" / name)).astype(np.int16)
    original = _frame_image(1).astype(np.int16)
    assert drawn.shape == clean.shape == original.shape

    def difference(image, rows, cols):
        return np.abs(image[rows, cols] - original[rows, cols]).mean()

    # The event's box edge (left side of the ladder box) and the other detection's thinner edge.
    assert difference(drawn, slice(80, 180), slice(40, 43)) > 40
    assert difference(drawn, slice(80, 140), slice(200, 201)) > 30
    # Away from every box, and everywhere on the clean copy, only JPEG noise.
    assert difference(drawn, slice(210, 240), slice(0, 320)) < 6
    assert difference(clean, slice(0, 240), slice(0, 320)) < 6


def _drawn(tmp_path, video, events, detections=(), bad_ranges=()):
    """The timeline's figure, its PNG as written, and functions giving the PNG's BGR pixel at a
    (time, row) of the plot, and its pixels from one time to another along a row (by the
    figure's own transform)."""
    figure = draw_timeline(video, events, {frame.frame_index: frame for frame in detections}, bad_ranges)
    path = tmp_path / "timeline.png"
    figure.savefig(path)  # as write_timeline does; the layout is fixed by this drawing
    image = cv2.imread(str(path))
    axes = figure.axes[0]

    def at(time_s: float, row: float) -> tuple[int, int]:
        x, y = axes.transData.transform((time_s, row))
        return image.shape[0] - 1 - int(round(y)), int(round(x))

    def pixel(time_s: float, row: float) -> np.ndarray:
        return image[at(time_s, row)].astype(int)

    def along(first_s: float, last_s: float, row: float) -> np.ndarray:
        (y, x0), (_, x1) = at(first_s, row), at(last_s, row)
        return image[y, x0 : x1 + 1].astype(int)

    return figure, image, pixel, along


def _bar_colour(row: int) -> np.ndarray:
    """BGR of a bar of row `row`: its class colour at alpha 0.55 over the white plot."""
    from matplotlib.colors import to_rgb

    rgb = 0.55 * np.array(to_rgb(f"C{row}")) * 255 + 0.45 * 255
    return rgb[::-1]


def _tint(pixel: np.ndarray, rows: int = 3) -> int | None:
    """The row whose colour `pixel` is a shade of (any alpha over white; None: white, or a grey of
    the grid, axes or hatching). A bar a few pixels wide is mostly its edge, drawn over its face:
    the same colour, more opaque."""
    from matplotlib.colors import to_rgb

    if pixel.max() - pixel.min() < 15:
        return None
    residuals = []
    for row in range(rows):
        towards = 255 - np.array(to_rgb(f"C{row}"))[::-1] * 255  # white -> the class colour (BGR)
        alpha = np.clip(np.dot(255 - pixel, towards) / np.dot(towards, towards), 0, 1)
        residuals.append(np.abs(255 - alpha * towards - pixel).max())
    return int(np.argmin(residuals)) if min(residuals) < 12 else None


def test_timeline_draws_each_class_on_its_row_and_each_event_at_its_times(tmp_path):
    """Fails if a bar runs to the event's end time instead of for its duration
    (cvtriage.scan.timeline, draw_timeline: `max(e.last_time_s - e.first_time_s, min_width)` ->
    `max(e.last_time_s, min_width)`): the ladder's bar then reaches past 2 s."""
    video = _video(tmp_path / "survey.mp4")
    figure, image, pixel, _ = _drawn(tmp_path, video, _events(), _detections(), bad_ranges=[(100, 104)])
    axes = figure.axes[0]
    assert image.shape[1] == 1200 and 150 <= image.shape[0] <= 300
    # One row per class, by class id: person (0) on top, then ladder (1), each with its count.
    assert list(axes.get_yticks()) == [0, 1]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["person (1)", "ladder (1)"]
    assert axes.get_title() == "survey.mp4: 2 events in 00:10"
    person, ladder = 0, 1
    # Each event's bar, in its row's colour, from its first to its last time: ladder 0.5-2.0 s,
    # person 5.0-7.5 s; nothing in either row outside them (away from the grid lines at whole seconds).
    for row, inside, outside in ((ladder, [0.6, 1.5, 1.9], [0.4, 2.1, 2.6, 6.3]), (person, [5.1, 6.3, 7.4], [4.9, 7.6, 1.5])):
        for time_s in inside:
            assert np.abs(pixel(time_s, row) - _bar_colour(row)).max() <= 4, (row, time_s, pixel(time_s, row))
        for time_s in outside:
            assert pixel(time_s, row).min() >= 250, (row, time_s, pixel(time_s, row))
    # The keyframe's mark at its time (ladder 1.0 s, person 6.5 s), a black tick across the bar.
    assert pixel(1.0, ladder).max() < 80 and pixel(6.5, person).max() < 80
    # Frames 100-104 (3.33-3.5 s) did not decode: hatched grey across every row.
    assert np.mean([pixel(3.42, row).mean() for row in (-0.4, 0, 0.5, 1, 1.4)]) < 235


@pytest.mark.parametrize("count", [0, 1, 200])
def test_timeline_scales_from_no_events_to_many(tmp_path, count):
    """Fails if rows are not one per class (cvtriage.scan.timeline, draw_timeline:
    `classes = sorted({(event.class_id, event.class_name) for event in events})` ->
    `classes = sorted((event.class_id, event.class_name) for event in events)`)."""
    video = VideoInfo(tmp_path / "long flight.mp4", "video", 1920, 1080, 30.0, 30 * 1800, 1800.0)
    events = [
        Event(i + 1, i, i % 3, CLASS_NAMES[i % 3], 270 * i, 270 * i + 90, 9.0 * i, 9.0 * i + 3, 0.5, 270 * i + 30,
              (0, 0, 10, 10), 3)
        for i in range(count)
    ]  # fmt: skip
    figure, image, _, along = _drawn(tmp_path, video, events, bad_ranges=[(9000, 9900)])
    axes = figure.axes[0]
    rows = len({event.class_id for event in events})
    assert image.shape[1] == 1200 and 150 <= image.shape[0] <= 250 + 50 * rows
    expected = {0: [], 1: ["person (1)"], 200: ["person (67)", "ladder (67)", "fire extinguisher (66)"]}[count]
    assert [label.get_text() for label in axes.get_yticklabels()] == expected
    assert axes.get_title() == f"long flight.mp4: {count} event{'' if count == 1 else 's'} in 30:00"
    assert [text.get_text() for text in axes.texts] == (["no events"] if count == 0 else [])
    # 30 minutes across 1,200 px: a 3 s event is a bar of the shortest width drawn (end_s / 400,
    # 3 px), partly under its keyframe's mark; the row's previous event is 27 s (18 px) earlier.
    for event in events[:: max(1, count // 7)]:
        row = event.class_id
        assert row in {_tint(colour) for colour in along(event.first_time_s, event.first_time_s + 4.5, row)}, event
        if event.first_time_s > 20:
            assert {_tint(colour) for colour in along(event.first_time_s - 20, event.first_time_s - 4, row)} == {None}


def test_zero_events_still_make_complete_results(tmp_path):
    paths = _write(tmp_path / "empty", _video(tmp_path / "empty.mp4"), events=[])
    assert json.loads(paths["events_json"].read_text())["events"] == []
    assert paths["events_csv"].read_text().strip() == ",".join(outputs.EVENT_COLUMNS)
    assert paths["timeline"].is_file()
    assert list(paths["keyframes"].glob("*.jpg")) == []


def test_scan_samples_in_fiftyone(tmp_path, dataset_name):
    import fiftyone as fo

    video = _video(tmp_path / "survey.mp4")
    paths = _write(tmp_path / "out" / "survey", video, dataset=dataset_name)

    dataset = fo.load_dataset(dataset_name)
    assert dataset.persistent
    assert len(dataset) == 2
    assert dataset.count_sample_tags() == {"flagged": 2}
    ladder = dataset.match(fo.ViewField("event_id") == 1).first()
    assert ladder.class_name == "ladder"
    assert ladder.timestamp == pytest.approx(1.0) and ladder.timecode == "00:00:01.000"
    assert ladder.frame_number == 30
    assert (ladder.first_time_s, ladder.last_time_s) == (0.5, 2.0)
    assert ladder.peak_confidence == pytest.approx(0.9)
    assert ladder.source_video == str(video.path.resolve())
    assert ladder.filepath == str(paths["keyframes"] / "clean" / "event_0001_ladder_00-00-01.000.jpg")
    assert ladder.metadata.width == 320

    labels = ladder.detections.detections
    assert sorted(label.label for label in labels) == ["ladder", "person"]
    own = [label for label in labels if "event" in label.tags]
    assert len(own) == 1 and own[0].label == "ladder" and own[0]["event_id"] == 1
    assert own[0].bounding_box == pytest.approx([40 / 320, 50 / 240, 80 / 320, 150 / 240])
    assert own[0].confidence == pytest.approx(0.9)

    view = dataset.load_saved_view("flagged-events")
    assert view.values("peak_confidence") == pytest.approx([0.9, 0.8])


def test_rescanning_replaces_that_videos_samples_only(tmp_path, dataset_name):
    import fiftyone as fo

    survey, other = _video(tmp_path / "survey.mp4"), _video(tmp_path / "other.mp4")
    _write(tmp_path / "out" / "survey", survey, dataset=dataset_name)
    _write(tmp_path / "out" / "other", other, dataset=dataset_name)
    _write(tmp_path / "out" / "survey", survey, dataset=dataset_name, events=_events()[:1])

    dataset = fo.load_dataset(dataset_name)
    assert dataset.count_values("source_video") == {str(survey.path.resolve()): 1, str(other.path.resolve()): 2}
    assert all(Path(path).is_file() for path in dataset.values("filepath"))

    # The function SCAN-CORE may also call directly is just as idempotent.
    clean = tmp_path / "out" / "other" / "keyframes" / "clean"
    keyframe_paths = {1: clean / "event_0001_ladder_00-00-01.000.jpg", 2: clean / "event_0002_person_00-00-06.500.jpg"}
    detections = {frame.frame_index: frame for frame in _detections()}
    teaching = teaching_values(_events(), 0.3, FPS, (320, 240))
    store_scan_in_fiftyone(
        dataset_name, other, _events(), keyframe_paths, detections, CLASS_NAMES, tmp_path / "out" / "other", teaching
    )
    assert len(fo.load_dataset(dataset_name)) == 3


def test_failed_rewrite_leaves_previous_results_in_place(scan, monkeypatch):
    video, paths = scan
    before = {path.relative_to(paths["out_dir"]): path.read_bytes() for path in paths["out_dir"].rglob("*.*")}
    real_write_jpeg = keyframes._write_jpeg
    calls = []

    def write_then_fail(path, image, quality):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real_write_jpeg(path, image, quality)

    monkeypatch.setattr(keyframes, "_write_jpeg", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        _write(paths["out_dir"], video)

    after = {path.relative_to(paths["out_dir"]): path.read_bytes() for path in paths["out_dir"].rglob("*.*")}
    assert after == before
    assert [path.name for path in paths["out_dir"].parent.iterdir()] == ["survey"]  # no partial folder left


def test_an_event_without_a_keyframe_is_refused_before_writing(tmp_path):
    events = _events()
    with pytest.raises(ValueError, match=r"no keyframe image for event\(s\) \[2\]"):
        write_scan_outputs(
            tmp_path / "out", _video(tmp_path / "a.mp4"), ScanConfig(dataset=None), events, _detections(),
            CLASS_NAMES, {1: _frame_image(1)}, dict(STATS), teaching_values(events, 0.3, FPS, (320, 240)),
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_refuses_to_replace_a_folder_that_is_not_scan_results(tmp_path):
    out_dir = tmp_path / "survey"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine")
    with pytest.raises(CvtriageError, match="not a cvtriage scan folder"):
        _write(out_dir, _video(tmp_path / "survey.mp4"))
    assert (out_dir / "notes.txt").read_text() == "mine"
